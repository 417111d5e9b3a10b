//! Upstream's `NodeRestriction` admission plugin: what the Node authorizer lets every
//! node do (write Nodes, pods, pod status, Leases...) is narrowed to the requesting
//! node's own objects: its Node (without changing its taints or setting labels that
//! steer workloads), mirror pods bound to itself, the status and eviction of pods bound
//! to itself, its own Lease and CSINode, claim status only, and tokens bound to its pods.
//! Creates and updates are checked in the mutating stage (after `ServiceAccount`, as
//! upstream), deletes in the validating one (which is shown the object being deleted);
//! evictions and token requests, answered by their own handlers, call [`eviction`] and
//! [`token_request`].

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::node::{node_identity, NODE_LEASE_NAMESPACE};
use super::{AdmissionRequest, MutatingAdmission, Operation, UserInfo, ValidatingAdmission};
use crate::api::Api;
use crate::object;
use crate::status::{ApiError, Result, Target};

const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

pub struct NodeRestriction;

/// The node making the request: `None` for other users, an error for a member of
/// `system:nodes` whose name says no node.
fn requesting_node<'a>(user: &'a UserInfo, target: &dyn Fn() -> Target) -> Result<Option<&'a str>> {
    match node_identity(user) {
        None => Ok(None),
        Some("") => Err(forbidden(
            target(),
            format!("could not determine node from user {:?}", user.name),
        )),
        Some(node) => Ok(Some(node)),
    }
}

fn forbidden(target: Target, message: String) -> ApiError {
    ApiError::Forbidden(target, message, None)
}

