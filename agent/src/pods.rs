//! Pods on this node: one worker per pod (by UID) that realizes it on the container runtime
//! and reports its status, as the kubelet's pod workers do. The manager watches the pods
//! bound to this node, hands each worker its pod as it changes, and after a restart adopts
//! the containers that kept running and removes what belongs to pods that are gone.
//!
//! Along the kubelet's seams: [`worker`] is the per-pod loop; [`actions`] decides what a
//! pass does (computePodActions, pure); `containers` starts, stops and removes containers
//! and keeps their termination record; [`image_manager`] applies pull policies; [`status`]
//! is the only way to the API for status, events and the final pod removal.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::network::Network;
use crate::runtime::{ContainerSummary, Runtime};
use crate::volumes::VolumeHost;

pub mod actions;
pub mod admission;
pub mod backoff;
pub mod config;
mod containers;
pub mod events;
pub mod files;
pub mod image_manager;
pub mod probes;
mod slot;
pub mod state;
pub mod static_pods;
pub mod status;
pub mod wake;
pub(crate) mod worker;

pub use backoff::BackoffConfig;
pub use files::ClusterDns;

/// Labels on every container the agent creates, so a restarted agent knows whose it is.
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
pub const LABEL_ATTEMPT: &str = "kybern.io/attempt";
pub const LABEL_INIT: &str = "kybern.io/init";
/// `true` on the runs of an ephemeral container (`spec.ephemeralContainers`).
pub const LABEL_EPHEMERAL: &str = "kybern.io/ephemeral";
pub const LABEL_CREATED: &str = "kybern.io/created";

/// What every pod worker shares.
pub struct PodContext {
    pub client: Client,
    pub node_name: String,
    pub node_ip: Ipv4Addr,
    pub runtime: Arc<dyn Runtime>,
    pub network: Arc<dyn Network>,
    pub volumes: VolumeHost,
    pub dns: ClusterDns,
    /// Container logs: `<logs_dir>/<namespace>_<name>_<uid>/<container>/<attempt>.log`.
    pub logs_dir: PathBuf,
    /// The cgroup every pod's containers go below, e.g. `/kybern`.
    pub cgroup_parent: String,
    pub backoff: BackoffConfig,
    /// The folder of static pod manifests (the kubelet's staticPodPath), if any.
    pub static_pods_dir: Option<PathBuf>,
    /// Where status writes, events and pod removals go (the apiserver, or a test's recorder).
    pub sink: Arc<dyn status::StatusSink>,
}

impl PodContext {
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.volumes.pods_dir.join(uid)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listing containers: {0}")]
    Runtime(#[from] crate::runtime::Error),
    #[error("watching this node's pods: {0}")]
    Watch(#[from] watcher::Error),
}

struct Entry {
    pod: watch::Sender<Option<Arc<Pod>>>,
    task: JoinHandle<()>,
}

/// Watches the pods bound to this node (and the static pod folder) and keeps one worker per
/// pod. Runs until the watch ends (it does not, short of the process ending).
pub async fn run(ctx: Arc<PodContext>) -> Result<(), Error> {
    let mut adoptable = group_by_pod(ctx.runtime.list_containers().await?);
    let mut workers: HashMap<String, Entry> = HashMap::new();
    // Static pods first, so their containers are never taken for orphans.
    let mut statics: BTreeMap<String, Arc<Pod>> = BTreeMap::new();
    sync_static(&ctx, &mut workers, &mut adoptable, &mut statics).await;
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node_name));
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut listing: Option<BTreeSet<String>> = None;
    let mut cleaned = false;
    let mut static_tick = tokio::time::interval(static_pods::CHECK_EVERY);
    static_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            event = stream.try_next() => match event? {
                Some(event) => event,
                None => return Ok(()),
            },
            _ = static_tick.tick() => {
                workers.retain(|_, e| !e.task.is_finished());
                sync_static(&ctx, &mut workers, &mut adoptable, &mut statics).await;
                continue;
            }
        };
        workers.retain(|_, e| !e.task.is_finished());
        match event {
            watcher::Event::Init => listing = Some(BTreeSet::new()),
            watcher::Event::InitApply(pod) => {
                if let (Some(seen), Some(uid)) = (listing.as_mut(), pod.uid()) {
                    seen.insert(uid);
                }
                apply(&ctx, &mut workers, &mut adoptable, pod);
            }
            watcher::Event::Apply(pod) => apply(&ctx, &mut workers, &mut adoptable, pod),
            watcher::Event::Delete(pod) => {
                if let Some(e) = pod.uid().and_then(|uid| workers.get(&uid)) {
                    e.pod.send_replace(None);
                }
            }
            watcher::Event::InitDone => {
                let mut seen = listing.take().unwrap_or_default();
                seen.extend(statics.keys().cloned());
                // Pods deleted while the watch was down: their workers clean up and end.
                for (uid, e) in &workers {
                    if !seen.contains(uid) {
                        e.pod.send_replace(None);
                    }
                }
                if !cleaned {
                    cleaned = true;
                    let orphans: Vec<String> = adoptable
                        .keys()
                        .filter(|u| !seen.contains(*u))
                        .cloned()
                        .collect();
                    let leftovers: Vec<ContainerSummary> = orphans
                        .iter()
                        .flat_map(|u| adoptable.remove(u).unwrap_or_default())
                        .collect();
                    let ctx = ctx.clone();
                    tokio::spawn(async move { remove_orphans(&ctx, leftovers, &seen).await });
                }
            }
        }
    }
}

