//! The autoscaler's decision, a pure function of its spec and the target's replica
//! count: upstream's reconcileAutoscaler keeps the count within [minReplicas,
//! maxReplicas] before it looks at any metric, and leaves a target scaled to zero alone.

use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// What to do about the target this sync.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// The target is at 0 replicas and minReplicas is not: autoscaling is off.
    Disabled,
    /// Out of range: set the target's replicas to `desired`.
    Rescale { desired: i32, reason: &'static str },
    /// Within range: only metrics could move it.
    WithinRange,
}

/// Upstream's order: a target at zero first, then above max, then below min.
/// For example min 2, max 5: 1 replica rescales to 2, 7 to 5, 3 needs metrics.
pub fn decide(spec: &HorizontalPodAutoscalerSpec, current: i32) -> Decision {
    let min = spec.min_replicas.unwrap_or(1);
    if current == 0 && min != 0 {
        Decision::Disabled
    } else if current > spec.max_replicas {
        Decision::Rescale {
            desired: spec.max_replicas,
            reason: "Current number of replicas above Spec.MaxReplicas",
        }
    } else if current < min {
        Decision::Rescale {
            desired: min,
            reason: "Current number of replicas below Spec.MinReplicas",
        }
    } else {
        Decision::WithinRange
    }
}

/// How long to wait before the metrics may move the target again: upstream syncs an
/// autoscaler at most once per period (its queue's fixed 15 s interval), but kybern's
/// loop is woken at once by the echo of its own status write, which would rescale a
/// second time on the same samples (1 -> 4 -> 8 in a second instead of 15 s apart).
/// `None` when the last rescale is a period or more ago.
pub fn rescaled_within_period(last_scale_time: Option<&Time>, now: Timestamp) -> Option<Duration> {
    let since = now.duration_since(last_scale_time?.0);
    let period = super::SYNC_PERIOD.as_millis() as i64;
    let elapsed = since.as_millis() as i64;
    (elapsed >= 0 && elapsed < period).then(|| Duration::from_millis((period - elapsed) as u64))
}

/// The reason and message upstream gives (condition ScalingActive False, and a Warning
/// event) when the first metric of the spec cannot be read, for the metric types that
/// need the custom or external metrics APIs, which kybern does not serve (it serves
/// metrics.k8s.io only); it says so rather than inventing a value.
pub fn metric_failure(spec: &HorizontalPodAutoscalerSpec) -> (&'static str, String) {
    const NOT_SERVED: &str = "kybern serves no custom.metrics.k8s.io or external.metrics.k8s.io API, only metrics.k8s.io resource metrics";
    let first = spec.metrics.as_deref().and_then(<[_]>::first);
    let (reason, what) = match first {
        None => ("FailedGetResourceMetric", "resource cpu".to_string()),
        Some(m) => match m.type_.as_str() {
            "Resource" => (
                "FailedGetResourceMetric",
                format!(
                    "resource {}",
                    m.resource.as_ref().map(|r| r.name.as_str()).unwrap_or("")
                ),
            ),
            "ContainerResource" => (
                "FailedGetContainerResourceMetric",
                format!(
                    "resource {}",
                    m.container_resource
                        .as_ref()
                        .map(|r| r.name.as_str())
                        .unwrap_or("")
                ),
            ),
            "Pods" => (
                "FailedGetPodsMetric",
                format!(
                    "pods metric {}",
                    m.pods
                        .as_ref()
                        .map(|p| p.metric.name.as_str())
                        .unwrap_or("")
                ),
            ),
            "Object" => (
                "FailedGetObjectMetric",
                format!(
                    "object metric {}",
                    m.object
                        .as_ref()
                        .map(|o| o.metric.name.as_str())
                        .unwrap_or("")
                ),
            ),
            "External" => (
                "FailedGetExternalMetric",
                format!(
                    "external metric {}",
                    m.external
                        .as_ref()
                        .map(|e| e.metric.name.as_str())
                        .unwrap_or("")
                ),
            ),
            other => ("InvalidMetricSourceType", format!("metric type {other}")),
        },
    };
    (
        reason,
        format!("unable to get metrics for {what}: {NOT_SERVED}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(min: Option<i32>, max: i32) -> HorizontalPodAutoscalerSpec {
        serde_json::from_value(json!({
            "minReplicas": min, "maxReplicas": max,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        }))
        .unwrap()
    }

    #[test]
    fn the_replica_count_is_kept_within_min_and_max_before_any_metric() {
        let below = "Current number of replicas below Spec.MinReplicas";
        let above = "Current number of replicas above Spec.MaxReplicas";
        let cases = [
            (
                "below min",
                spec(Some(2), 5),
                1,
                Decision::Rescale {
                    desired: 2,
                    reason: below,
                },
            ),
            (
                "above max",
                spec(Some(2), 5),
                7,
                Decision::Rescale {
                    desired: 5,
                    reason: above,
                },
            ),
            ("at min", spec(Some(2), 5), 2, Decision::WithinRange),
            ("at max", spec(Some(2), 5), 5, Decision::WithinRange),
            ("min defaults to 1", spec(None, 5), 0, Decision::Disabled),
            ("target at zero", spec(Some(2), 5), 0, Decision::Disabled),
            (
                "min 0 and target at zero",
                spec(Some(0), 5),
                0,
                Decision::WithinRange,
            ),
        ];
        for (name, spec, current, want) in cases {
            assert_eq!(decide(&spec, current), want, "{name}");
        }
    }

    #[test]
    fn the_metrics_move_the_target_at_most_once_per_sync_period() {
        let t = |s| Time(Timestamp::from_second(s).unwrap());
        let now = Timestamp::from_second(1000).unwrap();
        let cases = [
            ("never rescaled", None, None),
            (
                "rescaled 5 s ago",
                Some(t(995)),
                Some(Duration::from_secs(10)),
            ),
            ("rescaled a period ago", Some(t(985)), None),
            ("rescaled long ago", Some(t(100)), None),
        ];
        for (name, last, want) in cases {
            assert_eq!(rescaled_within_period(last.as_ref(), now), want, "{name}");
        }
    }

    #[test]
    fn a_missing_metric_is_named_by_its_type_as_upstream_does() {
        let with = |metric: serde_json::Value| {
            let mut s = spec(None, 3);
            s.metrics = Some(vec![serde_json::from_value(metric).unwrap()]);
            s
        };
        let cases = [
            (
                "no metrics: cpu",
                spec(None, 3),
                "FailedGetResourceMetric",
                "resource cpu",
            ),
            (
                "memory",
                with(
                    json!({"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 50}}}),
                ),
                "FailedGetResourceMetric",
                "resource memory",
            ),
            (
                "pods",
                with(
                    json!({"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1"}}}),
                ),
                "FailedGetPodsMetric",
                "pods metric qps",
            ),
            (
                "external",
                with(
                    json!({"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "1"}}}),
                ),
                "FailedGetExternalMetric",
                "external metric queue",
            ),
        ];
        for (name, spec, reason, what) in cases {
            let (got_reason, message) = metric_failure(&spec);
            assert_eq!(got_reason, reason, "{name}");
            assert!(
                message.starts_with(&format!("unable to get metrics for {what}: ")),
                "{name}: {message}"
            );
        }
    }
}
