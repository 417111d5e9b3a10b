//! The node lifecycle controller (upstream pkg/controller/nodelifecycle and the taint
//! eviction controller), one pass every `monitor_period`:
//!
//! 1. health: a node whose Lease (kube-node-lease) and Ready heartbeat have not changed
//!    for `grace_period` gets Ready, MemoryPressure, DiskPressure and PIDPressure set to
//!    Unknown ("Kubelet stopped posting node status.") and its pods marked not Ready;
//! 2. taints: NoSchedule taints mirror the conditions (unreachable, not-ready, pressure,
//!    unschedulable); a node not Ready gets `unreachable`/`not-ready` NoExecute, added at
//!    most `eviction_rate` nodes a second (a token bucket, upstream's 0.1/s burst 1) and
//!    removed as soon as the node is Ready again;
//! 3. eviction: pods on a node with NoExecute taints are deleted now if they do not
//!    tolerate one, or after their tolerationSeconds (the apiserver gives every pod 300 s
//!    for not-ready/unreachable, as upstream's DefaultTolerationSeconds admission).
//!
//! Not done: upstream's per-zone states (a zone with most nodes down evicts at the
//! secondary rate, a fully disrupted cluster stops evicting), the node startup grace
//! period, and force-deleting pods of nodes gone for good (pod GC).

mod eviction;
mod health;
mod taints;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

pub use eviction::{eviction, Eviction};
pub use health::{
    is_silent, unknown_conditions, Heartbeat, Tracker, MESSAGE_UNKNOWN, REASON_UNKNOWN,
};
pub use taints::{desired_taints, TokenBucket, NOT_READY, UNREACHABLE};

use crate::podcontrol::{is_ready, record_event};
use crate::runtime::informers::Informers;
use crate::{Context, LoopFuture};

pub const LEASE_NAMESPACE: &str = "kube-node-lease";
const COMPONENT: &str = "node-controller";

/// The controller's timings; `Config::default()` is upstream's.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long a node may stay silent before it is Unknown (--node-monitor-grace-period).
    pub grace_period: Duration,
    /// How often nodes are checked (--node-monitor-period).
    pub monitor_period: Duration,
    /// Nodes a second that may be tainted NoExecute (--node-eviction-rate) ...
    pub eviction_rate: f64,
    /// ... and how many at once.
    pub eviction_burst: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            grace_period: Duration::from_secs(40),
            monitor_period: Duration::from_secs(5),
            eviction_rate: 0.1,
            eviction_burst: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the {0} watch ended")]
    WatchEnded(&'static str),
}

/// The loop entry for [`crate::loops`].
pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move { Ok(run_shared(&ctx.informers, Config::default()).await?) })
}

/// Runs the controller with `config` and informers of its own until a watch ends.
pub async fn run_with(client: kube::Client, config: Config) -> Result<(), Error> {
    run_shared(&Informers::new(client), config).await
}

/// Runs the controller with `config`, reading nodes and pods from `informers`, until
/// its lease watch ends.
pub async fn run_shared(informers: &Informers, config: Config) -> Result<(), Error> {
    let client = informers.client().clone();
    let nodes = informers.all::<Node>();
    let pods = informers.all::<Pod>();
    tokio::join!(nodes.synced(), pods.synced());
    let (nodes, pods) = (nodes.store(), pods.store());
    // Only the node leases, in their own namespace: not shared with other loops.
    let (leases, lease_writer) = reflector::store();
    let lease_api = Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE);
    let lease_watch = watcher(lease_api, watcher::Config::default())
        .default_backoff()
        .reflect(lease_writer);

    let mut monitor = Monitor {
        client,
        bucket: TokenBucket::new(config.eviction_rate, config.eviction_burst),
        config,
        tracker: Tracker::default(),
        first_seen: HashMap::new(),
        nodes,
        leases,
        pods,
    };
    tokio::select! {
        _ = lease_watch.for_each(|_| async {}) => Err(Error::WatchEnded("lease")),
        _ = monitor.run() => Err(Error::WatchEnded("store")),
    }
}

struct Monitor {
    client: kube::Client,
    config: Config,
    tracker: Tracker,
    bucket: TokenBucket,
    /// When each pod (by uid) was first seen on a node with NoExecute taints.
    first_seen: HashMap<String, Timestamp>,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
}

impl Monitor {
    async fn run(&mut self) {
        for ready in [
            self.nodes.wait_until_ready().await,
            self.leases.wait_until_ready().await,
            self.pods.wait_until_ready().await,
        ] {
            if ready.is_err() {
                return;
            }
        }
        let mut ticks = tokio::time::interval(self.config.monitor_period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.pass().await;
        }
    }

