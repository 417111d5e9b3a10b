//! The scheduling framework: per-pod state computed once (upstream's PreFilter), the
//! filter chain in upstream's order, and the weighted score sum.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Toleration;

use super::cache::{Cache, NodeInfo, PodInfo};
use super::config::SchedulerConfig;
use super::filters::inter_pod_affinity::{AffinityState, NamespaceLabels};
use super::filters::{self, topology_spread::SpreadState};
use super::scores;

/// Why a node rejected a pod. `Unresolvable` means preempting pods cannot help.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Unschedulable,
    UnschedulableAndUnresolvable,
}

impl Status {
    pub fn unschedulable(reason: impl Into<String>) -> Status {
        Status {
            code: Code::Unschedulable,
            reasons: vec![reason.into()],
        }
    }
    pub fn unresolvable(reason: impl Into<String>) -> Status {
        Status {
            code: Code::UnschedulableAndUnresolvable,
            reasons: vec![reason.into()],
        }
    }
}

pub type FilterResult = Result<(), Status>;

/// The filter plugins as bits. A pod parked as unschedulable remembers which plugins
/// rejected it, and a cluster event moves it back only if one of them could now
/// answer differently (upstream's QueueingHints, at the granularity of plugins).
pub mod plugin {
    pub const NODE_UNSCHEDULABLE: u16 = 1 << 0;
    pub const NODE_NAME: u16 = 1 << 1;
    pub const TAINT_TOLERATION: u16 = 1 << 2;
    pub const NODE_AFFINITY: u16 = 1 << 3;
    pub const NODE_PORTS: u16 = 1 << 4;
    pub const RESOURCES_FIT: u16 = 1 << 5;
    pub const TOPOLOGY_SPREAD: u16 = 1 << 6;
    pub const INTER_POD_AFFINITY: u16 = 1 << 7;
    pub const ALL: u16 = u16::MAX;
}

/// Cluster events as the set of plugins each may change the verdict of.
pub mod event {
    use super::plugin::*;

    /// A new node can satisfy any filter.
    pub const NODE_ADD: u16 = ALL;
    /// A node's labels changed.
    pub const NODE_LABELS: u16 = NODE_AFFINITY | TOPOLOGY_SPREAD | INTER_POD_AFFINITY;
    /// A node's taints or readiness changed (not-ready counts as a taint).
    pub const NODE_TAINTS: u16 = TAINT_TOLERATION;
    pub const NODE_ALLOCATABLE: u16 = RESOURCES_FIT;
    pub const NODE_CORDON: u16 = NODE_UNSCHEDULABLE;
    /// A pod left a node: its resources, ports and (anti-)affinity go with it.
    pub const ASSIGNED_POD_DELETE: u16 =
        RESOURCES_FIT | NODE_PORTS | INTER_POD_AFFINITY | TOPOLOGY_SPREAD;
    /// A pod landed on a node: affinity to it or spreading around it may now fit.
    pub const ASSIGNED_POD_ADD: u16 = INTER_POD_AFFINITY | TOPOLOGY_SPREAD;
}

/// Everything about the pod being scheduled that does not depend on the node.
#[derive(Clone)]
pub struct CycleState {
    pub pod: Arc<PodInfo>,
    pub tolerations: Arc<[Toleration]>,
    pub affinity: AffinityState,
    pub spread: SpreadState,
}

impl CycleState {
    /// O(nodes + pods with affinity): walks the cache once for the cluster-wide plugins.
    pub fn new(pod: Arc<PodInfo>, cache: &Cache) -> CycleState {
        let tolerations = pod.tolerations.clone();
        let own_terms =
            !pod.required_affinity().is_empty() || !pod.required_anti_affinity().is_empty();
        // Without terms on either side there is nothing to count.
        let affinity = if own_terms || cache.any_affinity_pods() {
            AffinityState::new(&pod, cache)
        } else {
            AffinityState::default()
        };
        CycleState {
            affinity,
            spread: SpreadState::new(&pod, cache.nodes()),
            tolerations,
            pod,
        }
    }
}

impl CycleState {
    /// The cluster-wide plugin state (inter-pod affinity, topology spread) as if
    /// `existing` were added to (`delta` 1) or removed from (-1) `node`.
    pub fn update_for(
        &mut self,
        existing: &PodInfo,
        node: &NodeInfo,
        namespaces: &NamespaceLabels,
        delta: i64,
    ) {
        self.affinity
            .update(&self.pod, existing, node, namespaces, delta);
        self.spread.update(&self.pod, existing, node, delta);
    }
}

/// Runs every filter in upstream's order and stops at the first failure, as the
/// default profile does.
pub fn run_filters(state: &CycleState, node: &NodeInfo) -> FilterResult {
    run_filters_tagged(state, node).map_err(|(_, s)| s)
}

