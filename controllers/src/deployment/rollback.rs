//! Rollback. `kubectl rollout undo` (every kubectl since apps/v1) works client-side: it
//! copies an old ReplicaSet's template (minus pod-template-hash) into the Deployment.
//! The controller's part is to recognise that ReplicaSet as the new one again, because
//! its template matches, and give it the next revision instead of making a new
//! ReplicaSet. The same path keeps an existing new ReplicaSet's annotations in step with
//! the Deployment.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use tracing::info;

use super::util;
use super::{Error, Result, Rollout};

/// The annotations the existing new ReplicaSet should have, if they differ from what it
/// has: the Deployment's copied annotations, and `new_revision` when its own is lower
/// (a rollback, or a template change back to an old one).
/// The revisions a ReplicaSet had before its current one, comma-separated.
pub(super) const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";

pub(super) fn new_rs_annotations(
    d: &Deployment,
    rs: &ReplicaSet,
    new_revision: i64,
) -> Option<BTreeMap<String, String>> {
    let current = rs.metadata.annotations.clone().unwrap_or_default();
    let mut wanted = current.clone();
    wanted.extend(util::copied_annotations(d));
    let old_revision = util::revision(rs);
    if old_revision < new_revision {
        wanted.insert(util::REVISION.into(), new_revision.to_string());
        // A ReplicaSet brought back by a rollback keeps the revisions it had before,
        // oldest first (upstream's revision-history annotation).
        if old_revision > 0 {
            let history = match current.get(REVISION_HISTORY).filter(|h| !h.is_empty()) {
                Some(h) => format!("{h},{old_revision}"),
                None => old_revision.to_string(),
            };
            wanted.insert(REVISION_HISTORY.into(), history);
        }
    }
    (wanted != current).then_some(wanted)
}

impl Rollout {
    /// Brings the existing new ReplicaSet up to date: revision, copied annotations,
    /// minReadySeconds; then records the revision on the Deployment.
    pub(crate) async fn sync_new_rs_revision(&mut self, new_revision: i64) -> Result<()> {
        let d = self.d.clone();
        let Some(rs) = self.new_rs.as_mut() else {
            return Ok(());
        };
        let annotations = new_rs_annotations(&d, rs, new_revision);
        let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        let min_ready_differs = rs
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
            != min_ready.unwrap_or(0);
        if annotations.is_some() || min_ready_differs {
            let mut patch = json!({});
            if let Some(a) = &annotations {
                patch["metadata"] = json!({"annotations": a});
            }
            if min_ready_differs {
                patch["spec"] = json!({"minReadySeconds": min_ready.unwrap_or(0)});
            }
            let from = util::revision(rs);
            *rs = self
                .rs_api
                .patch(
                    &rs.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(patch),
                )
                .await
                .map_err(|source| Error::UpdateReplicaSet {
                    name: rs.name_any(),
                    source,
                })?;
            let to = util::revision(rs);
            if from != to {
                info!(replicaset = %rs.name_any(), from, to, "reusing replicaset under a new revision");
            }
        }
        let revision = util::revision(rs);
        let name = rs.name_any();
        let has_progressing = self
            .status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == super::progress::PROGRESSING);
        if !has_progressing {
            self.set_progressing_if_deadline(
                "True",
                "FoundNewReplicaSet",
                format!("Found new replica set \"{name}\""),
            );
        }
        self.set_deployment_revision(revision).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicaset::fixtures::replica_set;

    fn with_revision(mut rs: ReplicaSet, revision: &str) -> ReplicaSet {
        rs.metadata.annotations = Some([(util::REVISION.to_string(), revision.to_string())].into());
        rs
    }

    #[test]
    fn an_old_replica_set_made_new_again_gets_the_next_revision() {
        let d = Deployment::default();
        let rs = with_revision(replica_set(0), "1");
        // Revisions 1 (this one) and 2 exist; undo to 1 makes it revision 3.
        let got = new_rs_annotations(&d, &rs, 3).expect("the revision changes");
        assert_eq!(got.get(util::REVISION).map(String::as_str), Some("3"));
        assert_eq!(got.get(REVISION_HISTORY).map(String::as_str), Some("1"));
    }

    #[test]
    fn revision_history_appends_each_earlier_revision() {
        let d = Deployment::default();
        let mut rs = with_revision(replica_set(0), "3");
        rs.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(REVISION_HISTORY.into(), "1".into());
        let got = new_rs_annotations(&d, &rs, 5).expect("the revision changes");
        assert_eq!(got.get(REVISION_HISTORY).map(String::as_str), Some("1,3"));
    }

    #[test]
    fn an_up_to_date_replica_set_is_left_alone() {
        let d = Deployment::default();
        let rs = with_revision(replica_set(3), "2");
        assert_eq!(new_rs_annotations(&d, &rs, 2), None);
    }

    #[test]
    fn change_cause_is_copied_but_last_applied_is_not() {
        let mut d = Deployment::default();
        d.metadata.annotations = Some(
            [
                (
                    "kubernetes.io/change-cause".to_string(),
                    "image bump".to_string(),
                ),
                (
                    "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                    "{}".to_string(),
                ),
            ]
            .into(),
        );
        let rs = with_revision(replica_set(3), "2");
        let got = new_rs_annotations(&d, &rs, 2).expect("change-cause is new");
        assert_eq!(
            got.get("kubernetes.io/change-cause").map(String::as_str),
            Some("image bump")
        );
        assert!(!got.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
    }
}
