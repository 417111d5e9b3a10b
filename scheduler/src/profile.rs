//! The default profile (upstream's default plugin set, `plugins/registry.go`, run the
//! way `framework/runtime` runs a profile): the PreFilter of the plugins that keep
//! per-pod state, the filter plugins in upstream's order, and the weighted sum of the
//! score plugins. The one module that names every plugin.

use std::sync::Arc;

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::config::SchedulerConfig;
use crate::filters::{self, inter_pod_affinity::AffinityState, topology_spread::SpreadState};
use crate::framework::{plugin, CycleState, FilterResult, Status};
use crate::scores;

/// The cycle state of `pod`: what the cluster-wide plugins (inter-pod affinity,
/// topology spread) count once per pod. O(nodes + pods with affinity): walks the cache
/// once.
pub fn cycle_state(pod: Arc<PodInfo>, cache: &Cache) -> CycleState {
    let own_terms = !pod.required_affinity().is_empty() || !pod.required_anti_affinity().is_empty();
    // Without terms on either side there is nothing to count.
    let affinity = if own_terms || cache.any_affinity_pods() {
        AffinityState::new(&pod, cache)
    } else {
        AffinityState::default()
    };
    let spread = SpreadState::new(&pod, cache.nodes());
    let mut state = CycleState::new(pod);
    state.write(affinity);
    state.write(spread);
    state
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
