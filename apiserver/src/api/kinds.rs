//! What each kind adds to the generic write path, as upstream's registry strategies:
//! one [`KindHooks`] per kind with behaviour of its own, found through one table
//! ([`hooks_for`]). The write path calls the hooks and knows no kind by name.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{crd, defaults, services, workloads, Api};
use crate::object;
use crate::registry::Resource;
use crate::status::{Cause, Result};

mod admissionregistration;
mod job;
pub(crate) mod pod;

pub(super) use pod::with_ephemeral_containers;

/// Something a write holds for its object (a Service's ClusterIP and NodePorts): kept
/// when the write is stored, given back when it is not.
#[async_trait]
pub(super) trait Reservation: Send + Sync {
    async fn release(self: Box<Self>, api: &Api);
}

/// A kind's part in create, update and delete. Every method has the behaviour a kind
/// without specifics gets.
#[async_trait]
pub(super) trait KindHooks: Send + Sync {
    /// On create, after the server set the system metadata: initial status and the
    /// fields the server derives (upstream's `PrepareForCreate`). `uid` is the new
    /// object's uid.
    fn prepare_create(&self, _obj: &mut Value, _uid: &str) {}

    /// On create, who asked: kinds that record their requester (a
    /// CertificateSigningRequest's `spec.username`, `uid` and `groups`) set it here,
    /// whatever the client sent, as upstream's strategies do.
    fn record_requester(&self, _obj: &mut Value, _user: &super::pipeline::UserInfo) {}

    /// On an update of the object itself (not `/status`): fields only another endpoint
    /// may change keep their stored values (upstream's `PrepareForUpdate`).
    fn prepare_update(&self, _old: &Value, _new: &mut Value) {}

    /// Built-in defaults (upstream's defaulting functions).
    fn default(&self, r: &Resource, obj: &mut Value) {
        if r.builtin {
            defaults::apply(&r.group, &r.plural, obj);
        }
    }

    /// The kind's validation rules beyond its schema and metadata.
    fn validate(&self, r: &Resource, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        if r.builtin {
            workloads::validate(&r.group, &r.plural, obj, old)
        } else {
            Vec::new()
        }
    }

    /// After validation passed: fields derived from the valid object (upstream's
    /// `Canonicalize`, and what a strategy sets once an object is known to be valid).
    fn canonicalize(&self, _obj: &mut Value, _old: Option<&Value>) {}

    /// Claims what the object needs before it is stored; `old` is the stored object on
    /// an update. The claim is released if the write is not stored.
    async fn reserve(
        &self,
        _api: &Api,
        _obj: &mut Value,
        _old: Option<&Value>,
    ) -> Result<Option<Box<dyn Reservation>>> {
        Ok(None)
    }

    /// What besides metadata finalizers keeps a deleted object stored.
    fn held(&self, _obj: &Value) -> bool {
        false
    }

    /// For a kind deleted gracefully (a pod a node still runs): the grace period the
    /// delete gets, from the request's or the object's. `None`: deleted at once.
    fn graceful_delete(&self, _obj: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }

    /// Marks an object whose delete is pending (a Namespace becomes Terminating).
    fn mark_deleting(&self, _obj: &mut Value) {}

    /// Side effects of a stored write. `old` is what was stored before (on an update
    /// or delete); `deleted` means the object is gone.
    async fn after_write(
        &self,
        _api: &Arc<Api>,
        _obj: &Value,
        _old: Option<&Value>,
        _deleted: bool,
    ) {
    }
}

/// The hooks of a resource.
pub(super) fn hooks_for(r: &Resource) -> &'static dyn KindHooks {
    match (r.group.as_str(), r.plural.as_str()) {
        ("", "namespaces") => &Namespaces,
        ("", "pods") => &pod::Pods,
        ("", "services") => &Services,
        ("batch", "jobs") => &job::Jobs,
        ("apiextensions.k8s.io", "customresourcedefinitions") => &Crds,
        ("certificates.k8s.io", "certificatesigningrequests") => &Csrs,
        ("admissionregistration.k8s.io", _) => &admissionregistration::AdmissionRegistration,
        _ => &Generic,
    }
}

