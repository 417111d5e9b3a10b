//! PodTopologySpread with whenUnsatisfiable=DoNotSchedule: placing the pod in a domain
//! must keep (matching pods in that domain + 1) - (fewest in any domain) <= maxSkew.
//! Only nodes that pass the pod's node affinity and carry every constraint's key form
//! domains (nodeAffinityPolicy=Honor, nodeTaintsPolicy=Ignore, the defaults).
//! Example: zones a=2, b=0, maxSkew 1 → a: 2+1-0 = 3 > 1 rejected; b: 0+1-0 = 1 fits.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::TopologySpreadConstraint;

use crate::cache::{NamespaceLabels, NodeInfo, PodInfo};
use crate::filters::node_affinity::required_matches;
use crate::framework::{CycleState, FilterResult, StateData, Status};
use controllers::shared::labels::selector_matches;

pub const REASON: &str = "node(s) didn't match pod topology spread constraints";
pub const MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

pub fn constraints(pod: &PodInfo, when: &str) -> Vec<TopologySpreadConstraint> {
    let spec = pod.spec.as_deref();
    spec.and_then(|s| s.topology_spread_constraints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.when_unsatisfiable == when)
        .collect()
}

/// Matching pods per domain value, for each constraint, over eligible nodes.
pub fn domain_counts(
    pod: &PodInfo,
    cs: &[TopologySpreadConstraint],
    nodes: &[NodeInfo],
) -> Vec<HashMap<String, i64>> {
    let mut counts = vec![HashMap::new(); cs.len()];
    for node in nodes {
        if !eligible(pod, cs, node) {
            continue;
        }
        for (c, count) in cs.iter().zip(counts.iter_mut()) {
            let matching = node
                .pods
                .iter()
                .filter(|p| counts_towards(c, &pod.namespace, p))
                .count() as i64;
            *count
                .entry(node.labels[&c.topology_key].clone())
                .or_insert(0) += matching;
        }
    }
    counts
}

#[derive(Clone, Default)]
pub struct SpreadState {
    constraints: Vec<TopologySpreadConstraint>,
    counts: Vec<HashMap<String, i64>>,
    /// Fewest matching pods in any domain (0 when there are fewer than minDomains).
    min: Vec<i64>,
}

/// Whether `node` forms a domain for `pod`'s constraints.
fn eligible(pod: &PodInfo, cs: &[TopologySpreadConstraint], node: &NodeInfo) -> bool {
    required_matches(pod.spec.as_deref(), &node.labels, &node.name)
        && cs.iter().all(|c| node.labels.contains_key(&c.topology_key))
}

/// Whether `existing` counts towards constraint `c` of a pod in `namespace`.
fn counts_towards(c: &TopologySpreadConstraint, namespace: &str, existing: &PodInfo) -> bool {
    existing.namespace == namespace
        && !existing.deleting
        && selector_matches(c.label_selector.as_ref(), &existing.labels)
}

impl SpreadState {
    pub fn new(pod: &PodInfo, nodes: &[NodeInfo]) -> SpreadState {
        let constraints = constraints(pod, "DoNotSchedule");
        if constraints.is_empty() {
            return SpreadState::default();
        }
        let counts = domain_counts(pod, &constraints, nodes);
        let mut s = SpreadState {
            min: vec![0; constraints.len()],
            constraints,
            counts,
        };
        s.recompute_min();
        s
    }

    fn recompute_min(&mut self) {
        for ((c, m), min) in self
            .constraints
            .iter()
            .zip(&self.counts)
            .zip(self.min.iter_mut())
        {
            let min_domains = c.min_domains.unwrap_or(1).max(1) as usize;
            *min = if m.len() < min_domains {
                0
            } else {
                m.values().copied().min().unwrap_or(0)
            };
        }
    }

    /// Counts `existing` on `node` in (`delta` 1) or out (-1) of the state of `pod`:
    /// upstream's AddPod/RemovePod, which preemption uses to judge a node without its
    /// victims.
    pub fn update(&mut self, pod: &PodInfo, existing: &PodInfo, node: &NodeInfo, delta: i64) {
        if self.constraints.is_empty() || !eligible(pod, &self.constraints, node) {
            return;
        }
        for (c, counts) in self.constraints.iter().zip(self.counts.iter_mut()) {
            if counts_towards(c, &pod.namespace, existing) {
                *counts
                    .entry(node.labels[&c.topology_key].clone())
                    .or_insert(0) += delta;
            }
        }
        self.recompute_min();
    }
}

impl StateData for SpreadState {
    fn clone_data(&self) -> Box<dyn StateData> {
        Box::new(self.clone())
    }

    fn update(
        &mut self,
        pod: &PodInfo,
        existing: &PodInfo,
        node: &NodeInfo,
        _: &NamespaceLabels,
        delta: i64,
    ) {
        SpreadState::update(self, pod, existing, node, delta);
    }
}

pub fn filter(state: &CycleState, node: &NodeInfo) -> FilterResult {
    // A profile without this plugin's PreFilter: no constraints to check.
    let Some(s) = state.read::<SpreadState>() else {
        return Ok(());
    };
    for (i, c) in s.constraints.iter().enumerate() {
        let Some(value) = node.labels.get(&c.topology_key) else {
            return Err(Status::unresolvable(MISSING_LABEL));
        };
        let self_match = selector_matches(c.label_selector.as_ref(), &state.pod.labels) as i64;
        let here = s.counts[i].get(value).copied().unwrap_or(0);
        if here + self_match - s.min[i] > c.max_skew as i64 {
            return Err(Status::unschedulable(REASON));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Node, Pod};

    use super::*;
    use crate::filters::fixtures::{check, cluster};
    use controllers::fixtures::{NodeFixture, PodFixture};

    const ZONE: &str = "topology.kubernetes.io/zone";

    #[test]
    fn do_not_schedule_keeps_skew_within_max() {
        let web = |n: &str, node: &str| Pod::test(n).label("app", "web").on_node(node);
        let cache = cluster(
            vec![
                Node::test("a1").label(ZONE, "a"),
                Node::test("b1").label(ZONE, "b"),
                Node::test("c1").label(ZONE, "c"),
                Node::test("nozone"),
            ],
            vec![web("w1", "a1"), web("w2", "a1"), web("w3", "b1")],
        );
        let spread = |skew| {
            Pod::test("p")
                .label("app", "web")
                .spread(skew, ZONE, "DoNotSchedule", "app", "web")
        };
        let cases = [
            ("empty zone fits", spread(1), "c1", None),
            (
                "zone at min+1 exceeds skew 1",
                spread(1),
                "b1",
                Some(REASON),
            ),
            ("skew 2 allows it", spread(2), "b1", None),
            ("fullest zone rejected", spread(2), "a1", Some(REASON)),
            (
                "node without the key",
                spread(1),
                "nozone",
                Some(MISSING_LABEL),
            ),
            (
                "ScheduleAnyway does not filter",
                Pod::test("p")
                    .label("app", "web")
                    .spread(1, ZONE, "ScheduleAnyway", "app", "web"),
                "a1",
                None,
            ),
        ];
        for (name, pod, node, want) in cases {
            assert_eq!(check(filter, pod, &cache, node).as_deref(), want, "{name}");
        }
    }
}