/// [`run_filters`], also naming the rejecting plugin (a [`plugin`] bit).
pub fn run_filters_tagged(state: &CycleState, node: &NodeInfo) -> Result<(), (u16, Status)> {
    use plugin::*;
    let tag = |bit: u16| move |s: Status| (bit, s);
    filters::node_unschedulable::filter(state, node).map_err(tag(NODE_UNSCHEDULABLE))?;
    filters::node_name::filter(state, node).map_err(tag(NODE_NAME))?;
    filters::taint_toleration::filter(state, node).map_err(tag(TAINT_TOLERATION))?;
    filters::node_affinity::filter(state, node).map_err(tag(NODE_AFFINITY))?;
    filters::node_ports::filter(state, node).map_err(tag(NODE_PORTS))?;
    filters::resources_fit::filter(&state.pod, node).map_err(tag(RESOURCES_FIT))?;
    filters::topology_spread::filter(state, node).map_err(tag(TOPOLOGY_SPREAD))?;
    filters::inter_pod_affinity::filter(state, node).map_err(tag(INTER_POD_AFFINITY))?;
    Ok(())
}

/// Scores feasible nodes (indices into `nodes`) and returns the weighted totals.
pub fn score_nodes(
    state: &CycleState,
    nodes: &[&NodeInfo],
    cache: &Cache,
    config: &SchedulerConfig,
) -> Vec<i64> {
    let w = &config.weights;
    let mut total = vec![0i64; nodes.len()];
    let mut add = |weight: i64, scores: Vec<i64>| {
        if weight != 0 {
            for (t, s) in total.iter_mut().zip(scores) {
                *t += weight * s;
            }
        }
    };
    add(
        w.node_resources_fit,
        scores::resources::fit(state, nodes, config.strategy),
    );
    add(
        w.balanced_allocation,
        scores::resources::balanced(state, nodes),
    );
    add(w.node_affinity, scores::node_affinity::score(state, nodes));
    let preferred = !state.pod.preferred_affinity().is_empty()
        || !state.pod.preferred_anti_affinity().is_empty();
    if preferred || cache.any_affinity_pods() {
        add(
            w.inter_pod_affinity,
            scores::inter_pod_affinity::score(state, nodes, cache),
        );
    }
    add(
        w.taint_toleration,
        scores::taint_toleration::score(state, nodes),
    );
    add(
        w.pod_topology_spread,
        scores::topology_spread::score(state, nodes, cache.nodes()),
    );
    // No node reports images: every node scores 0.
    if !cache.image_nodes.is_empty() {
        add(
            w.image_locality,
            scores::image_locality::score(state, nodes, cache),
        );
    }
    total
}

/// Upstream's `numFeasibleNodesToFind`: all nodes below 100; otherwise a percentage that
/// shrinks as clusters grow (50% - nodes/125, at least 5%), never below 100 nodes.
/// 1000 nodes → 42% → 420; 5000 nodes → 10% → 500.
pub fn nodes_to_find(all: usize, percentage: Option<u32>) -> usize {
    const MIN: usize = 100;
    if all < MIN {
        return all;
    }
    let pct = match percentage {
        Some(p) if p > 0 => p as usize,
        _ => 50usize.saturating_sub(all / 125).max(5),
    };
    if pct >= 100 {
        return all;
    }
    (all * pct / 100).max(MIN)
}

/// Counts failures per reason for the FitError message.
pub fn histogram(statuses: &HashMap<String, Status>) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for s in statuses.values() {
        for r in &s.reasons {
            *counts.entry(r).or_default() += 1;
        }
    }
    let mut v: Vec<String> = counts
        .into_iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    v.sort();
    v
}

/// Upstream's `FitError.Error()`: "0/3 nodes are available: 1 Insufficient cpu, 2
/// node(s) had untolerated taint {k: v}." plus the PostFilter (preemption) message.
pub fn fit_error_message(all: usize, statuses: &HashMap<String, Status>, post: &str) -> String {
    let mut msg = format!("0/{all} nodes are available:");
    let reasons = histogram(statuses);
    if !reasons.is_empty() {
        msg += &format!(" {}.", reasons.join(", "));
    }
    if !post.is_empty() {
        msg += &format!(" {post}.");
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_to_find_is_adaptive_as_upstream() {
        let cases = [
            ("small cluster scores all", 50, None, 50),
            ("100 nodes: 50% is below the 100 floor", 100, None, 100),
            ("1000 nodes: 42%", 1000, None, 420),
            ("5000 nodes: 10%", 5000, None, 500),
            ("10000 nodes: floor of 5%", 10000, None, 500),
            ("configured 100% scores all", 1000, Some(100), 1000),
            ("configured 20%", 1000, Some(20), 200),
        ];
        for (name, all, pct, want) in cases {
            assert_eq!(nodes_to_find(all, pct), want, "{name}");
        }
    }

    #[test]
    fn fit_error_sorts_reasons_and_appends_preemption() {
        let statuses: HashMap<String, Status> = [
            ("a".to_string(), Status::unschedulable("Insufficient cpu")),
            (
                "b".to_string(),
                Status::unresolvable("node(s) had untolerated taint {k: v}"),
            ),
            (
                "c".to_string(),
                Status::unresolvable("node(s) had untolerated taint {k: v}"),
            ),
        ]
        .into();
        let post = "preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.";
        assert_eq!(
            fit_error_message(3, &statuses, post),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {k: v}. \
             preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, \
             2 Preemption is not helpful for scheduling.."
        );
    }
}
