//! `kybern controller` as a user runs it.

use std::process::Command;

use crate::common::kybern_binary;

#[test]
fn controller_list_prints_every_loop() {
    let out = Command::new(kybern_binary())
        .args(["controller", "--list"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(out.stdout).unwrap();
    let every = [
        "namespace",
        "serviceaccount",
        "tokens",
        "clusterrole-aggregation",
        "servicelb",
        "garbagecollector",
        "replicaset",
        "replicationcontroller",
        "deployment",
        "statefulset",
        "daemonset",
        "job",
        "cronjob",
        "endpoints",
        "endpointslice",
        "endpointslicemirroring",
        "nodeipam",
        "nodelifecycle",
        "localpath",
        "persistentvolume-binder",
        "podgc",
        "horizontalpodautoscaling",
        "disruption",
        "resourcequota",
        "csrsigning",
        "csrapproving",
        "bootstrapsigner",
        "tokencleaner",
        "scheduler",
    ];
    assert_eq!(
        listed.lines().count(),
        every.len(),
        "one line per loop:\n{listed}"
    );
    for name in every {
        assert!(
            listed.lines().any(|l| l == name),
            "{name} missing from:\n{listed}"
        );
    }
}

#[test]
fn an_unknown_loop_name_fails_listing_the_known_ones() {
    let out = Command::new(kybern_binary())
        .args(["controller", "no-such-loop", "--kubeconfig", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown control loop \"no-such-loop\"") && err.contains("garbagecollector"),
        "{err}"
    );
}

#[test]
fn an_invalid_scheduler_configuration_fails_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scheduler.yaml");
    std::fs::write(&config, "profiles:\n- plugins:\n    score:\n      enabled:\n      - name: NoSuchPlugin\n        weight: 2\n").unwrap();
    let out = Command::new(kybern_binary())
        .args([
            "controller",
            "scheduler",
            "--kubeconfig",
            "/nonexistent",
            "--scheduler-config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("reading the scheduler configuration") && err.contains("NoSuchPlugin"),
        "{err}"
    );
}

/// A plain-HTTP GET on loopback: the body.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(conn, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn kybern_server_serves_its_control_loops_metrics_where_asked() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = crate::common::free_port();
    let mut cmd = Command::new(kybern_binary());
    cmd.arg("server")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .args(["--metrics-bind-address", &format!("127.0.0.1:{metrics}")]);
    let server = crate::common::Binary::spawn(cmd, dir.path());
    server
        .kubectl()
        .run(&["create", "deployment", "web", "--image=busybox"]);
    let adds = crate::common::eventually("the deployment loop counted", || async {
        let body = http_get(metrics, "/metrics");
        body.lines()
            .find(|l| l.starts_with("workqueue_adds_total{name=\"deployment\"}"))
            .map(str::to_string)
            .filter(|l| !l.ends_with(" 0"))
            .ok_or(body)
    })
    .await;
    assert!(
        adds.split(' ')
            .nth(1)
            .is_some_and(|n| n.parse::<u64>().is_ok()),
        "{adds}"
    );
    assert_eq!(http_get(metrics, "/healthz"), "ok");
}

#[test]
fn a_cluster_dns_outside_the_service_cidr_stops_the_server_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(kybern_binary())
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--advertise-address",
            "127.0.0.1",
        ])
        .args(["--service-cidr", "10.96.0.0/16", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--cluster-dns 10.43.0.10 is not an address of --service-cidr 10.96.0.0/16"),
        "{err}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing was written before the check"
    );
}
