//! The Job's conditions and the decision whether it is finished, as pure functions.

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Why a Job is finishing, and how it will end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Enough pods succeeded (SuccessCriteriaMet, then Complete).
    Success,
    /// The Job failed (FailureTarget, then Failed) with this reason and message.
    Failure { reason: String, message: String },
}

pub(super) const COMPLETIONS_REACHED: &str = "CompletionsReached";
pub(super) const COMPLETIONS_REACHED_MESSAGE: &str = "Reached expected number of succeeded pods";

pub(super) fn has_condition(status: Option<&JobStatus>, type_: &str) -> bool {
    condition(status, type_).is_some_and(|c| c.status == "True")
}

pub(super) fn condition<'a>(
    status: Option<&'a JobStatus>,
    type_: &str,
) -> Option<&'a JobCondition> {
    status?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Whether the Job has ended (Complete or Failed), and when.
pub(super) fn finished_at(job: &Job) -> Option<Timestamp> {
    let status = job.status.as_ref();
    ["Complete", "Failed"]
        .iter()
        .filter_map(|t| condition(status, t))
        .find(|c| c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
        })
}

/// A finish decided by an earlier sync (the interim condition is already written).
pub(super) fn pending_finish(status: Option<&JobStatus>) -> Option<Finish> {
    if let Some(c) = condition(status, "FailureTarget").filter(|c| c.status == "True") {
        return Some(Finish::Failure {
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        });
    }
    has_condition(status, "SuccessCriteriaMet").then_some(Finish::Success)
}

/// Sets a condition, moving its transition time only when the status changes.
/// Returns whether anything changed.
pub(super) fn set_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let now = Time(Timestamp::from_second(now.as_second()).unwrap_or(now));
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status == status
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
        {
            return false;
        }
        if c.status != status {
            c.last_transition_time = Some(now.clone());
        }
        c.status = status.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        c.last_probe_time = Some(now);
        return true;
    }
    conditions.push(JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(now.clone()),
        last_transition_time: Some(now),
    });
    true
}

/// Whether the Job's completions are reached. NonIndexed with completions: that many
/// succeeded pods; Indexed: every index completed; a work-queue Job (no completions):
/// one success and no pod left running.
pub fn completions_reached(completions: Option<i32>, succeeded: i32, active: usize) -> bool {
    match completions {
        Some(c) => succeeded >= c,
        None => succeeded > 0 && active == 0,
    }
}

/// Whether `activeDeadlineSeconds` has passed since the Job (last) started, and if not,
/// how many seconds are left.
pub(super) fn deadline_left(
    start: Option<&Time>,
    deadline_seconds: Option<i64>,
    now: Timestamp,
) -> Option<i64> {
    let (start, secs) = (start?, deadline_seconds?);
    Some(start.0.as_second() + secs - now.as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_criteria_follow_the_mode() {
        let cases = [
            ("fixed count not reached", Some(5), 4, 1, false),
            ("fixed count reached", Some(5), 5, 0, true),
            (
                "fixed count reached while others still run",
                Some(2),
                2,
                1,
                true,
            ),
            ("work queue waits for running pods", None, 1, 1, false),
            ("work queue done", None, 1, 0, true),
            ("work queue without success", None, 0, 0, false),
        ];
        for (name, completions, succeeded, active, want) in cases {
            assert_eq!(
                completions_reached(completions, succeeded, active),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn condition_transition_time_moves_only_on_status_change() {
        let t0 = Timestamp::from_second(1000).unwrap();
        let t1 = Timestamp::from_second(2000).unwrap();
        let mut conds = Vec::new();
        assert!(set_condition(
            &mut conds,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            t0
        ));
        assert!(!set_condition(
            &mut conds,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            t1
        ));
        assert!(set_condition(
            &mut conds,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            t1
        ));
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].last_transition_time.as_ref().unwrap().0, t1);
    }
}
