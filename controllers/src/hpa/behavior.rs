//! From the metrics' proposal to the replica count set, as upstream's
//! normalizeDesiredReplicas(WithBehaviors): the stabilization windows (the highest
//! recommendation of the last 5 minutes when scaling down, by default; the lowest of
//! the scale-up window when scaling up), then the rate limits. Without `behavior`, a
//! scale-up goes at most to max(2 x current, 4); with it, each policy allows Pods or
//! Percent more (or fewer) replicas than at the start of its period, and selectPolicy
//! picks the largest change (Max), the smallest (Min) or none (Disabled). The pure
//! functions take the history ([`History`]) the loop keeps per autoscaler.

use k8s_openapi::api::autoscaling::v2::{
    HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscalerBehavior,
};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Upstream's --horizontal-pod-autoscaler-downscale-stabilization.
pub const DOWNSCALE_STABILIZATION: SignedDuration = SignedDuration::from_secs(300);

/// What a loop remembers of one autoscaler between syncs.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Every recommendation (before stabilization) with its time.
    pub recommendations: Vec<(Timestamp, i32)>,
    /// Rescales made: (time, replicas added) and (time, replicas removed).
    pub scale_ups: Vec<(Timestamp, i32)>,
    pub scale_downs: Vec<(Timestamp, i32)>,
}

/// The replicas to set, and the AbleToScale reason/message and ScalingLimited
/// (limited, reason, message) conditions upstream reports with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalized {
    pub replicas: i32,
    pub able_reason: &'static str,
    pub able_message: &'static str,
    pub limited: bool,
    pub limited_reason: &'static str,
    pub limited_message: &'static str,
}

const WITHIN: (&str, &str) = (
    "DesiredWithinRange",
    "the desired count is within the acceptable range",
);
const TOO_MANY: (&str, &str) = (
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
);
const TOO_FEW: (&str, &str) = (
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
);
const UP_LIMIT: (&str, &str) = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
);
const DOWN_LIMIT: (&str, &str) = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);
const READY: (&str, &str) = ("ReadyForNewScale", "recommended size matches current size");
const DOWN_STABILIZED: (&str, &str) = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);
const UP_STABILIZED: (&str, &str) = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);

/// Upstream's defaults for a `behavior` field left out (GenerateHPAScaleUpRules and
/// GenerateHPAScaleDownRules): up at most 4 pods or 100 % every 15 s, no window;
/// down by 100 % every 15 s after a 300 s window; Max of the policies.
pub fn with_defaults(
    behavior: &HorizontalPodAutoscalerBehavior,
) -> (HPAScalingRules, HPAScalingRules) {
    let policy = |type_: &str, value, period| HPAScalingPolicy {
        type_: type_.into(),
        value,
        period_seconds: period,
    };
    let fill = |rules: Option<&HPAScalingRules>, window: i32, policies: Vec<HPAScalingPolicy>| {
        let rules = rules.cloned().unwrap_or_default();
        HPAScalingRules {
            stabilization_window_seconds: rules.stabilization_window_seconds.or(Some(window)),
            select_policy: rules.select_policy.or(Some("Max".into())),
            policies: rules.policies.filter(|p| !p.is_empty()).or(Some(policies)),
            ..rules
        }
    };
    (
        fill(
            behavior.scale_up.as_ref(),
            0,
            vec![policy("Pods", 4, 15), policy("Percent", 100, 15)],
        ),
        fill(
            behavior.scale_down.as_ref(),
            DOWNSCALE_STABILIZATION.as_secs() as i32,
            vec![policy("Percent", 100, 15)],
        ),
    )
}

/// Without `behavior`: the highest recommendation of the last 5 minutes, then at most
/// max(2 x current, 4) and within [min, max].
pub fn normalize(
    history: &mut History,
    now: Timestamp,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
) -> Normalized {
    let cutoff = now - DOWNSCALE_STABILIZATION;
    let stabilized = history
        .recommendations
        .iter()
        .filter(|(t, _)| *t >= cutoff)
        .map(|(_, r)| *r)
        .fold(desired, i32::max);
    record(history, now, desired, cutoff);
    let (able_reason, able_message) = if stabilized != desired {
        DOWN_STABILIZED
    } else {
        READY
    };
    let up_limit = (2 * current).max(4);
    let (maximum, over) = if max > up_limit {
        (up_limit, UP_LIMIT)
    } else {
        (max, TOO_MANY)
    };
    let (replicas, (limited_reason, limited_message)) = if stabilized < min {
        (min, TOO_FEW)
    } else if stabilized > maximum {
        (maximum, over)
    } else {
        (stabilized, WITHIN)
    };
    Normalized {
        replicas,
        able_reason,
        able_message,
        limited: replicas != stabilized,
        limited_reason,
        limited_message,
    }
}

