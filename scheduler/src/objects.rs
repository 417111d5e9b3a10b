//! Lean Pod and Node types for the scheduler's informers and cache.
//!
//! The scheduler watches every pod and node in the cluster, and a full k8s-openapi
//! `Pod` (managedFields, annotations, env, volumes, probes, container statuses…) is
//! several KiB that scheduling never reads. These types mirror the k8s-openapi shapes
//! (same field names and `Option`s, so plugin code reads them the same way) but declare
//! only what the plugins use; serde skips every other field while decoding the watch
//! stream, so the rest is never allocated. Nested structures that scheduling reads as a
//! whole (affinity, tolerations, topology spread, taints, resource requirements) keep
//! their k8s-openapi types.
//!
//! `kube::Resource` needs a full `ObjectMeta`; it is decoded through [`LeanMeta`], which
//! keeps name, namespace, uid, resourceVersion, labels and the two timestamps and drops
//! managedFields, annotations, owner references and finalizers.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ContainerPort, ResourceRequirements, Taint, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use serde::{Deserialize, Deserializer, Serialize};

/// The metadata fields scheduling reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
}

fn lean_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let m = LeanMeta::deserialize(d)?;
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        labels: m.labels,
        creation_timestamp: m.creation_timestamp,
        deletion_timestamp: m.deletion_timestamp,
        ..Default::default()
    })
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Pod {
    #[serde(default, deserialize_with = "lean_meta")]
    pub metadata: ObjectMeta,
    pub spec: Option<PodSpec>,
    pub status: Option<PodStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub node_name: Option<String>,
    pub scheduler_name: Option<String>,
    pub priority: Option<i32>,
    pub preemption_policy: Option<String>,
    #[serde(default)]
    pub containers: Vec<Container>,
    pub init_containers: Option<Vec<Container>>,
    pub overhead: Option<BTreeMap<String, Quantity>>,
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Boxed: most pods have none, and every pending pod holds its spec.
    pub affinity: Option<Box<Affinity>>,
    pub tolerations: Option<Vec<Toleration>>,
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// The claims the pod's volumes name (VolumeBinding reads them); None for the many
    /// pods without any, whose other volumes are skipped while decoding.
    #[serde(
        default,
        rename = "volumes",
        deserialize_with = "claim_volumes",
        skip_serializing
    )]
    pub claims: Option<Box<[PodClaim]>>,
}

/// A claim a pod's volume names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodClaim {
    /// A persistentVolumeClaim volume: the claim's name.
    Claim(String),
    /// A generic ephemeral volume: the volume's name (its claim is `<pod>-<volume>`).
    Ephemeral(String),
}

impl PodClaim {
    /// The claim's name for a pod named `pod`, and whether it is an ephemeral volume's.
    pub fn claim_name(&self, pod: &str) -> (String, bool) {
        match self {
            PodClaim::Claim(c) => (c.clone(), false),
            PodClaim::Ephemeral(v) => (format!("{pod}-{v}"), true),
        }
    }
}

