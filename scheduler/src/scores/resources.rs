//! NodeResourcesFit scoring (LeastAllocated by default, MostAllocated by config) and
//! NodeResourcesBalancedAllocation, over cpu and memory with weight 1 each.

use crate::cache::NodeInfo;
use crate::config::ScoringStrategy;
use crate::framework::CycleState;

use super::MAX;

/// LeastAllocated: free share after placing the pod, averaged over cpu and memory.
/// Example: 4 cpu, 1 requested + 1 for the pod → (4-2)*100/4 = 50.
/// MostAllocated is the used share, packing pods onto busy nodes.
pub fn fit(state: &CycleState, nodes: &[&NodeInfo], strategy: ScoringStrategy) -> Vec<i64> {
    let (pc, pm) = state.pod.non_zero;
    nodes
        .iter()
        .map(|n| {
            let parts = [
                (n.non_zero_requested.0 + pc, n.allocatable.milli_cpu),
                (n.non_zero_requested.1 + pm, n.allocatable.memory),
            ];
            let sum: i64 = parts
                .iter()
                .map(|&(req, cap)| match strategy {
                    _ if cap == 0 => 0,
                    ScoringStrategy::LeastAllocated if req > cap => 0,
                    ScoringStrategy::LeastAllocated => (cap - req) * MAX / cap,
                    ScoringStrategy::MostAllocated => req.min(cap) * MAX / cap,
                })
                .sum();
            sum / parts.len() as i64
        })
        .collect()
}

/// BalancedAllocation: 100 × (1 − std dev of the cpu and memory fractions); for two
/// resources the std dev is |cpu − mem| / 2. Example: cpu 50%, mem 10% → 100 × 0.8 = 80.
pub fn balanced(state: &CycleState, nodes: &[&NodeInfo]) -> Vec<i64> {
    let r = &state.pod.requests;
    nodes
        .iter()
        .map(|n| {
            let frac = |req: i64, cap: i64| {
                if cap == 0 {
                    0.0
                } else {
                    (req as f64 / cap as f64).min(1.0)
                }
            };
            let cpu = frac(n.requested.milli_cpu + r.milli_cpu, n.allocatable.milli_cpu);
            let mem = frac(n.requested.memory + r.memory, n.allocatable.memory);
            let std = (cpu - mem).abs() / 2.0;
            ((1.0 - std) * MAX as f64) as i64
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

    #[test]
    fn least_and_most_allocated_and_balanced_scores() {
        let cache = cluster(
            vec![
                Node::test("empty").cpu("4").memory("4Gi"),
                Node::test("busy").cpu("4").memory("4Gi"),
            ],
            vec![Pod::test("x").on_node("busy").requests("2", "1Gi")],
        );
        let pod = || Pod::test("p").requests("1", "1Gi");
        type Scorer = fn(&CycleState, &[&NodeInfo], &crate::cache::Cache) -> Vec<i64>;
        let cases: [(&str, Scorer, Vec<i64>); 3] = [
            // empty: cpu (4-1)/4=75, mem (4-1)/4=75 → 75; busy: cpu 25, mem 50 → 37
            (
                "least allocated prefers the empty node",
                |s, n, _| fit(s, n, ScoringStrategy::LeastAllocated),
                vec![75, 37],
            ),
            (
                "most allocated prefers the busy node",
                |s, n, _| fit(s, n, ScoringStrategy::MostAllocated),
                vec![25, 62],
            ),
            // empty: 25%/25% → 100; busy: 75% vs 50% → 1 - 0.125 → 87
            (
                "balanced prefers equal fractions",
                |s, n, _| balanced(s, n),
                vec![100, 87],
            ),
        ];
        for (name, f, want) in cases {
            assert_eq!(scores(&cache, pod(), f), want, "{name}");
        }
    }

    #[test]
    fn pods_without_requests_count_as_100m_and_200mi() {
        let cache = cluster(vec![Node::test("n").cpu("1").memory("1000Mi")], vec![]);
        // cpu (1000-100)/1000 = 90, memory (1000-200)/1000 = 80 → 85
        let got = scores(&cache, Pod::test("p"), |s, n, _| {
            fit(s, n, ScoringStrategy::LeastAllocated)
        });
        assert_eq!(got, vec![85], "non-zero defaults");
    }
}
