use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use super::*;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap()
}

fn pod(name: &str, ready: bool, deleting: bool) -> Pod {
    let mut p = json!({"metadata": {"name": name}, "status": {"phase": "Running",
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
    if deleting {
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    serde_json::from_value(p).unwrap()
}

fn spec(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudgetSpec {
    PodDisruptionBudgetSpec {
        min_available: min,
        max_unavailable: max,
        ..Default::default()
    }
}

fn int(n: i32) -> Option<IntOrString> {
    Some(IntOrString::Int(n))
}

fn pct(p: &str) -> Option<IntOrString> {
    Some(IntOrString::String(p.into()))
}

#[test]
fn a_budget_expects_and_needs_pods_as_upstream_counts_them() {
    // (name, spec, pods found, controllers' scale, needs the scale, expected, desired)
    let cases = [
        (
            "minAvailable int counts pods",
            spec(int(2), None),
            3,
            5,
            false,
            3,
            2,
        ),
        (
            "minAvailable percent rounds up against the scale",
            spec(pct("25%"), None),
            3,
            10,
            true,
            10,
            3,
        ),
        (
            "maxUnavailable int against the scale",
            spec(None, int(1)),
            3,
            3,
            true,
            3,
            2,
        ),
        (
            "maxUnavailable percent rounds the unavailable up",
            spec(None, pct("25%")),
            10,
            10,
            true,
            10,
            7,
        ),
        (
            "maxUnavailable above the scale needs nobody",
            spec(None, int(5)),
            2,
            2,
            true,
            2,
            0,
        ),
        (
            "maxUnavailable 0 needs everyone",
            spec(None, int(0)),
            4,
            4,
            true,
            4,
            4,
        ),
        (
            "neither field expects nothing",
            spec(None, None),
            4,
            4,
            false,
            0,
            0,
        ),
    ];
    for (name, spec, pods, scale, needs, expected, desired) in cases {
        assert_eq!(needs_scale(&spec), needs, "{name}: needs the scale");
        assert_eq!(
            expected_and_desired(&spec, pods, scale),
            (expected, desired),
            "{name}"
        );
    }
}

#[test]
fn healthy_pods_are_ready_and_neither_deleted_nor_being_evicted() {
    let pods = [
        pod("ready", true, false),
        pod("unready", false, false),
        pod("deleting", true, true),
        pod("evicting", true, false),
        pod("eviction-expired", true, false),
    ];
    let refs: Vec<&Pod> = pods.iter().collect();
    let now = at(1_000);
    let disrupted = BTreeMap::from([
        ("evicting".to_string(), Time(at(990))),
        ("eviction-expired".to_string(), Time(at(800))),
    ]);
    assert_eq!(
        count_healthy(&refs, &disrupted, now),
        2,
        "ready and eviction-expired"
    );
}

#[test]
fn pending_evictions_drop_gone_deleted_and_expired_pods_and_say_when_to_look_again() {
    let pods = [
        pod("evicting", true, false),
        pod("deleted", true, true),
        pod("expired", true, false),
        pod("later", true, false),
    ];
    let refs: Vec<&Pod> = pods.iter().collect();
    let recorded = BTreeMap::from([
        ("evicting".to_string(), Time(at(950))),
        ("later".to_string(), Time(at(990))),
        ("deleted".to_string(), Time(at(990))),
        ("expired".to_string(), Time(at(800))),
        ("gone".to_string(), Time(at(990))),
    ]);
    let (kept, recheck) = pending_disruptions(Some(&recorded), &refs, at(1_000));
    assert_eq!(
        kept.keys().collect::<Vec<_>>(),
        ["evicting", "later"],
        "only pods still there, not deleted, within the timeout"
    );
    assert_eq!(
        recheck,
        Some(at(950 + 120)),
        "the first kept entry to expire"
    );
}

#[test]
fn disruptions_allowed_are_the_healthy_pods_above_the_desired_count() {
    let figures = |healthy, desired, expected| Figures {
        current_healthy: healthy,
        desired_healthy: desired,
        expected_pods: expected,
        disrupted_pods: BTreeMap::new(),
    };
    // (name, figures, allowed, condition status, reason)
    let cases = [
        (
            "one spare pod",
            figures(3, 2, 3),
            1,
            "True",
            SUFFICIENT_PODS,
        ),
        (
            "exactly enough",
            figures(2, 2, 3),
            0,
            "False",
            INSUFFICIENT_PODS,
        ),
        (
            "fewer than needed",
            figures(1, 2, 3),
            0,
            "False",
            INSUFFICIENT_PODS,
        ),
        (
            "no pods expected",
            figures(2, 0, 0),
            0,
            "False",
            INSUFFICIENT_PODS,
        ),
    ];
    for (name, f, allowed, cond, reason) in cases {
        let s = status(None, Some(4), f, at(1_000));
        assert_eq!(s.disruptions_allowed, allowed, "{name}");
        assert_eq!(s.observed_generation, Some(4), "{name}");
        let c = &s.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            (DISRUPTION_ALLOWED, cond, reason),
            "{name}"
        );
        assert_eq!(c.observed_generation, Some(4), "{name}");
    }
}

#[test]
fn the_condition_keeps_its_transition_time_until_it_flips() {
    let f = Figures {
        current_healthy: 3,
        desired_healthy: 2,
        expected_pods: 3,
        disrupted_pods: BTreeMap::new(),
    };
    let first = status(None, Some(1), f.clone(), at(1_000));
    let again = status(Some(&first), Some(1), f.clone(), at(2_000));
    let time = |s: &PodDisruptionBudgetStatus| {
        s.conditions.as_ref().unwrap()[0]
            .last_transition_time
            .clone()
    };
    assert_eq!(time(&again), Time(at(1_000)), "same status keeps its time");
    let failed = fail_safe(
        Some(&again),
        "found no controllers for pod \"p\"",
        at(3_000),
    );
    assert_eq!(failed.disruptions_allowed, 0);
    let c = &failed.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", SYNC_FAILED)
    );
    assert_eq!(c.message, "found no controllers for pod \"p\"");
    assert_eq!(time(&failed), Time(at(3_000)), "a flip moves the time");
    assert_eq!(failed.current_healthy, 3, "the other figures stay");
}
