//! Each control loop acts as its own identity, bound by its own role: the real
//! `kybern server` (and `kybern controller`) binary driven by the real kubectl.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{eventually, kybern_binary, Binary, ChildGuard, Kubectl};

const DEPLOYMENT_SA: &str = "system:serviceaccount:kube-system:deployment-controller";

/// Lines of the server's log (stderr) that say `user` was refused something.
fn denials(log: &Path, user: &str) -> Option<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let needle = format!("User \\\"{user}\\\" cannot");
    let plain = format!("User \"{user}\" cannot");
    text.lines()
        .find(|l| l.contains(&needle) || l.contains(&plain))
        .map(str::to_string)
}

/// Waits until `kubectl ARGS` succeeds and prints something (the names it lists).
async fn eventually_listed(kubectl: &Kubectl, what: &str, args: &[&str]) -> String {
    eventually(what, || {
        let out = kubectl.output(args);
        let names = String::from_utf8_lossy(&out.stdout).trim().to_string();
        async move {
            if out.status.success() && !names.is_empty() {
                Ok(names)
            } else {
                Err(format!(
                    "{names:?} {}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        }
    })
    .await
}

/// `kybern server ARGS` on a free port with its data in `dir`, once the deployment
/// loop's ClusterRoleBinding is deleted: the loop can then work only as whatever
/// identity the server gives it.
fn server_without_deployment_binding(dir: &Path, args: &[&str]) -> Binary {
    let data = dir.join("data");
    let mut cmd = Command::new(kybern_binary());
    cmd.arg("server")
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data);
    let server = Binary::spawn(cmd, &data);
    server.kubectl().run(&[
        "delete",
        "clusterrolebinding/system:controller:deployment-controller",
    ]);
    server
}

fn can_i(kubectl: &Kubectl, as_user: &str, verb: &str, resource: &str) -> String {
    let out = kubectl.output(&["auth", "can-i", verb, resource, "--as", as_user]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn the_deployment_loop_acts_as_its_service_account_with_upstreams_role() {
    let dir = tempfile::tempdir().unwrap();
    let server = Binary::start(&dir.path().join("data"), 0, None);
    let kubectl = server.kubectl();
    kubectl.run(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "--replicas=1",
    ]);
    eventually_listed(
        &kubectl,
        "the deployment loop to create web's ReplicaSet",
        &["get", "rs", "-l", "app=web", "-o", "name"],
    )
    .await;
    // Written without a field manager, the loops' writes are recorded under their
    // User-Agent, kube-controller-manager's as upstream.
    let managers = kubectl.run(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].metadata.managedFields[*].manager}",
    ]);
    assert!(
        !managers.trim().is_empty()
            && managers
                .split_whitespace()
                .all(|m| m == "kube-controller-manager"),
        "the ReplicaSet's field managers: {managers:?}"
    );
    // The account the loop asked a token for, and what its role lets it do.
    kubectl.run(&[
        "get",
        "serviceaccount",
        "-n",
        "kube-system",
        "deployment-controller",
    ]);
    for (verb, resource, answer) in [
        ("create", "replicasets.apps", "yes"),
        ("update", "deployments.apps/status", "yes"),
        ("delete", "secrets", "no"),
        ("create", "pods", "no"),
    ] {
        assert_eq!(
            can_i(&kubectl, DEPLOYMENT_SA, verb, resource),
            answer,
            "can {DEPLOYMENT_SA} {verb} {resource}?"
        );
    }
}

#[tokio::test]
async fn a_loop_whose_binding_is_removed_is_refused_while_the_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Binary::start(&dir.path().join("data"), 0, None);
    let kubectl = server.kubectl();
    let log = server.data_dir.join("server.log");
    let binding = "clusterrolebinding/system:controller:deployment-controller";
    let saved = kubectl.run(&["get", binding, "-o", "yaml"]);
    kubectl.run(&["delete", binding]);

    kubectl.run(&["create", "deployment", "web", "--image=busybox"]);
    let refused = eventually("the deployment loop to be refused (403) in the log", || {
        let found = denials(&log, DEPLOYMENT_SA);
        async move { found.ok_or_else(|| "no denial logged yet".to_string()) }
    })
    .await;
    assert!(refused.contains("forbidden"), "{refused}");

    // The ReplicaSet loop acts under its own binding and still makes pods.
    let manifest = dir.path().join("rs.yaml");
    std::fs::write(&manifest, REPLICA_SET).unwrap();
    kubectl.run(&["apply", "-f", manifest.to_str().unwrap()]);
    eventually_listed(
        &kubectl,
        "the replicaset loop to create a pod for plain",
        &["get", "pods", "-l", "app=plain", "-o", "name"],
    )
    .await;

    // Given its binding back, the deployment loop catches up.
    let path = dir.path().join("binding.yaml");
    std::fs::write(&path, saved).unwrap();
    kubectl.run(&["create", "-f", path.to_str().unwrap()]);
    eventually_listed(
        &kubectl,
        "web's ReplicaSet once the binding is back",
        &["get", "rs", "-l", "app=web", "-o", "name"],
    )
    .await;
}

