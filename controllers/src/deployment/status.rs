//! The Deployment's status as a pure function of its ReplicaSets (upstream
//! calculateStatus) and the Available condition; `apply.rs` writes it.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::util::{self, deployment_replicas};
use super::Rollout;

pub(super) const AVAILABLE: &str = "Available";
pub(super) const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Counts from the ReplicaSets; conditions and collisionCount carried over from
/// `working`, with Available recomputed: at least `replicas - maxUnavailable` available.
///
/// 3 replicas, maxUnavailable 1: 2 available is MinimumReplicasAvailable, 1 is not.
pub fn calculate_status(
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    all: &[&ReplicaSet],
    working: &DeploymentStatus,
    now: Time,
) -> DeploymentStatus {
    let available = util::sum_available(all.iter().copied());
    let unavailable = (util::sum_spec(all.iter().copied()) - available).max(0);
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(util::sum_actual(all.iter().copied())),
        updated_replicas: Some(util::sum_actual(new_rs)),
        ready_replicas: Some(util::sum_ready(all.iter().copied())),
        available_replicas: Some(available),
        unavailable_replicas: Some(unavailable),
        collision_count: working.collision_count,
        conditions: working.conditions.clone(),
        terminating_replicas: working.terminating_replicas,
    };
    // A ReplicaSet that cannot create pods (quota, admission) surfaces on the
    // Deployment as ReplicaFailure, the new ReplicaSet's failure first.
    let failure = new_rs
        .into_iter()
        .chain(all.iter().copied())
        .find_map(|rs| {
            rs.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == REPLICA_FAILURE && c.status == "True")
                .cloned()
        });
    match failure {
        Some(f) => {
            let message = f.message.unwrap_or_default();
            set_condition(
                &mut status,
                condition(
                    REPLICA_FAILURE,
                    "True",
                    f.reason.as_deref().unwrap_or("FailedCreate"),
                    message,
                    now.clone(),
                ),
            );
        }
        None => remove_condition(&mut status, REPLICA_FAILURE),
    }
    let minimum = deployment_replicas(d) - util::max_unavailable(d);
    let condition = if available >= minimum {
        condition(
            AVAILABLE,
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            now,
        )
    } else {
        condition(
            AVAILABLE,
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now,
        )
    };
    set_condition(&mut status, condition);
    status
}

pub(super) fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: impl Into<String>,
    now: Time,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

pub(super) fn get_condition<'a>(
    status: &'a DeploymentStatus,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == type_)
}

pub(super) fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
    }
}

/// Upstream's SetDeploymentCondition: same status and reason is no change at all; same
/// status with a new reason keeps the transition time.
pub(super) fn set_condition(status: &mut DeploymentStatus, mut new: DeploymentCondition) {
    if let Some(current) = get_condition(status, &new.type_) {
        if current.status == new.status && current.reason == new.reason {
            return;
        }
        if current.status == new.status {
            new.last_transition_time
                .clone_from(&current.last_transition_time);
        }
    }
    remove_condition(status, &new.type_);
    status.conditions.get_or_insert_default().push(new);
}