/// The status a new object of a built-in kind starts with: what upstream's empty Go
/// status encodes to. Fields without `omitempty` (the schema's `required`) appear with
/// their zero values; nested structs that are not pointers appear empty; some kinds'
/// defaults add a phase. `None` for custom resources (their status is removed).
pub(super) fn initial_status(r: &Resource) -> Option<Value> {
    if !r.builtin {
        return None;
    }
    let mut status = serde_json::Map::new();
    if let Some(schema) = r.schema() {
        let st = schema.pointer("/properties/status");
        let required = st
            .and_then(|s| s.get("required"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        for f in required {
            let ty = st
                .and_then(|s| s.pointer(&format!("/properties/{f}/type")))
                .and_then(Value::as_str);
            let zero = match ty {
                Some("integer" | "number") => json!(0),
                Some("boolean") => json!(false),
                Some("string") => json!(""),
                _ => continue,
            };
            status.insert(f.to_string(), zero);
        }
    }
    match (r.group.as_str(), r.plural.as_str()) {
        ("", "services") | ("networking.k8s.io", "ingresses") => {
            status.insert("loadBalancer".into(), json!({}));
        }
        ("", "persistentvolumes") => {
            status.insert("phase".into(), json!("Pending"));
            status.insert(
                "lastPhaseTransitionTime".into(),
                json!(object::now_rfc3339()),
            );
        }
        ("", "persistentvolumeclaims") => {
            status.insert("phase".into(), json!("Pending"));
        }
        // NodeStatus's two struct fields: Go writes them out though they are empty.
        ("", "nodes") => {
            status.insert(
                "daemonEndpoints".into(),
                json!({"kubeletEndpoint": {"Port": 0}}),
            );
            let info = [
                "machineID",
                "systemUUID",
                "bootID",
                "kernelVersion",
                "osImage",
                "containerRuntimeVersion",
                "kubeletVersion",
                "kubeProxyVersion",
                "operatingSystem",
                "architecture",
            ];
            status.insert(
                "nodeInfo".into(),
                Value::Object(info.iter().map(|f| (f.to_string(), json!(""))).collect()),
            );
        }
        _ => {}
    }
    Some(Value::Object(status))
}

/// Whether objects of a resource carry `metadata.generation`: every kind with a spec,
/// except the built-in kinds whose upstream strategies never set it.
pub(super) fn tracks_generation(r: &Resource) -> bool {
    r.has_spec
        && !matches!(
            (r.group.as_str(), r.plural.as_str()),
            (
                "",
                "services"
                    | "namespaces"
                    | "nodes"
                    | "persistentvolumes"
                    | "persistentvolumeclaims"
                    | "resourcequotas"
                    | "limitranges"
            ) | ("coordination.k8s.io", "leases")
                | ("certificates.k8s.io", "certificatesigningrequests")
        )
}

/// Whether a DELETE that removes the object answers with the object itself rather
/// than a `Success` Status: upstream's stores that set `ReturnDeletedObject`.
pub(super) fn returns_deleted_object(r: &Resource) -> bool {
    r.group.is_empty()
        && matches!(
            r.plural.as_str(),
            "pods"
                | "services"
                | "persistentvolumes"
                | "persistentvolumeclaims"
                | "namespaces"
                | "podtemplates"
        )
}

/// Whether nothing keeps an object that is being deleted stored: no metadata
/// finalizers, and nothing its kind holds it by.
pub(super) fn nothing_holds(r: &Resource, obj: &Value) -> bool {
    object::finalizers(obj).is_empty() && !hooks_for(r).held(obj)
}

/// CertificateSigningRequests record who asked (signers and approvers trust it).
struct Csrs;

impl KindHooks for Csrs {
    fn record_requester(&self, obj: &mut Value, user: &super::pipeline::UserInfo) {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("username".into(), json!(user.name));
            spec.insert("groups".into(), json!(user.groups));
            spec.remove("extra");
            if user.uid.is_empty() {
                spec.remove("uid");
            } else {
                spec.insert("uid".into(), json!(user.uid));
            }
        }
    }
}

/// Every kind without behaviour of its own.
struct Generic;

impl KindHooks for Generic {}

struct Namespaces;

/// A namespace's `spec.finalizers`.
pub(super) fn namespace_finalizers(ns: &Value) -> Vec<String> {
    ns.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait]
impl KindHooks for Namespaces {
    fn prepare_create(&self, obj: &mut Value, _uid: &str) {
        // Upstream labels every namespace with its own name, for namespaceSelectors.
        let name = object::name(obj).to_string();
        let meta = object::metadata_mut(obj);
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
        obj["spec"] = json!({"finalizers": ["kubernetes"]});
        obj["status"] = json!({"phase": "Active"});
    }

    fn prepare_update(&self, old: &Value, new: &mut Value) {
        // Like upstream, spec.finalizers changes only through namespaces/NAME/finalize.
        match old.pointer("/spec/finalizers") {
            Some(f) => new["spec"]["finalizers"] = f.clone(),
            None => {
                new.get_mut("spec")
                    .and_then(Value::as_object_mut)
                    .map(|s| s.remove("finalizers"));
            }
        }
    }

    fn held(&self, obj: &Value) -> bool {
        !namespace_finalizers(obj).is_empty()
    }

    fn mark_deleting(&self, obj: &mut Value) {
        obj["status"]["phase"] = json!("Terminating");
    }
}

struct Services;

/// A Service's ClusterIP and NodePort claims.
struct Claims(Vec<services::Claim>);

#[async_trait]
impl Reservation for Claims {
    async fn release(self: Box<Self>, api: &Api) {
        services::release(api, &self.0).await;
    }
}

#[async_trait]
impl KindHooks for Services {
    async fn reserve(
        &self,
        api: &Api,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<Option<Box<dyn Reservation>>> {
        let claims = services::allocate(api, obj, old).await?;
        Ok(Some(Box::new(Claims(claims))))
    }

    async fn after_write(&self, api: &Arc<Api>, obj: &Value, old: Option<&Value>, deleted: bool) {
        if deleted {
            services::release(api, &services::claims_of(obj)).await;
        } else if let Some(old) = old {
            // What the update gave up (a ClusterIP of a Service that became
            // ExternalName, a NodePort of a port that went away).
            let kept = services::claims_of(obj);
            let dropped: Vec<_> = services::claims_of(old)
                .into_iter()
                .filter(|c| !kept.contains(c))
                .collect();
            services::release(api, &dropped).await;
        }
    }
}

struct Crds;

#[async_trait]
impl KindHooks for Crds {
    fn validate(&self, _r: &Resource, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        crd::validate(obj, old)
    }

    fn canonicalize(&self, obj: &mut Value, old: Option<&Value>) {
        crd::set_status(obj, old);
        if old.is_none() {
            let mut finalizers = object::finalizers(obj);
            finalizers.push(crd::CLEANUP_FINALIZER.to_string());
            object::metadata_mut(obj).insert("finalizers".into(), json!(finalizers));
        }
    }

    async fn after_write(&self, api: &Arc<Api>, obj: &Value, _old: Option<&Value>, deleted: bool) {
        if deleted {
            crd::after_delete(api, obj);
        } else {
            crd::after_write(api, obj);
        }
    }
}
