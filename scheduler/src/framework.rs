//! The scheduling framework (upstream's `pkg/scheduler/framework`): what the plugins
//! and the scheduler share, naming no plugin. A filter's verdict ([`Status`]), the
//! per-pod [`CycleState`] in which plugins keep what they compute once per pod
//! ([`StateData`], upstream's PreFilter results), the plugin and event bits of the
//! queueing hints, how many nodes to examine, and the FitError message. Plugins
//! (`filters/`, `scores/`) import this module; which plugins run, in what order and with
//! what weights is the profile (`profile.rs`).

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Toleration;

use crate::cache::{NamespaceLabels, NodeInfo, PodInfo};

/// Why a node rejected a pod. `Unresolvable` means preempting pods cannot help.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Unschedulable,
    UnschedulableAndUnresolvable,
}

impl Status {
    pub fn unschedulable(reason: impl Into<String>) -> Status {
        Status {
            code: Code::Unschedulable,
            reasons: vec![reason.into()],
        }
    }
    pub fn unresolvable(reason: impl Into<String>) -> Status {
        Status {
            code: Code::UnschedulableAndUnresolvable,
            reasons: vec![reason.into()],
        }
    }
}

pub type FilterResult = Result<(), Status>;

/// The filter plugins as bits. A pod parked as unschedulable remembers which plugins
/// rejected it, and a cluster event moves it back only if one of them could now
/// answer differently (upstream's QueueingHints, at the granularity of plugins).
pub mod plugin {
    pub const NODE_UNSCHEDULABLE: u16 = 1 << 0;
    pub const NODE_NAME: u16 = 1 << 1;
    pub const TAINT_TOLERATION: u16 = 1 << 2;
    pub const NODE_AFFINITY: u16 = 1 << 3;
    pub const NODE_PORTS: u16 = 1 << 4;
    pub const RESOURCES_FIT: u16 = 1 << 5;
    pub const TOPOLOGY_SPREAD: u16 = 1 << 6;
    pub const INTER_POD_AFFINITY: u16 = 1 << 7;
    /// VolumeBinding's PreFilter (the pod's claims, not any node, decided).
    pub const VOLUME_BINDING: u16 = 1 << 8;
    pub const ALL: u16 = u16::MAX;
}

/// Cluster events as the set of plugins each may change the verdict of.
pub mod event {
    use super::plugin::*;

    /// A new node can satisfy any filter.
    pub const NODE_ADD: u16 = ALL;
    /// A node's labels changed.
    pub const NODE_LABELS: u16 = NODE_AFFINITY | TOPOLOGY_SPREAD | INTER_POD_AFFINITY;
    /// A node's taints or readiness changed (not-ready counts as a taint).
    pub const NODE_TAINTS: u16 = TAINT_TOLERATION;
    pub const NODE_ALLOCATABLE: u16 = RESOURCES_FIT;
    pub const NODE_CORDON: u16 = NODE_UNSCHEDULABLE;
    /// A pod left a node: its resources, ports and (anti-)affinity go with it.
    pub const ASSIGNED_POD_DELETE: u16 =
        RESOURCES_FIT | NODE_PORTS | INTER_POD_AFFINITY | TOPOLOGY_SPREAD;
    /// A pod landed on a node: affinity to it or spreading around it may now fit.
    pub const ASSIGNED_POD_ADD: u16 = INTER_POD_AFFINITY | TOPOLOGY_SPREAD;
    /// A claim or StorageClass was added, changed or deleted.
    pub const VOLUMES: u16 = VOLUME_BINDING;
}

/// What a plugin computes once per pod and reads for every node (upstream's
/// `StateData`), kept in the [`CycleState`] under its type.
pub trait StateData: Any + Send + Sync {
    fn clone_data(&self) -> Box<dyn StateData>;

    /// The state as if `existing` were added to (`delta` 1) or removed from (-1) `node`:
    /// upstream's PreFilterExtensions AddPod/RemovePod, with which preemption judges a
    /// node without its victims.
    fn update(
        &mut self,
        pod: &PodInfo,
        existing: &PodInfo,
        node: &NodeInfo,
        namespaces: &NamespaceLabels,
        delta: i64,
    );
}

impl Clone for Box<dyn StateData> {
    fn clone(&self) -> Self {
        self.clone_data()
    }
}

/// Everything about the pod being scheduled that does not depend on the node: the pod,
/// its tolerations, and each plugin's [`StateData`] (one value per type).
#[derive(Clone)]
pub struct CycleState {
    pub pod: Arc<PodInfo>,
    pub tolerations: Arc<[Toleration]>,
    data: Vec<Box<dyn StateData>>,
}

impl CycleState {
    /// The state of `pod` with no plugin's data yet (the profile's PreFilter adds it).
    pub fn new(pod: Arc<PodInfo>) -> CycleState {
        CycleState {
            tolerations: pod.tolerations.clone(),
            pod,
            data: Vec::new(),
        }
    }

    /// Stores a plugin's data, replacing earlier data of the same type.
    pub fn write<T: StateData>(&mut self, data: T) {
        self.data.retain(|d| !(d.as_ref() as &dyn Any).is::<T>());
        self.data.push(Box::new(data));
    }

