//! Resources served from another resource's store, as upstream serves some kinds in two
//! groups or two versions with different fields: the objects are kept in the storage
//! resource's form and every request to the other converts them on the way in and out.
//! Two today: events.k8s.io/v1 Event is a view of core/v1 Event (`events`), and
//! autoscaling/v1 HorizontalPodAutoscaler of autoscaling/v2 (`hpa`).
//!
//! The rest of the server keeps objects in the form of the version a request names;
//! only the storage boundary (the write path's stored object, reads' answers, field
//! selectors run against stored objects) asks this module.

mod events;
mod hpa;
pub mod webhook;

pub(crate) use hpa::{cpu_utilization_metric, DEFAULT_CPU_UTILIZATION};

use serde_json::Value;

use crate::registry::Resource;
use crate::selectors::FieldSelector;

/// How one served resource maps onto another's store.
struct View {
    group: &'static str,
    /// The served version that converts.
    version: &'static str,
    plural: &'static str,
    storage_group: &'static str,
    storage_version: &'static str,
    /// The served form from the stored one.
    from_storage: fn(&mut serde_json::Map<String, Value>),
    /// The stored form from the served one.
    to_storage: fn(&mut serde_json::Map<String, Value>),
    /// Selectable fields of the served form whose stored field has another name.
    fields: &'static [(&'static str, &'static str)],
}

const VIEWS: &[View] = &[
    View {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        storage_group: "",
        storage_version: "v1",
        from_storage: events::from_core,
        to_storage: events::to_core,
        fields: events::FIELDS,
    },
    View {
        group: "autoscaling",
        version: "v1",
        plural: "horizontalpodautoscalers",
        storage_group: "autoscaling",
        storage_version: "v2",
        from_storage: hpa::to_v1,
        to_storage: hpa::to_v2,
        fields: &[],
    },
];

fn view(r: &Resource) -> Option<&'static View> {
    VIEWS.iter().find(|v| {
        r.builtin
            && v.group == r.group
            && v.version == r.version
            && v.plural == r.plural
            && (r.storage_group != r.group || r.storage_version != r.version)
    })
}

/// Whether objects written through `r` are converted to another form to be stored.
pub fn converts(r: &Resource) -> bool {
    view(r).is_some()
}

/// The store a built-in resource's objects live in: (group, version), when it is not
/// the resource's own group.
pub fn storage_of(group: &str, plural: &str) -> Option<(&'static str, &'static str)> {
    VIEWS
        .iter()
        .find(|v| v.group == group && v.plural == plural)
        .map(|v| (v.storage_group, v.storage_version))
}

fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// The stored form of an object written through `r` (the object itself for a resource
/// stored in its own group).
pub fn to_storage(r: &Resource, obj: &Value) -> Option<Value> {
    let v = view(r)?;
    let mut out = obj.clone();
    if let Some(map) = out.as_object_mut() {
        (v.to_storage)(map);
        map.insert(
            "apiVersion".into(),
            Value::String(api_version(v.storage_group, v.storage_version)),
        );
    }
    Some(out)
}

/// A stored object as `r` serves it, when `r` is a view of another resource's store
/// and the object is in the stored form (an object already converted, or a `Status`,
/// stays as it is).
pub fn from_storage(r: &Resource, obj: &Value) -> Option<Value> {
    let v = view(r)?;
    let stored = api_version(v.storage_group, v.storage_version);
    if obj.get("apiVersion").and_then(Value::as_str) != Some(stored.as_str())
        || obj.get("kind").and_then(Value::as_str) != Some(r.kind.as_str())
    {
        return None;
    }
    let mut out = obj.clone();
    if let Some(map) = out.as_object_mut() {
        (v.from_storage)(map);
        map.insert("apiVersion".into(), Value::String(r.api_version()));
    }
    Some(out)
}

/// An events.k8s.io/v1 Event in the core/v1 form (for printing both alike).
pub fn core_event(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(map) = out.as_object_mut() {
        events::to_core(map);
    }
    out
}

/// A field selector parsed for `r`, made to run against stored objects: the served
/// form's field names become the stored form's (upstream's field label conversion).
pub fn selector_for_storage(r: &Resource, selector: FieldSelector) -> FieldSelector {
    match view(r) {
        Some(v) => selector.renamed(v.storage_group, v.plural, v.fields),
        None => selector,
    }
}

#[cfg(test)]
mod tests;
