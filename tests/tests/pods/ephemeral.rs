//! `kubectl debug` on a running pod: the ephemeral container runs once in the pod's
//! sandbox, `kubectl logs -c` shows its output, and the pod reports it.

use crate::{at, pod_yaml as pod, Node, BUSYBOX};

/// A running pod `p` whose one container `main` sleeps `seconds`.
fn sleeping_pod(node: &Node, seconds: u32) {
    node.apply(
        "p.yaml",
        &pod(
            "p",
            "Always",
            &format!("  containers:\n  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '{seconds}']\n"),
        ),
    );
    crate::io::running(node, "p", 0);
}

#[test]
fn kubectl_debug_runs_an_ephemeral_container_once_in_the_pods_sandbox() {
    let node = Node::start(&[]);
    sleeping_pod(&node, 3600);
    // The debugger prints the hostname it sees (the pod's UTS namespace) and exits.
    node.run(&[
        "debug",
        "pod/p",
        "-c",
        "debugger",
        &format!("--image={BUSYBOX}"),
        "--image-pull-policy=IfNotPresent",
        "--",
        "sh",
        "-c",
        "echo debugging $(hostname)",
    ]);
    let state = node.eventually("the debugger terminated", || {
        let p = node.pod("p");
        let state = p
            .pointer("/status/ephemeralContainerStatuses/0/state/terminated")
            .cloned();
        state.ok_or(at(&p, "/status"))
    });
    assert_eq!(
        (at(&state, "/exitCode"), at(&state, "/reason")),
        ("0".to_string(), "Completed".to_string()),
        "{state}"
    );
    // Its log is served as any container's: `kubectl logs -c`.
    let p = node.pod("p");
    assert_eq!(
        node.run(&["logs", "p", "-c", "debugger"]),
        "debugging p\n",
        "the pod's hostname, in the debugger's log"
    );
    assert_eq!(
        at(&p, "/status/ephemeralContainerStatuses/0/restartCount"),
        "0"
    );
    assert_eq!(at(&p, "/status/phase"), "Running");
    assert_eq!(
        at(&p, "/status/containerStatuses/0/restartCount"),
        "0",
        "the app container is left alone"
    );
}

#[test]
fn kubectl_debug_it_with_a_target_sees_the_targets_processes_and_talks_through_stdin() {
    let node = Node::start(&[]);
    // The target's process has a name no debugger runs: `sleep 3601`.
    sleeping_pod(&node, 3601);
    let mut debug = node
        .kubectl
        .command()
        .args([
            "debug",
            "-it",
            "p",
            "-c",
            "debugger",
            &format!("--image={BUSYBOX}"),
            "--image-pull-policy=IfNotPresent",
            "--target=main",
            "--",
            "sh",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = debug.stdin.take().unwrap();
        // Typed input reaches the debugger's shell; what it prints comes back.
        stdin.write_all(b"ps; echo typed-$((6*7)); exit\n").unwrap();
    }
    let out = debug.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("typed-42"),
        "the shell's answer: {stdout:?} {stderr}"
    );
    assert!(
        stdout.contains("sleep 3601"),
        "ps in the debugger lists the target's process: {stdout:?}"
    );
    let p = node.pod("p");
    assert_eq!(
        at(&p, "/spec/ephemeralContainers/0/targetContainerName"),
        "main"
    );
}
