//! Pods: the initial status (phase and QoS class), and graceful deletion while a node
//! runs the pod.

use serde_json::{json, Value};

use super::KindHooks;
use crate::status::Cause;

pub(super) struct Pods;

impl KindHooks for Pods {
    fn prepare_create(&self, obj: &mut Value, _uid: &str) {
        obj["status"] = json!({"phase": "Pending", "qosClass": qos_class(obj)});
    }

    fn graceful_delete(&self, pod: &Value, requested: Option<i64>) -> Option<i64> {
        let on_node = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty())
            && !matches!(
                pod.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            );
        let grace = requested.unwrap_or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
        });
        (on_node && grace > 0).then_some(grace)
    }
}

/// Upstream's QoS class from the containers' requests and limits.
pub(crate) fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| pod.pointer(&format!("/spec/{f}")).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        for res in ["cpu", "memory"] {
            let req = c.pointer(&format!("/resources/requests/{res}"));
            let lim = c.pointer(&format!("/resources/limits/{res}"));
            any |= req.is_some() || lim.is_some();
            let effective_req = req.or(lim);
            if lim.is_none() || effective_req != lim {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_class_follows_requests_and_limits() {
        let pod = |res: Value| json!({"spec": {"containers": [{"name": "c", "resources": res}]}});
        let cases = [
            ("no_resources_is_best_effort", pod(json!({})), "BestEffort"),
            (
                "equal_limits_are_guaranteed",
                pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}})),
                "Guaranteed",
            ),
            (
                "requests_only_is_burstable",
                pod(json!({"requests": {"cpu": "100m"}})),
                "Burstable",
            ),
        ];
        for (name, p, want) in cases {
            assert_eq!(qos_class(&p), want, "{name}");
        }
    }
}

/// A write of `pods/ephemeralcontainers`: the stored pod with the new object's
/// `spec.ephemeralContainers` (and metadata, for its resourceVersion), as upstream's
/// ephemeral containers strategy. Existing ephemeral containers stay as they are; new
/// ones need a name unique among all the pod's containers and an image.
pub(in crate::api) fn with_ephemeral_containers(
    old: &Value,
    new: &Value,
) -> Result<Value, Vec<Cause>> {
    let list = |v: &Value, f: &str| {
        v.pointer(&format!("/spec/{f}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (before, after) = (
        list(old, "ephemeralContainers"),
        list(new, "ephemeralContainers"),
    );
    let name = |c: &Value| {
        c.get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut causes = Vec::new();
    for (i, c) in before.iter().enumerate() {
        if after.iter().find(|n| name(n) == name(c)) != Some(c) {
            causes.push(Cause::forbidden(
                format!("spec.ephemeralContainers[{i}]"),
                "existing ephemeral containers may not be changed",
            ));
        }
    }
    let mut names: Vec<String> = ["containers", "initContainers"]
        .iter()
        .flat_map(|f| list(old, f))
        .map(|c| name(&c))
        .collect();
    for (i, c) in after.iter().enumerate() {
        let n = name(c);
        if before.iter().any(|b| name(b) == n) {
            continue;
        }
        let field = format!("spec.ephemeralContainers[{i}]");
        if n.is_empty() {
            causes.push(Cause::required(format!("{field}.name"), ""));
        } else if names.contains(&n) {
            causes.push(Cause {
                reason: "FieldValueDuplicate",
                field: format!("{field}.name"),
                message: format!("Duplicate value: {}", json!(n)),
            });
        }
        if c.get("image")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            causes.push(Cause::required(format!("{field}.image"), ""));
        }
        for forbidden in [
            "ports",
            "resources",
            "lifecycle",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
        ] {
            // `resources` is a struct, not a pointer, upstream: the `{}` kubectl debug
            // sends is its zero value, which is allowed.
            let unset = |v: &Value| {
                v.is_null()
                    || (forbidden == "resources" && v.as_object().is_some_and(|o| o.is_empty()))
            };
            if c.get(forbidden).is_some_and(|v| !unset(v)) {
                causes.push(Cause::forbidden(
                    format!("{field}.{forbidden}"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        names.push(n);
    }
    if !causes.is_empty() {
        return Err(causes);
    }
    let mut merged = old.clone();
    if let Some(meta) = new.get("metadata") {
        merged["metadata"]["resourceVersion"] =
            meta.get("resourceVersion").cloned().unwrap_or(Value::Null);
        if merged["metadata"]["resourceVersion"].is_null() {
            if let Some(m) = merged["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
        }
    }
    merged["spec"]["ephemeralContainers"] = json!(after);
    Ok(merged)
}

#[cfg(test)]
mod ephemeral_tests {
    use super::*;

    #[test]
    fn ephemeral_containers_are_only_added() {
        let pod = json!({"metadata": {"name": "p", "labels": {"a": "1"}}, "spec": {
            "containers": [{"name": "app", "image": "x"}],
            "ephemeralContainers": [{"name": "dbg1", "image": "busybox"}]
        }});
        let with = |eph: Value| {
            let mut p = pod.clone();
            p["spec"]["ephemeralContainers"] = eph;
            // Other changes in the body are not taken.
            p["metadata"]["labels"] = json!({"b": "2"});
            p
        };
        let added = with(
            json!([{"name": "dbg1", "image": "busybox"}, {"name": "dbg2", "image": "busybox"}]),
        );
        let merged = with_ephemeral_containers(&pod, &added).unwrap();
        assert_eq!(merged["spec"]["ephemeralContainers"][1]["name"], "dbg2");
        // What kubectl debug sends: empty resources are no resources.
        let as_kubectl_debug_sends = with(
            json!([{"name": "dbg1", "image": "busybox"}, {"name": "dbg2", "image": "busybox", "resources": {}}]),
        );
        with_ephemeral_containers(&pod, &as_kubectl_debug_sends)
            .expect("kubectl debug's empty resources are allowed");
        assert_eq!(merged["metadata"]["labels"], json!({"a": "1"}));
        let cases = [
            ("removing one", json!([]), "spec.ephemeralContainers[0]"),
            (
                "changing one",
                json!([{"name": "dbg1", "image": "other"}]),
                "spec.ephemeralContainers[0]",
            ),
            (
                "a name a container has",
                json!([{"name": "dbg1", "image": "busybox"}, {"name": "app", "image": "busybox"}]),
                "spec.ephemeralContainers[1].name",
            ),
            (
                "no image",
                json!([{"name": "dbg1", "image": "busybox"}, {"name": "d"}]),
                "spec.ephemeralContainers[1].image",
            ),
            (
                "ports",
                json!([{"name": "dbg1", "image": "busybox"}, {"name": "d", "image": "b", "ports": [{"containerPort": 80}]}]),
                "spec.ephemeralContainers[1].ports",
            ),
            (
                "resource limits",
                json!([{"name": "dbg1", "image": "busybox"}, {"name": "d", "image": "b", "resources": {"limits": {"cpu": "1"}}}]),
                "spec.ephemeralContainers[1].resources",
            ),
        ];
        for (name, eph, field) in cases {
            let causes = with_ephemeral_containers(&pod, &with(eph)).unwrap_err();
            assert!(
                causes.iter().any(|c| c.field == field),
                "{name}: {causes:?}"
            );
        }
    }
}
