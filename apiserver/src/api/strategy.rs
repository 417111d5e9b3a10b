//! Per-kind server-side behaviour applied on every write: what a create initializes,
//! what an update may not change, when `metadata.generation` moves, which name rule
//! applies. Generic for every kind; what a kind adds is in its hooks (`kinds.rs`).

use serde_json::{json, Map, Value};

use crate::object;
use crate::registry::Resource;
use crate::status::{ApiError, Cause, Result};
use crate::validation::{self, name_rule};

/// Metadata fields only the server sets; a client's values are replaced.
const SYSTEM_FIELDS: [&str; 6] = [
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "resourceVersion",
];

/// Namespaces the server creates at start-up and that cannot be deleted.
pub(super) const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Prepares a new object for storage: system metadata, initial status, defaults.
pub(super) fn prepare_create(r: &Resource, obj: &mut Value) {
    obj["apiVersion"] = json!(storage_api_version(r));
    obj["kind"] = json!(r.kind);
    let uid = object::new_uid();
    let meta = object::metadata_mut(obj);
    for f in SYSTEM_FIELDS {
        meta.remove(f);
    }
    meta.insert("uid".into(), json!(uid));
    meta.insert("creationTimestamp".into(), json!(object::now_rfc3339()));
    if super::kinds::tracks_generation(r) {
        meta.insert("generation".into(), json!(1));
    }
    if r.status {
        // Like upstream's PrepareForCreate, a create never sets status: built-in kinds
        // start from their Go status type's empty value, custom resources without one.
        // Nodes are the exception: an agent registers its node with its status.
        let given = match keeps_status_on_create(r) {
            true => obj.get("status").cloned(),
            false => None,
        };
        match (super::kinds::initial_status(r), given) {
            (Some(mut status), Some(given)) => {
                overlay(&mut status, given);
                obj["status"] = status;
            }
            (Some(status), None) => obj["status"] = status,
            (None, _) => {
                obj.as_object_mut().map(|m| m.remove("status"));
            }
        }
    }
    super::kinds::hooks_for(r).prepare_create(obj, &uid);
}

/// Whether a create keeps the status it carries (upstream's node strategy: "Nodes allow
/// all fields, including status, to be set on create").
fn keeps_status_on_create(r: &Resource) -> bool {
    r.builtin && r.group.is_empty() && r.plural == "nodes"
}

/// `given` laid over `base` as Go decodes JSON into a zero value: what `given` has
/// wins, nested objects are merged, and `base`'s other fields stay.
fn overlay(base: &mut Value, given: Value) {
    match (base, given) {
        (Value::Object(base), Value::Object(given)) => {
            for (k, v) in given {
                match base.get_mut(&k) {
                    Some(b) => overlay(b, v),
                    None => {
                        base.insert(k, v);
                    }
                }
            }
        }
        (base, given) => *base = given,
    }
}

/// The apiVersion objects of a resource are stored under (conversion strategy None);
/// a view converted on the way to storage keeps its own until then.
pub(super) fn storage_api_version(r: &Resource) -> String {
    if crate::conversion::converts(r) {
        r.api_version()
    } else if r.group.is_empty() {
        r.storage_version.clone()
    } else {
        format!("{}/{}", r.group, r.storage_version)
    }
}

/// Merges an update into the stored object. `status_only` is the `/status`
/// subresource: only status changes. Otherwise status is kept when the resource has a
/// status subresource, and the system metadata always is.
pub(super) fn prepare_update(
    r: &Resource,
    old: &Value,
    new: Value,
    status_only: bool,
) -> Result<Value> {
    let mut new = new;
    if status_only {
        let mut merged = old.clone();
        // Built-in status strategies keep everything but the spec from the new object,
        // so `/status` writes change labels and annotations too; custom resources'
        // status strategy takes only the status.
        if r.builtin {
            if let Some(m) = new.get("metadata") {
                let labels = old.pointer("/metadata/labels").cloned();
                merged["metadata"] = m.clone();
                // The apps workloads' status strategies keep the labels too.
                if r.group == "apps" {
                    let meta = object::metadata_mut(&mut merged);
                    match labels {
                        Some(l) => meta.insert("labels".into(), l),
                        None => meta.remove("labels"),
                    };
                }
            }
        }
        match new.get("status") {
            Some(s) => merged["status"] = s.clone(),
            None => {
                merged.as_object_mut().map(|m| m.remove("status"));
            }
        }
        // As upstream's status strategies do, keep the new managedFields: a status apply
        // has just recorded its manager there (an update without any gets the old ones back
        // when its change is tracked).
        match new.pointer("/metadata/managedFields") {
            Some(m) => {
                object::metadata_mut(&mut merged).insert("managedFields".into(), m.clone());
            }
            None => {
                object::metadata_mut(&mut merged).remove("managedFields");
            }
        }
        new = merged;
    } else if r.status {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                new.as_object_mut().map(|m| m.remove("status"));
            }
        }
    }
    new["apiVersion"] = json!(storage_api_version(r));
    new["kind"] = json!(r.kind);
    if !status_only {
        super::kinds::hooks_for(r).prepare_update(old, &mut new);
    }
    let old_meta = old
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let meta = object::metadata_mut(&mut new);
    for f in SYSTEM_FIELDS {
        match old_meta.get(f) {
            Some(v) => meta.insert(f.into(), v.clone()),
            None => meta.remove(f),
        };
    }
    if object::is_deleting(old) {
        let old_f = object::finalizers(old);
        if let Some(added) = object::finalizers(&new)
            .into_iter()
            .find(|f| !old_f.contains(f))
        {
            return Err(invalid(r, old, vec![Cause::forbidden(
                "metadata.finalizers",
                &format!("no new finalizers can be added if the object is being deleted, found new finalizers []string{{{added:?}}}"),
            )]));
        }
    }
    Ok(new)
}

/// Moves `metadata.generation` on when an update changed the spec. Called once the new
/// object is defaulted, so a write that differs from the stored object only in what
/// defaulting fills in (a re-apply, explicit nulls) leaves it where it was.
pub(super) fn bump_generation(r: &Resource, old: &Value, new: &mut Value, status_only: bool) {
    if super::kinds::tracks_generation(r) && !status_only && spec_changed(old, new) {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        object::metadata_mut(new).insert("generation".into(), json!(generation + 1));
    }
}

/// Whether anything but metadata and status differs.
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        let mut m = v.as_object().cloned().unwrap_or_default();
        for k in ["metadata", "status", "apiVersion", "kind"] {
            m.remove(k);
        }
        m
    };
    strip(old) != strip(new)
}

pub(super) fn invalid(r: &Resource, obj: &Value, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid {
        target: crate::status::Target::new(&r.group, &r.plural, object::name(obj)),
        kind: r.kind.clone(),
        causes,
    }
}

/// Validates what every write must satisfy: names, labels, annotations.
pub(super) fn validate(r: &Resource, obj: &Value) -> Result<()> {
    let causes = validation::validate_metadata(obj, name_rule(&r.group, &r.plural));
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(r, obj, causes))
    }
}

/// Whether two stored forms are the same write (a no-op update is not written).
pub(super) fn same_object(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        object::metadata_mut(&mut v).remove("resourceVersion");
        v
    };
    strip(a) == strip(b)
}