/// Reads the static pod folder: new pods get a worker, removed (or edited) ones are stopped
/// and their mirrors deleted, and every mirror is (re)created when missing.
async fn sync_static(
    ctx: &Arc<PodContext>,
    workers: &mut HashMap<String, Entry>,
    adoptable: &mut HashMap<String, Vec<ContainerSummary>>,
    statics: &mut BTreeMap<String, Arc<Pod>>,
) {
    let Some(dir) = &ctx.static_pods_dir else {
        return;
    };
    let now = static_pods::read_dir(dir, &ctx.node_name);
    for (uid, old) in std::mem::take(statics) {
        if !now.contains_key(&uid) {
            if let Some(e) = workers.get(&uid) {
                e.pod.send_replace(None);
            }
            let (ns, name) = (old.namespace().unwrap_or_default(), old.name_any());
            if !now
                .values()
                .any(|p| p.name_any() == name && p.namespace().unwrap_or_default() == ns)
            {
                static_pods::delete_mirror(&ctx.client, &ns, &name).await;
            }
        }
    }
    for (uid, pod) in now {
        if !workers.contains_key(&uid) {
            apply(ctx, workers, adoptable, pod.clone());
        }
        static_pods::ensure_mirror(&ctx.client, &pod, &ctx.node_name).await;
        statics.insert(uid, Arc::new(pod));
    }
}

fn apply(
    ctx: &Arc<PodContext>,
    workers: &mut HashMap<String, Entry>,
    adoptable: &mut HashMap<String, Vec<ContainerSummary>>,
    pod: Pod,
) {
    let Some(uid) = pod.uid() else { return };
    // A mirror stands for a static pod, which runs from its file.
    if static_pods::is_mirror(&pod) {
        return;
    }
    let pod = Arc::new(pod);
    if let Some(e) = workers.get(&uid) {
        // The worker always reads the newest pod, but is woken only for a change it acts on.
        e.pod.send_if_modified(|current| {
            let wake = current
                .as_deref()
                .is_none_or(|old| differs_for_the_worker(old, &pod));
            *current = Some(pod);
            wake
        });
        return;
    }
    let adopt = adoptable.remove(&uid).unwrap_or_default();
    let refused = refusal(ctx, workers, &pod, adopt.is_empty());
    let (tx, rx) = watch::channel(Some(pod));
    let task = tokio::spawn(worker::run(ctx.clone(), uid.clone(), rx, adopt, refused));
    workers.insert(uid, Entry { pod: tx, task });
}

/// Whether `new` asks a pod's worker for anything `old` did not. As upstream's kubelet, a
/// pod is synced again when its spec, labels, annotations or deletion changed, not when
/// only its status did: above all not on the echo of the worker's own status write, which
/// would run the next pass at once and, for one, replace a just reported ErrImagePull with
/// ImagePullBackOff before any client could see it.
/// Whether a pod new to this node must not run: one the node failed before (refused, or
/// past its deadline, with no container left to adopt) stays Failed as it is, and a new one
/// is admitted against the active pods of the other workers (the refusal's event is sent
/// here, once).
fn refusal(
    ctx: &Arc<PodContext>,
    workers: &HashMap<String, Entry>,
    pod: &Arc<Pod>,
    nothing_to_adopt: bool,
) -> Option<admission::Verdict> {
    let status = pod.status.as_ref();
    if status.and_then(|s| s.phase.as_deref()) == Some("Failed") && nothing_to_adopt {
        if let Some(reason) = status.and_then(|s| s.reason.clone()) {
            let message = status.and_then(|s| s.message.clone()).unwrap_or_default();
            return Some(admission::Verdict { reason, message });
        }
    }
    if !admission::is_active(pod) {
        return None;
    }
    let others: Vec<Arc<Pod>> = workers
        .values()
        .filter_map(|e| e.pod.borrow().clone())
        .collect();
    let (reason, message) = admission::admit(pod, others.iter().map(|p| p.as_ref()))?;
    tracing::info!(pod = %pod.name_any(), %reason, %message, "pod refused at admission");
    let (ctx, event_pod) = (ctx.clone(), pod.clone());
    let verdict = admission::Verdict::rejected(&reason, &message);
    tokio::spawn(async move {
        ctx.sink
            .event(&event_pod, None, "Warning", &reason, &message)
            .await;
    });
    Some(verdict)
}

fn differs_for_the_worker(old: &Pod, new: &Pod) -> bool {
    let (a, b) = (&old.metadata, &new.metadata);
    old.spec != new.spec
        || a.labels != b.labels
        || a.annotations != b.annotations
        || a.deletion_timestamp != b.deletion_timestamp
        || a.deletion_grace_period_seconds != b.deletion_grace_period_seconds
}

