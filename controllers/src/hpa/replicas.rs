//! Upstream's replica calculator (pkg/controller/podautoscaler/replica_calculator.go)
//! for Resource metrics, as pure functions of the target's pods and their PodMetrics:
//! the utilization (percentage of requests) or average value, the tolerance of 10 %
//! around the target, and what pods without a usable sample count as: pending, failed
//! and deleted pods are ignored; for CPU, a pod not yet ready (or ready for less than
//! one metric window within its first 5 minutes) counts as using nothing when that
//! would hold back a scale-up; a pod with no metric counts as using its full request
//! (or the target) when scaling down and nothing when scaling up. Where those guesses
//! would reverse the direction of the change, nothing changes.

use std::collections::BTreeMap;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Upstream's --horizontal-pod-autoscaler-tolerance.
pub const TOLERANCE: f64 = 0.1;
/// Upstream's --horizontal-pod-autoscaler-cpu-initialization-period.
pub const CPU_INITIALIZATION_PERIOD: SignedDuration = SignedDuration::from_secs(300);
/// Upstream's --horizontal-pod-autoscaler-initial-readiness-delay.
pub const INITIAL_READINESS_DELAY: SignedDuration = SignedDuration::from_secs(30);

/// What the calculation needs of one pod of the target.
#[derive(Clone, Debug, PartialEq)]
pub struct PodInfo {
    pub name: String,
    /// `status.phase`: Pending and Failed pods are ignored.
    pub phase: String,
    pub deleting: bool,
    /// The Ready condition: (status is True, its lastTransitionTime).
    pub ready: Option<(bool, Timestamp)>,
    pub start_time: Option<Timestamp>,
    /// The sum of the (selected) containers' requests of the resource, in milli-units;
    /// `Err(container)` names the first container without one.
    pub request: Result<i64, String>,
}

/// One pod's sample: the sum over its containers, in milli-units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PodMetric {
    pub value: i64,
    pub timestamp: Timestamp,
    pub window: SignedDuration,
}

/// What a proposal is about: a percentage of requests or an average value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Average utilization in percent of the pods' requests.
    Utilization(i32),
    /// Average value per pod, in milli-units.
    AverageValue(i64),
}

/// The calculator's answer: the replica count it proposes, the current utilization
/// (for a Utilization target) and the average value in milli-units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub replicas: i32,
    pub utilization: Option<i32>,
    pub average_milli: i64,
}

struct Groups {
    ready: usize,
    unready: Vec<String>,
    missing: Vec<String>,
    ignored: Vec<String>,
}

/// Upstream's groupPods.
fn group(
    pods: &[PodInfo],
    metrics: &BTreeMap<String, PodMetric>,
    cpu: bool,
    now: Timestamp,
) -> Groups {
    let mut g = Groups {
        ready: 0,
        unready: Vec::new(),
        missing: Vec::new(),
        ignored: Vec::new(),
    };
    for pod in pods {
        if pod.deleting || pod.phase == "Failed" || pod.phase == "Pending" {
            g.ignored.push(pod.name.clone());
            continue;
        }
        let Some(metric) = metrics.get(&pod.name) else {
            g.missing.push(pod.name.clone());
            continue;
        };
        if cpu {
            let unready = match (pod.ready, pod.start_time) {
                (Some((ready, transition)), Some(start)) => {
                    if start + CPU_INITIALIZATION_PERIOD > now {
                        // Still starting: count it once it is ready and a whole metric
                        // window has passed since it became so.
                        !ready || metric.timestamp < transition + metric.window
                    } else {
                        // Unready and never ready since it started.
                        !ready && start + INITIAL_READINESS_DELAY > transition
                    }
                }
                _ => true,
            };
            if unready {
                g.unready.push(pod.name.clone());
                continue;
            }
        }
        g.ready += 1;
    }
    g
}

/// Replicas for a Resource metric of `resource` ("cpu" or "memory").
pub fn calculate(
    current: i32,
    target: Target,
    resource: &str,
    pods: &[PodInfo],
    mut metrics: BTreeMap<String, PodMetric>,
    now: Timestamp,
) -> Result<Proposal, String> {
    if metrics.is_empty() {
        return Err(format!(
            "unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        ));
    }
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let g = group(pods, &metrics, resource == "cpu", now);
    for name in g.ignored.iter().chain(&g.unready) {
        metrics.remove(name);
    }
    if metrics.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let requests: BTreeMap<&str, i64> = match target {
        Target::Utilization(_) => pods
            .iter()
            .map(|p| match &p.request {
                Ok(r) => Ok((p.name.as_str(), *r)),
                Err(container) => Err(format!(
                    "missing request for {resource} in container {container} of Pod {}",
                    p.name
                )),
            })
            .collect::<Result<_, _>>()?,
        Target::AverageValue(_) => BTreeMap::new(),
    };
    let (ratio, utilization, average) = usage_ratio(&metrics, &requests, target)?;
    let scale_up_with_unready = !g.unready.is_empty() && ratio > 1.0;
    let proposal = |replicas| Proposal {
        replicas,
        utilization,
        average_milli: average,
    };
    if !scale_up_with_unready && g.missing.is_empty() {
        if (1.0 - ratio).abs() <= TOLERANCE {
            return Ok(proposal(current));
        }
        return Ok(proposal((ratio * g.ready as f64).ceil() as i32));
    }
    // Exactly on target, the pods without a sample are left out, as upstream.
    for name in g.missing.iter().filter(|_| ratio != 1.0) {
        // Scaling down: a pod without a sample is assumed to use what is wanted at most
        // (its full request, or more for targets above 100 %); scaling up: nothing.
        let value = if ratio < 1.0 {
            match target {
                Target::Utilization(t) => {
                    requests.get(name.as_str()).copied().unwrap_or(0) * i64::from(t.max(100)) / 100
                }
                Target::AverageValue(v) => v,
            }
        } else {
            0
        };
        metrics.insert(
            name.clone(),
            PodMetric {
                value,
                timestamp: now,
                window: SignedDuration::ZERO,
            },
        );
    }
    if scale_up_with_unready {
        for name in &g.unready {
            metrics.insert(
                name.clone(),
                PodMetric {
                    value: 0,
                    timestamp: now,
                    window: SignedDuration::ZERO,
                },
            );
        }
    }
    let (new_ratio, _, _) = usage_ratio(&metrics, &requests, target)?;
    if (1.0 - new_ratio).abs() <= TOLERANCE
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(proposal(current));
    }
    let replicas = (new_ratio * metrics.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(replicas))
}

/// (usage ratio, utilization in percent, average value in milli-units).
fn usage_ratio(
    metrics: &BTreeMap<String, PodMetric>,
    requests: &BTreeMap<&str, i64>,
    target: Target,
) -> Result<(f64, Option<i32>, i64), String> {
    match target {
        Target::Utilization(t) => {
            let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
            for (name, m) in metrics {
                // Metrics of pods not in the list are extraneous, as upstream.
                let Some(r) = requests.get(name.as_str()) else {
                    continue;
                };
                used += m.value;
                requested += r;
                n += 1;
            }
            if requested == 0 {
                return Err("no metrics returned matched known pods".into());
            }
            // Upstream takes the ratio of the whole percentage.
            let utilization = (used * 100 / requested) as i32;
            Ok((
                f64::from(utilization) / f64::from(t),
                Some(utilization),
                used / n,
            ))
        }
        Target::AverageValue(v) => {
            let sum: i64 = metrics.values().map(|m| m.value).sum();
            let average = sum / metrics.len() as i64;
            Ok((average as f64 / v as f64, None, average))
        }
    }
}

#[cfg(test)]
mod tests;
