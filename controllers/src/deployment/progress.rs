//! Progress (upstream deployment/progress.go): the Progressing condition and its
//! deadline, and the Paused/Resumed markers `kubectl rollout status` reads.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::status::{condition, get_condition, remove_condition, set_condition};
use super::util::deployment_replicas;
use super::{Result, Rollout};

pub(super) const PROGRESSING: &str = "Progressing";
pub(super) const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub(super) const TIMED_OUT: &str = "ProgressDeadlineExceeded";
const UPDATED: &str = "ReplicaSetUpdated";
const PAUSED: &str = "DeploymentPaused";
const RESUMED: &str = "DeploymentResumed";

/// Upstream's default, and its "no deadline" sentinel.
const DEFAULT_DEADLINE: i32 = 600;

/// What decides the Progressing condition in one sync.
#[derive(Debug)]
pub struct ProgressInput<'a> {
    /// progressDeadlineSeconds, None when disabled.
    pub deadline: Option<i32>,
    /// Every wanted pod is updated and available and nothing else runs.
    pub complete: bool,
    /// More updated, ready or available pods than last time, or fewer old ones.
    pub progressed: bool,
    pub new_rs_name: Option<&'a str>,
    pub now: Time,
}

fn subject(new_rs: Option<&str>) -> String {
    new_rs.map_or_else(
        || "Deployment".to_string(),
        |n| format!("ReplicaSet \"{n}\""),
    )
}

/// The Progressing condition to set, if it changes: complete -> NewReplicaSetAvailable;
/// progress -> ReplicaSetUpdated (refreshing lastUpdateTime, which restarts the
/// deadline); no progress for longer than the deadline -> ProgressDeadlineExceeded.
/// A timed-out rollout stays timed out until the template changes.
pub fn progressing_condition(
    current: Option<&DeploymentCondition>,
    input: &ProgressInput<'_>,
) -> Option<DeploymentCondition> {
    let deadline = input.deadline?;
    let reason = current.and_then(|c| c.reason.as_deref());
    if reason == Some(TIMED_OUT) {
        return None;
    }
    let who = subject(input.new_rs_name);
    if input.complete {
        return Some(condition(
            PROGRESSING,
            "True",
            NEW_RS_AVAILABLE,
            format!("{who} has successfully progressed."),
            input.now.clone(),
        ));
    }
    if input.progressed {
        let mut c = condition(
            PROGRESSING,
            "True",
            UPDATED,
            format!("{who} is progressing."),
            input.now.clone(),
        );
        if let Some(cur) = current.filter(|c| c.status == "True") {
            c.last_transition_time.clone_from(&cur.last_transition_time);
        }
        return Some(c);
    }
    let since = current?.last_update_time.as_ref()?;
    let timed_out = reason != Some(NEW_RS_AVAILABLE)
        && since.0.as_second() + i64::from(deadline) < input.now.0.as_second();
    timed_out.then(|| {
        condition(
            PROGRESSING,
            "False",
            TIMED_OUT,
            format!("{who} has timed out progressing."),
            input.now.clone(),
        )
    })
}

/// When to look again so a stuck rollout is marked timed out on time.
pub(super) fn requeue_after(
    current: Option<&DeploymentCondition>,
    deadline: Option<i32>,
    complete: bool,
    now: &Time,
) -> Option<Duration> {
    let deadline = deadline?;
    let current = current?;
    if complete
        || matches!(
            current.reason.as_deref(),
            Some(NEW_RS_AVAILABLE | TIMED_OUT)
        )
    {
        return None;
    }
    let since = current.last_update_time.as_ref()?.0.as_second();
    let left = since + i64::from(deadline) - now.0.as_second();
    Some(Duration::from_secs(left.max(0).unsigned_abs() + 1))
}

/// Upstream's DeploymentProgressing.
pub(super) fn progressed(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let v = |x: Option<i32>| x.unwrap_or(0);
    let old_old = v(old.replicas) - v(old.updated_replicas);
    let new_old = v(new.replicas) - v(new.updated_replicas);
    v(new.updated_replicas) > v(old.updated_replicas)
        || new_old < old_old
        || v(new.ready_replicas) > v(old.ready_replicas)
        || v(new.available_replicas) > v(old.available_replicas)
}

impl Rollout {
    fn deadline(&self) -> Option<i32> {
        let deadline = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
            .unwrap_or(DEFAULT_DEADLINE);
        (deadline != i32::MAX).then_some(deadline)
    }

    pub(crate) fn set_progressing_if_deadline(
        &mut self,
        status: &str,
        reason: &str,
        message: String,
    ) {
        if self.deadline().is_some() {
            set_condition(
                &mut self.status,
                condition(PROGRESSING, status, reason, message, Rollout::now()),
            );
        }
    }

    /// Upstream's DeploymentComplete, against the status this sync computes.
    pub(crate) fn is_complete(&self) -> bool {
        let s = self.calculate();
        let replicas = deployment_replicas(&self.d);
        s.updated_replicas == Some(replicas)
            && s.replicas == Some(replicas)
            && s.available_replicas == Some(replicas)
            && s.observed_generation >= self.d.metadata.generation
    }

    /// Marks pause and resume on the Progressing condition so the deadline does not run
    /// while a Deployment is paused.
    pub(crate) fn check_paused_conditions(&mut self) {
        if self.deadline().is_none() {
            return;
        }
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let reason = get_condition(&self.status, PROGRESSING).and_then(|c| c.reason.clone());
        if paused && reason.as_deref() != Some(PAUSED) {
            self.set_progressing_if_deadline("Unknown", PAUSED, "Deployment is paused".into());
        } else if !paused && reason.as_deref() == Some(PAUSED) {
            self.set_progressing_if_deadline("Unknown", RESUMED, "Deployment is resumed".into());
        }
    }

