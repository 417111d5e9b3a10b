//! `kubectl debug` on a running pod: the ephemeral container runs once in the pod's
//! sandbox, `kubectl logs -c` shows its output, and the pod reports it.

use crate::{at, pod_yaml as pod, Node, BUSYBOX};

#[test]
fn kubectl_debug_runs_an_ephemeral_container_once_in_the_pods_sandbox() {
    let node = Node::start(&[]);
    node.apply(
        "p.yaml",
        &pod(
            "p",
            "Always",
            &format!("  containers:\n  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '3600']\n"),
        ),
    );
    node.eventually("p running", || {
        let p = node.pod("p");
        (at(&p, "/status/phase") == "Running")
            .then_some(())
            .ok_or(at(&p, "/status"))
    });
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
