//! Filter plugins: each decides whether one node can take the pod, with upstream's
//! reason strings (they end up, counted, in the FailedScheduling message).

pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_unschedulable;
pub mod resources_fit;
pub mod taint_toleration;
pub mod topology_spread;
pub mod volume_binding;

pub use controllers::shared::scheduling::{tolerated, tolerates};

#[cfg(test)]
pub(crate) mod fixtures {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Node, Pod};

    use crate::cache::NodeInfo;
    use crate::cache::{Cache, PodInfo};
    use crate::framework::{CycleState, FilterResult};

    /// Builds a cache of `nodes` with `existing` pods placed, and the cycle state of `pod`.
    pub(crate) fn cluster(nodes: Vec<Node>, existing: Vec<Pod>) -> Cache {
        let mut cache = Cache::default();
        for n in nodes {
            cache.apply_node(n.into());
        }
        for p in existing {
            cache.apply_pod(Arc::new(p.into()));
        }
        cache
    }

    pub(crate) fn state(pod: Pod, cache: &Cache) -> CycleState {
        crate::profile::cycle_state(Arc::new(PodInfo::new(Arc::new(pod.into()))), cache)
    }

    /// Runs `filter` for `pod` on node `node` of the cluster; returns the first reason.
    pub(crate) fn check(
        filter: fn(&CycleState, &NodeInfo) -> FilterResult,
        pod: Pod,
        cache: &Cache,
        node: &str,
    ) -> Option<String> {
        let st = state(pod, cache);
        filter(&st, cache.node(node).expect("node in cluster"))
            .err()
            .map(|s| s.reasons.join("; "))
    }
}