    async fn pass(&mut self) {
        let now = Timestamp::now();
        let nodes = self.nodes.state();
        self.tracker
            .retain(|name| nodes.iter().any(|n| n.name_any() == name));
        let mut pods_by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        for pod in self.pods.state() {
            if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
                pods_by_node.entry(node).or_default().push(pod);
            }
        }
        let mut no_execute: HashMap<String, Vec<Taint>> = HashMap::new();
        for node in nodes {
            let name = node.name_any();
            let lease = self
                .leases
                .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE));
            if !self.tracker.knows(&name) {
                // Upstream's loop says so of every node it starts tracking.
                let message = format!("Node {name} event: Registered Node {name} in Controller");
                if let Err(e) = record_event(
                    &self.client,
                    node.as_ref(),
                    "Normal",
                    "RegisteredNode",
                    &message,
                    COMPONENT,
                )
                .await
                {
                    warn!(node = %name, error = %e, "recording the RegisteredNode event");
                }
            }
            let probed = self
                .tracker
                .observe(&name, Heartbeat::of(&node, lease.as_deref()), now);
            let pods = pods_by_node
                .get(&name)
                .map(Vec::as_slice)
                .unwrap_or_default();
            match self
                .sync_node(node.as_ref().clone(), probed, now, pods)
                .await
            {
                Ok(node) => {
                    let taints: Vec<Taint> = node
                        .spec
                        .and_then(|s| s.taints)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|t| t.effect == "NoExecute")
                        .collect();
                    if !taints.is_empty() {
                        no_execute.insert(name, taints);
                    }
                }
                Err(e) => {
                    warn!(node = %name, error = %e, "node lifecycle sync failed; retrying next pass")
                }
            }
        }
        self.evict(&pods_by_node, &no_execute, now).await;
    }

    /// Health, then taints, then pod readiness of one node; returns the node as written.
    async fn sync_node(
        &mut self,
        mut node: Node,
        probed: Timestamp,
        now: Timestamp,
        pods: &[Arc<Pod>],
    ) -> kube::Result<Node> {
        let name = node.name_any();
        let api: Api<Node> = Api::all(self.client.clone());
        if is_silent(probed, now, self.config.grace_period) {
            if let Some(conditions) = unknown_conditions(&node, now) {
                // The resourceVersion makes this fail (409) if the kubelet wrote meanwhile.
                let patch = json!({"metadata": {"resourceVersion": node.resource_version()}, "status": {"conditions": conditions}});
                node = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                info!(node = %name, "node stopped posting status; conditions set to Unknown");
                let message = format!("Node {name} status is now: NodeNotReady");
                if let Err(e) = record_event(
                    &self.client,
                    &node,
                    "Normal",
                    "NodeNotReady",
                    &message,
                    COMPONENT,
                )
                .await
                {
                    warn!(node = %name, error = %e, "recording the NodeNotReady event");
                }
            }
        }
        let may_add = taints::needs_no_execute(&node) && self.bucket.take(now);
        let desired = desired_taints(&node, may_add, now);
        let current = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        if desired != current {
            let patch = json!({"metadata": {"resourceVersion": node.resource_version()}, "spec": {"taints": desired}});
            node = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            let keys: Vec<String> = desired
                .iter()
                .map(|t| format!("{}:{}", t.key, t.effect))
                .collect();
            info!(node = %name, taints = ?keys, "updated node taints");
        }
        if health::ready_status(&node) != "True" {
            self.mark_pods_not_ready(pods, now).await;
        }
        Ok(node)
    }

    /// Upstream MarkPodsNotReady: the pods of a node that is not Ready are not Ready
    /// either, so endpoints stop sending them traffic.
    async fn mark_pods_not_ready(&self, pods: &[Arc<Pod>], now: Timestamp) {
        for pod in pods.iter().filter(|p| is_ready(p)) {
            let Some(ns) = pod.namespace() else { continue };
            let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}]}});
            let result = Api::<Pod>::namespaced(self.client.clone(), &ns)
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Strategic(patch),
                )
                .await;
            match result {
                Ok(_) => {
                    info!(pod = %format!("{ns}/{}", pod.name_any()), "marked pod not ready: its node is not ready")
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => warn!(pod = %pod.name_any(), error = %e, "marking pod not ready"),
            }
        }
    }

    /// Deletes the pods whose time on a NoExecute-tainted node is up.
    async fn evict(
        &mut self,
        pods_by_node: &HashMap<String, Vec<Arc<Pod>>>,
        no_execute: &HashMap<String, Vec<Taint>>,
        now: Timestamp,
    ) {
        let mut under_taint = Vec::new();
        for (node, taints) in no_execute {
            for pod in pods_by_node
                .get(node)
                .into_iter()
                .flatten()
                .filter(|p| eviction::is_evictable(p))
            {
                let uid = pod.uid().unwrap_or_default();
                let first_seen = *self.first_seen.entry(uid.clone()).or_insert(now);
                under_taint.push(uid);
                match eviction(pod, taints, first_seen) {
                    Eviction::Now => {}
                    Eviction::At(t) if t <= now => {}
                    Eviction::At(_) | Eviction::Never => continue,
                }
                self.delete(pod).await;
            }
        }
        self.first_seen.retain(|uid, _| under_taint.contains(uid));
    }

    async fn delete(&self, pod: &Pod) {
        let Some(ns) = pod.namespace() else { return };
        let key = format!("{ns}/{}", pod.name_any());
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match Api::<Pod>::namespaced(self.client.clone(), &ns)
            .delete(&pod.name_any(), &params)
            .await
        {
            Ok(_) => {
                info!(pod = %key, "evicted pod from a NoExecute-tainted node");
                let message = format!("Marking for deletion Pod {key}");
                if let Err(e) = record_event(
                    &self.client,
                    pod,
                    "Normal",
                    "TaintManagerEviction",
                    &message,
                    "taint-eviction-controller",
                )
                .await
                {
                    warn!(pod = %key, error = %e, "recording the eviction event");
                }
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => warn!(pod = %key, error = %e, "evicting pod"),
        }
    }
}
