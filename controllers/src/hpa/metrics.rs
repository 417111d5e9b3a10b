//! The metric-driven proposal of one sync (upstream's computeReplicasForMetrics):
//! every metric of the spec in turn (CPU at 80 % when there is none), the highest
//! proposal wins. Resource and ContainerResource metrics come from metrics.k8s.io
//! PodMetrics and the pods' requests; Pods, Object and External metrics need custom
//! and external metrics APIs kybern does not serve, so they fail with upstream's
//! reason for each.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscalerSpec, MetricSpec, MetricStatus, MetricTarget,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::Api;
use serde_json::json;

use super::plan::metric_failure;
use super::replicas::{self, PodInfo, PodMetric, Target};
use crate::shared::quantity::parse_quantity;

/// What the metrics propose.
#[derive(Debug)]
pub(super) struct Computed {
    pub replicas: i32,
    /// e.g. "cpu resource utilization (percentage of request)".
    pub metric: String,
    pub statuses: Vec<MetricStatus>,
}

/// Why no proposal could be made: the failing metric's reason and error.
#[derive(Debug)]
pub(super) struct Failed {
    pub reason: &'static str,
    /// The first invalid metric's error (the condition's message is built from it).
    pub error: String,
    /// "invalid metrics (1 invalid out of 1), first error is: ...".
    pub summary: String,
}

fn pod_metrics_resource() -> ApiResource {
    ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    }
}

