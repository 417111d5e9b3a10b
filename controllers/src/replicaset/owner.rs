//! What the ReplicaSet logic reads of the object that owns the pods, so the same
//! planning, status and writes serve apps/v1 ReplicaSets and core/v1
//! ReplicationControllers (upstream runs one replica manager for both, the
//! ReplicationController adapted to look like a ReplicaSet).

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Serialize;

use crate::runtime::informers::Kind;

/// An owner of interchangeable pods: the ReplicaSet loop's view of its object.
pub trait Replicated:
    Kind + Serialize + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
{
    /// The loop's name in logs and errors.
    const LOOP: &'static str;
    /// The event source upstream's loop reports as.
    const COMPONENT: &'static str;
    /// The selector as a LabelSelector; `None` when the object has no spec.
    fn selector(&self) -> Option<Cow<'_, LabelSelector>>;
    /// `spec.replicas` (defaulted to 1 by the API server; 1 when absent here too).
    fn replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// The current status in the ReplicaSet's shape (both kinds share its fields).
    fn replica_status(&self) -> Option<ReplicaSetStatus>;
}

impl Replicated for ReplicaSet {
    const LOOP: &'static str = "replicaset";
    const COMPONENT: &'static str = "replicaset-controller";

    fn selector(&self) -> Option<Cow<'_, LabelSelector>> {
        self.spec.as_ref().map(|s| Cow::Borrowed(&s.selector))
    }

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn replica_status(&self) -> Option<ReplicaSetStatus> {
        self.status.clone()
    }
}

impl Replicated for ReplicationController {
    const LOOP: &'static str = "replicationcontroller";
    const COMPONENT: &'static str = "replication-controller";

    /// The plain map selector as matchLabels. The API server defaults an absent one
    /// from the template's labels, as upstream's defaulting does; an object stored
    /// before that defaulting gets the same reading here.
    fn selector(&self) -> Option<Cow<'_, LabelSelector>> {
        let spec = self.spec.as_ref()?;
        let labels: BTreeMap<String, String> = match spec.selector.as_ref() {
            Some(s) if !s.is_empty() => s.clone(),
            _ => self
                .template()
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .unwrap_or_default(),
        };
        Some(Cow::Owned(LabelSelector {
            match_labels: Some(labels),
            match_expressions: None,
        }))
    }

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    /// Same field names and meanings (replicas, fullyLabeledReplicas, readyReplicas,
    /// availableReplicas, observedGeneration, conditions), so a JSON round trip is exact.
    fn replica_status(&self) -> Option<ReplicaSetStatus> {
        let status = self.status.as_ref()?;
        serde_json::to_value(status)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rc(spec: serde_json::Value) -> ReplicationController {
        serde_json::from_value(json!({"metadata": {"name": "rc"}, "spec": spec})).unwrap()
    }

    #[test]
    fn a_replication_controller_selects_by_its_map_or_else_its_template_labels() {
        let template = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        let cases = [
            (
                "explicit map",
                rc(json!({"selector": {"app": "web"}, "template": template})),
                json!({"app": "web"}),
            ),
            (
                "absent: the template's labels",
                rc(json!({"template": template})),
                json!({"app": "web", "tier": "front"}),
            ),
            (
                "empty: the template's labels",
                rc(json!({"selector": {}, "template": template})),
                json!({"app": "web", "tier": "front"}),
            ),
        ];
        for (name, rc, want) in cases {
            let got = rc.selector().expect("a spec").into_owned();
            assert_eq!(
                serde_json::to_value(got.match_labels).unwrap(),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn a_replication_controller_status_reads_as_a_replica_set_status() {
        let rc: ReplicationController = serde_json::from_value(json!({
            "metadata": {"name": "rc"},
            "status": {"replicas": 2, "readyReplicas": 1, "observedGeneration": 3,
                "conditions": [{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate"}]},
        }))
        .unwrap();
        let s = rc.replica_status().unwrap();
        assert_eq!(
            (s.replicas, s.ready_replicas, s.observed_generation),
            (2, Some(1), Some(3))
        );
        assert_eq!(s.conditions.unwrap()[0].type_, "ReplicaFailure");
    }
}