    /// The plugin data of type `T`, if PreFilter wrote it.
    pub fn read<T: StateData>(&self) -> Option<&T> {
        self.data
            .iter()
            .find_map(|d| (d.as_ref() as &dyn Any).downcast_ref::<T>())
    }

    /// Every plugin's data as if `existing` were added to (`delta` 1) or removed from
    /// (-1) `node` (see [`StateData::update`]).
    pub fn update_for(
        &mut self,
        existing: &PodInfo,
        node: &NodeInfo,
        namespaces: &NamespaceLabels,
        delta: i64,
    ) {
        for d in &mut self.data {
            d.update(&self.pod, existing, node, namespaces, delta);
        }
    }
}

/// Upstream's `numFeasibleNodesToFind`: all nodes below 100; otherwise a percentage that
/// shrinks as clusters grow (50% - nodes/125, at least 5%), never below 100 nodes.
/// 1000 nodes → 42% → 420; 5000 nodes → 10% → 500.
pub fn nodes_to_find(all: usize, percentage: Option<u32>) -> usize {
    const MIN: usize = 100;
    if all < MIN {
        return all;
    }
    let pct = match percentage {
        Some(p) if p > 0 => p as usize,
        _ => 50usize.saturating_sub(all / 125).max(5),
    };
    if pct >= 100 {
        return all;
    }
    (all * pct / 100).max(MIN)
}

/// Counts failures per reason for the FitError message.
pub fn histogram(statuses: &HashMap<String, Status>) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for s in statuses.values() {
        for r in &s.reasons {
            *counts.entry(r).or_default() += 1;
        }
    }
    let mut v: Vec<String> = counts
        .into_iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    v.sort();
    v
}

/// Upstream's `FitError.Error()`: "0/3 nodes are available: 1 Insufficient cpu, 2
/// node(s) had untolerated taint {k: v}." plus the PostFilter (preemption) message.
/// When a PreFilter rejected the pod (`pre`), its message stands in for the per-node
/// reasons.
pub fn fit_error_message(
    all: usize,
    statuses: &HashMap<String, Status>,
    pre: Option<&str>,
    post: &str,
) -> String {
    let mut msg = format!("0/{all} nodes are available:");
    if let Some(pre) = pre {
        msg += &format!(" {pre}.");
    } else {
        let reasons = histogram(statuses);
        if !reasons.is_empty() {
            msg += &format!(" {}.", reasons.join(", "));
        }
    }
    if !post.is_empty() {
        msg += &format!(" {post}.");
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Seen(i64);

    impl StateData for Seen {
        fn clone_data(&self) -> Box<dyn StateData> {
            Box::new(self.clone())
        }
        fn update(
            &mut self,
            _: &PodInfo,
            _: &PodInfo,
            _: &NodeInfo,
            _: &NamespaceLabels,
            delta: i64,
        ) {
            self.0 += delta;
        }
    }

    #[test]
    fn plugin_data_is_read_by_type_updated_for_pods_and_cloned_apart() {
        use controllers::fixtures::{NodeFixture, PodFixture};
        use k8s_openapi::api::core::v1::{Node, Pod};

        let pod = |name: &str| Arc::new(PodInfo::new(Arc::new(Pod::test(name).into())));
        let mut state = CycleState::new(pod("p"));
        assert_eq!(state.read::<Seen>(), None, "nothing before PreFilter");
        state.write(Seen(0));
        state.write(Seen(5));
        assert_eq!(
            state.read::<Seen>(),
            Some(&Seen(5)),
            "a later write replaces"
        );
        let node = NodeInfo::new(Node::test("n1").into());
        let mut trial = state.clone();
        trial.update_for(&pod("victim"), &node, &NamespaceLabels::new(), -1);
        assert_eq!(
            trial.read::<Seen>(),
            Some(&Seen(4)),
            "RemovePod reached the data"
        );
        assert_eq!(
            state.read::<Seen>(),
            Some(&Seen(5)),
            "the clone is independent"
        );
    }

    #[test]
    fn nodes_to_find_is_adaptive_as_upstream() {
        let cases = [
            ("small cluster scores all", 50, None, 50),
            ("100 nodes: 50% is below the 100 floor", 100, None, 100),
            ("1000 nodes: 42%", 1000, None, 420),
            ("5000 nodes: 10%", 5000, None, 500),
            ("10000 nodes: floor of 5%", 10000, None, 500),
            ("configured 100% scores all", 1000, Some(100), 1000),
            ("configured 20%", 1000, Some(20), 200),
        ];
        for (name, all, pct, want) in cases {
            assert_eq!(nodes_to_find(all, pct), want, "{name}");
        }
    }

    #[test]
    fn fit_error_sorts_reasons_and_appends_preemption() {
        let statuses: HashMap<String, Status> = [
            ("a".to_string(), Status::unschedulable("Insufficient cpu")),
            (
                "b".to_string(),
                Status::unresolvable("node(s) had untolerated taint {k: v}"),
            ),
            (
                "c".to_string(),
                Status::unresolvable("node(s) had untolerated taint {k: v}"),
            ),
        ]
        .into();
        let post = "preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.";
        assert_eq!(
            fit_error_message(3, &statuses, None, post),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {k: v}. \
             preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, \
             2 Preemption is not helpful for scheduling.."
        );
    }
}