fn operation_name(op: Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn node_name_of(pod: &Value) -> &str {
    str_at(pod, "/spec/nodeName")
}

#[async_trait]
impl MutatingAdmission for NodeRestriction {
    async fn admit(
        &self,
        api: &Api,
        request: &AdmissionRequest<'_>,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<()> {
        let r = request.resource;
        let target = || Target::new(&r.group, &r.plural, request.name);
        let Some(node) = requesting_node(request.user, &target)? else {
            return Ok(());
        };
        let deny = |message: String| Err(forbidden(target(), message));
        let op = request.operation;
        match (r.group.as_str(), r.plural.as_str(), request.subresource) {
            ("", "pods", None) => match op {
                Operation::Create => mirror_pod(api, node, obj).await.or_else(deny),
                _ => deny(format!(
                    "unexpected operation {:?}, node {node:?} can only create and delete mirror pods",
                    operation_name(op)
                )),
            },
            ("", "pods", Some("status")) => match old {
                Some(old) => pod_status(node, obj, old).or_else(deny),
                None => deny(format!("unexpected operation {:?}", operation_name(op))),
            },
            ("", "pods", Some("eviction")) => Ok(()),
            ("", "pods", Some(sub)) => deny(format!(
                "unexpected pod subresource {sub:?}, only 'status' and 'eviction' are allowed"
            )),
            ("", "nodes", _) => node_object(node, request.name, op, obj, old).or_else(deny),
            ("", "persistentvolumeclaims", Some("status")) => match old {
                Some(old) => claim_status(node, obj, old).or_else(deny),
                None => deny(format!("unexpected operation {:?}", operation_name(op))),
            },
            ("", "persistentvolumeclaims", _) => deny("may only update PVC status".into()),
            ("coordination.k8s.io", "leases", _) => {
                own_object(node, request, object::name(obj), true).or_else(deny)
            }
            ("storage.k8s.io", "csinodes", _) => {
                own_object(node, request, object::name(obj), false).or_else(deny)
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl ValidatingAdmission for NodeRestriction {
    /// Deletes only: the mutating stage judges creates and updates.
    async fn validate(
        &self,
        _api: &Api,
        request: &AdmissionRequest<'_>,
        obj: &Value,
        _old: Option<&Value>,
    ) -> Result<()> {
        if request.operation != Operation::Delete {
            return Ok(());
        }
        let r = request.resource;
        let target = || Target::new(&r.group, &r.plural, request.name);
        let Some(node) = requesting_node(request.user, &target)? else {
            return Ok(());
        };
        let deny = |message: String| Err(forbidden(target(), message));
        match (r.group.as_str(), r.plural.as_str(), request.subresource) {
            ("", "pods", None) if node_name_of(obj) != node => deny(format!(
                "node {node:?} can only delete pods with spec.nodeName set to itself"
            )),
            ("", "nodes", _) if request.name != node => deny(format!(
                "node {node:?} is not allowed to modify node {:?}",
                request.name
            )),
            ("", "persistentvolumeclaims", _) => deny("may only update PVC status".into()),
            ("coordination.k8s.io", "leases", _) => {
                own_object(node, request, "", true).or_else(deny)
            }
            ("storage.k8s.io", "csinodes", _) => own_object(node, request, "", false).or_else(deny),
            _ => Ok(()),
        }
    }
}

/// A node creates only mirror pods of its own that refer to no other object (upstream's
/// `admitPodCreate`).
async fn mirror_pod(api: &Api, node: &str, pod: &Value) -> std::result::Result<(), String> {
    if pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(MIRROR_POD_ANNOTATION))
        .is_none()
    {
        return Err(format!("pod does not have {MIRROR_POD_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"));
    }
    if node_name_of(pod) != node {
        return Err(format!(
            "node {node:?} can only create pods with spec.nodeName set to itself"
        ));
    }
    let owners = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let owner = match owners {
        [] => {
            return Err(format!(
                "node {node:?} can only create pods with an owner reference set to itself"
            ))
        }
        [owner] => owner,
        _ => {
            return Err(format!(
                "node {node:?} can only create pods with a single owner reference set to itself"
            ))
        }
    };
    if str_at(owner, "/apiVersion") != "v1"
        || str_at(owner, "/kind") != "Node"
        || str_at(owner, "/name") != node
    {
        return Err(format!(
            "node {node:?} can only create pods with an owner reference set to itself"
        ));
    }
    if owner.get("controller").and_then(Value::as_bool) != Some(true) {
        return Err(format!(
            "node {node:?} can only create pods with a controller owner reference set to itself"
        ));
    }
    if owner.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true) {
        return Err(format!(
            "node {node:?} must not set blockOwnerDeletion on an owner reference"
        ));
    }
    let uid = node_uid(api, node).await?;
    let owner_uid = str_at(owner, "/uid");
    if owner_uid != uid {
        return Err(format!(
            "node {node} UID mismatch: expected {owner_uid} got {uid}"
        ));
    }
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    if !str_at(spec, "/serviceAccountName").is_empty() {
        return Err(format!(
            "node {node:?} can not create pods that reference a service account"
        ));
    }
    let uses = super::node::graph::pod_uses(pod);
    let refers = |kind| uses.iter().any(|(k, _)| *k == kind);
    use super::node::graph::Uses;
    if refers(Uses::Secret) {
        return Err(format!(
            "node {node:?} can not create pods that reference secrets"
        ));
    }
    if refers(Uses::ConfigMap) {
        return Err(format!(
            "node {node:?} can not create pods that reference configmaps"
        ));
    }
    let volumes = spec
        .get("volumes")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let bundles = volumes.iter().any(|v| {
        v.pointer("/projected/sources")
            .and_then(Value::as_array)
            .is_some_and(|s| s.iter().any(|s| s.get("clusterTrustBundle").is_some()))
    });
    if bundles {
        return Err(format!(
            "node {node:?} can not create pods that reference clustertrustbundles"
        ));
    }
    if volumes
        .iter()
        .any(|v| v.get("persistentVolumeClaim").is_some())
    {
        return Err(format!(
            "node {node:?} can not create pods that reference persistentvolumeclaims"
        ));
    }
    Ok(())
}

/// The uid of Node `node` (a mirror pod's owner must carry it).
async fn node_uid(api: &Api, node: &str) -> std::result::Result<String, String> {
    let snapshot = api.registry.snapshot();
    let nodes = snapshot
        .get("", "v1", "nodes")
        .ok_or("nodes are not served")?;
    let cache = api
        .cache(nodes)
        .await
        .map_err(|e| format!("error looking up node {node} to verify uid: {e}"))?;
    match cache.get(&nodes.key(None, node)) {
        Some(obj) => Ok(object::meta_str(&obj, "uid")
            .unwrap_or_default()
            .to_string()),
        None => Err(format!("nodes {node:?} not found")),
    }
}

/// A node updates the status of pods bound to itself, and not their labels or resource
/// claim statuses through it.
fn pod_status(node: &str, pod: &Value, old: &Value) -> std::result::Result<(), String> {
    if node_name_of(old) != node {
        return Err(format!(
            "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
        ));
    }
    let labels = |p: &Value| {
        p.pointer("/metadata/labels")
            .cloned()
            .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
    };
    if labels(pod) != labels(old) {
        return Err(format!(
            "node {node:?} cannot update labels through pod status"
        ));
    }
    let claims = |p: &Value| {
        p.pointer("/status/resourceClaimStatuses")
            .cloned()
            .filter(|c| c.as_array().is_some_and(|a| !a.is_empty()))
    };
    if claims(pod) != claims(old) {
        return Err(format!(
            "node {node:?} cannot update resource claim statues"
        ));
    }
    Ok(())
}

/// Claim status updates may change only `status.capacity`, `status.conditions` and the
/// expansion-recovery fields.
fn claim_status(node: &str, claim: &Value, old: &Value) -> std::result::Result<(), String> {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
            meta.remove("managedFields");
        }
        if let Some(status) = v.get_mut("status").and_then(Value::as_object_mut) {
            for f in [
                "capacity",
                "conditions",
                "allocatedResourceStatuses",
                "allocatedResources",
            ] {
                status.remove(f);
            }
        }
        v
    };
    if strip(claim) != strip(old) {
        return Err(format!(
            "node {node:?} is not allowed to update fields other than status.capacity and status.conditions"
        ));
    }
    Ok(())
}

/// A node writes only its own Node: on create without a configSource or labels outside
/// the kubelet's set, on update without changing its taints, configSource or such labels.
fn node_object(
    node: &str,
    name: &str,
    op: Operation,
    obj: &Value,
    old: Option<&Value>,
) -> std::result::Result<(), String> {
    if name != node {
        return Err(format!(
            "node {node:?} is not allowed to modify node {name:?}"
        ));
    }
    let labels = |v: Option<&Value>| {
        v.and_then(|v| v.pointer("/metadata/labels"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let config_source = |v: &Value| {
        v.pointer("/spec/configSource")
            .filter(|c| !c.is_null())
            .cloned()
    };
    match (op, old) {
        (Operation::Create, _) => {
            if config_source(obj).is_some() {
                return Err(format!(
                    "node {node:?} is not allowed to create pods with a non-nil configSource"
                ));
            }
            let forbidden = forbidden_labels(&labels(Some(obj)), &Map::new());
            if !forbidden.is_empty() {
                return Err(format!(
                    "node {node:?} is not allowed to set the following labels: {}",
                    forbidden.join(", ")
                ));
            }
        }
        (Operation::Update, Some(old)) => {
            let source = config_source(obj);
            if source.is_some() && source != config_source(old) {
                return Err(format!("node {node:?} is not allowed to update configSource to a new non-nil configSource"));
            }
            let taints = |v: &Value| {
                v.pointer("/spec/taints")
                    .cloned()
                    .filter(|t| t.as_array().is_some_and(|a| !a.is_empty()))
            };
            if taints(obj) != taints(old) {
                return Err(format!("node {node:?} is not allowed to modify taints"));
            }
            let forbidden = forbidden_labels(&labels(Some(obj)), &labels(Some(old)));
            if !forbidden.is_empty() {
                // Upstream's message names no node here.
                return Err(format!(
                    "is not allowed to modify labels: {}",
                    forbidden.join(", ")
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// The kubelet's own labels (upstream's `kubeletapis.IsKubeletLabel`).
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];

fn label_namespace(key: &str) -> &str {
    key.split_once('/').map_or("", |(ns, _)| ns)
}

fn in_namespace(namespace: &str, domain: &str) -> bool {
    namespace == domain || namespace.ends_with(&format!(".{domain}"))
}

fn is_kubelet_label(key: &str) -> bool {
    let ns = label_namespace(key);
    KUBELET_LABELS.contains(&key)
        || in_namespace(ns, "kubelet.kubernetes.io")
        || in_namespace(ns, "node.kubernetes.io")
}

/// The labels added, removed or changed between `labels` and `old` that a node may not
/// set: any under `node-restriction.kubernetes.io/`, and kubernetes.io/k8s.io ones
/// outside the kubelet's own; sorted, as upstream lists them.
fn forbidden_labels(labels: &Map<String, Value>, old: &Map<String, Value>) -> Vec<String> {
    let mut modified: Vec<&String> = labels
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(v))
        .map(|(k, _)| k)
        .chain(old.keys().filter(|k| !labels.contains_key(*k)))
        .collect();
    modified.sort();
    modified.dedup();
    modified
        .into_iter()
        .filter(|key| {
            let ns = label_namespace(key);
            let kubernetes = in_namespace(ns, "kubernetes.io") || in_namespace(ns, "k8s.io");
            in_namespace(ns, "node-restriction.kubernetes.io")
                || (kubernetes && !is_kubelet_label(key))
        })
        .cloned()
        .collect()
}

/// A Lease (in kube-node-lease) or CSINode named after the node. A create names the
/// object in its body (`created`), anything else in the request.
fn own_object(
    node: &str,
    request: &AdmissionRequest<'_>,
    created: &str,
    lease: bool,
) -> std::result::Result<(), String> {
    if lease && request.namespace != Some(NODE_LEASE_NAMESPACE) {
        return Err(format!(
            "can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"
        ));
    }
    let name = match request.operation {
        Operation::Create => created,
        _ => request.name,
    };
    if name != node {
        let what = if lease { "node lease" } else { "CSINode" };
        return Err(format!(
            "can only access {what} with the same name as the requesting node"
        ));
    }
    Ok(())
}

/// A node evicts only pods bound to itself (`pod` is the pod to be evicted).
pub(crate) fn eviction(user: &UserInfo, pod: &Value) -> Result<()> {
    let target = || Target::new("", "pods", object::name(pod));
    match requesting_node(user, &target)? {
        Some(node) if node_name_of(pod) != node => Err(forbidden(
            target(),
            format!("node {node} can only evict pods with spec.nodeName set to itself"),
        )),
        _ => Ok(()),
    }
}

/// What a node's TokenRequest for service account `account` is bound to: `(apiVersion,
/// kind, name, uid)` of its bound object, and that object when it is a pod.
pub(crate) struct BoundObject<'a> {
    pub reference: Option<(&'a str, &'a str, &'a str, &'a str)>,
    pub pod: Option<&'a Value>,
}

/// A node requests only tokens bound to a pod scheduled on itself.
pub(crate) fn token_request(user: &UserInfo, account: &str, bound: BoundObject<'_>) -> Result<()> {
    let target = || Target::new("", "serviceaccounts", account);
    let Some(node) = requesting_node(user, &target)? else {
        return Ok(());
    };
    let deny = |message: &str| Err(forbidden(target(), message.to_string()));
    let Some((api_version, kind, name, uid)) = bound.reference else {
        return deny("node requested token not bound to a pod");
    };
    if api_version != "v1" || kind != "Pod" || name.is_empty() {
        return deny("node requested token not bound to a pod");
    }
    if uid.is_empty() {
        return deny("node requested token with a pod binding without a uid");
    }
    let Some(pod) = bound.pod else {
        return Ok(());
    };
    if object::meta_str(pod, "uid") != Some(uid) {
        return deny(&format!("the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"));
    }
    if node_name_of(pod) != node {
        return deny("node requested token bound to a pod scheduled on a different node");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