    /// Status plus progress, written; returns when to check the deadline again.
    pub(crate) async fn sync_rollout_status(&mut self) -> Result<Option<Duration>> {
        let mut status = self.calculate();
        let deadline = self.deadline();
        if deadline.is_none() {
            remove_condition(&mut status, PROGRESSING);
        }
        let old = self.d.status.clone().unwrap_or_default();
        let replicas = deployment_replicas(&self.d);
        let complete = status.updated_replicas == Some(replicas)
            && status.replicas == Some(replicas)
            && status.available_replicas == Some(replicas)
            && status.observed_generation >= self.d.metadata.generation;
        let new_rs_name = self.new_rs.as_ref().map(ResourceExt::name_any);
        let current = get_condition(&status, PROGRESSING).cloned();
        let already_complete = status.replicas == status.updated_replicas
            && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
        if !already_complete {
            let input = ProgressInput {
                deadline,
                complete,
                progressed: progressed(&old, &status),
                new_rs_name: new_rs_name.as_deref(),
                now: Rollout::now(),
            };
            if let Some(c) = progressing_condition(current.as_ref(), &input) {
                if c.reason.as_deref() == Some(UPDATED) {
                    // A fresh lastUpdateTime is the point: it restarts the deadline.
                    remove_condition(&mut status, PROGRESSING);
                }
                set_condition(&mut status, c);
            }
        }
        self.status = status;
        self.write_status().await?;
        Ok(requeue_after(
            get_condition(&self.status, PROGRESSING),
            deadline,
            complete,
            &Rollout::now(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicaset::fixtures::at;

    fn input(complete: bool, progressed: bool, now: i64) -> ProgressInput<'static> {
        ProgressInput {
            deadline: Some(600),
            complete,
            progressed,
            new_rs_name: Some("web-abc"),
            now: at(now),
        }
    }

    fn reason(c: &Option<DeploymentCondition>) -> Option<&str> {
        c.as_ref().and_then(|c| c.reason.as_deref())
    }

    #[test]
    fn progressing_follows_upstream_reasons() {
        let created = condition(PROGRESSING, "True", "NewReplicaSetCreated", "m", at(0));
        let timed_out = condition(PROGRESSING, "False", TIMED_OUT, "m", at(0));
        let cases = [
            (
                "complete",
                Some(&created),
                input(true, false, 10),
                Some(NEW_RS_AVAILABLE),
            ),
            (
                "progress",
                Some(&created),
                input(false, true, 10),
                Some(UPDATED),
            ),
            (
                "stuck within the deadline",
                Some(&created),
                input(false, false, 600),
                None,
            ),
            (
                "stuck past the deadline (0 + 600 < 601)",
                Some(&created),
                input(false, false, 601),
                Some(TIMED_OUT),
            ),
            (
                "timed out stays timed out",
                Some(&timed_out),
                input(true, true, 900),
                None,
            ),
        ];
        for (name, current, input, want) in cases {
            assert_eq!(
                reason(&progressing_condition(current, &input)),
                want,
                "{name}"
            );
        }
        let no_deadline = ProgressInput {
            deadline: None,
            ..input(true, false, 1)
        };
        assert!(
            progressing_condition(None, &no_deadline).is_none(),
            "no deadline, no condition"
        );
    }

    #[test]
    fn progress_keeps_the_transition_time_but_not_the_update_time() {
        let created = condition(PROGRESSING, "True", "NewReplicaSetCreated", "m", at(3));
        let c = progressing_condition(Some(&created), &input(false, true, 50)).unwrap();
        assert_eq!(
            (c.last_transition_time, c.last_update_time),
            (Some(at(3)), Some(at(50)))
        );
        assert_eq!(
            c.message.as_deref(),
            Some("ReplicaSet \"web-abc\" is progressing.")
        );
    }

    #[test]
    fn stuck_rollouts_are_checked_again_at_the_deadline() {
        let updated = condition(PROGRESSING, "True", UPDATED, "m", at(100));
        // Updated at 100, deadline 600: check at 700, 250s after now=450 (+1s margin).
        assert_eq!(
            requeue_after(Some(&updated), Some(600), false, &at(450)),
            Some(Duration::from_secs(251))
        );
        assert_eq!(
            requeue_after(Some(&updated), Some(600), true, &at(450)),
            None,
            "complete"
        );
        assert_eq!(
            requeue_after(Some(&updated), None, false, &at(450)),
            None,
            "no deadline"
        );
    }

    #[test]
    fn progress_means_more_new_or_fewer_old_pods() {
        let s = |replicas, updated, ready, available| DeploymentStatus {
            replicas: Some(replicas),
            updated_replicas: Some(updated),
            ready_replicas: Some(ready),
            available_replicas: Some(available),
            ..Default::default()
        };
        assert!(progressed(&s(3, 0, 3, 3), &s(4, 1, 3, 3)), "more updated");
        assert!(
            progressed(&s(4, 1, 4, 4), &s(3, 1, 3, 3)),
            "fewer old (3 -> 2)"
        );
        assert!(!progressed(&s(4, 1, 4, 4), &s(4, 1, 4, 4)), "nothing moved");
    }
}
