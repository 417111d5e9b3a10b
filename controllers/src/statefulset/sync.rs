//! One sync of one StatefulSet, in upstream's order: claim pods, settle the revision
//! history, fix claim owners for the retention policy, carry out the plan, write the
//! status, trim old revisions. The plan's steps are carried out by `apply.rs`. Every write
//! is recorded as expected so a stale cache never makes the same pod twice.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{info, instrument};

use super::identity::{self, claim_owner_refs, claims_for, ordinal_of};
use super::plan;
use super::revision::{self, UpdateRevision};
use super::{Error, Result, State};
use crate::expectations::cached;
use crate::podcontrol::{
    self, controller_of, controller_ref, controller_selects, is_deleting, seconds_until_available,
};

pub(super) fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// One sync's context.
pub(super) struct Sync<'a> {
    pub(super) state: &'a State,
    pub(super) set: &'a StatefulSet,
    pub(super) key: String,
    pub(super) pods: Api<Pod>,
    pub(super) claims: Api<PersistentVolumeClaim>,
    pub(super) revisions: Api<ControllerRevision>,
}

#[instrument(skip_all, fields(key = %format!("{}/{}", set.namespace().unwrap_or_default(), set.name_any())))]
pub async fn reconcile(set: Arc<StatefulSet>, state: Arc<State>) -> Result<Action> {
    let ns = set
        .namespace()
        .ok_or_else(|| Error::NoNamespace(set.name_any()))?;
    let client = state.client.clone();
    let s = Sync {
        state: &state,
        set: &set,
        key: format!("{ns}/{}", set.name_any()),
        pods: Api::namespaced(client.clone(), &ns),
        claims: Api::namespaced(client.clone(), &ns),
        revisions: Api::namespaced(client, &ns),
    };
    let in_namespace: Vec<Pod> = state
        .pods
        .state()
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .map(|p| p.as_ref().clone())
        .collect();
    let owned = s.claim_pods(&in_namespace).await?;
    let (history, current, update, collision_count) = s.settle_revisions().await?;

    if let Err(in_flight) =
        state
            .expectations
            .satisfied(&s.key, &cached(&in_namespace), Instant::now())
    {
        info!(
            in_flight,
            "waiting for the cache to observe earlier creates/deletes"
        );
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    s.fix_claim_owners(&owned).await?;
    let now = Timestamp::now();
    let refs: Vec<&Pod> = owned.iter().collect();
    let plan = plan::plan(&set, &current.name_any(), &update.name_any(), &refs, now);
    let mut waiting = false;
    for step in &plan.steps {
        waiting |= s.apply(step, &current, &update).await?;
    }

    let mut status = plan.status;
    status.collision_count = Some(collision_count);
    if set.status.as_ref() != Some(&status) {
        let api: Api<StatefulSet> = Api::namespaced(state.client.clone(), &ns);
        api.patch_status(
            &set.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .map_err(Error::api("writing status of", &s.key))?;
    }

    let mut live: HashSet<String> = owned
        .iter()
        .map(|p| identity::pod_revision(p).to_string())
        .collect();
    live.extend([current.name_any(), update.name_any()]);
    let limit = set
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10);
    for name in revision::history_to_delete(&history, &live, limit) {
        match s.revisions.delete(&name, &DeleteParams::default()).await {
            Ok(_) => info!(revision = %name, "deleted old revision"),
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(Error::api("deleting revision", name)(e)),
        }
    }

    // A ready pod becomes available minReadySeconds after it turned ready; no event
    // announces that, so come back then.
    let min_ready = set
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let next = owned
        .iter()
        .filter_map(|p| seconds_until_available(p, min_ready, now))
        .min();
    Ok(match (next, waiting) {
        (Some(secs), _) => Action::requeue(Duration::from_secs(secs.unsigned_abs() + 1)),
        (None, true) => Action::requeue(Duration::from_secs(2)),
        (None, false) => Action::requeue(Duration::from_secs(300)),
    })
}

impl Sync<'_> {
    /// Adopts matching orphans named like members and releases members that stopped
    /// matching; returns the pods the set controls.
    async fn claim_pods(&self, in_namespace: &[Pod]) -> Result<Vec<Pod>> {
        let claim = identity::claim_pods(self.set, in_namespace);
        let uid = self.set.uid().unwrap_or_default();
        for pod in &claim.release {
            podcontrol::release(&self.pods, *pod, &uid)
                .await
                .map_err(Error::api("releasing pod", pod.name_any()))?;
            info!(pod = %pod.name_any(), "released pod that no longer matches the selector");
        }
        let mut owned: Vec<Pod> = claim.owned.iter().map(|p| (*p).clone()).collect();
        for pod in &claim.adopt {
            match podcontrol::adopt(&self.pods, *pod, controller_ref(self.set)).await {
                Ok(pod) => {
                    info!(pod = %pod.name_any(), "adopted orphan pod");
                    owned.push(pod);
                }
                // Deleted or changed since the cache saw it: the next event brings us back.
                Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409 | 422) => {}
                Err(e) => return Err(Error::api("adopting pod", pod.name_any())(e)),
            }
        }
        Ok(owned)
    }

    /// The sorted history, the current and update revisions, and the collision count
    /// (upstream's getStatefulSetRevisions): the set's template is found in the history
    /// (renumbered if older than the newest) or stored as a new revision.
    async fn settle_revisions(
        &self,
    ) -> Result<(
        Vec<ControllerRevision>,
        ControllerRevision,
        ControllerRevision,
        i32,
    )> {
        let set = self.set;
        let ns = set.namespace();
        let uid = set.uid().unwrap_or_default();
        let empty = Default::default();
        let selector = set.spec.as_ref().map(|s| &s.selector);
        let mut history = Vec::new();
        for r in self.state.revisions.state() {
            if r.namespace() != ns {
                continue;
            }
            match controller_of(&r.metadata) {
                Some(owner) if owner.uid == uid => history.push(r.as_ref().clone()),
                None if !is_deleting(&set.metadata)
                    && selector.is_some_and(|sel| {
                        controller_selects(sel, r.metadata.labels.as_ref().unwrap_or(&empty))
                    }) =>
                {
                    match podcontrol::adopt(&self.revisions, r.as_ref(), controller_ref(set)).await
                    {
                        Ok(adopted) => history.push(adopted),
                        Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409 | 422) => {}
                        Err(e) => return Err(Error::api("adopting revision", r.name_any())(e)),
                    }
                }
                _ => {}
            }
        }
        revision::sort(&mut history);
        let mut collision_count = set
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let number = revision::next_number(&history);
        let mut candidate = revision::new_revision(set, number, collision_count);
        let update = match revision::choose_update(&history, &candidate) {
            UpdateRevision::Latest(name) => history
                .iter()
                .find(|r| r.name_any() == name)
                .cloned()
                .expect("choose_update names a revision of the history"),
            UpdateRevision::Renumber { name, number } => {
                info!(revision = %name, number, "template rolled back to an earlier revision");
                self.revisions
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "revision": number })),
                    )
                    .await
                    .map_err(Error::api("renumbering revision", &name))?
            }
            UpdateRevision::Create => loop {
                match self
                    .revisions
                    .create(&PostParams::default(), &candidate)
                    .await
                {
                    Ok(created) => {
                        info!(revision = %created.name_any(), "stored a new revision");
                        break created;
                    }
                    Err(e) if is_status(&e, 409) => {
                        let name = candidate.name_any();
                        let existing = self
                            .revisions
                            .get(&name)
                            .await
                            .map_err(Error::api("reading revision", &name))?;
                        let ours = controller_of(&existing.metadata).is_some_and(|o| o.uid == uid);
                        if ours && revision::equal(&existing, &candidate) {
                            break existing;
                        }
                        // Someone else's revision, or another template under this hash.
                        collision_count += 1;
                        candidate = revision::new_revision(set, number, collision_count);
                    }
                    Err(e) => return Err(Error::api("creating revision", candidate.name_any())(e)),
                }
            },
        };
        let wanted = set.status.as_ref().and_then(|s| s.current_revision.clone());
        let current = history
            .iter()
            .find(|r| Some(r.name_any()) == wanted)
            .cloned()
            .unwrap_or_else(|| update.clone());
        Ok((history, current, update, collision_count))
    }

    /// Gives each member's existing claims the owner references the retention policy
    /// asks for (before any scale-down, so the claims of a condemned pod go with it).
    async fn fix_claim_owners(&self, owned: &[Pod]) -> Result<()> {
        let start = plan::start_ordinal(self.set);
        let range = start..start + plan::replicas(self.set);
        for pod in owned.iter().filter(|p| !is_deleting(&p.metadata)) {
            let Some(ordinal) = ordinal_of(self.set, pod) else {
                continue;
            };
            for (_, claim) in claims_for(self.set, ordinal) {
                let name = claim.name_any();
                let key = ObjectRef::new(&name).within(&claim.namespace().unwrap_or_default());
                let Some(existing) = self.state.claims.get(&key) else {
                    continue;
                };
                if is_deleting(&existing.metadata) {
                    continue;
                }
                let Some(refs) =
                    claim_owner_refs(self.set, pod, range.contains(&ordinal), &existing)
                else {
                    continue;
                };
                let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": existing.resource_version()}});
                self.claims
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(Error::api("setting owners of claim", &name))?;
                info!(claim = %name, "claim owners follow the retention policy");
            }
        }
        Ok(())
    }
}
