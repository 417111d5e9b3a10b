//! A StatefulSet pod's identity: its name `<set>-<ordinal>`, the labels that carry it,
//! its hostname and subdomain, and the claims `<template>-<set>-<ordinal>` its volumes
//! mount. Also which pods belong to a set (adopt and release, like ReplicaSet) and the
//! owner references a claim should carry under `persistentVolumeClaimRetentionPolicy`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;

use crate::podcontrol::{controller_of, controller_ref, controller_selects, is_deleting};

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
pub const REVISION_LABEL: &str = "controller-revision-hash";

pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set.name_any())
}

/// Splits `<parent>-<ordinal>`; `None` when the name does not end in `-<digits>`.
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let (parent, ordinal) = name.rsplit_once('-')?;
    if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, ordinal.parse().ok()?))
}

/// The pod's ordinal if its name makes it a member of `set`.
pub fn ordinal_of(set: &StatefulSet, pod: &Pod) -> Option<i32> {
    let name = pod.metadata.name.as_deref()?;
    parent_and_ordinal(name)
        .filter(|(parent, _)| *parent == set.name_any())
        .map(|(_, o)| o)
}

/// The revision (ControllerRevision name) a pod was made from.
pub fn pod_revision(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map_or("", String::as_str)
}

/// Upstream's identityMatches: name, namespace and pod-name label are the set's.
pub fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some(ordinal) = ordinal_of(set, pod) else {
        return false;
    };
    let labels = pod.metadata.labels.as_ref();
    pod.namespace() == set.namespace()
        && labels
            .and_then(|l| l.get(POD_NAME_LABEL))
            .map(String::as_str)
            == Some(pod_name(set, ordinal).as_str())
}

/// The identity labels a pod of `ordinal` carries (pod-name and pod-index).
pub fn identity_labels(set: &StatefulSet, ordinal: i32) -> BTreeMap<String, String> {
    BTreeMap::from([
        (POD_NAME_LABEL.to_string(), pod_name(set, ordinal)),
        (POD_INDEX_LABEL.to_string(), ordinal.to_string()),
    ])
}

/// The claims a pod of `ordinal` mounts, by the volume name (the template's name).
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<(String, PersistentVolumeClaim)> {
    let spec = set.spec.as_ref();
    let templates = spec
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or_default();
    let selector_labels = spec
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    templates
        .iter()
        .map(|t| {
            let template_name = t.metadata.name.clone().unwrap_or_default();
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector_labels.clone());
            let claim = PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(format!("{template_name}-{}-{ordinal}", set.name_any())),
                    namespace: set.namespace(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    ..ObjectMeta::default()
                },
                spec: t.spec.clone(),
                status: None,
            };
            (template_name, claim)
        })
        .collect()
}

/// The pod of `ordinal` made from `template` (the revision `revision`), controlled by
/// `set`: name, identity labels, revision label, hostname, subdomain, and a
/// persistentVolumeClaim volume per claim template (replacing a template volume of the
/// same name, as upstream does).
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    let name = pod_name(set, ordinal);
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.extend(identity_labels(set, ordinal));
    labels.insert(REVISION_LABEL.to_string(), revision.to_string());
    let mut spec = template.spec.clone().unwrap_or_default();
    let claims = claims_for(set, ordinal);
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(volume, claim)| Volume {
            name: volume.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.name_any(),
                read_only: None,
            }),
            ..Volume::default()
        })
        .collect();
    volumes.extend(
        spec.volumes
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !claims.iter().any(|(name, _)| *name == v.name)),
    );
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    spec.hostname = Some(name.clone());
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.namespace(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_ref(set)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// How a set's claim on the namespace's pods splits them: only pods named like its
/// members are considered (upstream's isMemberOf filter).
#[derive(Debug, Default)]
pub struct Claim<'a> {
    pub owned: Vec<&'a Pod>,
    pub adopt: Vec<&'a Pod>,
    pub release: Vec<&'a Pod>,
}

