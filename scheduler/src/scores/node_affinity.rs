//! NodeAffinity scoring: the sum of weights of the preferred terms a node matches,
//! normalized so the best node gets 100.

use crate::cache::NodeInfo;
use crate::framework::CycleState;
use controllers::shared::scheduling::node_term_matches;

pub fn score(state: &CycleState, nodes: &[&NodeInfo]) -> Vec<i64> {
    let preferred = state
        .pod
        .spec
        .as_deref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default();
    let mut raw: Vec<i64> = nodes
        .iter()
        .map(|n| {
            preferred
                .iter()
                .filter(|t| node_term_matches(&t.preference, &n.labels, &n.name))
                .map(|t| t.weight as i64)
                .sum()
        })
        .collect();
    super::normalize(&mut raw, false);
    raw
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Node, Pod};

    use super::*;
    use crate::filters::fixtures::cluster;
    use crate::scores::fixtures::scores;
    use controllers::fixtures::{NodeFixture, PodFixture};

    #[test]
    fn preferred_terms_add_their_weights() {
        let cache = cluster(
            vec![
                Node::test("both").label("disk", "ssd").label("zone", "a"),
                Node::test("ssd").label("disk", "ssd"),
                Node::test("none"),
            ],
            vec![],
        );
        let cases = [
            ("no preferences", Pod::test("p"), vec![0, 0, 0]),
            (
                "weights 80 and 20",
                Pod::test("p")
                    .preferred_node_affinity(80, "disk", "In", &["ssd"])
                    .preferred_node_affinity(20, "zone", "In", &["a"]),
                vec![100, 80, 0],
            ),
        ];
        for (name, pod, want) in cases {
            assert_eq!(scores(&cache, pod, |s, n, _| score(s, n)), want, "{name}");
        }
    }
}
