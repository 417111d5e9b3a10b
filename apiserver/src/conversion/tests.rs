use serde_json::json;

use super::*;
use crate::registry::Registry;

fn resource(group: &str) -> Resource {
    Registry::with_builtins()
        .unwrap()
        .snapshot()
        .get(group, "v1", "events")
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
