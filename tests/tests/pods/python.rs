//! The official Python client's stream API on a real pod: `kubernetes.stream.stream` with
//! `connect_get_namespaced_pod_exec` (stdin, stdout and stderr apart, the exit code) and
//! `kubernetes.stream.portforward` to the test server, each a check of
//! tests/clients/python/kubernetes_stream.py run with the cluster's admin kubeconfig.

use std::process::Command;

use crate::io::running;
use crate::venv::{python, scripts};
use crate::{pod_yaml as pod, Node, BUSYBOX, TESTSERVER};

/// A node running pod `shell` (busybox, sleeping) and pod `web` (the test server).
fn node_with_shell_and_web() -> Node {
    let node = Node::start(&[]);
    node.apply(
        "shell.yaml",
        &pod(
            "shell",
            "Always",
            &format!("  containers:\n  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '3600']\n"),
        ),
    );
    node.apply(
        "web.yaml",
        &pod(
            "web",
            "Always",
            &format!("  containers:\n  - name: main\n    image: {TESTSERVER}\n    imagePullPolicy: IfNotPresent\n    readinessProbe:\n      httpGet: {{path: /, port: 8080}}\n      periodSeconds: 1\n"),
        ),
    );
    running(&node, "shell", 0);
    // Ready: the test server listens (a forward to a closed port fails the check).
    node.eventually("web ready", || {
        let p = node.pod("web");
        (crate::at(&p, "/status/containerStatuses/0/ready") == "true")
            .then_some(())
            .ok_or(crate::at(&p, "/status"))
    });
    node
}

fn check(node: &Node, check: &str) {
    let python = python();
    let out = Command::new(&python)
        .arg(scripts().join("kubernetes_stream.py"))
        .arg(&node.kubectl.kubeconfig)
        .arg(check)
        .output()
        .expect("running the virtualenv's python");
    assert!(
        out.status.success(),
        "kubernetes_stream.py {check} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_python_clients_stream_api_execs_with_stdin_and_forwards_a_port_on_a_real_pod() {
    let node = node_with_shell_and_web();
    for name in [
        "exec_passes_stdin_and_reports_the_exit_code",
        "portforward_reaches_the_test_server",
    ] {
        check(&node, name);
    }
}
