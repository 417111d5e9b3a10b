//! Built-in kinds store and return what upstream's Go types encode: fields marked
//! `omitempty` are left out when empty, and a Go zero value is the same as unset. The
//! generated schemas say which fields those are: k8s-openapi lists every field without
//! `omitempty` under `required`. So, for a field not required, a null, an empty list, an
//! empty map (an object schema with only `additionalProperties`), a `0` or a `false` is
//! dropped. Two things the schemas do not tell are listed here from the Go types: the
//! scalar fields that are pointers (their zero is a value: `replicas: 0`), and that an
//! empty struct stays (`securityContext: {}`), as Go encodes a non-pointer struct even
//! when empty. Protobuf bodies, where Go writes every non-pointer zero, and JSON bodies
//! thus store the same object.

use serde_json::Value;

/// Scalar fields outside `status` that are pointers in upstream's Go types.
const POINTERS: &[&str] = &[
    "replicas",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "automountServiceAccountToken",
    "shareProcessNamespace",
    "priority",
    "enableServiceLinks",
    "setHostnameAsFQDN",
    "hostUsers",
    "hostProcess",
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "fsGroup",
    "privileged",
    "readOnlyRootFilesystem",
    "allowPrivilegeEscalation",
    "defaultMode",
    "mode",
    "optional",
    "expirationSeconds",
    "revisionHistoryLimit",
    "progressDeadlineSeconds",
    "partition",
    "parallelism",
    "completions",
    "backoffLimit",
    "backoffLimitPerIndex",
    "maxFailedIndexes",
    "ttlSecondsAfterFinished",
    "suspend",
    "manualSelector",
    "startingDeadlineSeconds",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
    "allocateLoadBalancerNodePorts",
    "publishNotReadyAddresses",
    "timeoutSeconds",
    "minReplicas",
    "targetCPUUtilizationPercentage",
    "averageUtilization",
    "stabilizationWindowSeconds",
    "minDomains",
    "immutable",
    "attachRequired",
    "podInfoOnMount",
    "storageCapacity",
    "requiresRepublish",
    "seLinuxMount",
    "allowVolumeExpansion",
    "leaseDurationSeconds",
    "leaseTransitions",
    "port",
    "ready",
    "serving",
    "terminating",
];

/// Counts in `status` that are pointers in upstream's Go types.
const STATUS_POINTERS: &[&str] = &[
    "collisionCount",
    "ready",
    "started",
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
        // IntOrString and Quantity fields are pointers or strings in Go: a 0 is a value.
        Value::Number(_) | Value::Bool(_)
            if is_zero(v)
                && schema.is_none_or(|s| s.get("x-kubernetes-int-or-string").is_none()) =>
        {
            let pointers = if in_status { STATUS_POINTERS } else { POINTERS };
            !pointers.contains(&key)
        }
        _ => false,
    }
}

fn is_zero(v: &Value) -> bool {
    v == &Value::Bool(false) || v.as_f64() == Some(0.0)
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
