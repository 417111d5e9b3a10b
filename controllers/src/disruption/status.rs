//! The budget arithmetic of upstream's disruption controller, as pure functions: how many
//! pods a budget expects and needs healthy, which evictions the API server recorded are
//! still pending, how many pods are healthy, and the status (with the
//! `DisruptionAllowed` condition) that follows.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudgetSpec, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::podcontrol::is_ready;
use crate::shared::scale::scaled_value;

/// How long a pod the eviction API recorded in `disruptedPods` is expected to take to be
/// marked deleted; after that the controller counts it again (upstream's DeletionTimeout).
pub const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_secs(120);

pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
pub const SUFFICIENT_PODS: &str = "SufficientPods";
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
pub const SYNC_FAILED: &str = "SyncFailed";

/// Whether the budget's figures depend on its pods' controllers' scale: `maxUnavailable`
/// always does, `minAvailable` only as a percentage (an int minimum counts pods).
pub fn needs_scale(spec: &PodDisruptionBudgetSpec) -> bool {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    spec.max_unavailable.is_some() || matches!(spec.min_available, Some(IntOrString::String(_)))
}

/// (expectedPods, desiredHealthy), upstream's `getExpectedPodCount`. `scale` is the sum
/// of the controllers' replicas (used only where [`needs_scale`]), `pods` the number of
/// pods the selector finds. Percentages round up: maxUnavailable 25% of 10 replicas is 3
/// (desired 7), minAvailable 25% of 10 is 3.
pub fn expected_and_desired(spec: &PodDisruptionBudgetSpec, pods: i32, scale: i32) -> (i32, i32) {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    if let Some(max) = &spec.max_unavailable {
        let unavailable = scaled_value(max, scale, true);
        return (scale, (scale - unavailable).max(0));
    }
    match &spec.min_available {
        Some(min @ IntOrString::Int(_)) => (pods, scaled_value(min, pods, true)),
        Some(min) => (scale, scaled_value(min, scale, true)),
        None => (0, 0),
    }
}

/// The pods still pending in `disruptedPods` (upstream's `buildDisruptedPodMap`): those
/// gone or marked deleted are dropped, and so are those the eviction recorded more than
/// [`DELETION_TIMEOUT`] ago (their deletion failed). Also when to look again: the first
/// moment a kept entry expires.
pub fn pending_disruptions(
    recorded: Option<&BTreeMap<String, Time>>,
    pods: &[&Pod],
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Timestamp>) {
    let mut kept = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    let Some(recorded) = recorded else {
        return (kept, None);
    };
    for pod in pods {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(at) = recorded.get(name) else {
            continue;
        };
        let expires = at.0 + DELETION_TIMEOUT;
        if expires < now {
            tracing::warn!(
                pod = name,
                "a pod expected to be deleted was not, counting it again"
            );
            continue;
        }
        recheck = Some(recheck.map_or(expires, |r| r.min(expires)));
        kept.insert(name.to_string(), at.clone());
    }
    (kept, recheck)
}

/// Pods that count as healthy (upstream's `countHealthyPods`): Ready, not being deleted,
/// and not about to be (a pending eviction).
pub fn count_healthy(pods: &[&Pod], disrupted: &BTreeMap<String, Time>, now: Timestamp) -> i32 {
    let healthy = pods.iter().filter(|pod| {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let evicting = disrupted
            .get(name)
            .is_some_and(|at| at.0 + DELETION_TIMEOUT > now);
        pod.metadata.deletion_timestamp.is_none() && !evicting && is_ready(pod)
    });
    i32::try_from(healthy.count()).unwrap_or(i32::MAX)
}

/// The figures one sync found.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub current_healthy: i32,
    pub desired_healthy: i32,
    pub expected_pods: i32,
    pub disrupted_pods: BTreeMap<String, Time>,
}

/// The status after a sync (upstream's `updatePdbStatus`): disruptions allowed are the
/// healthy pods above the desired count (none when no pod is expected), the condition
/// follows, and conditions of other types are kept.
pub fn status(
    old: Option<&PodDisruptionBudgetStatus>,
    generation: Option<i64>,
    f: Figures,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let mut allowed = f.current_healthy - f.desired_healthy;
    if f.expected_pods <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let mut status = PodDisruptionBudgetStatus {
        conditions: old.and_then(|o| o.conditions.clone()),
        current_healthy: f.current_healthy,
        desired_healthy: f.desired_healthy,
        disrupted_pods: (!f.disrupted_pods.is_empty()).then_some(f.disrupted_pods),
        disruptions_allowed: allowed,
        expected_pods: f.expected_pods,
        observed_generation: generation,
    };
    let (state, reason) = if allowed > 0 {
        (true, SUFFICIENT_PODS)
    } else {
        (false, INSUFFICIENT_PODS)
    };
    set_condition(&mut status, state, reason, "", now);
    status
}

/// What a failed sync leaves (upstream's `failSafe`): no disruption allowed, and the
/// error in the condition, the other figures as they were.
pub fn fail_safe(
    old: Option<&PodDisruptionBudgetStatus>,
    message: &str,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let mut status = old.cloned().unwrap_or_default();
    status.disruptions_allowed = 0;
    set_condition(&mut status, false, SYNC_FAILED, message, now);
    status
}

/// apimachinery's `SetStatusCondition` for `DisruptionAllowed`: the transition time moves
/// only when the status flips.
fn set_condition(
    status: &mut PodDisruptionBudgetStatus,
    state: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let value = if state { "True" } else { "False" };
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let new = Condition {
        type_: DISRUPTION_ALLOWED.into(),
        status: value.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: status.observed_generation,
        last_transition_time: Time(now),
    };
    match conditions
        .iter_mut()
        .find(|c| c.type_ == DISRUPTION_ALLOWED)
    {
        Some(c) if c.status == value => {
            c.reason = new.reason;
            c.message = new.message;
            c.observed_generation = new.observed_generation;
        }
        Some(c) => *c = new,
        None => conditions.push(new),
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
