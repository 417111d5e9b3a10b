//! Provisioning, as pure functions: the node a claim's volume goes to (where its first
//! consumer was scheduled), whether we can serve the claim at all, and the hostPath
//! PersistentVolume made for it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, Pod, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use super::{CLEANUP_FINALIZER, PROVISIONER};

/// Set by upstream's scheduler on a WaitForFirstConsumer claim once its pod has a node.
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
pub const PROVISIONED_BY_ANNOTATION: &str = "pv.kubernetes.io/provisioned-by";
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// The names of the claims a pod mounts: its persistentVolumeClaim volumes and its
/// generic ephemeral volumes (whose claim upstream names `<pod>-<volume>`).
pub fn claim_names(pod: &Pod) -> Vec<String> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    volumes
        .iter()
        .filter_map(|v| {
            if let Some(pvc) = &v.persistent_volume_claim {
                Some(pvc.claim_name.clone())
            } else {
                v.ephemeral
                    .as_ref()
                    .map(|_| format!("{}-{}", pod.name_any(), v.name))
            }
        })
        .collect()
}

/// The claims a scheduled pod may be the first consumer of.
pub fn claims_of_pod(pod: &Pod) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    let Some(ns) = pod.namespace() else {
        return vec![];
    };
    if node_of(pod).is_none() {
        return vec![];
    }
    claim_names(pod)
        .iter()
        .map(|c| ObjectRef::new(c).within(&ns))
        .collect()
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

/// The node a claim's volume must live on: the scheduler's selected-node annotation
/// when set, else the node of a live pod using the claim (our scheduler binds pods
/// without looking at their volumes, so the pod's node is the consumer's node). With
/// several consumers on different nodes the alphabetically first pod decides.
pub fn consumer_node(claim: &PersistentVolumeClaim, pods: &Store<Pod>) -> Option<String> {
    if let Some(node) = claim
        .annotations()
        .get(SELECTED_NODE_ANNOTATION)
        .filter(|n| !n.is_empty())
    {
        return Some(node.clone());
    }
    let ns = claim.namespace()?;
    let name = claim.name_any();
    let mut consumers: Vec<_> = pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter(|p| p.metadata.deletion_timestamp.is_none() && !is_finished(p))
        .filter(|p| claim_names(p).contains(&name))
        .filter_map(|p| Some((p.name_any(), node_of(&p)?.to_string())))
        .collect();
    consumers.sort();
    consumers.into_iter().next().map(|(_, node)| node)
}

fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The volume's name: `pvc-<claim uid>`, as upstream provisioners name them, so a
/// retried create finds the volume made before.
pub fn volume_name(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.uid().unwrap_or_default())
}

/// The directory on the node: `<base>/<volume>_<namespace>_<claim>` (rancher's layout,
/// so an operator can tell whose data a directory holds).
pub fn host_path(base: &str, claim: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}_{}_{}",
        base.trim_end_matches('/'),
        volume_name(claim),
        claim.namespace().unwrap_or_default(),
        claim.name_any()
    )
}

/// Why a claim of our class cannot be provisioned (the ProvisioningFailed message).
pub fn refusal(claim: &PersistentVolumeClaim) -> Option<String> {
    let spec = claim.spec.as_ref()?;
    if spec.selector.is_some() {
        return Some("claim.Spec.Selector is not supported".into());
    }
    let modes = spec.access_modes.as_deref().unwrap_or_default();
    // A directory on one node serves pods of that node only.
    if let Some(m) = modes
        .iter()
        .find(|m| !matches!(m.as_str(), "ReadWriteOnce" | "ReadWriteOncePod"))
    {
        return Some(format!("access mode {m} is not supported: local-path volumes support ReadWriteOnce and ReadWriteOncePod"));
    }
    let requested = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"));
    if requested.is_none() {
        return Some("the claim requests no storage (spec.resources.requests.storage)".into());
    }
    None
}

