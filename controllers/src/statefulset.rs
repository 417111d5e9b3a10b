//! The StatefulSet controller: pods with stable names `<set>-<ordinal>`, hostnames and
//! claims `<template>-<set>-<ordinal>` that outlive them, created and removed in ordinal
//! order (OrderedReady) or all at once (Parallel), rolled to new templates from the
//! highest ordinal down to a partition (or on delete), with the template history kept
//! as ControllerRevisions (upstream pkg/controller/statefulset). `identity` names pods
//! and claims, `revision` keeps the history, `plan` decides, `sync` writes.

mod apply;
pub mod identity;
pub mod plan;
pub mod revision;
mod sync;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod plan_tests;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::Controller;
use kube::ResourceExt;
use tracing::warn;

pub use sync::reconcile;

use crate::expectations::Expectations;
use crate::podcontrol::{controller_of, controller_selects};
use crate::runtime::informers::Informers;
use crate::{Context, LoopFuture};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("statefulset {0} has no namespace")]
    NoNamespace(String),
    #[error("{action} {what}: {source}")]
    Api {
        action: &'static str,
        what: String,
        source: kube::Error,
    },
}

impl crate::runtime::retry::ReconcileError for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn api(
        action: &'static str,
        what: impl Into<String>,
    ) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |source| Error::Api {
            action,
            what,
            source,
        }
    }
}

/// What the reconciler reads and remembers between syncs.
pub struct State {
    pub client: kube::Client,
    pub pods: Store<Pod>,
    pub claims: Store<PersistentVolumeClaim>,
    pub revisions: Store<ControllerRevision>,
    pub expectations: Expectations,
}

/// The loop entry for [`crate::loops`].
pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        run_controller(&ctx.informers).await;
        anyhow::bail!("the statefulset controller stopped")
    })
}

/// Runs the controller until its streams end.
pub async fn run_controller(informers: &Informers) {
    let pods = informers.all::<Pod>();
    let claims = informers.all::<PersistentVolumeClaim>();
    let revisions = informers.all::<ControllerRevision>();
    let sets = informers.all::<StatefulSet>();
    tokio::join!(
        pods.synced(),
        claims.synced(),
        revisions.synced(),
        sets.synced()
    );
    let sets_of_pods = sets.store();
    let sets_of_claims = sets.store();
    let state = Arc::new(State {
        client: informers.client().clone(),
        pods: pods.store(),
        claims: claims.store(),
        revisions: revisions.store(),
        expectations: Expectations::default(),
    });
    Controller::for_shared_stream(sets.touched(), sets.store())
        .owns_shared_stream(revisions.touched())
        .watches_shared_stream(pods.touched(), move |pod| sets_for(&sets_of_pods, &pod))
        // A claim a new pod waits for (stale or being deleted) going away.
        .watches_shared_stream(claims.touched(), move |claim| {
            set_of_claim(&sets_of_claims, &claim)
        })
        .run(
            crate::runtime::metrics::metered(reconcile),
            crate::runtime::retry::error_policy,
            state,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "statefulset reconcile failed");
            }
        })
        .await;
}

/// The StatefulSets a pod event concerns: its controller, or the set it is named after
/// when that set would adopt it.
fn sets_for(sets: &Store<StatefulSet>, pod: &Pod) -> Vec<ObjectRef<StatefulSet>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(&pod.metadata) {
        return if owner.kind == "StatefulSet" {
            vec![ObjectRef::new(&owner.name).within(&ns)]
        } else {
            vec![]
        };
    }
    let name = pod.name_any();
    let Some((parent, _)) = identity::parent_and_ordinal(&name) else {
        return vec![];
    };
    let key = ObjectRef::new(parent).within(&ns);
    sets.get(&key)
        .filter(|s| {
            s.spec
                .as_ref()
                .is_some_and(|spec| controller_selects(&spec.selector, pod.labels()))
        })
        .map(|_| vec![key])
        .unwrap_or_default()
}

/// The set a claim `<template>-<set>-<ordinal>` belongs to: both names may hold dashes,
/// so the sets of the namespace are matched against the name.
fn set_of_claim(
    sets: &Store<StatefulSet>,
    claim: &PersistentVolumeClaim,
) -> Vec<ObjectRef<StatefulSet>> {
    let ns = claim.namespace().unwrap_or_default();
    let name = claim.name_any();
    let Some((rest, _)) = identity::parent_and_ordinal(&name) else {
        return vec![];
    };
    sets.state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
        .filter(|s| rest.ends_with(&format!("-{}", s.name_any())))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}
