//! autoscaling/v1 HorizontalPodAutoscaler as a view of the autoscaling/v2 store, with
//! upstream's mapping (`pkg/apis/autoscaling/v1/conversion.go`): v1 has one metric, a
//! CPU utilization target, and keeps what it cannot say (other metrics, `behavior`,
//! current metrics, conditions) as JSON in annotations, so a v2 object read and written
//! back through v1 loses nothing.

use serde_json::{json, Map, Value};

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";

/// The CPU utilization a v1 autoscaler without a target aims at (upstream's
/// `DefaultCPUUtilization`).
pub(crate) const DEFAULT_CPU_UTILIZATION: i64 = 80;

/// A v2 metric targeting average CPU utilization, `percent`.
pub(crate) fn cpu_utilization_metric(percent: Value) -> Value {
    json!({
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}}
    })
}

/// The average CPU utilization a v2 `Resource` metric (spec or status) targets or
/// reports under `field` (`target` or `current`), if it is one.
fn cpu_utilization<'a>(metric: &'a Value, field: &str) -> Option<&'a Value> {
    if metric.get("type").and_then(Value::as_str) != Some("Resource") {
        return None;
    }
    let resource = metric.get("resource")?;
    if resource.get("name").and_then(Value::as_str) != Some("cpu") {
        return None;
    }
    resource.get(field)?.get("averageUtilization")
}

fn annotations(obj: &mut Map<String, Value>) -> Option<&mut Map<String, Value>> {
    obj.get_mut("metadata")?
        .get_mut("annotations")?
        .as_object_mut()
}

/// Takes the annotation `key` out of the object, parsed as JSON.
fn take_annotation(obj: &mut Map<String, Value>, key: &str) -> Option<Value> {
    let map = annotations(obj)?;
    let text = map.remove(key)?;
    let empty = map.is_empty();
    if empty {
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("annotations");
        }
    }
    serde_json::from_str(text.as_str()?).ok()
}

fn put_annotation(obj: &mut Map<String, Value>, key: &str, value: &Value) {
    let Some(meta) = obj
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
    else {
        return;
    };
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if let Some(map) = annotations.as_object_mut() {
        map.insert(key.to_string(), Value::String(value.to_string()));
    }
}

fn section<'a>(obj: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let entry = obj.entry(key).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut().expect("an object")
}

fn non_empty_array(v: Option<Value>) -> Option<Vec<Value>> {
    match v {
        Some(Value::Array(a)) if !a.is_empty() => Some(a),
        _ => None,
    }
}

/// A v2 autoscaler as autoscaling/v1 serves it.
pub(super) fn to_v1(obj: &mut Map<String, Value>) {
    let spec = section(obj, "spec");
    let metrics = non_empty_array(spec.remove("metrics")).unwrap_or_default();
    let behavior = spec.remove("behavior").filter(|b| !b.is_null());
    let cpu = metrics
        .iter()
        .position(|m| cpu_utilization(m, "target").is_some());
    if let Some(i) = cpu {
        let percent = cpu_utilization(&metrics[i], "target").cloned();
        spec.insert("targetCPUUtilizationPercentage".into(), percent.into());
    }
    let others: Vec<Value> = metrics
        .into_iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != cpu)
        .map(|(_, m)| m)
        .collect();

    let status = obj.get_mut("status").and_then(Value::as_object_mut);
    let (current, conditions) = match status {
        Some(status) => {
            // Not omitted when zero in v1, as they are in v2.
            for count in ["currentReplicas", "desiredReplicas"] {
                status.entry(count).or_insert(json!(0));
            }
            let current = non_empty_array(status.remove("currentMetrics"));
            let conditions = non_empty_array(status.remove("conditions"));
            if let Some(percent) = current
                .iter()
                .flatten()
                .find_map(|m| cpu_utilization(m, "current"))
            {
                status.insert("currentCPUUtilizationPercentage".into(), percent.clone());
            }
            (current, conditions)
        }
        None => (None, None),
    };

    if !others.is_empty() {
        put_annotation(obj, METRICS, &Value::Array(others));
    }
    if let Some(current) = current {
        put_annotation(obj, CURRENT_METRICS, &Value::Array(current));
    }
    if let Some(conditions) = conditions {
        put_annotation(obj, CONDITIONS, &Value::Array(conditions));
    }
    if let Some(behavior) = behavior {
        put_annotation(obj, BEHAVIOR, &behavior);
    }
}

/// A v1 autoscaler in the v2 form it is stored in.
pub(super) fn to_v2(obj: &mut Map<String, Value>) {
    let others = non_empty_array(take_annotation(obj, METRICS));
    let current = non_empty_array(take_annotation(obj, CURRENT_METRICS));
    let conditions = non_empty_array(take_annotation(obj, CONDITIONS));
    let behavior = take_annotation(obj, BEHAVIOR).filter(Value::is_object);

    let spec = section(obj, "spec");
    let mut metrics = Vec::new();
    if let Some(percent) = spec
        .remove("targetCPUUtilizationPercentage")
        .filter(|p| !p.is_null())
    {
        metrics.push(cpu_utilization_metric(percent));
    }
    metrics.extend(others.into_iter().flatten());
    if metrics.is_empty() {
        // v1 once left the default to the controller; stored objects carry it.
        metrics.push(cpu_utilization_metric(json!(DEFAULT_CPU_UTILIZATION)));
    }
    spec.insert("metrics".into(), Value::Array(metrics));
    if let Some(behavior) = behavior {
        spec.insert("behavior".into(), behavior);
    }

    let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) else {
        return;
    };
    if status.get("currentReplicas").and_then(Value::as_i64) == Some(0) {
        status.remove("currentReplicas");
    }
    let cpu = status
        .remove("currentCPUUtilizationPercentage")
        .filter(|p| !p.is_null());
    // The annotation has the whole story; the v1 field is only its CPU part.
    let current = current.or_else(|| {
        cpu.map(|percent| {
            vec![json!({
                "type": "Resource",
                "resource": {"name": "cpu", "current": {"averageUtilization": percent}}
            })]
        })
    });
    if let Some(current) = current {
        status.insert("currentMetrics".into(), Value::Array(current));
    }
    if let Some(conditions) = conditions {
        status.insert("conditions".into(), Value::Array(conditions));
    }
}
