//! The autoscaler's status as pure functions: upstream's setCondition (a condition's
//! transition time changes only when its status does) and the status patch.

use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

pub const ABLE_TO_SCALE: &str = "AbleToScale";
pub const SCALING_ACTIVE: &str = "ScalingActive";
pub const SCALING_LIMITED: &str = "ScalingLimited";

/// Sets condition `type_` in `status`, keeping its transition time when its status is
/// unchanged, as upstream's setConditionInList.
pub fn set_condition(
    status: &mut HorizontalPodAutoscalerStatus,
    type_: &str,
    value: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let value = if value { "True" } else { "False" };
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let existing = conditions.iter_mut().find(|c| c.type_ == type_);
    let condition = match existing {
        Some(c) => c,
        None => {
            conditions.push(HorizontalPodAutoscalerCondition {
                type_: type_.into(),
                ..Default::default()
            });
            conditions.last_mut().expect("just pushed")
        }
    };
    if condition.status != value {
        condition.last_transition_time = Some(Time(now));
    }
    condition.status = value.into();
    condition.reason = Some(reason.into());
    condition.message = Some(message.into());
}

/// Whether condition `type_` is already `reason` (so its event was already recorded).
pub(super) fn has_reason(
    status: Option<&HorizontalPodAutoscalerStatus>,
    type_: &str,
    reason: &str,
) -> bool {
    status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == type_ && c.reason.as_deref() == Some(reason))
}

/// The merge patch for `/status`.
pub(super) fn status_patch(status: &HorizontalPodAutoscalerStatus) -> Value {
    json!({ "status": status })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_keeps_its_transition_time_until_its_status_changes() {
        let t = |s| Timestamp::from_second(s).unwrap();
        let mut status = HorizontalPodAutoscalerStatus::default();
        set_condition(
            &mut status,
            ABLE_TO_SCALE,
            true,
            "SucceededGetScale",
            "m1",
            t(1),
        );
        set_condition(
            &mut status,
            ABLE_TO_SCALE,
            true,
            "SucceededRescale",
            "m2",
            t(2),
        );
        let c = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (
                c.reason.as_deref(),
                c.last_transition_time.as_ref().map(|t| t.0.as_second())
            ),
            (Some("SucceededRescale"), Some(1)),
            "same status: the reason changes, the time stays"
        );
        set_condition(
            &mut status,
            ABLE_TO_SCALE,
            false,
            "FailedGetScale",
            "m3",
            t(3),
        );
        let c = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            c.last_transition_time.as_ref().map(|t| t.0.as_second()),
            Some(3)
        );
        assert_eq!(status.conditions.as_ref().unwrap().len(), 1, "one per type");
    }
}
