//! Test fixtures that read like the sentence they set up:
//! `stateful_set(3).parallel().partition(1)`, `member("web-0", "v1").ready()`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::identity::{POD_NAME_LABEL, REVISION_LABEL};
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

/// A StatefulSet `web` in `ns` selecting `app=web`, OrderedReady, RollingUpdate with
/// partition 0 (as the apiserver defaults it).
pub(crate) fn stateful_set(replicas: i32) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            uid: Some("uid-web".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&[("app", "web")])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "c".into(),
                        image: Some("nginx:1".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            pod_management_policy: Some("OrderedReady".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    partition: Some(0),
                    max_unavailable: None,
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

pub(crate) trait SetFixture {
    fn parallel(self) -> Self;
    fn partition(self, p: i32) -> Self;
    fn max_unavailable(self, v: IntOrString) -> Self;
    fn on_delete(self) -> Self;
    fn image(self, image: &str) -> Self;
    fn with_claim(self, name: &str) -> Self;
    fn serving(self, service: &str) -> Self;
    fn retaining(self, when_deleted: Option<&str>, when_scaled: Option<&str>) -> Self;
    fn min_ready(self, seconds: i32) -> Self;
}

impl SetFixture for StatefulSet {
    fn parallel(mut self) -> Self {
        self.spec.as_mut().unwrap().pod_management_policy = Some("Parallel".into());
        self
    }
    fn partition(mut self, p: i32) -> Self {
        let s = self
            .spec
            .as_mut()
            .unwrap()
            .update_strategy
            .as_mut()
            .unwrap();
        s.rolling_update.get_or_insert_default().partition = Some(p);
        self
    }
    fn max_unavailable(mut self, v: IntOrString) -> Self {
        let s = self
            .spec
            .as_mut()
            .unwrap()
            .update_strategy
            .as_mut()
            .unwrap();
        s.rolling_update.get_or_insert_default().max_unavailable = Some(v);
        self
    }
    fn on_delete(mut self) -> Self {
        self.spec.as_mut().unwrap().update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        });
        self
    }
    fn image(mut self, image: &str) -> Self {
        let spec = self.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        spec.containers[0].image = Some(image.into());
        self
    }
    fn with_claim(mut self, name: &str) -> Self {
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        self.spec
            .as_mut()
            .unwrap()
            .volume_claim_templates
            .get_or_insert_default()
            .push(claim);
        self
    }
    fn serving(mut self, service: &str) -> Self {
        self.spec.as_mut().unwrap().service_name = Some(service.into());
        self
    }
    fn retaining(mut self, when_deleted: Option<&str>, when_scaled: Option<&str>) -> Self {
        self.spec
            .as_mut()
            .unwrap()
            .persistent_volume_claim_retention_policy =
            Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: when_deleted.map(Into::into),
                when_scaled: when_scaled.map(Into::into),
            });
        self
    }
    fn min_ready(mut self, seconds: i32) -> Self {
        self.spec.as_mut().unwrap().min_ready_seconds = Some(seconds);
        self
    }
}

/// A Pending pod named `name` made from revision `revision`, with the identity labels.
pub(crate) fn member(name: &str, revision: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("uid-{name}")),
            labels: Some(labels(&[
                ("app", "web"),
                (POD_NAME_LABEL, name),
                (REVISION_LABEL, revision),
            ])),
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
    fn phase(self, phase: &str) -> Self;
    /// Running and Ready since second 0.
    fn ready(self) -> Self;
    fn ready_since(self, second: i64) -> Self;
    fn deleting(self) -> Self;
    fn labelled(self, pairs: &[(&str, &str)]) -> Self;
    fn owned_by(self, set: &StatefulSet) -> Self;
}

impl PodFixture for Pod {
    fn phase(mut self, phase: &str) -> Self {
        self.status.get_or_insert_default().phase = Some(phase.into());
        self
    }
    fn ready(self) -> Self {
        self.ready_since(0)
    }
    fn ready_since(self, second: i64) -> Self {
        let mut pod = self.phase("Running");
        pod.status.get_or_insert_default().conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(at(second)),
            ..Default::default()
        }]);
        pod
    }
    fn deleting(mut self) -> Self {
        self.metadata.deletion_timestamp = Some(at(1));
        self
    }
    fn labelled(mut self, pairs: &[(&str, &str)]) -> Self {
        self.metadata.labels = Some(labels(pairs));
        self
    }
    fn owned_by(mut self, set: &StatefulSet) -> Self {
        self.metadata.owner_references = Some(vec![controller_ref(set)]);
        self
    }
}
