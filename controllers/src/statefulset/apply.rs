//! The writes that carry out a StatefulSet's plan: one step at a time (create a pod and
//! its claims, delete a pod, relabel a pod), each recorded as expected.

use std::time::Instant;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use serde_json::json;
use tracing::info;

use super::identity::{self, claim_is_stale, claim_owner_refs, claims_for};
use super::plan::{self, Revision, Step};
use super::revision;
use super::sync::{is_status, Sync};
use super::{Error, Result};

impl Sync<'_> {
    /// Carries out one step; returns whether it is waiting for something no event of
    /// its own announces (a stale claim).
    pub(super) async fn apply(
        &self,
        step: &Step,
        current: &ControllerRevision,
        update: &ControllerRevision,
    ) -> Result<bool> {
        match step {
            Step::Create { ordinal, revision } => {
                let (rev, template) = match revision {
                    Revision::Current => (current, revision::template_of(current)),
                    Revision::Update => (update, None),
                };
                let template = template.unwrap_or_else(|| {
                    self.set
                        .spec
                        .as_ref()
                        .map(|s| s.template.clone())
                        .unwrap_or_default()
                });
                let pod = identity::new_pod(self.set, &template, *ordinal, &rev.name_any());
                if !self.create_claims(*ordinal).await? {
                    return Ok(true);
                }
                let name = pod.name_any();
                let created = self.pods.create(&PostParams::default(), &pod).await;
                self.pod_event("create", &name, created.as_ref().err())
                    .await;
                created.map_err(Error::api("creating pod", &name))?;
                info!(pod = %name, revision = %rev.name_any(), "created pod");
                self.state
                    .expectations
                    .expect_creations(&self.key, [name], Instant::now());
            }
            Step::Delete { name, uid, why } => {
                self.state
                    .expectations
                    .expect_deletions(&self.key, [uid.clone()], Instant::now());
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match self.pods.delete(name, &params).await {
                    Ok(_) => {
                        info!(pod = %name, reason = ?why, "deleted pod");
                        self.pod_event("delete", name, None).await;
                    }
                    // Gone already, or replaced by a pod with the same name.
                    Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
                    Err(e) => {
                        self.pod_event("delete", name, Some(&e)).await;
                        self.state.expectations.forget(&self.key);
                        return Err(Error::api("deleting pod", name)(e));
                    }
                }
            }
            Step::Relabel { name } => {
                let ordinal = identity::parent_and_ordinal(name).map_or(0, |(_, o)| o);
                let patch =
                    json!({"metadata": {"labels": identity::identity_labels(self.set, ordinal)}});
                self.pods
                    .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(Error::api("relabelling pod", name))?;
            }
        }
        Ok(false)
    }

    /// The event upstream's stateful pod control records for `verb` ("create", "delete")
    /// on pod `name`: `SuccessfulCreate` "create Pod web-0 in StatefulSet web successful",
    /// or `FailedCreate` with the error.
    async fn pod_event(&self, verb: &str, name: &str, error: Option<&kube::Error>) {
        let set = self.set.name_any();
        let title = verb[..1].to_uppercase() + &verb[1..];
        let (type_, reason, message) = match error {
            None => (
                "Normal",
                format!("Successful{title}"),
                format!("{verb} Pod {name} in StatefulSet {set} successful"),
            ),
            Some(e) => (
                "Warning",
                format!("Failed{title}"),
                format!(
                    "{verb} Pod {name} in StatefulSet {set} failed error: {}",
                    crate::podcontrol::error_message(e)
                ),
            ),
        };
        let client = self.pods.clone().into_client();
        crate::podcontrol::publish_event(
            &client,
            self.set,
            type_,
            &reason,
            &message,
            "statefulset-controller",
        )
        .await;
    }

    /// Creates the missing claims of `ordinal`; false when one is stale or being
    /// deleted and the pod must wait for it to go.
    async fn create_claims(&self, ordinal: i32) -> Result<bool> {
        let start = plan::start_ordinal(self.set);
        let in_range = (start..start + plan::replicas(self.set)).contains(&ordinal);
        for (_, mut claim) in claims_for(self.set, ordinal) {
            let name = claim.name_any();
            let key = ObjectRef::new(&name).within(&claim.namespace().unwrap_or_default());
            if let Some(existing) = self.state.claims.get(&key) {
                if claim_is_stale(&existing, None) {
                    info!(claim = %name, "waiting for a stale claim to be deleted");
                    return Ok(false);
                }
                continue;
            }
            let placeholder = Pod::default();
            claim.metadata.owner_references =
                claim_owner_refs(self.set, &placeholder, in_range, &claim)
                    .filter(|refs| !refs.is_empty());
            match self.claims.create(&PostParams::default(), &claim).await {
                Ok(_) => info!(claim = %name, "created claim"),
                Err(e) if is_status(&e, 409) => {}
                Err(e) => return Err(Error::api("creating claim", &name)(e)),
            }
        }
        Ok(true)
    }
}
