//! `kubectl debug` on a running pod: the ephemeral container runs once in the pod's
//! sandbox, its log lies beside the other containers' (where the node API reads
//! `kubectl logs -c` from), and the pod reports it.

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
    // Its CRI log is where the other containers' are, the file the node API serves
    // `kubectl logs p -c debugger` from.
    let p = node.pod("p");
    let log = node
        .agent_dir
        .join("logs")
        .join(format!("default_p_{}", at(&p, "/metadata/uid")))
        .join("debugger/0.log");
    let log = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let text: Vec<&str> = log
        .lines()
        .filter_map(|l| l.splitn(4, ' ').nth(3))
        .collect();
    assert_eq!(
        text,
        ["debugging p"],
        "the pod's hostname, in its log: {log}"
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
