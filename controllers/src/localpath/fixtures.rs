//! Test builders that read like the sentence they set up:
//! `claim("data").uid("u1").bound_to("pvc-u1")`, `pod("p").mounts("data").on("n1")`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EphemeralVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PersistentVolumeSpec,
    PersistentVolumeStatus, Pod, PodSpec, PodStatus, Volume, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::provision::PROVISIONED_BY_ANNOTATION;
use super::PROVISIONER;

fn meta(name: &str, ns: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(Into::into),
        ..ObjectMeta::default()
    }
}

pub(super) fn claim(name: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta(name, Some("ns")),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), Quantity("1Gi".into()))])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

pub(super) trait ClaimExt {
    fn uid(self, uid: &str) -> Self;
    fn class(self, class: &str) -> Self;
    fn annotate(self, key: &str, value: &str) -> Self;
    fn modes(self, modes: &[&str]) -> Self;
    fn request(self, storage: &str) -> Self;
    fn with_selector(self) -> Self;
    fn bound_to(self, volume: &str) -> Self;
}

impl ClaimExt for PersistentVolumeClaim {
    fn uid(mut self, uid: &str) -> Self {
        self.metadata.uid = Some(uid.into());
        self
    }
    fn class(mut self, class: &str) -> Self {
        self.spec.get_or_insert_default().storage_class_name = Some(class.into());
        self
    }
    fn annotate(mut self, key: &str, value: &str) -> Self {
        self.annotations_mut().insert(key.into(), value.into());
        self
    }
    fn modes(mut self, modes: &[&str]) -> Self {
        self.spec.get_or_insert_default().access_modes =
            Some(modes.iter().map(|m| m.to_string()).collect());
        self
    }
    fn request(mut self, storage: &str) -> Self {
        let spec = self.spec.get_or_insert_default();
        spec.resources.get_or_insert_default().requests = Some(BTreeMap::from([(
            "storage".into(),
            Quantity(storage.into()),
        )]));
        self
    }
    fn with_selector(mut self) -> Self {
        self.spec.get_or_insert_default().selector = Some(LabelSelector::default());
        self
    }
    fn bound_to(mut self, volume: &str) -> Self {
        self.spec.get_or_insert_default().volume_name = Some(volume.into());
        self
    }
}

pub(super) fn class(name: &str, provisioner: &str) -> StorageClass {
    StorageClass {
        metadata: meta(name, None),
        provisioner: provisioner.into(),
        ..StorageClass::default()
    }
}

pub(super) trait ClassExt {
    fn default_class(self) -> Self;
    fn created(self, secs: i64) -> Self;
    fn reclaim(self, policy: &str) -> Self;
}

impl ClassExt for StorageClass {
    fn default_class(mut self) -> Self {
        self.annotations_mut()
            .insert(super::class::DEFAULT_CLASS_ANNOTATION.into(), "true".into());
        self
    }
    fn created(mut self, secs: i64) -> Self {
        self.metadata.creation_timestamp = Some(Time(Timestamp::from_second(secs).unwrap()));
        self
    }
    fn reclaim(mut self, policy: &str) -> Self {
        self.reclaim_policy = Some(policy.into());
        self
    }
}

pub(super) fn pod(name: &str) -> Pod {
    Pod {
        metadata: meta(name, Some("ns")),
        spec: Some(PodSpec::default()),
        status: None,
    }
}

pub(super) trait PodExt {
    fn mounts(self, claim: &str) -> Self;
    fn ephemeral(self, volume: &str) -> Self;
    fn on(self, node: &str) -> Self;
    fn in_ns(self, ns: &str) -> Self;
    fn phase(self, phase: &str) -> Self;
}

impl PodExt for Pod {
    fn mounts(mut self, claim: &str) -> Self {
        let volume = Volume {
            name: claim.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.into(),
                read_only: None,
            }),
            ..Volume::default()
        };
        self.spec
            .get_or_insert_default()
            .volumes
            .get_or_insert_default()
            .push(volume);
        self
    }
    fn ephemeral(mut self, volume: &str) -> Self {
        let volume = Volume {
            name: volume.into(),
            ephemeral: Some(EphemeralVolumeSource::default()),
            ..Volume::default()
        };
        self.spec
            .get_or_insert_default()
            .volumes
            .get_or_insert_default()
            .push(volume);
        self
    }
    fn on(mut self, node: &str) -> Self {
        self.spec.get_or_insert_default().node_name = Some(node.into());
        self
    }
    fn in_ns(mut self, ns: &str) -> Self {
        self.metadata.namespace = Some(ns.into());
        self
    }
    fn phase(mut self, phase: &str) -> Self {
        self.status = Some(PodStatus {
            phase: Some(phase.into()),
            ..PodStatus::default()
        });
        self
    }
}

pub(super) fn volume(name: &str) -> PersistentVolume {
    let mut pv = PersistentVolume {
        metadata: meta(name, None),
        spec: Some(PersistentVolumeSpec {
            persistent_volume_reclaim_policy: Some("Delete".into()),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    };
    pv.annotations_mut()
        .insert(PROVISIONED_BY_ANNOTATION.into(), PROVISIONER.into());
    pv
}

pub(super) trait VolumeExt {
    fn claimed_by(self, claim: &PersistentVolumeClaim) -> Self;
    fn phase(self, phase: &str) -> Self;
    fn reclaim(self, policy: &str) -> Self;
}

impl VolumeExt for PersistentVolume {
    fn claimed_by(mut self, claim: &PersistentVolumeClaim) -> Self {
        self.spec.get_or_insert_default().claim_ref = Some(ObjectReference {
            namespace: claim.namespace(),
            name: Some(claim.name_any()),
            uid: claim.metadata.uid.clone(),
            ..ObjectReference::default()
        });
        self
    }
    fn phase(mut self, phase: &str) -> Self {
        self.status = Some(PersistentVolumeStatus {
            phase: Some(phase.into()),
            ..PersistentVolumeStatus::default()
        });
        self
    }
    fn reclaim(mut self, policy: &str) -> Self {
        self.spec
            .get_or_insert_default()
            .persistent_volume_reclaim_policy = Some(policy.into());
        self
    }
}
