//! The DaemonSet controller: one pod on every node that should run it (nodeSelector,
//! required node affinity, taints and tolerations, with the daemon tolerations added),
//! pinned there by `metadata.name` node affinity so the default scheduler binds it;
//! failed pods replaced with back-off; ControllerRevisions per template; RollingUpdate
//! (maxUnavailable, maxSurge) or OnDelete; and the status `kubectl rollout status`
//! reads (upstream pkg/controller/daemon). Phases: `nodes` (eligibility, the pod),
//! `manage` (the core loop), `rolling`, `history`, `status`, `sync` (the writes).

mod apply;
mod backoff;
#[cfg(test)]
mod fixtures;
pub mod history;
pub mod nodes;
pub mod plan;
pub mod rolling;
pub mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::Controller;
use kube::{Api, ResourceExt};
use tracing::{info, instrument, warn};

use crate::expectations::{cached, Expectations};
use crate::podcontrol::{self, seconds_until_available};
use crate::runtime::informers::Informers;
use crate::shared::labels;
use crate::{Context, LoopFuture};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("daemonset {0} has no namespace")]
    NoNamespace(String),
    #[error("creating pods for {key}: {source}")]
    CreatePods { key: String, source: kube::Error },
    #[error("deleting pod {pod}: {source}")]
    DeletePod { pod: String, source: kube::Error },
    #[error("adopting or releasing {name}: {source}")]
    Claim { name: String, source: kube::Error },
    #[error("writing controller revision {name}: {source}")]
    Revision { name: String, source: kube::Error },
    #[error("revision {0} exists with another template; collisionCount raised, retrying")]
    HashCollision(String),
    #[error("writing status of {key}: {source}")]
    Status { key: String, source: kube::Error },
}

impl crate::runtime::retry::ReconcileError for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the reconciler reads and remembers between syncs.
pub struct State {
    pub client: kube::Client,
    pub nodes: Store<Node>,
    pub pods: Store<Pod>,
    pub revisions: Store<ControllerRevision>,
    pub expectations: Expectations,
    failed_backoff: backoff::Backoff,
}

/// The loop entry for [`crate::loops`].
pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        run_controller(&ctx.informers).await;
        anyhow::bail!("the daemonset controller stopped")
    })
}