/// The hostPath volume for `claim` on `node`, claimed by it (pre-bound through claimRef).
pub fn desired_volume(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    base: &str,
) -> PersistentVolume {
    let spec = claim.spec.clone().unwrap_or_default();
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned();
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(volume_name(claim)),
            annotations: Some(BTreeMap::from([(
                PROVISIONED_BY_ANNOTATION.into(),
                PROVISIONER.into(),
            )])),
            finalizers: Some(vec![CLEANUP_FINALIZER.into()]),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: storage.map(|q| BTreeMap::from([("storage".into(), q)])),
            access_modes: spec.access_modes.clone(),
            host_path: Some(HostPathVolumeSource {
                path: host_path(base, claim),
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![node.into()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: claim.namespace(),
                name: Some(claim.name_any()),
                uid: claim.uid(),
                resource_version: claim.resource_version(),
                ..ObjectReference::default()
            }),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: Some(class.name_any()),
            mount_options: class.mount_options.clone(),
            volume_mode: spec
                .volume_mode
                .clone()
                .or_else(|| Some("Filesystem".into())),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use kube::runtime::reflector;
    use kube::runtime::watcher;

    fn store_of(pods: Vec<Pod>) -> Store<Pod> {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        for p in pods {
            writer.apply_watcher_event(&watcher::Event::InitApply(p));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        store
    }

    #[test]
    fn the_node_a_claim_is_provisioned_on() {
        let data = claim("data").uid("u1");
        let cases = [
            (
                "no consumer yet",
                data.clone(),
                vec![pod("p").mounts("data")],
                None,
            ),
            (
                "a consumer scheduled to n1",
                data.clone(),
                vec![pod("p").mounts("data").on("n1")],
                Some("n1"),
            ),
            (
                "a pod of another claim",
                data.clone(),
                vec![pod("p").mounts("logs").on("n1")],
                None,
            ),
            (
                "a pod in another namespace",
                data.clone(),
                vec![pod("p").mounts("data").on("n1").in_ns("other")],
                None,
            ),
            (
                "a finished consumer",
                data.clone(),
                vec![pod("p").mounts("data").on("n1").phase("Succeeded")],
                None,
            ),
            (
                "an ephemeral volume's claim",
                claim("p-scratch"),
                vec![pod("p").ephemeral("scratch").on("n2")],
                Some("n2"),
            ),
            (
                "the selected-node annotation wins",
                data.clone().annotate(SELECTED_NODE_ANNOTATION, "n3"),
                vec![pod("p").mounts("data").on("n1")],
                Some("n3"),
            ),
            (
                "two consumers: the first by name",
                data.clone(),
                vec![
                    pod("b").mounts("data").on("n2"),
                    pod("a").mounts("data").on("n1"),
                ],
                Some("n1"),
            ),
        ];
        for (name, claim, pods, want) in cases {
            assert_eq!(
                consumer_node(&claim, &store_of(pods)).as_deref(),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn claims_we_refuse() {
        let cases = [
            (
                "read-write-once",
                claim("a").modes(&["ReadWriteOnce"]),
                None,
            ),
            (
                "read-write-once-pod",
                claim("a").modes(&["ReadWriteOncePod"]),
                None,
            ),
            (
                "read-write-many",
                claim("a").modes(&["ReadWriteOnce", "ReadWriteMany"]),
                Some("ReadWriteMany"),
            ),
            ("a selector", claim("a").with_selector(), Some("Selector")),
        ];
        for (name, claim, want) in cases {
            let got = refusal(&claim);
            match want {
                None => assert_eq!(got, None, "{name}"),
                Some(word) => assert!(
                    got.as_deref().is_some_and(|m| m.contains(word)),
                    "{name}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn the_volume_made_for_a_claim() {
        let claim = claim("data-web-0")
            .uid("1234")
            .modes(&["ReadWriteOnce"])
            .request("2Gi");
        let class = class("local-path", PROVISIONER).reclaim("Retain");
        let pv = desired_volume(&claim, &class, "n1", "/srv/storage/");
        let spec = pv.spec.as_ref().unwrap();
        assert_eq!(pv.name_any(), "pvc-1234");
        assert_eq!(
            pv.annotations()
                .get(PROVISIONED_BY_ANNOTATION)
                .map(String::as_str),
            Some(PROVISIONER)
        );
        assert_eq!(spec.capacity.as_ref().unwrap()["storage"].0, "2Gi");
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
        let host = spec.host_path.as_ref().unwrap();
        assert_eq!(host.path, "/srv/storage/pvc-1234_ns_data-web-0");
        assert_eq!(host.type_.as_deref(), Some("DirectoryOrCreate"));
        let term = &spec
            .node_affinity
            .as_ref()
            .unwrap()
            .required
            .as_ref()
            .unwrap()
            .node_selector_terms[0];
        let expr = &term.match_expressions.as_ref().unwrap()[0];
        assert_eq!(
            (
                expr.key.as_str(),
                expr.operator.as_str(),
                expr.values.clone()
            ),
            (HOSTNAME_LABEL, "In", Some(vec!["n1".into()]))
        );
        let cref = spec.claim_ref.as_ref().unwrap();
        assert_eq!(
            (
                cref.namespace.as_deref(),
                cref.name.as_deref(),
                cref.uid.as_deref()
            ),
            (Some("ns"), Some("data-web-0"), Some("1234"))
        );
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Retain")
        );
        assert_eq!(spec.storage_class_name.as_deref(), Some("local-path"));
        assert_eq!(
            pv.finalizers(),
            [CLEANUP_FINALIZER],
            "the node's agent removes the folder before the volume goes"
        );
    }
}
