//! InterPodAffinity scoring: per topology domain, +weight for each pod matching one of
//! the pod's preferred affinity terms, −weight for preferred anti-affinity, and the
//! symmetric terms of existing pods (their required affinity counts with weight 1,
//! upstream's hardPodAffinityWeight). Normalized min→0, max→100.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::PodAffinityTerm;

use crate::cache::{Cache, NodeInfo};
use crate::filters::inter_pod_affinity::term_matches;
use crate::framework::CycleState;

const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

pub fn score(state: &CycleState, nodes: &[&NodeInfo], cache: &Cache) -> Vec<i64> {
    let (all, namespaces) = (cache.nodes(), &cache.namespaces);
    let pod = &state.pod;
    let mut domains: HashMap<(String, String), i64> = HashMap::new();
    let mut add = |term: &PodAffinityTerm, node: &NodeInfo, w: i64| {
        if let Some(v) = node.labels.get(&term.topology_key) {
            *domains
                .entry((term.topology_key.clone(), v.clone()))
                .or_default() += w;
        }
    };
    let own = !pod.preferred_affinity().is_empty() || !pod.preferred_anti_affinity().is_empty();
    for node in all {
        let existing_pods = if own { &node.pods } else { &node.affinity_pods };
        for existing in existing_pods {
            if own {
                for t in pod.preferred_affinity() {
                    if term_matches(&t.pod_affinity_term, &pod.namespace, existing, namespaces) {
                        add(&t.pod_affinity_term, node, t.weight as i64);
                    }
                }
                for t in pod.preferred_anti_affinity() {
                    if term_matches(&t.pod_affinity_term, &pod.namespace, existing, namespaces) {
                        add(&t.pod_affinity_term, node, -(t.weight as i64));
                    }
                }
            }
            if !existing.has_affinity() {
                continue;
            }
            for t in existing.required_affinity() {
                if term_matches(t, &existing.namespace, pod, namespaces) {
                    add(t, node, HARD_POD_AFFINITY_WEIGHT);
                }
            }
            for t in existing.preferred_affinity() {
                if term_matches(&t.pod_affinity_term, &existing.namespace, pod, namespaces) {
                    add(&t.pod_affinity_term, node, t.weight as i64);
                }
            }
            for t in existing.preferred_anti_affinity() {
                if term_matches(&t.pod_affinity_term, &existing.namespace, pod, namespaces) {
                    add(&t.pod_affinity_term, node, -(t.weight as i64));
                }
            }
        }
    }
    let raw: Vec<i64> = nodes
        .iter()
        .map(|n| {
            domains
                .iter()
                .filter(|((k, v), _)| n.labels.get(k) == Some(v))
                .map(|(_, s)| *s)
                .sum()
        })
        .collect();
    let (min, max) = (
        raw.iter().copied().min().unwrap_or(0),
        raw.iter().copied().max().unwrap_or(0),
    );
    raw.iter()
        .map(|s| {
            if max > min {
                (super::MAX as f64 * (s - min) as f64 / (max - min) as f64) as i64
            } else {
                0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Node, Pod};

    use super::*;
    use crate::filters::fixtures::cluster;
    use crate::scores::fixtures::scores;
    use controllers::fixtures::{NodeFixture, PodFixture};

    const ZONE: &str = "topology.kubernetes.io/zone";

    #[test]
    fn preferred_pod_affinity_scores_domains() {
        let cache = cluster(
            vec![
                Node::test("a1").label(ZONE, "a"),
                Node::test("b1").label(ZONE, "b"),
                Node::test("c1").label(ZONE, "c"),
            ],
            vec![
                Pod::test("db").on_node("a1").label("app", "db"),
                Pod::test("noisy").on_node("b1").label("app", "noisy"),
                Pod::test("fan")
                    .on_node("c1")
                    .label("app", "fan")
                    .preferred_affinity_to(50, "app", "web", ZONE),
            ],
        );
        let f = |s: &CycleState, n: &[&NodeInfo], c: &crate::cache::Cache| score(s, n, c);
        let cases = [
            (
                "no terms: only the existing pod's preference counts",
                Pod::test("p").label("app", "web"),
                vec![0, 0, 100],
            ),
            (
                "near db, away from noisy",
                Pod::test("p")
                    .preferred_affinity_to(10, "app", "db", ZONE)
                    .preferred_anti_affinity_to(10, "app", "noisy", ZONE),
                vec![100, 0, 50],
            ),
            ("nothing matches", Pod::test("p"), vec![0, 0, 0]),
        ];
        for (name, pod, want) in cases {
            assert_eq!(scores(&cache, pod, f), want, "{name}");
        }
    }
}
