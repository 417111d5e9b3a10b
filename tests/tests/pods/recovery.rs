//! Restarting the agent: healthy containers keep running (same container, no restart), and
//! a pod deleted while the agent was down is cleaned up when it comes back.

use crate::{at, pod_yaml, Node, BUSYBOX};

fn sleeper(name: &str) -> String {
    pod_yaml(name, "Always", &format!("  containers:\n  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: IfNotPresent\n    command: [sleep, \"3600\"]\n"))
}

#[test]
fn an_agent_restart_keeps_healthy_containers_and_cleans_up_deleted_pods() {
    let mut node = Node::start(&[]);
    node.apply("keep.yaml", &sleeper("keep"));
    node.apply("gone.yaml", &sleeper("gone"));
    let running = |name: &str| {
        let pod = node.pod(name);
        (at(&pod, "/status/phase") == "Running")
            .then_some(pod.clone())
            .ok_or(pod.to_string())
    };
    let keep = node.eventually("keep running", || running("keep"));
    let gone = node.eventually("gone running", || running("gone"));
    let keep_id = at(&keep, "/status/containerStatuses/0/containerID");
    let gone_id = at(&gone, "/status/containerStatuses/0/containerID")
        .trim_start_matches("containerd://")
        .to_string();
    let started = at(&keep, "/status/containerStatuses/0/state/running/startedAt");

    node.kill_agent();
    node.run(&["delete", "pod", "gone", "--grace-period=0", "--force"]);
    assert!(
        node.runtime_containers().contains(&gone_id),
        "its container outlives the agent until it is back"
    );
    node.start_agent(&[]);

    node.eventually("the deleted pod's container removed", || {
        let all = node.runtime_containers();
        (!all.contains(&gone_id))
            .then_some(())
            .ok_or(format!("{all:?}"))
    });
    node.eventually("one veth left, the kept pod's", || {
        let links = node.pod_links();
        (links.len() == 1).then_some(()).ok_or(format!("{links:?}"))
    });
    let after = node.pod("keep");
    assert_eq!(
        at(&after, "/status/containerStatuses/0/containerID"),
        keep_id,
        "same container"
    );
    assert_eq!(at(&after, "/status/containerStatuses/0/restartCount"), "0");
    assert_eq!(
        at(
            &after,
            "/status/containerStatuses/0/state/running/startedAt"
        ),
        started
    );
    node.run(&["delete", "pod", "keep", "--wait=true"]);
}
