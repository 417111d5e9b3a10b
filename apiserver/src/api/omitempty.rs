//! Built-in kinds store and return what upstream's Go types encode: fields marked
//! `omitempty` are left out when empty. The generated schemas say which fields those
//! are: k8s-openapi lists every field without `omitempty` under `required`. So, for a
//! field not required, a null, an empty list or an empty map (an object schema with
//! only `additionalProperties`) is dropped. Empty structs stay (`securityContext: {}`),
//! as Go encodes a non-pointer struct even when empty. Zero counts are dropped in
//! `status` only, where nearly every count is a plain `int32`; the few pointers there
//! keep their zeros, as upstream does.

use serde_json::Value;

/// Status counts that are pointers in upstream's Go types: a zero is a value.
const STATUS_POINTERS: [&str; 5] = [
    "collisionCount",
    "ready",
    "terminating",
    "terminatingReplicas",
    "currentCPUUtilizationPercentage",
];

/// ObjectMeta's lists and maps, all `omitempty`.
const META_COLLECTIONS: [&str; 5] = [
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
    "managedFields",
];

/// Drops the empty values a built-in object's Go type would not encode.
pub(super) fn apply(schema: &Value, obj: &mut Value) {
    walk(schema, obj, false);
}

fn walk(schema: &Value, value: &mut Value, in_status: bool) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                let required: Vec<&str> = schema
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                map.retain(|k, v| {
                    required.contains(&k.as_str()) || !omitted(props.get(k), k, v, in_status)
                });
                for (k, v) in map.iter_mut() {
                    if k == "metadata" {
                        metadata(v);
                    }
                    if let Some(s) = props.get(k) {
                        walk(s, v, in_status || k == "status");
                    }
                }
            } else if let Some(items) = schema.get("additionalProperties") {
                for v in map.values_mut() {
                    walk(items, v, in_status);
                }
            }
        }
        Value::Array(list) => {
            if let Some(items) = schema.get("items") {
                for v in list {
                    walk(items, v, in_status);
                }
            }
        }
        _ => {}
    }
}

/// Whether an optional field's value is one its Go type leaves out.
fn omitted(schema: Option<&Value>, key: &str, v: &Value, in_status: bool) -> bool {
    let is_map = schema
        .is_some_and(|s| s.get("properties").is_none() && s.get("additionalProperties").is_some());
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty() && is_map,
        Value::Number(n) => in_status && n.as_f64() == Some(0.0) && !STATUS_POINTERS.contains(&key),
        _ => false,
    }
}

/// ObjectMeta (whose schema the CRDs leave open): empty or null lists and maps, and a
/// zero generation, are not encoded.
fn metadata(meta: &mut Value) {
    let Some(m) = meta.as_object_mut() else {
        return;
    };
    m.retain(|k, v| {
        let empty = match v {
            Value::Null => META_COLLECTIONS.contains(&k.as_str()),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty() && META_COLLECTIONS.contains(&k.as_str()),
            Value::Number(n) => k == "generation" && n.as_i64() == Some(0),
            _ => false,
        };
        !empty
    });
}
