//! The pod garbage collector (upstream pkg/controller/podgc), one sweep every
//! `period`: it removes, with grace period 0,
//!
//! 1. terminated (Succeeded/Failed) pods beyond `terminated_pod_threshold` (upstream's
//!    --terminated-pod-gc-threshold, 12500), evicted and oldest first;
//! 2. pods bound to nodes that do not exist, once a node has been missing from the cache
//!    for `quarantine` (40 s) and the API server confirms it is gone (marked Failed with
//!    a DisruptionTarget condition first, as upstream);
//! 3. pods being deleted that were never scheduled.
//!
//! Without it a pod on a deleted node waits forever for a kubelet to finish its graceful
//! deletion, and so does its namespace's deletion. Not done: upstream's out-of-service
//! taint handling (terminating pods on a NotReady node tainted out-of-service).

mod apply;
mod plan;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use tracing::{info, warn};

pub use plan::{
    is_terminated, missing_nodes, orphaned, terminated_over_threshold, unscheduled_terminating,
    Quarantine, Reason,
};

use crate::runtime::informers::Informers;
use crate::{Context, LoopFuture};

/// The collector's settings; `Config::default()` is upstream's. `kybern server` passes
/// one through [`Context::settings`] (`Context::with_setting`), tests a shorter one.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long a node must be missing before its pods are removed.
    pub quarantine: Duration,
    /// Terminated pods kept cluster-wide; 0 keeps them all.
    pub terminated_pod_threshold: usize,
    /// Time between sweeps (upstream's gcCheckPeriod).
    pub period: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            quarantine: Duration::from_secs(40),
            terminated_pod_threshold: 12_500,
            period: Duration::from_secs(20),
        }
    }
}

/// The loop entry for [`crate::loops`], with the context's [`Config`] or the default.
pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        let config = ctx.settings.get::<Config>().cloned().unwrap_or_default();
        run_with(&ctx.informers, config).await
    })
}

/// Sweeps every `config.period` until the process stops.
pub async fn run_with(informers: &Informers, config: Config) -> anyhow::Result<()> {
    let pods = informers.all::<Pod>();
    let nodes = informers.all::<Node>();
    tokio::join!(pods.synced(), nodes.synced());
    let (pods, nodes) = (pods.store(), nodes.store());
    let client = informers.client().clone();
    let mut quarantine = Quarantine::default();
    loop {
        let all_pods = pods.state();
        let node_names: BTreeSet<String> = nodes.state().iter().map(|n| n.name_any()).collect();
        let pods_ref = all_pods.iter().map(AsRef::as_ref);
        let missing = missing_nodes(pods_ref.clone(), &node_names);
        let mut gone = BTreeSet::new();
        for node in quarantine.expired(&missing, Instant::now(), config.quarantine) {
            match apply::node_is_gone(&client, &node).await {
                Ok(true) => {
                    gone.insert(node);
                }
                Ok(false) => {}
                Err(e) => warn!(node, error = %e, "checking whether a node still exists"),
            }
        }
        let removals = terminated_over_threshold(pods_ref.clone(), config.terminated_pod_threshold)
            .into_iter()
            .map(|p| (p, Reason::Terminated))
            .chain(
                orphaned(pods_ref.clone(), &gone)
                    .into_iter()
                    .map(|p| (p, Reason::Orphaned)),
            )
            .chain(
                unscheduled_terminating(pods_ref)
                    .into_iter()
                    .map(|p| (p, Reason::UnscheduledTerminating)),
            );
        // One removal at a time per reason would be upstream's shape; concurrently here,
        // bounded by the process-wide write slots.
        let results = futures::future::join_all(removals.map(|(pod, reason)| {
            let client = client.clone();
            async move { (pod, reason, apply::remove(&client, pod, reason).await) }
        }))
        .await;
        for (pod, reason, result) in results {
            let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
            match result {
                Ok(()) => {
                    info!(key, ?reason, node = ?pod.spec.as_ref().and_then(|s| s.node_name.as_deref()), "garbage collected pod")
                }
                Err(e) => warn!(key, ?reason, error = %e, "garbage collecting pod"),
            }
        }
        tokio::time::sleep(config.period).await;
    }
}