/// Runs the controller until its streams end.
pub async fn run_controller(informers: &Informers) {
    let pods = informers.all::<Pod>();
    let nodes = informers.all::<Node>();
    let revisions = informers.all::<ControllerRevision>();
    let daemon_sets = informers.all::<DaemonSet>();
    tokio::join!(
        pods.synced(),
        nodes.synced(),
        revisions.synced(),
        daemon_sets.synced()
    );
    let for_pods = daemon_sets.store();
    let for_nodes = daemon_sets.store();
    let state = Arc::new(State {
        client: informers.client().clone(),
        nodes: nodes.store(),
        pods: pods.store(),
        revisions: revisions.store(),
        expectations: Expectations::default(),
        failed_backoff: backoff::Backoff::default(),
    });
    Controller::for_shared_stream(daemon_sets.touched(), daemon_sets.store())
        .owns_shared_stream(revisions.touched())
        .watches_shared_stream(pods.touched(), move |pod| {
            podcontrol::owners_for_pod(&for_pods, &pod, |o| o.spec.as_ref().map(|s| &s.selector))
        })
        // Any node change may change where every DaemonSet runs.
        .watches_shared_stream(nodes.touched(), move |_node: Arc<Node>| {
            for_nodes
                .state()
                .iter()
                .map(|ds| ObjectRef::from_obj(ds.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(
            crate::runtime::metrics::metered(reconcile),
            crate::runtime::retry::error_policy,
            state,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "daemonset reconcile failed");
            }
        })
        .await;
}

/// Upstream syncDaemonSet: claim pods and revisions, find the current revision; then,
/// unless earlier writes are still unobserved, run the core loop, and if it had nothing
/// to do, one rolling-update step; prune history; write the status.
#[instrument(skip_all, fields(key = %format!("{}/{}", ds.namespace().unwrap_or_default(), ds.name_any())))]
pub async fn reconcile(ds: Arc<DaemonSet>, state: Arc<State>) -> Result<Action> {
    let ns = ds
        .namespace()
        .ok_or_else(|| Error::NoNamespace(ds.name_any()))?;
    let key = format!("{ns}/{}", ds.name_any());
    if podcontrol::is_deleting(&ds.metadata) {
        state.expectations.forget(&key);
        return Ok(Action::await_change());
    }
    let Some(spec) = ds.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    if labels::is_empty(&spec.selector) {
        warn!("daemonset has an empty selector; it would select every pod, so it is left alone");
        return Ok(Action::await_change());
    }
    // A partial node list would look like removed nodes and delete their pods.
    let ready = futures::future::try_join3(
        state.nodes.wait_until_ready(),
        state.pods.wait_until_ready(),
        state.revisions.wait_until_ready(),
    );
    if !matches!(
        tokio::time::timeout(Duration::from_secs(5), ready).await,
        Ok(Ok(_))
    ) {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }

    let sync = apply::Sync::new(&state, &ds, &ns, &key);
    let in_namespace: Vec<Arc<Pod>> = state
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .collect();
    let pods = sync.claim_pods(&in_namespace).await?;
    let pod_refs: Vec<&Pod> = pods.iter().collect();
    let revisions = sync.claim_revisions().await?;
    let revision_refs: Vec<&ControllerRevision> = revisions.iter().collect();
    let (hash, old) = history::construct(
        &sync.revisions_api,
        &sync.pods_api,
        &ds,
        &revision_refs,
        &pod_refs,
    )
    .await?;

    let all_nodes = state.nodes.state();
    let nodes: Vec<&Node> = all_nodes.iter().map(|n| n.as_ref()).collect();
    let by_node = plan::pods_by_node(&pod_refs, false);
    let now = Instant::now();
    let now_ts = Timestamp::now();
    let satisfied =
        state
            .expectations
            .satisfied(&key, &cached(in_namespace.iter().map(AsRef::as_ref)), now);
    let mut retry_after = None;
    if let Err(in_flight) = satisfied {
        info!(
            in_flight,
            "waiting for the cache to observe earlier creates/deletes"
        );
    } else {
        let plan = plan::plan(
            &ds,
            &nodes,
            &by_node,
            &hash,
            &state.failed_backoff,
            now,
            now_ts,
        );
        retry_after = plan.retry_after;
        let wrote =
            !(plan.create_on.is_empty() && plan.delete.is_empty() && plan.orphaned.is_empty());
        sync.sync_nodes(&plan.delete, &plan.orphaned, &plan.create_on, &hash)
            .await?;
        if !wrote && rolling::is_rolling(&ds) {
            let step = rolling::step(&ds, &nodes, &by_node, &hash, now_ts);
            let delete: Vec<&Pod> = pod_refs
                .iter()
                .copied()
                .filter(|p| {
                    step.delete
                        .iter()
                        .any(|n| p.metadata.name.as_deref() == Some(n.as_str()))
                })
                .collect();
            sync.sync_nodes(&delete, &[], &step.create_on, &hash)
                .await?;
        }
        // Every owned pod counts here, finished and deleting ones included.
        history::cleanup(&sync.revisions_api, &ds, &old, &pod_refs).await?;
    }

    let new_status =
        status::calculate_status(&ds, &nodes, &by_node, &hash, now_ts, satisfied.is_ok());
    if ds.status.as_ref() != Some(&new_status) {
        Api::<DaemonSet>::namespaced(state.client.clone(), &ns)
            .patch_status(
                &ds.name_any(),
                &PatchParams::default(),
                &Patch::Merge(status::status_patch(&new_status)),
            )
            .await
            .map_err(|source| Error::Status {
                key: key.clone(),
                source,
            })?;
    }

    // A ready pod becomes available minReadySeconds later; nothing announces that.
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let until_available = pod_refs
        .iter()
        .filter_map(|p| seconds_until_available(p, min_ready, now_ts))
        .min()
        .map(|s| Duration::from_secs(s.unsigned_abs() + 1));
    let waiting = satisfied.is_err().then_some(Duration::from_secs(5));
    let next = [until_available, retry_after, waiting]
        .into_iter()
        .flatten()
        .min();
    Ok(Action::requeue(next.unwrap_or(Duration::from_secs(300))))
}
