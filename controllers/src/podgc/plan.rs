//! The pod garbage collector's decisions, as pure functions of the pods and nodes it
//! sees: terminated pods beyond the threshold (oldest first), pods bound to nodes that
//! stayed missing through the quarantine, and unscheduled pods being deleted.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use crate::podcontrol::is_deleting;

/// Why a pod is removed; also what the log says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Succeeded or Failed, and more such pods than the threshold exist.
    Terminated,
    /// Bound to a node that no longer exists (upstream's gcOrphaned).
    Orphaned,
    /// Being deleted but never scheduled: no kubelet will ever finish it.
    UnscheduledTerminating,
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

/// Upstream's isPodTerminated: a pod past Pending, Running and Unknown.
pub fn is_terminated(pod: &Pod) -> bool {
    !matches!(phase(pod), None | Some("Pending" | "Running" | "Unknown"))
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

/// Terminated pods beyond `threshold`, the ones to remove first: evicted pods, then the
/// oldest by creation time (then name), as upstream's byEvictionAndCreationTimestamp.
/// A threshold of 0 turns this off, as upstream's --terminated-pod-gc-threshold.
/// For example 5 terminated pods and a threshold of 3 give the 2 oldest.
pub fn terminated_over_threshold<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    threshold: usize,
) -> Vec<&'a Pod> {
    if threshold == 0 {
        return Vec::new();
    }
    let mut terminated: Vec<&Pod> = pods.into_iter().filter(|p| is_terminated(p)).collect();
    let Some(excess) = terminated.len().checked_sub(threshold).filter(|n| *n > 0) else {
        return Vec::new();
    };
    let evicted = |p: &Pod| p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted");
    terminated.sort_by(|a, b| {
        evicted(b)
            .cmp(&evicted(a))
            .then_with(|| {
                let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
                created(a).cmp(&created(b))
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    terminated.truncate(excess);
    terminated
}

/// The nodes pods are bound to that are not in `nodes`.
pub fn missing_nodes<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    nodes: &BTreeSet<String>,
) -> BTreeSet<String> {
    pods.into_iter()
        .filter_map(node_of)
        .filter(|n| !nodes.contains(*n))
        .map(str::to_string)
        .collect()
}

/// Pods bound to one of the `gone` nodes.
pub fn orphaned<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    gone: &BTreeSet<String>,
) -> Vec<&'a Pod> {
    pods.into_iter()
        .filter(|p| node_of(p).is_some_and(|n| gone.contains(n)))
        .collect()
}

/// Pods being deleted that were never bound to a node.
pub fn unscheduled_terminating<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Vec<&'a Pod> {
    pods.into_iter()
        .filter(|p| is_deleting(&p.metadata) && node_of(p).is_none())
        .collect()
}

/// When each missing node was first seen missing: a node absent from the cache may only
/// be one the cache has not caught up with (a node registering while its pods are
/// already bound), so its pods are left alone for the quarantine (upstream: 40 s).
#[derive(Debug, Default)]
pub struct Quarantine {
    first_missing: HashMap<String, Instant>,
}

impl Quarantine {
    /// Records the nodes missing `now`, forgets the ones back, and returns those missing
    /// for at least `period`.
    pub fn expired(
        &mut self,
        missing: &BTreeSet<String>,
        now: Instant,
        period: Duration,
    ) -> BTreeSet<String> {
        self.first_missing.retain(|n, _| missing.contains(n));
        for n in missing {
            self.first_missing.entry(n.clone()).or_insert(now);
        }
        self.first_missing
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= period)
            .map(|(n, _)| n.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicaset::fixtures::{pod, PodFixture};

    fn names(pods: &[&Pod]) -> Vec<String> {
        pods.iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn terminated_pods_beyond_the_threshold_go_evicted_first_then_oldest_first() {
        let mut evicted = pod("evicted-new").phase("Failed").created(50);
        evicted.status.as_mut().unwrap().reason = Some("Evicted".into());
        let pods = [
            pod("done-3").phase("Succeeded").created(30),
            pod("done-1").phase("Succeeded").created(10),
            pod("running").running().created(0),
            pod("failed-2").phase("Failed").created(20),
            evicted,
            pod("pending").created(1),
        ];
        let cases = [
            ("threshold 2 of 4", 2, vec!["evicted-new", "done-1"]),
            ("threshold 4 of 4", 4, vec![]),
            ("threshold 0 is off", 0, vec![]),
            (
                "threshold 1 of 4",
                1,
                vec!["evicted-new", "done-1", "failed-2"],
            ),
        ];
        for (name, threshold, want) in cases {
            assert_eq!(
                names(&terminated_over_threshold(&pods, threshold)),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn pods_on_missing_nodes_and_unscheduled_deleting_pods_are_found() {
        let pods = [
            pod("on-live").on_node("live"),
            pod("on-gone").on_node("gone"),
            pod("unscheduled"),
            pod("unscheduled-deleting").deleting(),
            pod("bound-deleting").on_node("live").deleting(),
        ];
        let missing = missing_nodes(&pods, &set(&["live"]));
        assert_eq!(missing, set(&["gone"]));
        assert_eq!(names(&orphaned(&pods, &missing)), vec!["on-gone"]);
        assert_eq!(
            names(&unscheduled_terminating(&pods)),
            vec!["unscheduled-deleting"]
        );
    }

    #[test]
    fn a_missing_node_expires_only_after_the_quarantine_and_is_forgotten_when_back() {
        let mut q = Quarantine::default();
        let t0 = Instant::now();
        let period = Duration::from_secs(40);
        let gone = set(&["gone"]);
        assert!(q.expired(&gone, t0, period).is_empty(), "just seen missing");
        assert!(q
            .expired(&gone, t0 + Duration::from_secs(39), period)
            .is_empty());
        assert_eq!(q.expired(&gone, t0 + period, period), gone, "after 40 s");
        assert!(
            q.expired(&set(&[]), t0 + period, period).is_empty(),
            "the node came back"
        );
        assert!(
            q.expired(&gone, t0 + period * 2, period).is_empty(),
            "missing again: a new quarantine"
        );
    }
}