/// Removes what belongs to pods that no longer exist: containers, sandboxes, volumes.
async fn remove_orphans(
    ctx: &PodContext,
    containers: Vec<ContainerSummary>,
    live: &BTreeSet<String>,
) {
    for c in containers {
        tracing::info!(container = %c.id, "removing a container of a pod that is gone");
        let _ = ctx.runtime.kill(&c.id, 9).await;
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(10), ctx.runtime.wait(&c.id)).await;
        containers::remove_container(ctx, &c.id).await;
    }
    match ctx.network.sandboxes().await {
        Ok(uids) => {
            for uid in uids.into_iter().filter(|u| !live.contains(u)) {
                tracing::info!(pod = %uid, "removing the sandbox of a pod that is gone");
                if let Err(e) = ctx.network.teardown(&uid).await {
                    tracing::warn!(pod = %uid, error = %e, "removing a leftover sandbox");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "listing sandboxes"),
    }
    if let Ok(dirs) = std::fs::read_dir(&ctx.volumes.pods_dir) {
        for uid in dirs
            .flatten()
            .map(|d| d.file_name().to_string_lossy().into_owned())
        {
            if !live.contains(&uid) {
                if let Err(e) = crate::volumes::teardown(&ctx.volumes.pods_dir, &uid).await {
                    tracing::warn!(pod = %uid, error = %e, "removing leftover volumes");
                }
            }
        }
    }
}

/// Containers by the pod UID label; containers without one are not ours to judge.
fn group_by_pod(all: Vec<ContainerSummary>) -> HashMap<String, Vec<ContainerSummary>> {
    let mut out: HashMap<String, Vec<ContainerSummary>> = HashMap::new();
    for c in all {
        if let Some(uid) = c.labels.get(LABEL_POD_UID).cloned() {
            out.entry(uid).or_default().push(c);
        }
    }
    out
}

/// The runtime ID of a container run: a stable hash of pod UID and container name plus the
/// attempt, within containerd's 76-character limit.
pub fn container_id(uid: &str, name: &str, attempt: u32) -> String {
    let h = format!("{uid}/{name}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{h:016x}-{attempt}")
}

pub fn labels(
    pod: &Pod,
    container: &str,
    attempt: u32,
    kind: actions::Kind,
) -> BTreeMap<String, String> {
    let ephemeral = (kind == actions::Kind::Ephemeral).then(|| (LABEL_EPHEMERAL, "true".into()));
    [
        (LABEL_POD_UID, pod.uid().unwrap_or_default()),
        (LABEL_POD_NAME, pod.name_any()),
        (LABEL_POD_NAMESPACE, pod.namespace().unwrap_or_default()),
        (LABEL_CONTAINER_NAME, container.to_string()),
        (LABEL_ATTEMPT, attempt.to_string()),
        (LABEL_INIT, kind.is_init().to_string()),
        (
            LABEL_CREATED,
            k8s_openapi::jiff::Timestamp::now().as_second().to_string(),
        ),
    ]
    .into_iter()
    .chain(ephemeral)
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_a_worker_acts_on_wake_it() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u", "resourceVersion": "5", "labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }))
        .unwrap();
        let with = |f: &dyn Fn(&mut Pod)| {
            let mut p = pod.clone();
            f(&mut p);
            p
        };
        let cases: Vec<(&str, Pod, bool)> = vec![
            (
                "a status write and its new resourceVersion",
                with(&|p| {
                    p.metadata.resource_version = Some("6".into());
                    p.status = Some(
                        serde_json::from_value(serde_json::json!({"phase": "Running"})).unwrap(),
                    );
                }),
                false,
            ),
            ("a new label", with(&|p| p.metadata.labels = None), true),
            (
                "a new annotation",
                with(&|p| p.metadata.annotations = Some([("a".into(), "b".into())].into())),
                true,
            ),
            (
                "deletion",
                with(&|p| p.metadata.deletion_grace_period_seconds = Some(30)),
                true,
            ),
            (
                "a new image",
                with(&|p| p.spec.as_mut().unwrap().containers[0].image = Some("busybox:2".into())),
                true,
            ),
        ];
        for (name, new, wakes) in cases {
            assert_eq!(differs_for_the_worker(&pod, &new), wakes, "{name}");
        }
    }

    #[test]
    fn container_ids_are_stable_short_and_per_attempt() {
        let a = container_id("0b7c6f2e-0000-4000-8000-000000000001", "web", 0);
        assert_eq!(
            a,
            container_id("0b7c6f2e-0000-4000-8000-000000000001", "web", 0)
        );
        assert_ne!(
            a,
            container_id("0b7c6f2e-0000-4000-8000-000000000001", "web", 1)
        );
        assert_ne!(
            a,
            container_id("0b7c6f2e-0000-4000-8000-000000000001", "sidecar", 0)
        );
        assert!(container_id("u", &"x".repeat(63), 99999).len() <= 76);
    }
}
