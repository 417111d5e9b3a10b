use serde_json::json;

use super::*;
use crate::registry::Registry;

fn resource(group: &str) -> Resource {
    builtin(group, "v1", "events")
}

fn builtin(group: &str, version: &str, plural: &str) -> Resource {
    Registry::with_builtins()
        .unwrap()
        .snapshot()
        .get(group, version, plural)
        .unwrap()
        .as_ref()
        .clone()
}

#[test]
fn events_k8s_io_events_are_stored_as_core_events() {
    let events = resource("events.k8s.io");
    let core = resource("");
    assert_eq!(events.key_prefix(), core.key_prefix());
    assert_eq!(events.key_prefix(), "/registry/core/events/");
}

#[test]
fn an_events_k8s_io_event_round_trips_through_its_core_form() {
    let events = resource("events.k8s.io");
    let served = json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "e", "namespace": "default"},
        "eventTime": "2025-01-01T00:00:00.000000Z",
        "series": {"count": 2, "lastObservedTime": "2025-01-01T00:01:00.000000Z"},
        "reportingController": "ctl",
        "reportingInstance": "ctl-1",
        "action": "Reconcile",
        "reason": "Synced",
        "type": "Normal",
        "regarding": {"kind": "Pod", "name": "p"},
        "related": {"kind": "Node", "name": "n"},
        "note": "hello",
        "deprecatedSource": {"component": "old", "host": "h"},
        "deprecatedFirstTimestamp": "2025-01-01T00:00:00Z",
        "deprecatedLastTimestamp": "2025-01-01T00:01:00Z",
        "deprecatedCount": 3
    });
    let stored = to_storage(&events, &served).expect("a view converts");
    assert_eq!(
        stored,
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "eventTime": "2025-01-01T00:00:00.000000Z",
            "series": {"count": 2, "lastObservedTime": "2025-01-01T00:01:00.000000Z"},
            "reportingComponent": "ctl",
            "reportingInstance": "ctl-1",
            "action": "Reconcile",
            "reason": "Synced",
            "type": "Normal",
            "involvedObject": {"kind": "Pod", "name": "p"},
            "related": {"kind": "Node", "name": "n"},
            "message": "hello",
            "source": {"component": "old", "host": "h"},
            "firstTimestamp": "2025-01-01T00:00:00Z",
            "lastTimestamp": "2025-01-01T00:01:00Z",
            "count": 3
        })
    );
    assert_eq!(from_storage(&events, &stored), Some(served.clone()));
    assert_eq!(
        from_storage(&events, &served),
        None,
        "an object already in the served form is not converted again"
    );
}

#[test]
fn resources_stored_in_their_own_group_are_not_converted() {
    let core = resource("");
    let obj = json!({"apiVersion": "v1", "kind": "Event", "message": "m"});
    assert_eq!(to_storage(&core, &obj), None);
    assert_eq!(from_storage(&core, &obj), None);
}

#[test]
fn events_k8s_io_field_selectors_select_on_core_fields() {
    let events = resource("events.k8s.io");
    let stored = json!({
        "involvedObject": {"kind": "Pod", "name": "p"},
        "reportingComponent": "ctl",
        "reason": "Synced"
    });
    for (name, selector, want) in [
        ("regarding", "regarding.kind=Pod,regarding.name=p", true),
        ("regarding_other", "regarding.name=q", false),
        ("reporting_controller", "reportingController=ctl", true),
        ("reason", "reason=Synced", true),
    ] {
        let parsed = FieldSelector::parse(selector, "events.k8s.io", "events").unwrap();
        let s = selector_for_storage(&events, parsed);
        assert_eq!(s.matches(&stored), want, "{name}");
    }
}

