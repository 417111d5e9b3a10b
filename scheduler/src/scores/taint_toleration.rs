//! TaintToleration scoring: fewer untolerated PreferNoSchedule taints is better
//! (counts normalized in reverse: none → 100, the most-tainted node → 0).

use crate::cache::NodeInfo;
use crate::filters::tolerates;
use crate::framework::CycleState;

pub fn score(state: &CycleState, nodes: &[&NodeInfo]) -> Vec<i64> {
    // Only tolerations that could apply to PreferNoSchedule count (upstream filters them).
    let tolerations: Vec<_> = state
        .tolerations
        .iter()
        .filter(|t| {
            t.effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
        })
        .collect();
    let mut raw: Vec<i64> = nodes
        .iter()
        .map(|n| {
            n.taints
                .iter()
                .filter(|t| {
                    t.effect == "PreferNoSchedule"
                        && !tolerations.iter().any(|tol| tolerates(tol, t))
                })
                .count() as i64
        })
        .collect();
    super::normalize(&mut raw, true);
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
    fn prefer_no_schedule_taints_lower_the_score() {
        let cache = cluster(
            vec![
                Node::test("clean"),
                Node::test("one").taint("spot", "", "PreferNoSchedule"),
                Node::test("two")
                    .taint("spot", "", "PreferNoSchedule")
                    .taint("old", "", "PreferNoSchedule"),
            ],
            vec![],
        );
        let cases = [
            ("untolerated", Pod::test("p"), vec![100, 50, 0]),
            (
                "spot tolerated",
                Pod::test("p").toleration("spot", "Exists", "", "PreferNoSchedule"),
                vec![100, 100, 0],
            ),
        ];
        for (name, pod, want) in cases {
            assert_eq!(scores(&cache, pod, |s, n, _| score(s, n)), want, "{name}");
        }
    }
}
