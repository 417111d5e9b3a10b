//! Test fixtures: `daemon_set("ds").node_selector("disk", "ssd").rolling(1, 0)`; pods
//! come from the ReplicaSet fixtures (`pod("a").on_node("n1").running().ready_since(5)`)
//! plus `.revision("hash")`.

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec,
    PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub(super) use crate::replicaset::fixtures::{labels, pod, PodFixture};

use super::nodes::REVISION_HASH_LABEL;

/// A DaemonSet `name` in `ns` selecting `app=web` (the pod fixture's label), rolling
/// with upstream's defaults (maxUnavailable 1, maxSurge 0).
pub(super) fn daemon_set(name: &str) -> DaemonSet {
    DaemonSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("uid-{name}")),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&[("app", "web")])),
                    ..Default::default()
                }),
                spec: Some(PodSpec::default()),
            },
            update_strategy: Some(rolling_strategy(IntOrString::Int(1), IntOrString::Int(0))),
            ..Default::default()
        }),
        status: None,
    }
}

fn rolling_strategy(
    max_unavailable: IntOrString,
    max_surge: IntOrString,
) -> DaemonSetUpdateStrategy {
    DaemonSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDaemonSet {
            max_unavailable: Some(max_unavailable),
            max_surge: Some(max_surge),
        }),
    }
}

pub(super) trait DaemonSetFixture: Sized {
    fn node_selector(self, k: &str, v: &str) -> Self;
    fn node_affinity(self, key: &str, op: &str, values: &[&str]) -> Self;
    fn node_name(self, node: &str) -> Self;
    fn toleration(self, key: &str, op: &str, value: &str, effect: &str) -> Self;
    fn host_network(self) -> Self;
    /// RollingUpdate with these maxUnavailable and maxSurge ("25%" or "2").
    fn rolling(self, max_unavailable: &str, max_surge: &str) -> Self;
    fn on_delete(self) -> Self;
    fn min_ready(self, seconds: i32) -> Self;
}

fn template_spec(ds: &mut DaemonSet) -> &mut PodSpec {
    ds.spec
        .get_or_insert_with(Default::default)
        .template
        .spec
        .get_or_insert_with(Default::default)
}

fn int_or_percent(s: &str) -> IntOrString {
    s.parse()
        .map(IntOrString::Int)
        .unwrap_or_else(|_| IntOrString::String(s.into()))
}

impl DaemonSetFixture for DaemonSet {
    fn node_selector(mut self, k: &str, v: &str) -> Self {
        template_spec(&mut self)
            .node_selector
            .get_or_insert_with(Default::default)
            .insert(k.into(), v.into());
        self
    }
    fn node_affinity(mut self, key: &str, op: &str, values: &[&str]) -> Self {
        template_spec(&mut self).affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: key.into(),
                            operator: op.into(),
                            values: Some(values.iter().map(|v| v.to_string()).collect()),
                        }]),
                        match_fields: None,
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        self
    }
    fn node_name(mut self, node: &str) -> Self {
        template_spec(&mut self).node_name = Some(node.into());
        self
    }
    fn toleration(mut self, key: &str, op: &str, value: &str, effect: &str) -> Self {
        template_spec(&mut self)
            .tolerations
            .get_or_insert_with(Vec::new)
            .push(crate::fixtures::toleration(key, op, value, effect));
        self
    }
    fn host_network(mut self) -> Self {
        template_spec(&mut self).host_network = Some(true);
        self
    }
    fn rolling(mut self, max_unavailable: &str, max_surge: &str) -> Self {
        self.spec
            .get_or_insert_with(Default::default)
            .update_strategy = Some(rolling_strategy(
            int_or_percent(max_unavailable),
            int_or_percent(max_surge),
        ));
        self
    }
    fn on_delete(mut self) -> Self {
        self.spec
            .get_or_insert_with(Default::default)
            .update_strategy = Some(DaemonSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        });
        self
    }
    fn min_ready(mut self, seconds: i32) -> Self {
        self.spec
            .get_or_insert_with(Default::default)
            .min_ready_seconds = Some(seconds);
        self
    }
}

pub(super) trait DaemonPodFixture {
    /// Labels the pod with the ControllerRevision hash it was made from.
    fn revision(self, hash: &str) -> Self;
}

impl DaemonPodFixture for Pod {
    fn revision(mut self, hash: &str) -> Self {
        self.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(REVISION_HASH_LABEL.into(), hash.into());
        self
    }
}