/// Keeps the recommendations still inside `cutoff` and adds this one.
fn record(history: &mut History, now: Timestamp, desired: i32, cutoff: Timestamp) {
    history.recommendations.retain(|(t, _)| *t >= cutoff);
    history.recommendations.push((now, desired));
}

/// With `behavior` (filled with [`with_defaults`]).
#[allow(clippy::too_many_arguments)]
pub fn normalize_with_behavior(
    history: &mut History,
    now: Timestamp,
    up: &HPAScalingRules,
    down: &HPAScalingRules,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
) -> Normalized {
    let window = |r: &HPAScalingRules| {
        SignedDuration::from_secs(i64::from(r.stabilization_window_seconds.unwrap_or(0)))
    };
    let (up_cutoff, down_cutoff) = (now - window(up), now - window(down));
    let (mut up_rec, mut down_rec) = (desired, desired);
    for &(t, r) in &history.recommendations {
        if t > up_cutoff {
            up_rec = up_rec.min(r);
        }
        if t > down_cutoff {
            down_rec = down_rec.max(r);
        }
    }
    let stabilized = current.max(up_rec).min(down_rec);
    record(history, now, desired, up_cutoff.min(down_cutoff));
    let (able_reason, able_message) = if stabilized == desired {
        READY
    } else if desired >= current {
        UP_STABILIZED
    } else {
        DOWN_STABILIZED
    };
    let (replicas, (limited_reason, limited_message)) = if stabilized > current {
        let limit = scale_limit(current, history, up, now, true).max(current);
        let (maximum, why) = if max > limit {
            (limit, UP_LIMIT)
        } else {
            (max, TOO_MANY)
        };
        if stabilized > maximum {
            (maximum, why)
        } else {
            (stabilized, WITHIN)
        }
    } else if stabilized < current {
        let limit = scale_limit(current, history, down, now, false).min(current);
        let (minimum, why) = if min < limit {
            (limit, DOWN_LIMIT)
        } else {
            (min, TOO_FEW)
        };
        if stabilized < minimum {
            (minimum, why)
        } else {
            (stabilized, WITHIN)
        }
    } else {
        (stabilized, WITHIN)
    };
    Normalized {
        replicas,
        able_reason,
        able_message,
        limited: replicas != stabilized,
        limited_reason,
        limited_message,
    }
}

/// The furthest the policies let the count go from `current` now: each policy counts
/// from the replicas at the start of its period (current minus what was added plus
/// what was removed within it); Max picks the largest change, Min the smallest,
/// Disabled none. Scaling up from 4 with {Pods 4, Percent 100} after adding 2 in the
/// period: start 2, so 6 and 4; Max allows 6.
fn scale_limit(
    current: i32,
    h: &History,
    rules: &HPAScalingRules,
    now: Timestamp,
    up: bool,
) -> i32 {
    let select = rules.select_policy.as_deref().unwrap_or("Max");
    if select == "Disabled" {
        return current;
    }
    let changed = |events: &[(Timestamp, i32)], period: i32| -> i32 {
        let cutoff = now - SignedDuration::from_secs(i64::from(period));
        events
            .iter()
            .filter(|(t, _)| *t > cutoff)
            .map(|(_, n)| n)
            .sum()
    };
    let proposals = rules.policies.iter().flatten().map(|p| {
        let start = current - changed(&h.scale_ups, p.period_seconds)
            + changed(&h.scale_downs, p.period_seconds);
        let value = f64::from(p.value);
        match (p.type_.as_str(), up) {
            ("Pods", true) => start + p.value,
            ("Pods", false) => start - p.value,
            (_, true) => (f64::from(start) * (1.0 + value / 100.0)).ceil() as i32,
            (_, false) => (f64::from(start) * (1.0 - value / 100.0)) as i32,
        }
    });
    // Up: Max is the largest limit; down: Max (the largest change) is the smallest.
    let largest_change = (select == "Max") == up;
    if largest_change {
        proposals.max().unwrap_or(current)
    } else {
        proposals.min().unwrap_or(current)
    }
}

/// Remembers a rescale for the policies' periods (only with `behavior`, as upstream),
/// forgetting what is older than the longest period.
pub fn record_rescale(
    history: &mut History,
    now: Timestamp,
    from: i32,
    to: i32,
    longest_period: i32,
) {
    let cutoff = now - SignedDuration::from_secs(i64::from(longest_period));
    history.scale_ups.retain(|(t, _)| *t > cutoff);
    history.scale_downs.retain(|(t, _)| *t > cutoff);
    if to > from {
        history.scale_ups.push((now, to - from));
    } else if to < from {
        history.scale_downs.push((now, from - to));
    }
}

#[cfg(test)]
mod tests;
