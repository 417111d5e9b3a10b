//! Score plugins: each returns one 0-100 score per feasible node (already normalized);
//! the framework multiplies by the plugin's weight and sums.

pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod resources;
pub mod taint_toleration;
pub mod topology_spread;

pub const MAX: i64 = 100;

/// Upstream `helper.DefaultNormalizeScore`: scales to 0..100 by the highest raw score;
/// `reverse` turns "fewest is best" counts into scores. All zero → 0 (100 if reversed).
pub fn normalize(raw: &mut [i64], reverse: bool) {
    let max = raw.iter().copied().max().unwrap_or(0);
    for s in raw.iter_mut() {
        *s = match (max, reverse) {
            (0, true) => MAX,
            (0, false) => 0,
            (m, false) => *s * MAX / m,
            (m, true) => MAX - *s * MAX / m,
        };
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use k8s_openapi::api::core::v1::Pod;

    use crate::cache::{Cache, NodeInfo};
    use crate::filters::fixtures::state;
    use crate::framework::CycleState;

    /// Scores `pod` on every node of `cache` (in insertion order) with `f`.
    pub(crate) fn scores(
        cache: &Cache,
        pod: Pod,
        f: impl Fn(&CycleState, &[&NodeInfo], &Cache) -> Vec<i64>,
    ) -> Vec<i64> {
        let st = state(pod, cache);
        let nodes: Vec<&NodeInfo> = cache.nodes().iter().collect();
        f(&st, &nodes, cache)
    }
}
