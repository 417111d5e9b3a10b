//! Pods: the initial status (phase and QoS class), and graceful deletion while a node
//! runs the pod.

use serde_json::{json, Value};

use super::KindHooks;

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
fn qos_class(pod: &Value) -> &'static str {
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