pub fn claim_pods<'a>(set: &StatefulSet, pods: &'a [Pod]) -> Claim<'a> {
    let mut claim = Claim::default();
    let Some(spec) = set.spec.as_ref() else {
        return claim;
    };
    let uid = set.metadata.uid.as_deref().unwrap_or_default();
    let deleting = is_deleting(&set.metadata);
    let empty = BTreeMap::new();
    for pod in pods.iter().filter(|p| ordinal_of(set, p).is_some()) {
        let matches = controller_selects(
            &spec.selector,
            pod.metadata.labels.as_ref().unwrap_or(&empty),
        );
        match controller_of(&pod.metadata) {
            Some(owner) if owner.uid == uid => {
                if matches {
                    claim.owned.push(pod);
                } else if !deleting {
                    claim.release.push(pod);
                }
            }
            Some(_) => {}
            None if matches && !deleting && !is_deleting(&pod.metadata) => claim.adopt.push(pod),
            None => {}
        }
    }
    claim
}

/// The retention policy, defaulted: (whenDeleted, whenScaled) is "Delete".
pub fn retention(set: &StatefulSet) -> (bool, bool) {
    let policy = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let delete = |v: Option<&String>| v.is_some_and(|v| v == "Delete");
    (
        delete(policy.and_then(|p| p.when_deleted.as_ref())),
        delete(policy.and_then(|p| p.when_scaled.as_ref())),
    )
}

fn plain_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: None,
        block_owner_deletion: None,
    }
}

/// The owner references `claim` (of the pod `pod`) should carry, or `None` when it
/// already does. Upstream's table: whenDeleted=Delete makes the set an owner (the
/// garbage collector removes the claim with the set); whenScaled=Delete makes the pod
/// an owner once its ordinal is out of range (removed with the condemned pod).
/// References to other owners are kept.
pub fn claim_owner_refs(
    set: &StatefulSet,
    pod: &Pod,
    in_range: bool,
    claim: &PersistentVolumeClaim,
) -> Option<Vec<OwnerReference>> {
    let (when_deleted, when_scaled) = retention(set);
    let set_uid = set.uid().unwrap_or_default();
    let pod_uid = pod.uid().unwrap_or_default();
    // The set owns the claim unless whenScaled=Delete handed it to a condemned pod.
    let want_set = when_deleted && (in_range || !when_scaled);
    let want_pod = when_scaled && !in_range;
    let current = claim.metadata.owner_references.clone().unwrap_or_default();
    let has = |uid: &str| current.iter().any(|r| r.uid == uid);
    if has(&set_uid) == want_set && has(&pod_uid) == want_pod {
        return None;
    }
    let mut refs: Vec<OwnerReference> = current
        .into_iter()
        .filter(|r| r.uid != set_uid && r.uid != pod_uid)
        .collect();
    if want_set {
        refs.push(plain_ref(
            "apps/v1",
            "StatefulSet",
            &set.name_any(),
            &set_uid,
        ));
    }
    if want_pod {
        refs.push(plain_ref("v1", "Pod", &pod.name_any(), &pod_uid));
    }
    Some(refs)
}

