//! Which pods go first when a controller scales down (upstream controller.ActivePods,
//! the order the ReplicaSet and Job controllers delete in).

use std::cmp::Ordering;

use k8s_openapi::api::core::v1::Pod;

use crate::podcontrol::{is_ready, ready_since};

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Running") => 2,
        _ => 1, // Unknown, or not reported yet
    }
}

fn restarts(pod: &Pod) -> i32 {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    statuses.iter().map(|c| c.restart_count).max().unwrap_or(0)
}

/// Upstream's ActivePods order: the pod that sorts first is deleted first.
/// unassigned < assigned; Pending < Unknown < Running; not ready < ready; ready for less
/// time first; more restarts first; newer first.
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let assigned = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let ready_at = |p: &Pod| ready_since(p).flatten().map(|t| t.0);
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    assigned(a)
        .cmp(&assigned(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        // Both ready: the one ready more recently goes first (later time sorts first).
        .then_with(|| ready_at(b).cmp(&ready_at(a)))
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| created(b).cmp(&created(a)))
}

/// The `n` pods to delete on scale-down.
pub fn pods_to_delete<'a>(pods: &[&'a Pod], n: usize) -> Vec<&'a Pod> {
    let mut ranked = pods.to_vec();
    ranked.sort_by(|a, b| deletion_order(a, b));
    ranked.truncate(n);
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicaset::fixtures::*;

    fn names(pods: &[&Pod]) -> Vec<String> {
        pods.iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn scale_down_ranks_pods_like_upstream_active_pods() {
        let cases: Vec<(&str, Pod, Pod)> = vec![
            (
                "unassigned before assigned",
                pod("a").running(),
                pod("b").on_node("n").running(),
            ),
            (
                "pending before running",
                pod("a").on_node("n"),
                pod("b").on_node("n").running(),
            ),
            (
                "unknown before running",
                pod("a").on_node("n").phase("Unknown"),
                pod("b").on_node("n").running(),
            ),
            (
                "not ready before ready",
                pod("a").on_node("n").running(),
                pod("b").on_node("n").running().ready_since(5),
            ),
            (
                "ready more recently first",
                pod("a").on_node("n").running().ready_since(50),
                pod("b").on_node("n").running().ready_since(10),
            ),
            (
                "more restarts first",
                pod("a").on_node("n").running().ready_since(5).restarts(3),
                pod("b").on_node("n").running().ready_since(5).restarts(1),
            ),
            (
                "newer first",
                pod("a").on_node("n").running().ready_since(5).created(20),
                pod("b").on_node("n").running().ready_since(5).created(10),
            ),
        ];
        for (name, first, second) in &cases {
            assert_eq!(deletion_order(first, second), Ordering::Less, "{name}");
            assert_eq!(
                deletion_order(second, first),
                Ordering::Greater,
                "{name} (reversed)"
            );
            let picked = pods_to_delete(&[second, first], 1);
            assert_eq!(
                names(&picked),
                vec!["a"],
                "{name}: pods_to_delete picks the first-ranked"
            );
        }
    }
}
