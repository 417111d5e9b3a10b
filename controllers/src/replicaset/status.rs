//! The ReplicaSet's status as a pure function of its pods (upstream's calculateStatus),
//! and the merge patch that writes it.

use k8s_openapi::api::apps::v1::{ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use super::owner::Replicated;
use crate::podcontrol::{is_available, is_ready};

pub(super) const REPLICA_FAILURE: &str = "ReplicaFailure";

fn count(pods: &[&Pod], f: impl Fn(&Pod) -> bool) -> i32 {
    i32::try_from(pods.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
}

/// Status from the active pods the ReplicaSet owns. `manage_error` is the create or
/// delete failure of this sync, if any: it sets the ReplicaFailure condition, and a
/// clean sync clears it.
pub fn calculate_status<K: Replicated>(
    rs: &K,
    active: &[&Pod],
    manage_error: Option<(&str, String)>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let min_ready = rs.min_ready_seconds();
    let template_labels = rs
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let fully_labeled = count(active, |p| {
        let labels = p.metadata.labels.as_ref();
        template_labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    });
    let old = rs.replica_status().unwrap_or_default();
    let mut conditions: Vec<ReplicaSetCondition> = old.conditions.unwrap_or_default();
    match manage_error {
        Some((reason, message)) => {
            if !conditions.iter().any(|c| c.type_ == REPLICA_FAILURE) {
                conditions.push(ReplicaSetCondition {
                    type_: REPLICA_FAILURE.into(),
                    status: "True".into(),
                    reason: Some(reason.into()),
                    message: Some(message),
                    last_transition_time: Some(Time(now)),
                });
            }
        }
        None => conditions.retain(|c| c.type_ != REPLICA_FAILURE),
    }
    ReplicaSetStatus {
        replicas: count(active, |_| true),
        fully_labeled_replicas: Some(fully_labeled),
        ready_replicas: Some(count(active, is_ready)),
        available_replicas: Some(count(active, |p| is_available(p, min_ready, now))),
        observed_generation: rs.meta().generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: old.terminating_replicas,
    }
}

/// The merge patch for `/status`: absent conditions are written as null so a cleared
/// ReplicaFailure really goes away.
pub(super) fn status_patch(status: &ReplicaSetStatus) -> Value {
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if status.conditions.is_none() {
        value["conditions"] = Value::Null;
    }
    json!({ "status": value })
}

/// Whether writing `new` would change what the ReplicaSet says about itself.
pub(super) fn differs(old: Option<&ReplicaSetStatus>, new: &ReplicaSetStatus) -> bool {
    old != Some(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicaset::fixtures::*;

    #[test]
    fn status_counts_ready_available_and_fully_labelled_pods() {
        let now = Timestamp::from_second(100).unwrap();
        let mut rs = replica_set(4);
        rs.spec.as_mut().unwrap().min_ready_seconds = Some(30);
        rs.metadata.generation = Some(7);
        let pods = [
            pod("ready-long").running().ready_since(10), // ready 90s >= 30s: available
            pod("ready-short").running().ready_since(90), // ready 10s < 30s: not yet
            pod("running").running(),
            pod("extra-label").labelled(&[("app", "web"), ("x", "y")]),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let status = calculate_status(&rs, &refs, None, now);
        let cases = [
            ("replicas", status.replicas, 4),
            (
                "fullyLabeledReplicas",
                status.fully_labeled_replicas.unwrap(),
                4,
            ),
            ("readyReplicas", status.ready_replicas.unwrap(), 2),
            ("availableReplicas", status.available_replicas.unwrap(), 1),
        ];
        for (name, got, want) in cases {
            assert_eq!(got, want, "{name}");
        }
        assert_eq!(status.observed_generation, Some(7));
        assert!(status.conditions.is_none());
    }

    #[test]
    fn pods_missing_a_template_label_are_not_fully_labelled() {
        let mut rs = replica_set(1);
        let template_meta = rs
            .spec
            .as_mut()
            .unwrap()
            .template
            .as_mut()
            .unwrap()
            .metadata
            .as_mut()
            .unwrap();
        template_meta.labels = Some(labels(&[("app", "web"), ("tier", "front")]));
        let pods = [pod("a")];
        let refs: Vec<&Pod> = pods.iter().collect();
        let status = calculate_status(&rs, &refs, None, Timestamp::from_second(1).unwrap());
        assert_eq!(status.fully_labeled_replicas, Some(0));
    }

    #[test]
    fn create_failures_set_and_clean_syncs_clear_replica_failure() {
        let now = Timestamp::from_second(1).unwrap();
        let mut rs = replica_set(1);
        let failed = calculate_status(&rs, &[], Some(("FailedCreate", "quota".into())), now);
        let cond = &failed.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (cond.type_.as_str(), cond.reason.as_deref()),
            (REPLICA_FAILURE, Some("FailedCreate"))
        );
        rs.status = Some(failed);
        let cleared = calculate_status(&rs, &[], None, now);
        assert!(cleared.conditions.is_none());
        assert_eq!(status_patch(&cleared)["status"]["conditions"], Value::Null);
    }
}
