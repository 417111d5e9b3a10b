//! One scheduling attempt for one pod against the cache: filter nodes (stopping once
//! enough are feasible, starting where the previous pod stopped), score the feasible
//! ones, and pick the best, breaking ties at random. O(nodes) per pod.

use std::collections::HashMap;

use super::cache::{Cache, NodeInfo};
use super::config::SchedulerConfig;
use super::filters::volume_binding;
use super::framework::{nodes_to_find, plugin, CycleState, Status};
use super::profile::{run_filters, run_filters_tagged, score_nodes};

/// Why no node fits: the failing status of every node that was tried.
#[derive(Debug)]
pub struct FitError {
    pub num_all_nodes: usize,
    pub statuses: HashMap<String, Status>,
    /// The plugins that rejected some node ([`plugin`] bits).
    pub rejected: u16,
    /// The message of a PreFilter that rejected the pod before any node was tried.
    pub pre_filter: Option<String>,
}

/// Picks a node for the pod; `start` rotates the search so every node gets its turn when
/// only a percentage is examined. Returns the node name and the next start index.
pub fn schedule(
    state: &CycleState,
    cache: &Cache,
    config: &SchedulerConfig,
    start: usize,
) -> Result<(String, usize), FitError> {
    let nodes = cache.nodes();
    let all = nodes.len();
    if all > 0 {
        if let Err(s) = volume_binding::pre_filter(&state.pod, &cache.volumes) {
            // As upstream: every node gets the PreFilter's status, so preemption knows
            // it cannot help.
            return Err(FitError {
                num_all_nodes: all,
                pre_filter: Some(s.reasons.join(", ")),
                statuses: nodes.iter().map(|n| (n.name.clone(), s.clone())).collect(),
                rejected: plugin::VOLUME_BINDING,
            });
        }
    }
    // A pod nominated by an earlier preemption tries its node first.
    let nominated = state.pod.nominated_node.as_deref();
    if let Some(n) = nominated.and_then(|n| cache.node(n)) {
        if run_filters(state, n).is_ok() {
            return Ok((n.name.clone(), start));
        }
    }
    let want = nodes_to_find(all, config.percentage_of_nodes_to_score);
    let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want.min(all));
    let mut statuses = HashMap::new();
    let mut rejected = 0;
    let mut processed = 0;
    for i in 0..all {
        let node = &nodes[(start + i) % all.max(1)];
        processed += 1;
        match run_filters_tagged(state, node) {
            Ok(()) => {
                feasible.push(node);
                if feasible.len() >= want {
                    break;
                }
            }
            Err((bit, s)) => {
                rejected |= bit;
                statuses.insert(node.name.clone(), s);
            }
        }
    }
    let next = if all == 0 {
        0
    } else {
        (start + processed) % all
    };
    match feasible.len() {
        0 => Err(FitError {
            num_all_nodes: all,
            statuses,
            // No nodes at all: only a new node helps.
            rejected: if all == 0 { plugin::ALL } else { rejected },
            pre_filter: None,
        }),
        1 => Ok((feasible[0].name.clone(), next)),
        _ => {
            let scores = score_nodes(state, &feasible, cache, config);
            Ok((feasible[select_host(&scores)].name.clone(), next))
        }
    }
}

/// Index of the highest score; among equal best scores each is equally likely
/// (reservoir sampling, as upstream's selectHost).
pub fn select_host(scores: &[i64]) -> usize {
    let mut best = 0;
    let mut ties = 0u32;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
            ties = 1;
        } else if s == scores[best] {
            ties += 1;
            if fastrand::u32(0..ties) == 0 {
                best = i;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Node, Pod};

    use super::*;
    use crate::filters::fixtures::{cluster, state};
    use controllers::fixtures::{NodeFixture, PodFixture};

    #[test]
    fn ties_are_broken_at_random_among_the_best() {
        let mut seen = [0; 4];
        for _ in 0..400 {
            seen[select_host(&[5, 9, 9, 1])] += 1;
        }
        assert_eq!((seen[0], seen[3]), (0, 0), "never a lower score");
        assert!(
            seen[1] > 100 && seen[2] > 100,
            "both best nodes chosen: {seen:?}"
        );
    }

    #[test]
    fn picks_the_least_loaded_feasible_node_and_reports_every_failure() {
        let cache = cluster(
            vec![
                Node::test("busy"),
                Node::test("idle"),
                Node::test("tainted").taint("k", "v", "NoSchedule"),
            ],
            vec![Pod::test("x").on_node("busy").requests("3", "6Gi")],
        );
        let st = state(Pod::test("p").requests("500m", "1Gi"), &cache);
        let (node, _) = schedule(&st, &cache, &SchedulerConfig::default(), 0).unwrap();
        assert_eq!(node, "idle", "least allocated wins");

        let st = state(Pod::test("p").requests("5", "1Gi"), &cache);
        let err = schedule(&st, &cache, &SchedulerConfig::default(), 0).unwrap_err();
        assert_eq!(err.num_all_nodes, 3);
        let mut reasons: Vec<_> = err
            .statuses
            .iter()
            .map(|(n, s)| format!("{n}: {}", s.reasons.join(",")))
            .collect();
        reasons.sort();
        assert_eq!(
            reasons,
            vec![
                "busy: Insufficient cpu",
                "idle: Insufficient cpu",
                "tainted: node(s) had untolerated taint {k: v}"
            ]
        );
    }
}