const REPLICA_SET: &str = "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: plain
spec:
  replicas: 1
  selector:
    matchLabels: {app: plain}
  template:
    metadata:
      labels: {app: plain}
    spec:
      containers:
      - name: c
        image: busybox
";

/// `kybern controller NAMES --kubeconfig admin.kubeconfig [FLAGS]` beside a server that
/// runs no loops, its stderr in `log`.
fn controller(server: &Binary, names: &[&str], flags: &[&str], log: &Path) -> ChildGuard {
    let child = Command::new(kybern_binary())
        .arg("controller")
        .args(names)
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(["--metrics-bind-address", "127.0.0.1:0"])
        .args(flags)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("starting kybern controller");
    ChildGuard(child)
}

#[tokio::test]
async fn kybern_controller_runs_loops_as_their_accounts_unless_told_to_keep_its_own_identity() {
    let dir = tempfile::tempdir().unwrap();
    // Without its binding the deployment loop can only work as the kubeconfig's user.
    let server = server_without_deployment_binding(dir.path(), &["--disable", "controllers"]);
    let kubectl = server.kubectl();

    for (name, flags, works) in [
        (
            "own-identity",
            &["--use-service-account-credentials=false"][..],
            true,
        ),
        ("service-account", &[][..], false),
    ] {
        let deployment = format!("web-{name}");
        let log = dir.path().join(format!("{name}.log"));
        let loops = controller(&server, &["deployment"], flags, &log);
        kubectl.run(&["create", "deployment", &deployment, "--image=busybox"]);
        if works {
            eventually_listed(
                &kubectl,
                &format!("{name}: the ReplicaSet of {deployment}"),
                &[
                    "get",
                    "rs",
                    "-l",
                    &format!("app={deployment}"),
                    "-o",
                    "name",
                ],
            )
            .await;
        } else {
            eventually(&format!("{name}: the loop to be refused"), || {
                let found = denials(&log, DEPLOYMENT_SA);
                async move { found.ok_or_else(|| "no denial logged yet".to_string()) }
            })
            .await;
            kubectl.run(&[
                "get",
                "serviceaccount",
                "-n",
                "kube-system",
                "deployment-controller",
            ]);
        }
        drop(loops);
    }
}

#[tokio::test]
async fn kybern_server_keeps_its_loops_on_its_own_identity_with_use_service_account_credentials_false(
) {
    let dir = tempfile::tempdir().unwrap();
    // Without its binding the deployment loop works only as the server's own identity.
    let server = server_without_deployment_binding(
        dir.path(),
        &[
            "--use-service-account-credentials=false",
            "--metrics-bind-address",
            "127.0.0.1:0",
        ],
    );
    let kubectl = server.kubectl();
    kubectl.run(&["create", "deployment", "web", "--image=busybox"]);
    eventually_listed(
        &kubectl,
        "the ReplicaSet of web",
        &["get", "rs", "-l", "app=web", "-o", "name"],
    )
    .await;
}
