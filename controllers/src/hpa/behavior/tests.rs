//! Stabilization and scaling policies, row by row.

use super::*;

fn now() -> Timestamp {
    Timestamp::from_second(1_700_000_000).unwrap()
}

fn ago(seconds: i64) -> Timestamp {
    now() - SignedDuration::from_secs(seconds)
}

fn rules(json: serde_json::Value) -> HorizontalPodAutoscalerBehavior {
    serde_json::from_value(json).unwrap()
}

#[test]
fn without_behavior_scale_ups_are_capped_and_scale_downs_stabilized() {
    // (name, recommendations, current, desired, min, max, want replicas, AbleToScale, ScalingLimited)
    let rows = [
        (
            "scale up at most to max(2 x current, 4)",
            vec![],
            1,
            10,
            1,
            20,
            4,
            "ReadyForNewScale",
            (true, "ScaleUpLimit"),
        ),
        (
            "never above maxReplicas",
            vec![],
            5,
            12,
            1,
            8,
            8,
            "ReadyForNewScale",
            (true, "TooManyReplicas"),
        ),
        (
            "a higher recommendation of the last 5 minutes holds a scale-down",
            vec![(ago(60), 6)],
            6,
            2,
            1,
            10,
            6,
            "ScaleDownStabilized",
            (false, "DesiredWithinRange"),
        ),
        (
            "recommendations older than 5 minutes are forgotten",
            vec![(ago(400), 6)],
            6,
            2,
            1,
            10,
            2,
            "ReadyForNewScale",
            (false, "DesiredWithinRange"),
        ),
        (
            "within range",
            vec![],
            3,
            5,
            1,
            10,
            5,
            "ReadyForNewScale",
            (false, "DesiredWithinRange"),
        ),
    ];
    for (name, recs, current, desired, min, max, want, able, (limited, reason)) in rows {
        let mut h = History {
            recommendations: recs,
            ..Default::default()
        };
        let n = normalize(&mut h, now(), current, desired, min, max);
        assert_eq!(
            (n.replicas, n.able_reason, n.limited, n.limited_reason),
            (want, able, limited, reason),
            "{name}"
        );
        assert_eq!(
            h.recommendations.last(),
            Some(&(now(), desired)),
            "{name}: recorded"
        );
    }
}

#[test]
fn behavior_policies_and_windows_decide_how_far_and_how_soon() {
    struct Row {
        name: &'static str,
        behavior: serde_json::Value,
        history: History,
        current: i32,
        desired: i32,
        want: (i32, &'static str),
    }
    let rows = [
        Row {
            name: "defaults scale up by 4 pods or 100 %, whichever is more",
            behavior: serde_json::json!({}),
            history: History::default(),
            current: 3,
            desired: 20,
            want: (7, "ScaleUpLimit"),
        },
        Row {
            name: "a Pods policy caps a scale-up",
            behavior: serde_json::json!({"scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]}}),
            history: History::default(),
            current: 3,
            desired: 10,
            want: (5, "ScaleUpLimit"),
        },
        Row {
            name: "replicas added earlier in the period count against it",
            behavior: serde_json::json!({"scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]}}),
            history: History {
                scale_ups: vec![(ago(30), 2)],
                ..Default::default()
            },
            current: 5,
            desired: 10,
            want: (5, "ScaleUpLimit"),
        },
        Row {
            name: "selectPolicy Min takes the smallest change",
            behavior: serde_json::json!({"scaleUp": {"selectPolicy": "Min", "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]}}),
            history: History::default(),
            current: 2,
            desired: 10,
            want: (4, "ScaleUpLimit"),
        },
        Row {
            name: "selectPolicy Disabled never scales down",
            behavior: serde_json::json!({"scaleDown": {"selectPolicy": "Disabled", "stabilizationWindowSeconds": 0}}),
            history: History::default(),
            current: 5,
            desired: 1,
            want: (5, "ScaleDownLimit"),
        },
        Row {
            name: "a zero scale-down window scales down at once",
            behavior: serde_json::json!({"scaleDown": {"stabilizationWindowSeconds": 0}}),
            history: History::default(),
            current: 5,
            desired: 1,
            want: (1, "DesiredWithinRange"),
        },
        Row {
            name: "the default 300 s scale-down window holds the highest recent recommendation",
            behavior: serde_json::json!({}),
            history: History {
                recommendations: vec![(ago(100), 5)],
                ..Default::default()
            },
            current: 5,
            desired: 1,
            want: (5, "DesiredWithinRange"),
        },
        Row {
            name: "a scale-up window applies the lowest recent recommendation",
            behavior: serde_json::json!({"scaleUp": {"stabilizationWindowSeconds": 60}}),
            history: History {
                recommendations: vec![(ago(30), 3)],
                ..Default::default()
            },
            current: 3,
            desired: 8,
            want: (3, "DesiredWithinRange"),
        },
        Row {
            name: "a Percent policy scales down by at most its share",
            behavior: serde_json::json!({"scaleDown": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]}}),
            history: History::default(),
            current: 10,
            desired: 1,
            want: (5, "ScaleDownLimit"),
        },
    ];
    for mut r in rows {
        let (up, down) = with_defaults(&rules(r.behavior));
        let n = normalize_with_behavior(
            &mut r.history,
            now(),
            &up,
            &down,
            r.current,
            r.desired,
            1,
            100,
        );
        assert_eq!((n.replicas, n.limited_reason), r.want, "{}", r.name);
    }
}

#[test]
fn rescales_are_remembered_for_the_longest_policy_period() {
    let mut h = History {
        scale_ups: vec![(ago(100), 1), (ago(10), 2)],
        ..Default::default()
    };
    record_rescale(&mut h, now(), 5, 3, 60);
    assert_eq!(h.scale_ups, vec![(ago(10), 2)]);
    assert_eq!(h.scale_downs, vec![(now(), 2)]);
}