fn claim_volumes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<[PodClaim]>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ClaimSource {
        claim_name: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Volume {
        name: String,
        persistent_volume_claim: Option<ClaimSource>,
        ephemeral: Option<serde::de::IgnoredAny>,
    }
    let volumes = Option::<Vec<Volume>>::deserialize(d)?.unwrap_or_default();
    let claims: Vec<PodClaim> = volumes
        .into_iter()
        .filter_map(|v| match (v.persistent_volume_claim, v.ephemeral) {
            (Some(c), _) => Some(PodClaim::Claim(c.claim_name)),
            (None, Some(_)) => Some(PodClaim::Ephemeral(v.name)),
            (None, None) => None,
        })
        .collect();
    Ok((!claims.is_empty()).then(|| claims.into_boxed_slice()))
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub image: Option<String>,
    /// Boxed: parsed into `PodInfo::requests` and dropped, so a pending pod's
    /// containers hold only a null pointer here.
    pub resources: Option<Box<ResourceRequirements>>,
    pub ports: Option<Vec<ContainerPort>>,
    /// "Always" on an init container makes it a sidecar.
    pub restart_policy: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub phase: Option<String>,
    pub nominated_node_name: Option<String>,
    pub start_time: Option<Time>,
    pub conditions: Option<Vec<PodCondition>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct PodCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Node {
    #[serde(default, deserialize_with = "lean_meta")]
    pub metadata: ObjectMeta,
    pub spec: Option<NodeSpec>,
    pub status: Option<NodeStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    pub taints: Option<Vec<Taint>>,
    pub unschedulable: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub allocatable: Option<BTreeMap<String, Quantity>>,
    pub capacity: Option<BTreeMap<String, Quantity>>,
    pub conditions: Option<Vec<NodeCondition>>,
    pub images: Option<Vec<ContainerImage>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct NodeCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerImage {
    pub names: Option<Vec<String>>,
    pub size_bytes: Option<i64>,
}

/// Re-decodes a full object as its lean counterpart (tests and fixtures build
/// k8s-openapi objects).
fn lean<T: Serialize, L: for<'de> Deserialize<'de>>(full: &T) -> L {
    let v = serde_json::to_value(full).expect("k8s objects serialize");
    serde_json::from_value(v).expect("a k8s object decodes as its lean form")
}

impl From<&k8s_openapi::api::core::v1::Pod> for Pod {
    fn from(p: &k8s_openapi::api::core::v1::Pod) -> Pod {
        lean(p)
    }
}

impl From<k8s_openapi::api::core::v1::Pod> for Pod {
    fn from(p: k8s_openapi::api::core::v1::Pod) -> Pod {
        lean(&p)
    }
}

impl From<&k8s_openapi::api::core::v1::Node> for Node {
    fn from(n: &k8s_openapi::api::core::v1::Node) -> Node {
        lean(n)
    }
}

impl From<k8s_openapi::api::core::v1::Node> for Node {
    fn from(n: k8s_openapi::api::core::v1::Node) -> Node {
        lean(&n)
    }
}

/// A PersistentVolumeClaim as VolumeBinding sees it: of its annotations only the
/// class (the deprecated beta annotation) and bind-completed are kept.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct PersistentVolumeClaim {
    #[serde(default, deserialize_with = "claim_meta")]
    pub metadata: ObjectMeta,
    pub spec: Option<ClaimSpec>,
    pub status: Option<ClaimStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimSpec {
    pub storage_class_name: Option<String>,
    pub volume_name: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ClaimStatus {
    pub phase: Option<String>,
}

/// Set by the PV controller once it has bound a claim (upstream's "fully bound").
pub const BIND_COMPLETED_ANNOTATION: &str = "pv.kubernetes.io/bind-completed";
/// The class annotation that preceded spec.storageClassName; it wins when set.
pub const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

fn claim_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ClaimMeta {
        name: Option<String>,
        namespace: Option<String>,
        /// The watcher resumes from it.
        resource_version: Option<String>,
        deletion_timestamp: Option<Time>,
        annotations: Option<BTreeMap<String, String>>,
    }
    let m = ClaimMeta::deserialize(d)?;
    let annotations: BTreeMap<String, String> = m
        .annotations
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k == BIND_COMPLETED_ANNOTATION || k == BETA_CLASS_ANNOTATION)
        .collect();
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        resource_version: m.resource_version,
        deletion_timestamp: m.deletion_timestamp,
        annotations: (!annotations.is_empty()).then_some(annotations),
        ..Default::default()
    })
}

impl From<&k8s_openapi::api::core::v1::PersistentVolumeClaim> for PersistentVolumeClaim {
    fn from(c: &k8s_openapi::api::core::v1::PersistentVolumeClaim) -> PersistentVolumeClaim {
        lean(c)
    }
}

/// A namespace as namespaceSelector sees it: its name and labels.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Namespace {
    #[serde(default, deserialize_with = "lean_meta")]
    pub metadata: ObjectMeta,
}

macro_rules! core_v1_resource {
    ($ty:ty, $kind:literal, $plural:literal, $scope:ty) => {
        impl kube::Resource for $ty {
            type DynamicType = ();
            type Scope = $scope;

            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }
            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed("")
            }
            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed("v1")
            }
            fn api_version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed("v1")
            }
            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

core_v1_resource!(Pod, "Pod", "pods", NamespaceResourceScope);
core_v1_resource!(Node, "Node", "nodes", ClusterResourceScope);
core_v1_resource!(Namespace, "Namespace", "namespaces", ClusterResourceScope);
core_v1_resource!(
    PersistentVolumeClaim,
    "PersistentVolumeClaim",
    "persistentvolumeclaims",
    NamespaceResourceScope
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_keeps_what_scheduling_reads_and_drops_the_rest() {
        let full = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "p", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                "labels": {"app": "web"},
                "annotations": {"big": "x".repeat(4096)},
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
                "creationTimestamp": "2026-01-01T00:00:00Z"
            },
            "spec": {
                "schedulerName": "default-scheduler", "priority": 5,
                "containers": [{"name": "c", "image": "nginx",
                    "env": [{"name": "A", "value": "B"}],
                    "resources": {"requests": {"cpu": "100m"}},
                    "ports": [{"containerPort": 80, "hostPort": 8080}]}],
                "volumes": [{"name": "v", "emptyDir": {}}],
                "tolerations": [{"key": "k", "operator": "Exists"}]
            },
            "status": {"phase": "Pending", "nominatedNodeName": "n1",
                "containerStatuses": [{"name": "c"}]}
        });
        let p: Pod = serde_json::from_value(full).unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("p"));
        assert_eq!(p.metadata.uid.as_deref(), Some("u1"));
        assert_eq!(p.metadata.labels.as_ref().unwrap()["app"], "web");
        assert!(p.metadata.annotations.is_none(), "annotations dropped");
        assert!(p.metadata.managed_fields.is_none(), "managedFields dropped");
        assert!(p.metadata.creation_timestamp.is_some());
        let spec = p.spec.unwrap();
        assert_eq!(spec.priority, Some(5));
        assert_eq!(
            spec.containers[0].ports.as_ref().unwrap()[0].host_port,
            Some(8080)
        );
        assert_eq!(spec.tolerations.unwrap()[0].key.as_deref(), Some("k"));
        assert_eq!(p.status.unwrap().nominated_node_name.as_deref(), Some("n1"));
    }
}