/// The spec's metrics, with upstream's default (CPU at 80 % of requests).
fn metric_specs(spec: &HorizontalPodAutoscalerSpec) -> Vec<MetricSpec> {
    match spec.metrics.as_deref() {
        Some(m) if !m.is_empty() => m.to_vec(),
        _ => vec![
            serde_json::from_value(json!({"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}))
            .expect("a valid default metric"),
        ],
    }
}

pub(super) async fn compute(
    client: &kube::Client,
    ns: &str,
    spec: &HorizontalPodAutoscalerSpec,
    selector: &str,
    current: i32,
    now: Timestamp,
) -> Result<Computed, Failed> {
    let specs = metric_specs(spec);
    let mut best: Option<(i32, String)> = None;
    let mut statuses = Vec::new();
    let mut invalid: Vec<(&'static str, String)> = Vec::new();
    for m in &specs {
        match resource_metric(client, ns, m, selector, current, now).await {
            Ok((replicas, name, status)) => {
                statuses.push(status);
                if best.as_ref().is_none_or(|(r, _)| replicas > *r) {
                    best = Some((replicas, name));
                }
            }
            Err(failure) => invalid.push(failure),
        }
    }
    // As upstream: all metrics invalid, or some invalid while the rest would scale
    // down, is a failure (scaling down on partial information is not safe).
    let proposal = best.as_ref().map(|(r, _)| *r).unwrap_or(0);
    if let Some((reason, error)) = invalid.first().cloned() {
        if best.is_none() || proposal < current {
            return Err(Failed {
                reason,
                summary: format!(
                    "invalid metrics ({} invalid out of {}), first error is: {error}",
                    invalid.len(),
                    specs.len()
                ),
                error,
            });
        }
    }
    let (replicas, metric) = best.expect("a valid metric when none failed");
    Ok(Computed {
        replicas,
        metric,
        statuses,
    })
}

/// One Resource or ContainerResource metric: (replicas, name for messages, status).
async fn resource_metric(
    client: &kube::Client,
    ns: &str,
    m: &MetricSpec,
    selector: &str,
    current: i32,
    now: Timestamp,
) -> Result<(i32, String, MetricStatus), (&'static str, String)> {
    let (resource, container, target, reason) =
        match (m.type_.as_str(), &m.resource, &m.container_resource) {
            ("Resource", Some(r), _) => {
                (r.name.clone(), None, &r.target, "FailedGetResourceMetric")
            }
            ("ContainerResource", _, Some(c)) => (
                c.name.clone(),
                Some(c.container.clone()),
                &c.target,
                "FailedGetContainerResourceMetric",
            ),
            _ => {
                let spec = HorizontalPodAutoscalerSpec {
                    metrics: Some(vec![m.clone()]),
                    ..Default::default()
                };
                return Err(metric_failure(&spec));
            }
        };
    let (target, what) = match parse_target(target) {
        Some(t @ Target::Utilization(_)) => (t, "utilization"),
        Some(t) => (t, "usage"),
        None => {
            return Err((
                reason,
                "invalid resource metric source: neither an average utilization target nor an average value (usage) target was set".into(),
            ))
        }
    };
    let fail = |e: String| (reason, format!("failed to get {resource} {what}: {e}"));
    let metrics = pod_metrics(client, ns, selector, &resource, container.as_deref())
        .await
        .map_err(|e| fail(format!("unable to get metrics for resource {resource}: unable to fetch metrics from resource metrics API: {e}")))?;
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| {
            fail(format!(
                "unable to get pods while calculating replica count: {e}"
            ))
        })?;
    let infos: Vec<PodInfo> = pods
        .items
        .iter()
        .map(|p| pod_info(p, &resource, container.as_deref()))
        .collect();
    let proposal =
        replicas::calculate(current, target, &resource, &infos, metrics, now).map_err(fail)?;
    let current_value = json!({
        "averageUtilization": proposal.utilization,
        "averageValue": milli_quantity(proposal.average_milli),
    });
    let (status, name) = match &container {
        None => (
            json!({"type": "Resource", "resource": {"name": resource, "current": current_value}}),
            resource.clone(),
        ),
        Some(c) => (
            json!({"type": "ContainerResource", "containerResource": {"name": resource, "container": c, "current": current_value}}),
            format!("{resource} container resource"),
        ),
    };
    let name = match target {
        Target::Utilization(_) if container.is_none() => {
            format!("{name} resource utilization (percentage of request)")
        }
        Target::Utilization(_) => format!("{name} utilization (percentage of request)"),
        Target::AverageValue(_) if container.is_none() => format!("{name} resource"),
        Target::AverageValue(_) => name,
    };
    let status = serde_json::from_value(status).expect("a valid MetricStatus");
    Ok((proposal.replicas, name, status))
}

fn parse_target(t: &MetricTarget) -> Option<Target> {
    match t.type_.as_str() {
        "Utilization" => t.average_utilization.map(Target::Utilization),
        "AverageValue" => t
            .average_value
            .as_ref()
            .and_then(|q| parse_quantity(&q.0, 1000))
            .map(Target::AverageValue),
        _ => None,
    }
}

/// The PodMetrics of the selected pods, summed over their (selected) containers in
/// milli-units; a pod missing the resource in any container is left out, as upstream.
async fn pod_metrics(
    client: &kube::Client,
    ns: &str,
    selector: &str,
    resource: &str,
    container: Option<&str>,
) -> kube::Result<BTreeMap<String, PodMetric>> {
    let list = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &pod_metrics_resource())
        .list(&ListParams::default().labels(selector))
        .await?;
    let mut out = BTreeMap::new();
    for item in list.items {
        let Some(name) = item.metadata.name.clone() else {
            continue;
        };
        let containers = item.data["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut sum = Some(0i64);
        let mut found = false;
        for c in &containers {
            if container.is_some_and(|want| c["name"].as_str() != Some(want)) {
                continue;
            }
            found = true;
            let value = c["usage"][resource]
                .as_str()
                .and_then(|q| parse_quantity(q, 1000));
            sum = sum.zip(value).map(|(a, b)| a + b);
        }
        let (Some(value), true) = (sum, found) else {
            continue;
        };
        let timestamp = item.data["timestamp"]
            .as_str()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .unwrap_or_else(Timestamp::now);
        let window = item.data["window"]
            .as_str()
            .and_then(go_duration)
            .unwrap_or(SignedDuration::ZERO);
        out.insert(
            name,
            PodMetric {
                value,
                timestamp,
                window,
            },
        );
    }
    Ok(out)
}

/// A pod as the calculator sees it.
fn pod_info(pod: &Pod, resource: &str, container: Option<&str>) -> PodInfo {
    let status = pod.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| {
            (
                c.status == "True",
                c.last_transition_time
                    .as_ref()
                    .map(|t| t.0)
                    .unwrap_or(Timestamp::UNIX_EPOCH),
            )
        });
    let mut request = Ok(0);
    for c in pod.spec.iter().flat_map(|s| &s.containers) {
        if container.is_some_and(|want| c.name != want) {
            continue;
        }
        let value = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(resource))
            .and_then(|q| parse_quantity(&q.0, 1000));
        request = match (request, value) {
            (Ok(sum), Some(v)) => Ok(sum + v),
            (Ok(_), None) => Err(c.name.clone()),
            (err, _) => err,
        };
    }
    PodInfo {
        name: pod.metadata.name.clone().unwrap_or_default(),
        phase: status.phase.unwrap_or_default(),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        ready,
        start_time: status.start_time.map(|t| t.0),
        request,
    }
}

/// Go's duration text as metrics.k8s.io writes a window ("15s", "1m0.5s", "500ms").
fn go_duration(s: &str) -> Option<SignedDuration> {
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..end].parse().ok()?;
        let unit_end = rest[end..]
            .find(|c: char| c.is_ascii_digit())
            .map_or(rest.len(), |i| end + i);
        let factor = match &rest[end..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * factor;
        rest = &rest[unit_end..];
    }
    Some(SignedDuration::from_secs_f64(total))
}

/// Milli-units as a canonical decimal Quantity (upstream's NewMilliQuantity): 250 ->
/// "250m", 1000 -> "1", 10485760000 -> "10485760", 2000000000 -> "2M".
pub(super) fn milli_quantity(milli: i64) -> String {
    if milli == 0 {
        return "0".into();
    }
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let (mut v, mut i) = (milli / 1000, 0);
    const SUFFIXES: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];
    while i < 6 && v % 1000 == 0 {
        v /= 1000;
        i += 1;
    }
    format!("{v}{}", SUFFIXES[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_quantities_read_and_write_as_upstream() {
        let windows = [
            ("seconds", "15s", 15.0),
            ("fraction", "15.012s", 15.012),
            ("minutes", "1m0.5s", 60.5),
            ("millis", "500ms", 0.5),
        ];
        for (name, text, want) in windows {
            assert_eq!(
                go_duration(text).map(|d| d.as_secs_f64()),
                Some(want),
                "{name}"
            );
        }
        let quantities = [
            ("milli", 250, "250m"),
            ("whole", 1000, "1"),
            ("bytes", 10_485_760_000, "10485760"),
            ("mega", 2_000_000_000, "2M"),
            ("zero", 0, "0"),
        ];
        for (name, milli, want) in quantities {
            assert_eq!(milli_quantity(milli), want, "{name}");
        }
    }
}
