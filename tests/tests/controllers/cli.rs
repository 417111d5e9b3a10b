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
        "nodeipam",
        "nodelifecycle",
        "localpath",
        "persistentvolume-binder",
        "podgc",
        "horizontalpodautoscaling",
        "disruption",
        "csrsigning",
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
