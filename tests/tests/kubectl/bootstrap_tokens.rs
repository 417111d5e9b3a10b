//! Bootstrap tokens as an operator uses them: `kybern token create|list|delete` against
//! the real server, the tokens' users as the server sees them, and a node joining with
//! `kybern agent --server --token --ca-cert-hash --join-only` (the join step alone: no
//! containerd, no host changes).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::users::kubectl_with_token;
use crate::common::{eventually, kybern_binary, Backend, Kubectl};
use crate::Cluster;

fn kybern(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(kybern_binary())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("running kybern")
}

fn stdout(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn admin_kubeconfig(c: &Cluster) -> std::path::PathBuf {
    c.server.as_ref().unwrap().kubeconfig.clone()
}

/// What `kubectl auth whoami` says of `token` (stdout, or stderr when it fails).
fn whoami(c: &Cluster, token: &str, name: &str) -> String {
    let dir = c.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let out = kubectl_with_token(&admin_kubeconfig(c), token, &dir).output(&["auth", "whoami"]);
    let text = if out.status.success() {
        out.stdout
    } else {
        out.stderr
    };
    String::from_utf8_lossy(&text).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_create_list_and_delete_manage_bootstrap_token_secrets() {
    let c = Cluster::start(Backend::Embedded).await;
    let kc = admin_kubeconfig(&c);
    let token = stdout(
        "create",
        &kybern(
            &kc,
            &[
                "token",
                "create",
                "--ttl",
                "2h",
                "--description",
                "for node 2",
            ],
        ),
    );
    let token = token.trim().to_string();
    let (id, _) = token.split_once('.').expect("id.secret");
    assert_eq!(token.len(), 23, "{token}");

    let secret = c.kubectl().run(&[
        "get",
        "secret",
        "-n",
        "kube-system",
        &format!("bootstrap-token-{id}"),
        "-o",
        "jsonpath={.type} {.data.usage-bootstrap-signing} {.data.auth-extra-groups}",
    ]);
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    assert_eq!(
        secret,
        format!(
            "bootstrap.kubernetes.io/token {} {}",
            b64("true"),
            b64("system:bootstrappers:kubeadm:default-node-token")
        )
    );

    let list = stdout("list", &kybern(&kc, &["token", "list"]));
    let row = list
        .lines()
        .find(|l| l.starts_with(&token))
        .unwrap_or_else(|| panic!("{token} not listed:\n{list}"));
    // The TTL column is what is left, rounded down as kubeadm's: 1h, or 2h when the
    // list comes within the second the token was made.
    assert!(
        row.contains(" 1h ") || row.contains(" 2h "),
        "TTL missing from {row}"
    );
    for want in [
        "authentication,signing",
        "for node 2",
        "system:bootstrappers:kubeadm:default-node-token",
    ] {
        assert!(row.contains(want), "{want:?} missing from {row}");
    }

    let deleted = stdout("delete", &kybern(&kc, &["token", "delete", &token]));
    assert_eq!(deleted.trim(), format!("bootstrap token \"{id}\" deleted"));
    let list = stdout("list", &kybern(&kc, &["token", "list"]));
    assert!(!list.contains(&token), "{list}");
    let again = kybern(&kc, &["token", "delete", id]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_live_bootstrap_token_with_its_own_secret_is_authenticated() {
    let c = Cluster::start(Backend::Embedded).await;
    let kc = admin_kubeconfig(&c);
    let token = stdout("create", &kybern(&kc, &["token", "create"]));
    let token = token.trim();
    let (id, secret) = token.split_once('.').unwrap();
    let me = whoami(&c, token, "valid");
    assert!(me.contains(&format!("system:bootstrap:{id}")), "{me}");
    assert!(
        me.contains("system:bootstrappers system:bootstrappers:kubeadm:default-node-token system:authenticated"),
        "{me}"
    );

    // An expired token's Secret, as an operator might have left it.
    let expired = c.manifest(
        "expired.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bootstrap-token-xpired\n  namespace: kube-system\ntype: bootstrap.kubernetes.io/token\nstringData:\n  token-id: xpired\n  token-secret: 0123456789abcdef\n  expiration: \"2020-01-01T00:00:00Z\"\n  usage-bootstrap-authentication: \"true\"\n",
    );
    c.kubectl().run(&["apply", "-f", expired.to_str().unwrap()]);
    let wrong_secret = format!("{id}.{}", secret.chars().rev().collect::<String>());
    let cases = [
        ("a wrong secret", wrong_secret),
        ("an unknown id", "zzzzzz.0123456789abcdef".to_string()),
        ("an expired token", "xpired.0123456789abcdef".to_string()),
    ];
    for (name, bad) in cases {
        let answer = whoami(&c, &bad, &format!("bad-{}", name.replace(' ', "-")));
        assert!(answer.contains("Unauthorized"), "{name}: {answer}");
    }
    // The token cleaner removes the expired token's Secret.
    eventually("the expired token's Secret is deleted", || async {
        let out = c.kubectl().output(&[
            "get",
            "secret",
            "-n",
            "kube-system",
            "bootstrap-token-xpired",
        ]);
        match out.status.success() {
            true => Err("still there".to_string()),
            false => Ok(()),
        }
    })
    .await;

    stdout("delete", &kybern(&kc, &["token", "delete", id]));
    let answer = whoami(&c, token, "deleted");
    assert!(answer.contains("Unauthorized"), "a deleted token: {answer}");
}

/// `kybern agent <join command> --node-name <node> --agent-dir <dir> --join-only`.
fn join(join_command: &str, node: &str, dir: &Path, extra: &[&str]) -> Output {
    let args: Vec<&str> = join_command
        .split_whitespace()
        .skip(1) // "kybern"
        .collect();
    Command::new(kybern_binary())
        .args(&args)
        .args(["--node-name", node, "--join-only", "--agent-dir"])
        .arg(dir)
        .args(extra)
        .env_remove("KUBECONFIG")
        .output()
        .expect("running kybern agent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_with_a_bootstrap_token_becomes_system_node_and_cannot_touch_another_nodes_objects(
) {
    let c = Cluster::start(Backend::Embedded).await;
    let kc = admin_kubeconfig(&c);
    let command = stdout(
        "create",
        &kybern(&kc, &["token", "create", "--print-join-command"]),
    );
    let command = command.trim();
    assert!(
        command.starts_with("kybern agent --server https://127.0.0.1:")
            && command.contains(" --token ")
            && command.contains(" --ca-cert-hash sha256:"),
        "{command}"
    );
    let agent_dir = c.dir.path().join("agent");
    let out = join(command, "joined-1", &agent_dir, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "join failed: {stderr}");
    assert!(
        stderr.contains("joined as system:node:joined-1"),
        "{stderr}"
    );

    let kubeconfig = agent_dir.join("kubelet.kubeconfig");
    let mode = std::fs::metadata(&kubeconfig).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the node's credentials are private");
    let mut node = c.kubectl();
    node.kubeconfig = kubeconfig.clone();
    let me = node.run(&["auth", "whoami"]);
    assert!(me.contains("system:node:joined-1"), "{me}");
    assert!(me.contains("[system:nodes system:authenticated]"), "{me}");

    // As that node it registers and labels its own Node, but cannot touch another
    // node's, nor read a Secret no pod of its own uses.
    let admin = c.kubectl();
    admin.run(&["create", "namespace", "join-test"]);
    admin.run(&[
        "create",
        "secret",
        "generic",
        "s",
        "-n",
        "join-test",
        "--from-literal=k=v",
    ]);
    let node_object = |name: &str| {
        format!(r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{name}"}}}}"#)
    };
    let create = |who: &Kubectl, name: &str| {
        let path = c.dir.path().join(format!("{name}.json"));
        std::fs::write(&path, node_object(name)).unwrap();
        who.output(&["create", "-f", path.to_str().unwrap()])
    };
    assert!(create(&admin, "other-node").status.success());
    let own = create(&node, "joined-1");
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    node.run(&["label", "node", "joined-1", "example.com/zone=a"]);
    for args in [
        &["label", "node", "other-node", "example.com/zone=a"][..],
        &["delete", "node", "other-node"],
        &["get", "secret", "s", "-n", "join-test"],
    ] {
        let out = node.output(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("Forbidden"),
            "kubectl {args:?} as the joined node: {stderr}"
        );
        if args[0] == "label" {
            assert!(
                stderr.contains(r#"node "joined-1" is not allowed to modify node "other-node""#),
                "{stderr}"
            );
        }
    }
    let other = admin.run(&[
        "get",
        "node",
        "other-node",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert!(!other.contains("example.com/zone"), "{other}");

    // A restart uses the kubeconfig the join wrote; no token needed.
    let server = command.split_whitespace().nth(3).unwrap();
    let again = Command::new(kybern_binary())
        .args(["agent", "--server", server, "--join-only", "--agent-dir"])
        .arg(&agent_dir)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("earlier join"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_that_cannot_be_trusted_are_refused_and_write_nothing() {
    let c = Cluster::start(Backend::Embedded).await;
    let kc = admin_kubeconfig(&c);
    let command = stdout(
        "create",
        &kybern(&kc, &["token", "create", "--print-join-command"]),
    );
    let command = command.trim().to_string();
    let token = command.split_whitespace().nth(5).unwrap().to_string();
    let pin = command.split_whitespace().nth(7).unwrap().to_string();
    let (id, secret) = token.split_once('.').unwrap();
    let wrong_secret = format!("{id}.{}", secret.chars().rev().collect::<String>());
    let other_pin = format!("sha256:{}", "ab".repeat(32));
    let cases = [
        (
            "a wrong --ca-cert-hash",
            command.replace(&pin, &other_pin),
            "refusing to join: the cluster CA's public key",
        ),
        (
            "a token with a wrong secret",
            command.replace(&token, &wrong_secret),
            "was not made with this token",
        ),
        (
            "no --ca-cert-hash",
            command.replace(&format!(" --ca-cert-hash {pin}"), ""),
            "--ca-cert-hash is required",
        ),
    ];
    for (name, cmd, why) in cases {
        let dir = c.dir.path().join(name.replace(' ', "-"));
        let out = join(&cmd, "untrusted", &dir, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: joined: {stderr}");
        assert!(stderr.contains(why), "{name}: {stderr}");
        assert!(
            !dir.join("kubelet.kubeconfig").exists(),
            "{name}: credentials written"
        );
    }
    let csrs = c.kubectl().run(&["get", "csr", "-o", "name"]);
    assert_eq!(csrs.trim(), "", "no refused join asked for a certificate");
}
