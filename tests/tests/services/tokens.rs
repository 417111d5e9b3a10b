//! A pod's own service-account token, end to end: the ServiceAccount admission mounts it,
//! the agent projects it, and from the pod's network namespace it authenticates to the API
//! server at `kubernetes.default.svc` (verified with the mounted `ca.crt`) until the pod
//! is deleted.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{server_pod, TwoNodes};

const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The network namespace file of the pod with `uid` under an agent's directory.
fn pod_netns(agent_dir: &Path, uid: &str) -> Option<PathBuf> {
    let mut dirs = vec![agent_dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            if path.ends_with(Path::new(uid).join("net")) {
                return Some(path);
            }
            if entry
                .file_type()
                .is_ok_and(|t| t.is_dir() && !t.is_symlink())
            {
                dirs.push(path);
            }
        }
    }
    None
}

/// `curl` run inside the pod's network namespace against `kubernetes.default.svc`
/// (pinned to the service's cluster IP, so nothing is resolved): the status code and body.
fn curl_from_pod(
    netns: &Path,
    cluster_ip: &str,
    ca: &Path,
    token: &str,
    args: &[&str],
    url_path: &str,
) -> (String, String) {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["curl", "-sS", "--noproxy", "*", "--max-time", "10"])
        .args([
            "--resolve",
            &format!("kubernetes.default.svc:443:{cluster_ip}"),
        ])
        .arg("--cacert")
        .arg(ca)
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .arg(format!("https://kubernetes.default.svc{url_path}"))
        .env_clear()
        .output()
        .expect("running curl in the pod's network namespace");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = if out.status.success() {
        code.to_string()
    } else {
        format!("curl failed: {}", String::from_utf8_lossy(&out.stderr))
    };
    (code, body.to_string())
}

#[test]
fn a_pod_reaches_the_apiserver_with_its_mounted_token_until_it_is_deleted() {
    let two = TwoNodes::start();
    two.apply(
        "client.yaml",
        &server_pod("client", &two.nodes[0], "client"),
    );
    two.wait_pods_ready(&["client"]);
    let file = |name: &str| {
        two.pod_gets(
            "client",
            "127.0.0.1:8080",
            &format!("/file?path={MOUNT}/{name}"),
        )
    };
    let token = file("token");
    let ca_pem = file("ca.crt");
    assert_eq!(file("namespace"), "default");
    assert!(ca_pem.contains("BEGIN CERTIFICATE"), "{ca_pem}");
    let ca = two.dir.path().join("pod-ca.crt");
    std::fs::write(&ca, &ca_pem).unwrap();
    let uid = two.run(&["get", "pod", "client", "-o", "jsonpath={.metadata.uid}"]);
    let netns = pod_netns(&two.dir.path().join("agent1"), uid.trim())
        .expect("the pod's network namespace under agent 1's directory");
    let cluster_ip = two.service_field("kubernetes", "{.spec.clusterIP}");

    let (code, body) = two.eventually("the API from the pod", || {
        match curl_from_pod(&netns, &cluster_ip, &ca, &token, &[], "/api") {
            (code, body) if code.len() == 3 => Ok((code, body)),
            (err, _) => Err(err),
        }
    });
    assert!(code == "200" || code == "403", "{code}: {body}");
    let review = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;
    let post = [
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        review,
    ];
    let (code, body) = curl_from_pod(
        &netns,
        &cluster_ip,
        &ca,
        &token,
        &post,
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
    );
    assert_eq!(code, "201", "{body}");
    assert!(
        body.contains(r#""username":"system:serviceaccount:default:default""#)
            && body.contains(r#""authentication.kubernetes.io/pod-name":["client"]"#),
        "{body}"
    );

    // From the host now (the pod's network namespace goes away with the pod), to the
    // server's own address, which the test's network owns.
    two.run(&["delete", "pod", "client", "--wait=true"]);
    let server = two.run(&[
        "config",
        "view",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    let refused = two.eventually("the deleted pod's token to be refused", || {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--noproxy",
                "*",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
            ])
            .arg("--cacert")
            .arg(&ca)
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(["-w", "%{http_code}"])
            .arg(format!("{}/api", server.trim()))
            .env_clear()
            .output()
            .expect("running curl");
        let code = String::from_utf8_lossy(&out.stdout).into_owned();
        (code == "401").then_some(code.clone()).ok_or(code)
    });
    assert_eq!(refused, "401");
}
