//! PodTopologySpread scoring (whenUnsatisfiable=ScheduleAnyway): fewer matching pods in
//! a node's domains is better. Each constraint adds count × log(domains + 2) +
//! (maxSkew − 1); the totals are reversed so the emptiest domain scores 100.

use crate::cache::NodeInfo;
use crate::filters::topology_spread::{constraints, domain_counts};
use crate::framework::CycleState;

pub fn score(state: &CycleState, nodes: &[&NodeInfo], all: &[NodeInfo]) -> Vec<i64> {
    let cs = constraints(&state.pod, "ScheduleAnyway");
    if cs.is_empty() {
        return vec![0; nodes.len()];
    }
    let counts = domain_counts(&state.pod, &cs, all);
    // Domains among the nodes being scored, per constraint.
    let weights: Vec<f64> = cs
        .iter()
        .map(|c| {
            let mut values: Vec<&String> = nodes
                .iter()
                .filter_map(|n| n.labels.get(&c.topology_key))
                .collect();
            values.sort();
            values.dedup();
            ((values.len() + 2) as f64).ln()
        })
        .collect();
    let raw: Vec<Option<i64>> = nodes
        .iter()
        .map(|n| {
            let mut s = 0.0;
            for (i, c) in cs.iter().enumerate() {
                let v = n.labels.get(&c.topology_key)?;
                let cnt = counts[i].get(v).copied().unwrap_or(0);
                s += cnt as f64 * weights[i] + (c.max_skew - 1) as f64;
            }
            Some(s.round() as i64)
        })
        .collect();
    let max = raw.iter().flatten().copied().max().unwrap_or(0);
    let min = raw.iter().flatten().copied().min().unwrap_or(0);
    raw.iter()
        .map(|s| match s {
            // Nodes without a constraint's key are ignored (0), as upstream.
            None => 0,
            Some(_) if max == 0 => super::MAX,
            Some(s) => super::MAX * (max + min - s) / max,
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
    fn schedule_anyway_prefers_emptier_domains() {
        let web = |n: &str, node: &str| Pod::test(n).label("app", "web").on_node(node);
        let cache = cluster(
            vec![
                Node::test("a1").label(ZONE, "a"),
                Node::test("b1").label(ZONE, "b"),
                Node::test("c1").label(ZONE, "c"),
                Node::test("x"),
            ],
            vec![web("w1", "a1"), web("w2", "a1"), web("w3", "b1")],
        );
        let f = |s: &CycleState, n: &[&NodeInfo], c: &crate::cache::Cache| score(s, n, c.nodes());
        // 3 zones → weight ln(5) = 1.609; a: round(2×1.609) = 3, b: 2, c: 0 → 100×(3+0−s)/3
        let cases = [
            (
                "spread over zones",
                Pod::test("p")
                    .label("app", "web")
                    .spread(1, ZONE, "ScheduleAnyway", "app", "web"),
                vec![0, 33, 100, 0],
            ),
            ("no soft constraints", Pod::test("p"), vec![0, 0, 0, 0]),
        ];
        for (name, pod, want) in cases {
            assert_eq!(scores(&cache, pod, f), want, "{name}");
        }
    }
}
