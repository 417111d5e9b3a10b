//! Test fixtures that read like the sentence they set up:
//! `pod("a").on_node("n1").running().ready_since(100).created(50)`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{
    ContainerStatus, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use crate::podcontrol::controller_ref;

pub(crate) fn at(second: i64) -> Time {
    Time(Timestamp::from_second(second).expect("a valid test timestamp"))
}

pub(crate) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn pod(name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("uid-{name}")),
            labels: Some(labels(&[("app", "web")])),
            creation_timestamp: Some(at(0)),
            ..Default::default()
        },
        spec: Some(PodSpec::default()),
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        }),
    }
}

pub(crate) trait PodFixture {
    fn on_node(self, node: &str) -> Self;
    fn phase(self, phase: &str) -> Self;
    fn running(self) -> Self;
    fn ready_since(self, second: i64) -> Self;
    fn restarts(self, n: i32) -> Self;
    fn created(self, second: i64) -> Self;
    fn labelled(self, pairs: &[(&str, &str)]) -> Self;
    fn owned_by(self, rs: &ReplicaSet) -> Self;
    fn deleting(self) -> Self;
}

impl PodFixture for Pod {
    fn on_node(mut self, node: &str) -> Self {
        self.spec.get_or_insert_default().node_name = Some(node.into());
        self
    }
    fn phase(mut self, phase: &str) -> Self {
        self.status.get_or_insert_default().phase = Some(phase.into());
        self
    }
    fn running(self) -> Self {
        self.phase("Running")
    }
    fn ready_since(mut self, second: i64) -> Self {
        let status = self.status.get_or_insert_default();
        status.conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(at(second)),
            ..Default::default()
        }]);
        self
    }
    fn restarts(mut self, n: i32) -> Self {
        self.status.get_or_insert_default().container_statuses = Some(vec![ContainerStatus {
            name: "c".into(),
            restart_count: n,
            ..Default::default()
        }]);
        self
    }
    fn created(mut self, second: i64) -> Self {
        self.metadata.creation_timestamp = Some(at(second));
        self
    }
    fn labelled(mut self, pairs: &[(&str, &str)]) -> Self {
        self.metadata.labels = Some(labels(pairs));
        self
    }
    fn owned_by(mut self, rs: &ReplicaSet) -> Self {
        self.metadata.owner_references = Some(vec![controller_ref(rs)]);
        self
    }
    fn deleting(mut self) -> Self {
        self.metadata.deletion_timestamp = Some(at(1));
        self
    }
}

/// A ReplicaSet `web` in `ns` selecting `app=web`, with `replicas` wanted.
pub(crate) fn replica_set(replicas: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            uid: Some("uid-rs".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&[("app", "web")])),
                    ..Default::default()
                }),
                spec: Some(PodSpec::default()),
            }),
            ..Default::default()
        }),
        status: None,
    }
}