/// A v2 autoscaler with everything v1 cannot say, and its v1 form.
fn hpa_pair() -> (Value, Value) {
    let cpu = json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}});
    let memory = json!({"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}});
    let behavior = json!({"scaleDown": {"stabilizationWindowSeconds": 5, "selectPolicy": "Max", "policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}]}});
    let current = json!([
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 75, "averageValue": "150m"}}},
        {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "90Mi"}}}
    ]);
    let conditions = json!([{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale", "lastTransitionTime": "2025-01-01T00:00:00Z"}]);
    let target = json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"});
    let v2 = json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "default", "annotations": {"team": "a"}},
        "spec": {"scaleTargetRef": target, "minReplicas": 1, "maxReplicas": 5,
                 "metrics": [memory, cpu], "behavior": behavior},
        "status": {"currentReplicas": 2, "desiredReplicas": 3,
                   "currentMetrics": current, "conditions": conditions}
    });
    let v1 = json!({
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "default", "annotations": {
            "team": "a",
            "autoscaling.alpha.kubernetes.io/metrics": json!([memory]).to_string(),
            "autoscaling.alpha.kubernetes.io/behavior": behavior.to_string(),
            "autoscaling.alpha.kubernetes.io/current-metrics": current.to_string(),
            "autoscaling.alpha.kubernetes.io/conditions": conditions.to_string()
        }},
        "spec": {"scaleTargetRef": target, "minReplicas": 1, "maxReplicas": 5,
                 "targetCPUUtilizationPercentage": 60},
        "status": {"currentReplicas": 2, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 75}
    });
    (v2, v1)
}

#[test]
fn an_autoscaling_v1_autoscaler_is_served_from_the_v2_store_and_loses_nothing_on_the_way_back() {
    let v1 = builtin("autoscaling", "v1", "horizontalpodautoscalers");
    let v2 = builtin("autoscaling", "v2", "horizontalpodautoscalers");
    assert_eq!(v1.key_prefix(), v2.key_prefix());
    let (stored, served) = hpa_pair();
    assert_eq!(from_storage(&v1, &stored), Some(served.clone()));
    let mut back = to_storage(&v1, &served).expect("v1 converts");
    // The CPU target comes back first; the order of the other metrics is kept.
    let mut want = stored.clone();
    want["spec"]["metrics"].as_array_mut().unwrap().reverse();
    assert_eq!(back, want);
    back["spec"]["metrics"].as_array_mut().unwrap().reverse();
    assert_eq!(from_storage(&v1, &back), Some(served));
    assert_eq!(from_storage(&v2, &stored), None, "v2 is the stored form");
    assert_eq!(to_storage(&v2, &stored), None);
}

#[test]
fn a_v1_autoscaler_without_a_target_is_stored_with_the_default_cpu_target() {
    let v1 = builtin("autoscaling", "v1", "horizontalpodautoscalers");
    for (name, spec, want_metrics) in [
        (
            "no_target",
            json!({"maxReplicas": 3}),
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        ),
        (
            "a_target",
            json!({"maxReplicas": 3, "targetCPUUtilizationPercentage": 50}),
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]),
        ),
    ] {
        let served = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
                            "metadata": {"name": "h"}, "spec": spec,
                            "status": {"currentReplicas": 0, "desiredReplicas": 0}});
        let stored = to_storage(&v1, &served).unwrap();
        assert_eq!(stored["apiVersion"], "autoscaling/v2", "{name}");
        assert_eq!(stored["spec"]["metrics"], want_metrics, "{name}");
        assert!(stored["metadata"].get("annotations").is_none(), "{name}");
        assert_eq!(
            stored["status"],
            json!({"desiredReplicas": 0}),
            "{name}: v2 omits a zero currentReplicas"
        );
        let again = from_storage(&v1, &stored).unwrap();
        let percent = served["spec"]["targetCPUUtilizationPercentage"]
            .as_i64()
            .unwrap_or(80);
        assert_eq!(
            again["spec"]["targetCPUUtilizationPercentage"], percent,
            "{name}"
        );
        assert!(again["metadata"].get("annotations").is_none(), "{name}");
        assert_eq!(again["status"], served["status"], "{name}");
    }
}