impl Rollout {
    pub(crate) fn calculate(&self) -> DeploymentStatus {
        let all: Vec<&ReplicaSet> = self.all().collect();
        calculate_status(
            &self.d,
            self.new_rs.as_ref(),
            &all,
            &self.status,
            Rollout::now(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicaset::fixtures::{at, replica_set};
    use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetStatus};

    fn rs(replicas: i32, actual: i32, ready: i32, available: i32) -> ReplicaSet {
        let mut rs = replica_set(replicas);
        rs.status = Some(ReplicaSetStatus {
            replicas: actual,
            ready_replicas: Some(ready),
            available_replicas: Some(available),
            ..Default::default()
        });
        rs
    }

    fn deployment(replicas: i32) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.generation = Some(4);
        d.spec = Some(DeploymentSpec {
            replicas: Some(replicas),
            ..Default::default()
        });
        d
    }

    #[test]
    fn status_sums_the_replica_sets_mid_rollout() {
        // 3 replicas at 25%/25%: maxUnavailable floor(0.75) = 0, so 3 must be available.
        let d = deployment(3);
        let (new, old) = (rs(1, 1, 1, 0), rs(3, 3, 3, 3));
        let status = calculate_status(
            &d,
            Some(&new),
            &[&new, &old],
            &DeploymentStatus::default(),
            at(10),
        );
        let cases = [
            ("replicas", status.replicas, 4),
            ("updatedReplicas", status.updated_replicas, 1),
            ("readyReplicas", status.ready_replicas, 4),
            ("availableReplicas", status.available_replicas, 3),
            (
                "unavailableReplicas = spec 4 - available 3",
                status.unavailable_replicas,
                1,
            ),
        ];
        for (name, got, want) in cases {
            assert_eq!(got, Some(want), "{name}");
        }
        assert_eq!(status.observed_generation, Some(4));
        let available = get_condition(&status, AVAILABLE).unwrap();
        assert_eq!(
            (available.status.as_str(), available.reason.as_deref()),
            ("True", Some("MinimumReplicasAvailable"))
        );
    }

    #[test]
    fn too_few_available_is_minimum_replicas_unavailable() {
        let d = deployment(3);
        let new = rs(3, 3, 1, 1);
        let status = calculate_status(
            &d,
            Some(&new),
            &[&new],
            &DeploymentStatus::default(),
            at(10),
        );
        let available = get_condition(&status, AVAILABLE).unwrap();
        assert_eq!(
            (available.status.as_str(), available.reason.as_deref()),
            ("False", Some("MinimumReplicasUnavailable"))
        );
    }

    #[test]
    fn a_replica_set_failure_shows_on_the_deployment_until_it_clears() {
        let d = deployment(1);
        let mut failing = rs(1, 0, 0, 0);
        failing.status.as_mut().unwrap().conditions =
            Some(vec![k8s_openapi::api::apps::v1::ReplicaSetCondition {
                type_: REPLICA_FAILURE.into(),
                status: "True".into(),
                reason: Some("FailedCreate".into()),
                message: Some("quota exceeded".into()),
                last_transition_time: None,
            }]);
        let status = calculate_status(
            &d,
            Some(&failing),
            &[&failing],
            &DeploymentStatus::default(),
            at(1),
        );
        let c = get_condition(&status, REPLICA_FAILURE).expect("ReplicaFailure is copied");
        assert_eq!(
            (c.reason.as_deref(), c.message.as_deref()),
            (Some("FailedCreate"), Some("quota exceeded"))
        );
        let healthy = rs(1, 1, 1, 1);
        let cleared = calculate_status(&d, Some(&healthy), &[&healthy], &status, at(2));
        assert!(get_condition(&cleared, REPLICA_FAILURE).is_none());
    }

    #[test]
    fn set_condition_keeps_transition_time_when_status_holds() {
        let mut status = DeploymentStatus::default();
        set_condition(
            &mut status,
            condition("Progressing", "True", "NewReplicaSetCreated", "m", at(1)),
        );
        set_condition(
            &mut status,
            condition("Progressing", "True", "ReplicaSetUpdated", "m", at(5)),
        );
        let c = get_condition(&status, "Progressing").unwrap();
        assert_eq!(
            (
                c.reason.as_deref(),
                c.last_transition_time.clone(),
                c.last_update_time.clone()
            ),
            (Some("ReplicaSetUpdated"), Some(at(1)), Some(at(5)))
        );
        set_condition(
            &mut status,
            condition(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                "m",
                at(9),
            ),
        );
        let c = get_condition(&status, "Progressing").unwrap();
        assert_eq!(
            c.last_transition_time,
            Some(at(9)),
            "a status flip moves the transition time"
        );
        assert_eq!(status.conditions.as_ref().unwrap().len(), 1);
    }
}