/// A claim still owned by a pod that is not `pod` (an earlier pod of the same ordinal
/// whose scale-down marked the claim for deletion): a new pod must wait until the
/// garbage collector has removed it, or it would mount a volume about to vanish.
pub fn claim_is_stale(claim: &PersistentVolumeClaim, pod_uid: Option<&str>) -> bool {
    is_deleting(&claim.metadata)
        || claim
            .owner_references()
            .iter()
            .any(|r| r.kind == "Pod" && Some(r.uid.as_str()) != pod_uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statefulset::fixtures::*;

    #[test]
    fn names_split_into_parent_and_ordinal() {
        let cases = [
            ("plain", "web-0", Some(("web", 0))),
            ("dashed parent", "my-web-12", Some(("my-web", 12))),
            ("no ordinal", "web-", None),
            ("not a number", "web-x1", None),
            ("no dash", "web0", None),
        ];
        for (name, pod, want) in cases {
            assert_eq!(parent_and_ordinal(pod), want, "{name}");
        }
    }

    #[test]
    fn new_pods_carry_identity_storage_and_revision() {
        let set = stateful_set(3).with_claim("data").serving("web-svc");
        let pod = new_pod(&set, &set.spec.as_ref().unwrap().template, 2, "web-abc");
        let labels = pod.metadata.labels.clone().unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("web-2"));
        assert_eq!(labels[POD_NAME_LABEL], "web-2");
        assert_eq!(labels[POD_INDEX_LABEL], "2");
        assert_eq!(labels[REVISION_LABEL], "web-abc");
        assert_eq!(labels["app"], "web");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("web-svc"));
        let volumes = spec.volumes.unwrap();
        assert_eq!(volumes.len(), 1);
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "data-web-2"
        );
        let again = new_pod(&set, &set.spec.as_ref().unwrap().template, 2, "r");
        assert!(identity_matches(&set, &again));
    }

    #[test]
    fn claim_owner_refs_follow_the_retention_table() {
        let pod = member("web-1", "r");
        let cases = [
            ("retain/retain", None, None, true, (false, false)),
            (
                "whenDeleted=Delete",
                Some("Delete"),
                None,
                true,
                (true, false),
            ),
            (
                "whenScaled=Delete in range",
                None,
                Some("Delete"),
                true,
                (false, false),
            ),
            (
                "whenScaled=Delete scaled down",
                None,
                Some("Delete"),
                false,
                (false, true),
            ),
            (
                "both Delete in range",
                Some("Delete"),
                Some("Delete"),
                true,
                (true, false),
            ),
            (
                "both Delete scaled down",
                Some("Delete"),
                Some("Delete"),
                false,
                (false, true),
            ),
        ];
        for (name, deleted, scaled, in_range, (want_set, want_pod)) in cases {
            let set = stateful_set(1).retaining(deleted, scaled);
            let claim = PersistentVolumeClaim::default();
            let refs = claim_owner_refs(&set, &pod, in_range, &claim).unwrap_or_default();
            let kinds: Vec<&str> = refs.iter().map(|r| r.kind.as_str()).collect();
            assert_eq!(
                kinds.contains(&"StatefulSet"),
                want_set,
                "{name}: {kinds:?}"
            );
            assert_eq!(kinds.contains(&"Pod"), want_pod, "{name}: {kinds:?}");
        }
    }

    #[test]
    fn claims_owned_by_an_earlier_pod_are_stale() {
        let mut claim = PersistentVolumeClaim::default();
        assert!(!claim_is_stale(&claim, None), "no owners");
        claim.metadata.owner_references = Some(vec![plain_ref("v1", "Pod", "web-1", "old")]);
        assert!(claim_is_stale(&claim, None), "owned by a pod that is gone");
        assert!(
            !claim_is_stale(&claim, Some("old")),
            "owned by this very pod"
        );
    }

    #[test]
    fn claim_considers_only_pods_named_like_members() {
        let set = stateful_set(2);
        let pods = vec![
            member("web-0", "r").owned_by(&set),
            member("web-1", "r"),
            member("other-0", "r"),
            member("web-x", "r"),
            member("web-2", "r")
                .labelled(&[("app", "db")])
                .owned_by(&set),
        ];
        let claim = claim_pods(&set, &pods);
        let names = |ps: &[&Pod]| ps.iter().map(|p| p.name_any()).collect::<Vec<_>>();
        assert_eq!(names(&claim.owned), vec!["web-0"]);
        assert_eq!(names(&claim.adopt), vec!["web-1"]);
        assert_eq!(names(&claim.release), vec!["web-2"]);
    }
}
