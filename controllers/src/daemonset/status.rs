//! The DaemonSet's status as a pure function of nodes and pods (upstream
//! updateDaemonSetStatus): what `kubectl get ds` prints and `kubectl rollout status`
//! waits on.

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use super::nodes::{node_fit, template_generation};
use super::plan::{oldest_first, PodsByNode};
use super::rolling::is_updated;
use crate::podcontrol::{is_available, is_ready};

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Counts per node: a node that should run the pod is desired, and scheduled when a pod
/// is on or meant for it; its oldest pod decides ready, available and updated. A pod on
/// a node that should not run one is misscheduled. `observed` raises
/// observedGeneration (not while earlier writes are still unobserved: this sync did not
/// act on the spec).
pub fn calculate_status(
    ds: &DaemonSet,
    nodes: &[&Node],
    by_node: &PodsByNode<'_>,
    hash: &str,
    now: Timestamp,
    observed: bool,
) -> DaemonSetStatus {
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let generation = template_generation(ds);
    let (mut desired, mut scheduled, mut misscheduled) = (0, 0, 0);
    let (mut ready, mut available, mut updated) = (0, 0, 0);
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let mut pods: Vec<&Pod> = by_node.get(name).cloned().unwrap_or_default();
        if !node_fit(node, ds).should_run {
            misscheduled += usize::from(!pods.is_empty());
            continue;
        }
        desired += 1;
        pods.sort_by(oldest_first);
        let Some(pod) = pods.first() else { continue };
        scheduled += 1;
        if is_ready(pod) {
            ready += 1;
            available += usize::from(is_available(pod, min_ready, now));
        }
        updated += usize::from(is_updated(pod, hash, generation));
    }
    let old = ds.status.clone().unwrap_or_default();
    DaemonSetStatus {
        desired_number_scheduled: count(desired),
        current_number_scheduled: count(scheduled),
        number_misscheduled: count(misscheduled),
        number_ready: count(ready),
        number_available: Some(count(available)),
        number_unavailable: Some(count(desired - available)),
        updated_number_scheduled: Some(count(updated)),
        observed_generation: if observed {
            ds.metadata.generation
        } else {
            old.observed_generation
        },
        collision_count: old.collision_count,
        conditions: old.conditions,
    }
}

/// The merge patch for `/status`.
pub fn status_patch(status: &DaemonSetStatus) -> Value {
    json!({ "status": status })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Node;

    use super::*;
    use crate::daemonset::fixtures::*;
    use crate::daemonset::plan::pods_by_node;
    use crate::fixtures::NodeFixture;

    #[test]
    fn status_counts_nodes_like_upstream() {
        let now = Timestamp::from_second(100).unwrap();
        let mut ds = daemon_set("ds").node_selector("role", "edge").min_ready(30);
        ds.metadata.generation = Some(4);
        let nodes = [
            Node::test("ready-long").label("role", "edge"),
            Node::test("ready-short").label("role", "edge"),
            Node::test("starting").label("role", "edge"),
            Node::test("empty").label("role", "edge"),
            Node::test("other"),
        ];
        let pods = [
            pod("a")
                .on_node("ready-long")
                .running()
                .ready_since(10)
                .revision("cur"), // available
            pod("b")
                .on_node("ready-short")
                .running()
                .ready_since(90)
                .revision("cur"), // ready, not yet available
            pod("c").on_node("starting").revision("old"),
            pod("d").on_node("other").running().ready_since(1), // misscheduled
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let node_refs: Vec<&Node> = nodes.iter().collect();
        let s = calculate_status(
            &ds,
            &node_refs,
            &pods_by_node(&refs, false),
            "cur",
            now,
            true,
        );
        let cases = [
            ("desiredNumberScheduled", s.desired_number_scheduled, 4),
            ("currentNumberScheduled", s.current_number_scheduled, 3),
            ("numberMisscheduled", s.number_misscheduled, 1),
            ("numberReady", s.number_ready, 2),
            ("numberAvailable", s.number_available.unwrap(), 1),
            ("numberUnavailable", s.number_unavailable.unwrap(), 3),
            (
                "updatedNumberScheduled",
                s.updated_number_scheduled.unwrap(),
                2,
            ),
        ];
        for (name, got, want) in cases {
            assert_eq!(got, want, "{name}");
        }
        assert_eq!(s.observed_generation, Some(4));
        let unobserved = calculate_status(
            &ds,
            &node_refs,
            &pods_by_node(&refs, false),
            "cur",
            now,
            false,
        );
        assert_eq!(
            unobserved.observed_generation, None,
            "not raised while writes are in flight"
        );
    }
}
