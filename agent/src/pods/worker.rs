//! One pod's worker: sandbox, volumes, init containers in order, then the app containers
//! with their restart policy, probes and hooks; graceful termination when the pod is
//! deleted; the status reported whenever it changes. Each pass of [`Worker::sync`] does what
//! can be done now and says when it wants to run again; container exits, probe results and
//! pod updates wake it earlier.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodStatus, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::ResourceExt;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::backoff::{go_duration, Backoff};
use super::events::{self, field_path, NORMAL, WARNING};
use super::probes::{self, Probes};
use super::state::{self, Record, State, Terminated};
use super::{
    config, container_id, files, labels, PodContext, LABEL_ATTEMPT, LABEL_CONTAINER_NAME,
    LABEL_CREATED, LABEL_INIT,
};
use crate::network::{Sandbox, SandboxRequest};
use crate::runtime::{
    ContainerConfig, ContainerSummary, ExitStatus, ImageInfo, Mount, RegistryAuth, TaskState,
};
use crate::volumes::{self, PodVolumes};

const FIELD_MANAGER: &str = "kybern-agent";
/// How often configMap, secret, downward API and token volumes are refreshed.
const VOLUME_REFRESH: Duration = Duration::from_secs(60);
/// A pass with nothing to wait for still runs this often, to catch anything missed.
const RESYNC: Duration = Duration::from_secs(30);
/// Retry delay after a failed sandbox or volume setup.
const SETUP_RETRY: Duration = Duration::from_secs(2);
/// The longest termination message kept, as upstream.
const MAX_TERMINATION_MESSAGE: usize = 4096;

/// What wakes a worker besides pod updates.
#[derive(Debug)]
pub enum Wake {
    Exited { id: String, status: ExitStatus },
    Probe,
}

/// One container of the spec and what runs for it.
struct Slot {
    spec: Container,
    rec: Record,
    /// The runtime ID of the current (running, or exited and not yet replaced) run.
    current: Option<String>,
    /// The run before it, kept for its logs until the current one ends.
    previous: Option<String>,
    /// The attempt number the next run gets.
    next_attempt: u32,
    restart: Backoff,
    pull: Backoff,
    probes: Probes,
    /// Set while the agent is stopping the container on purpose (liveness, deletion).
    killing: Option<&'static str>,
}

impl Slot {
    fn new(spec: &Container, init: bool) -> Slot {
        let waiting = if init {
            "PodInitializing"
        } else {
            "ContainerCreating"
        };
        Slot {
            rec: Record::new(
                &spec.name,
                spec.image.as_deref().unwrap_or_default(),
                waiting,
            ),
            spec: spec.clone(),
            current: None,
            previous: None,
            next_attempt: 0,
            restart: Backoff::default(),
            pull: Backoff::default(),
            probes: Probes::default(),
            killing: None,
        }
    }

    fn terminated(&self) -> Option<&Terminated> {
        match &self.rec.state {
            State::Terminated(t) => Some(t),
            _ => self
                .rec
                .last
                .as_ref()
                .filter(|_| matches!(self.rec.state, State::Waiting { .. })),
        }
    }
}

pub(super) struct Worker {
    ctx: Arc<PodContext>,
    uid: String,
    pod_rx: watch::Receiver<Option<Arc<Pod>>>,
    wake_tx: mpsc::UnboundedSender<Wake>,
    wake_rx: mpsc::UnboundedReceiver<Wake>,
    sandbox: Option<Sandbox>,
    sandbox_retry: Backoff,
    volumes: Option<(PodVolumes, Instant)>,
    init: Vec<Slot>,
    app: Vec<Slot>,
    init_failed_for_good: bool,
    start_time: Option<Time>,
    /// What we last wrote, and the resourceVersion the write produced.
    reported: Option<(PodStatus, u64)>,
    /// Set once the pod reached Succeeded or Failed and its resources were released.
    finished: bool,
}

pub(super) async fn run(
    ctx: Arc<PodContext>,
    uid: String,
    pod_rx: watch::Receiver<Option<Arc<Pod>>>,
    adopt: Vec<ContainerSummary>,
) {
    let (wake_tx, wake_rx) = mpsc::unbounded_channel();
    let mut w = Worker {
        ctx,
        uid,
        pod_rx,
        wake_tx,
        wake_rx,
        sandbox: None,
        sandbox_retry: Backoff::default(),
        volumes: None,
        init: Vec::new(),
        app: Vec::new(),
        init_failed_for_good: false,
        start_time: None,
        reported: None,
        finished: false,
    };
    w.run(adopt).await
}

fn now() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// A Unix time in seconds as a status timestamp.
fn time_at(seconds: i64) -> Option<Time> {
    Timestamp::from_second(seconds).ok().map(Time)
}

fn time_of(exited_at: Option<(i64, i32)>) -> Time {
    exited_at.and_then(|(s, _)| time_at(s)).unwrap_or_else(now)
}

impl Worker {
    fn pod(&self) -> Option<Arc<Pod>> {
        self.pod_rx.borrow().clone()
    }

    async fn run(&mut self, adopt: Vec<ContainerSummary>) {
        let Some(pod) = self.pod() else { return };
        let spec = pod.spec.clone().unwrap_or_default();
        self.init = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| Slot::new(c, true))
            .collect();
        self.app = spec
            .containers
            .iter()
            .map(|c| Slot::new(c, false))
            .collect();
        self.start_time = pod.status.as_ref().and_then(|s| s.start_time.clone());
        self.adopt(adopt).await;
        loop {
            let pod = self.pod();
            let deleting = pod
                .as_ref()
                .is_none_or(|p| p.metadata.deletion_timestamp.is_some());
            if deleting {
                self.terminate(pod.as_deref()).await;
                return;
            }
            let pod = pod.expect("checked above");
            let next = self.sync(&pod).await;
            self.report(&pod).await;
            let sleep = tokio::time::sleep(next.unwrap_or(RESYNC).min(RESYNC));
            tokio::select! {
                changed = self.pod_rx.changed() => {
                    if changed.is_err() {
                        // The manager is gone (the agent is stopping); leave containers be.
                        return;
                    }
                }
                Some(wake) = self.wake_rx.recv() => self.on_wake(&pod, wake).await,
                _ = sleep => {}
            }
            // Drain whatever else arrived, so one pass handles a burst.
            while let Ok(wake) = self.wake_rx.try_recv() {
                self.on_wake(&pod, wake).await;
            }
        }
    }

    /// Takes over the containers a previous agent started for this pod.
    async fn adopt(&mut self, adopt: Vec<ContainerSummary>) {
        let mut by_name: BTreeMap<(String, bool), Vec<(u32, ContainerSummary)>> = BTreeMap::new();
        for c in adopt {
            let name = c
                .labels
                .get(LABEL_CONTAINER_NAME)
                .cloned()
                .unwrap_or_default();
            let init = c.labels.get(LABEL_INIT).is_some_and(|v| v == "true");
            let attempt = c
                .labels
                .get(LABEL_ATTEMPT)
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            by_name.entry((name, init)).or_default().push((attempt, c));
        }
        for ((name, init), mut runs) in by_name {
            runs.sort_by_key(|(a, _)| *a);
            let slots = if init { &mut self.init } else { &mut self.app };
            let Some(slot) = slots.iter_mut().find(|s| s.spec.name == name) else {
                for (_, c) in runs {
                    remove_container(&self.ctx, &c.id).await;
                }
                continue;
            };
            let (attempt, current) = runs.pop().expect("grouped runs are never empty");
            if let Some((_, prev)) = runs.pop() {
                if let Ok(TaskState::Exited(status)) = self.ctx.runtime.task_state(&prev.id).await {
                    slot.rec.last = Some(terminated_from(&status, None, &prev.id, false));
                    slot.previous = Some(prev.id.clone());
                }
            }
            for (_, old) in runs {
                remove_container(&self.ctx, &old.id).await;
            }
            slot.next_attempt = attempt + 1;
            slot.rec.restart_count = attempt as i32;
            slot.rec.container_id = Some(format!("containerd://{}", current.id));
            if let Ok(Some(image)) = self
                .ctx
                .runtime
                .image(&normalize(slot.spec.image.as_deref().unwrap_or_default()))
                .await
            {
                slot.rec.image_id = image_id(&image);
            }
            // The start the first agent recorded, else the creation label.
            let parse = |s: &str| s.trim().parse().ok().and_then(time_at);
            let started_at =
                std::fs::read_to_string(start_record(&self.ctx, &self.uid, &name, &current.id))
                    .ok()
                    .and_then(|s| parse(&s))
                    .or_else(|| current.labels.get(LABEL_CREATED).and_then(|s| parse(s)))
                    .unwrap_or_else(now);
            match self.ctx.runtime.task_state(&current.id).await {
                Ok(TaskState::Running { .. }) => {
                    slot.current = Some(current.id.clone());
                    slot.rec.state = State::Running { started_at };
                    spawn_waiter(&self.ctx, &self.wake_tx, &current.id);
                    tracing::info!(pod = %self.uid, container = %name, "adopted a running container");
                }
                Ok(TaskState::Exited(status)) => {
                    slot.current = Some(current.id.clone());
                    let mut t = terminated_from(&status, Some(started_at), &current.id, false);
                    t.message = None;
                    slot.rec.state = State::Terminated(t);
                }
                _ => remove_container(&self.ctx, &current.id).await,
            }
        }
        if let Some(pod) = self.pod() {
            let ip = self.probe_ip(&pod);
            for slot in self.app.iter_mut().chain(self.init.iter_mut()) {
                if slot.rec.is_running() {
                    let id = slot.current.clone().unwrap_or_default();
                    slot.probes
                        .start(self.ctx.runtime.clone(), &slot.spec, &id, ip, &self.wake_tx);
                    slot.probes.apply(&mut slot.rec);
                }
            }
        }
    }

    async fn on_wake(&mut self, pod: &Pod, wake: Wake) {
        match wake {
            Wake::Probe => {}
            Wake::Exited { id, status } => {
                let ctx = self.ctx.clone();
                let Some(slot) = self
                    .init
                    .iter_mut()
                    .chain(self.app.iter_mut())
                    .find(|s| s.current.as_deref() == Some(&id))
                else {
                    return;
                };
                let oom = oom_killed(&ctx, &self.uid, &id);
                let started_at = match &slot.rec.state {
                    State::Running { started_at } => Some(started_at.clone()),
                    _ => None,
                };
                let mut t = terminated_from(&status, started_at, &id, oom);
                t.message = termination_message(&ctx, pod, &slot.spec, &self.uid, &id, t.exit_code);
                slot.rec.state = State::Terminated(t);
                slot.rec.ready = false;
                slot.rec.started = false;
                slot.probes.stop();
                slot.killing = None;
                // Keep this run for `kubectl logs --previous`; the one before goes.
                if let Some(prev) = slot.previous.take() {
                    remove_container(&ctx, &prev).await;
                }
            }
        }
    }

    /// One pass: what can be done now. Returns when to run again at the latest.
    async fn sync(&mut self, pod: &Pod) -> Option<Duration> {
        let spec = pod.spec.clone().unwrap_or_default();
        if self.finished {
            return None;
        }
        if self.start_time.is_none() {
            self.start_time = Some(now());
        }
        let host_network = spec.host_network.unwrap_or(false);
        // Probe results since the last pass.
        let mut unhealthy = Vec::new();
        for slot in self.init.iter_mut().chain(self.app.iter_mut()) {
            if slot.rec.is_running() {
                for m in slot.probes.apply(&mut slot.rec) {
                    unhealthy.push((field_path(false, &slot.spec.name), m));
                }
            }
        }
        for (fp, m) in unhealthy {
            self.event(pod, Some(fp), WARNING, "Unhealthy", &m).await;
        }
        // The sandbox.
        if self.sandbox.is_none() && !host_network {
            if let Err(wait) = self
                .sandbox_retry
                .attempt(&self.ctx.backoff, Instant::now())
            {
                return Some(wait);
            }
            let req = SandboxRequest {
                uid: self.uid.clone(),
                namespace: pod.namespace().unwrap_or_default(),
                name: pod.name_any(),
                hostname: files::hostname(pod),
            };
            match self.ctx.network.setup(&req).await {
                Ok(sandbox) => {
                    self.sandbox_retry.reset();
                    self.sandbox = Some(sandbox);
                }
                Err(e) => {
                    let msg = format!("Failed to create pod sandbox: {e}");
                    self.event(pod, None, WARNING, "FailedCreatePodSandBox", &msg)
                        .await;
                    return Some(SETUP_RETRY);
                }
            }
        }
        let pod_ip = self.pod_ip(host_network);
        if let Err(e) = files::write_all(&self.ctx.pod_dir(&self.uid), pod, &pod_ip, &self.ctx.dns)
        {
            tracing::warn!(pod = %self.uid, error = %e, "writing the pod's hosts and resolv.conf");
            return Some(SETUP_RETRY);
        }
        // Volumes, refreshed now and then.
        let refresh = self
            .volumes
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= VOLUME_REFRESH);
        if refresh {
            let with_ips = self.pod_with_ips(pod, &pod_ip);
            match volumes::setup(&self.ctx.volumes, &with_ips).await {
                Ok(v) => self.volumes = Some((v, Instant::now())),
                Err(e) if self.volumes.is_some() => {
                    tracing::warn!(pod = %self.uid, error = %e, "refreshing volumes failed; keeping the last content");
                }
                Err(e) => {
                    self.event(
                        pod,
                        None,
                        WARNING,
                        e.reason,
                        &format!("MountVolume.SetUp failed: {}", e.message),
                    )
                    .await;
                    return Some(SETUP_RETRY);
                }
            }
        }
        let mut next: Option<Duration> = self
            .volumes
            .as_ref()
            .map(|(_, at)| VOLUME_REFRESH.saturating_sub(at.elapsed()));
        let mut soonest = |d: Option<Duration>| {
            if let Some(d) = d {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        };
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());

        // Init containers, one at a time, in order.
        let mut initialized = true;
        for i in 0..self.init.len() {
            if self.init[i].rec.succeeded() {
                continue;
            }
            initialized = false;
            if self.init[i].rec.is_running() {
                break;
            }
            if self.init[i].terminated().is_some() || self.init[i].current.is_some() {
                // It failed: with Never the pod fails; otherwise it is retried.
                if policy == "Never" {
                    self.init_failed_for_good = true;
                    break;
                }
            }
            soonest(self.start_slot(pod, true, i, &pod_ip).await);
            break;
        }
        if self.init_failed_for_good {
            self.finish(pod).await;
            return None;
        }
        if initialized {
            for i in 0..self.app.len() {
                let slot = &self.app[i];
                if slot.rec.is_running() {
                    // Liveness or startup failure: stop it; the exit restarts it.
                    if let Some(reason) = slot.probes.wants_restart() {
                        let grace = slot.probes.kill_grace(pod, reason);
                        let msg = format!(
                            "Container {} failed {reason} probe, will be restarted",
                            slot.spec.name
                        );
                        self.event(
                            pod,
                            Some(field_path(false, &slot.spec.name)),
                            NORMAL,
                            "Killing",
                            &msg,
                        )
                        .await;
                        let slot = &mut self.app[i];
                        slot.killing = Some("probe");
                        slot.probes.stop();
                        stop_container(
                            &self.ctx,
                            slot.current.clone().unwrap_or_default(),
                            grace,
                            stop_signal(&slot.spec),
                        );
                    }
                    continue;
                }
                let restart = match slot.terminated() {
                    None => slot.current.is_none(),
                    Some(t) => match policy.as_str() {
                        "Always" => true,
                        "OnFailure" => t.exit_code != 0,
                        _ => false,
                    },
                };
                if restart {
                    soonest(self.start_slot(pod, false, i, &pod_ip).await);
                }
            }
        } else {
            for slot in &mut self.app {
                if slot.current.is_none() {
                    slot.rec.state = State::waiting("PodInitializing", None);
                }
            }
        }
        let phase = state::phase(
            &policy,
            &self.records(true),
            &self.records(false),
            self.init_failed_for_good,
        );
        if phase == "Succeeded" || phase == "Failed" {
            self.finish(pod).await;
            return None;
        }
        next
    }

    fn records(&self, init: bool) -> Vec<Record> {
        let slots = if init { &self.init } else { &self.app };
        slots.iter().map(|s| s.rec.clone()).collect()
    }

    /// The address probes and hooks reach the pod at.
    fn probe_ip(&self, pod: &Pod) -> std::net::Ipv4Addr {
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        self.pod_ip(host_network)
            .parse()
            .unwrap_or(self.ctx.node_ip)
    }

    fn pod_ip(&self, host_network: bool) -> String {
        if host_network {
            self.ctx.node_ip.to_string()
        } else {
            self.sandbox
                .as_ref()
                .map(|s| s.ip.to_string())
                .unwrap_or_default()
        }
    }

    /// The pod as the downward API sees it: with its addresses filled in.
    fn pod_with_ips(&self, pod: &Pod, pod_ip: &str) -> Pod {
        let mut p = pod.clone();
        let status = p.status.get_or_insert_with(Default::default);
        status.pod_ip = Some(pod_ip.to_string()).filter(|ip| !ip.is_empty());
        status.host_ip = Some(self.ctx.node_ip.to_string());
        p
    }

    /// Starts a new run of a container when its back-off allows; returns how long until it
    /// does when it does not yet.
    async fn start_slot(
        &mut self,
        pod: &Pod,
        init: bool,
        i: usize,
        pod_ip: &str,
    ) -> Option<Duration> {
        let ctx = self.ctx.clone();
        let uid = self.uid.clone();
        let fp = field_path(init, &self.slot(init, i).spec.name);
        // A container that ran before waits out its back-off.
        if self.slot(init, i).terminated().is_some() || self.slot(init, i).current.is_some() {
            let slot = self.slot_mut(init, i);
            if let Err(wait) = slot.restart.attempt(&ctx.backoff, Instant::now()) {
                let delay = go_duration(slot.restart.delay().unwrap_or_default());
                let message = format!(
                    "back-off {delay} restarting failed container={} pod={}_{}({uid})",
                    slot.spec.name,
                    pod.name_any(),
                    pod.namespace().unwrap_or_default()
                );
                let was_backing_off = matches!(&slot.rec.state, State::Waiting { reason, .. } if reason == "CrashLoopBackOff");
                if let State::Terminated(t) = &slot.rec.state {
                    slot.rec.last = Some(t.clone());
                }
                slot.rec.state = State::waiting("CrashLoopBackOff", Some(message));
                if !was_backing_off {
                    let msg = format!(
                        "Back-off restarting failed container {} in pod {}_{}({uid})",
                        slot.spec.name,
                        pod.name_any(),
                        pod.namespace().unwrap_or_default()
                    );
                    self.event(pod, Some(fp), WARNING, "BackOff", &msg).await;
                }
                return Some(wait);
            }
        }
        // The image.
        let image = match self.ensure_image(pod, init, i).await {
            Ok(image) => image,
            Err(wait) => return wait,
        };
        // Environment and mounts.
        let spec = self.slot(init, i).spec.clone();
        let with_ips = self.pod_with_ips(pod, pod_ip);
        let env = match volumes::container_env(&ctx.volumes, &with_ips, &spec).await {
            Ok(env) => env,
            Err(e) => {
                self.config_error(pod, init, i, &e.message).await;
                return Some(ctx.backoff.initial);
            }
        };
        let attempt = self.slot(init, i).next_attempt;
        let id = container_id(&uid, &spec.name, attempt);
        let mut mounts = match self.volumes.as_ref().map(|(v, _)| v.mounts(pod, &spec)) {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                self.config_error(pod, init, i, &e.message).await;
                return Some(ctx.backoff.initial);
            }
            None => Vec::new(),
        };
        mounts.extend(self.pod_mounts(pod, &spec, &id));
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let mut cfg: ContainerConfig = config::base(pod, &spec, &image.config, env);
        cfg.id = id.clone();
        cfg.image = image.name.clone();
        cfg.mounts = mounts;
        cfg.labels = labels(pod, &spec.name, attempt, init);
        cfg.cgroup_path = format!("{}/{}/{}", ctx.cgroup_parent, uid, id);
        let log_dir = ctx
            .logs_dir
            .join(format!(
                "{}_{}_{}",
                pod.namespace().unwrap_or_default(),
                pod.name_any(),
                uid
            ))
            .join(&spec.name);
        if let Err(e) = std::fs::create_dir_all(&log_dir) {
            tracing::warn!(error = %e, "creating the log directory");
        }
        cfg.log_path = Some(log_dir.join(format!("{attempt}.log")));
        match (&self.sandbox, host_network) {
            (Some(sb), false) => {
                cfg.netns_path = Some(sb.netns.clone());
                cfg.ipc_ns_path = Some(sb.ipc_ns.clone());
                cfg.uts_ns_path = Some(sb.uts_ns.clone());
            }
            _ => {
                cfg.netns_path = Some("/proc/1/ns/net".into());
                cfg.uts_ns_path = Some("/proc/1/ns/uts".into());
                if pod.spec.as_ref().and_then(|s| s.host_ipc).unwrap_or(false) {
                    cfg.ipc_ns_path = Some("/proc/1/ns/ipc".into());
                }
            }
        }
        // The previous run goes once a new one is made (its logs stay on disk).
        {
            let slot = self.slot_mut(init, i);
            if let Some(old) = slot.previous.take() {
                remove_container(&ctx, &old).await;
            }
            slot.previous = slot.current.take();
            if let State::Terminated(t) = &slot.rec.state {
                slot.rec.last = Some(t.clone());
            }
            slot.next_attempt = attempt + 1;
            slot.rec.restart_count = attempt as i32;
            slot.rec.container_id = Some(format!("containerd://{id}"));
            slot.rec.image_id = image_id(&image);
        }
        let created = ctx.runtime.create_container(&cfg).await;
        let started = match created {
            Ok(()) => {
                self.event(
                    pod,
                    Some(fp.clone()),
                    NORMAL,
                    "Created",
                    &format!("Created container: {}", spec.name),
                )
                .await;
                ctx.runtime.start(&id).await.map(drop)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            // As upstream: the run counts, ends with StartError (128), and is retried
            // with back-off.
            let message = format!("failed to create containerd task: {e}");
            self.event(
                pod,
                Some(fp),
                WARNING,
                "Failed",
                &format!("Error: {message}"),
            )
            .await;
            remove_container(&ctx, &id).await;
            let slot = self.slot_mut(init, i);
            slot.current = Some(id.clone());
            let at = now();
            slot.rec.state = State::Terminated(Terminated {
                exit_code: 128,
                reason: "StartError".into(),
                message: Some(message),
                started_at: Some(Time(Timestamp::UNIX_EPOCH)),
                finished_at: Some(at),
                container_id: Some(format!("containerd://{id}")),
            });
            let _ = self.wake_tx.send(Wake::Probe);
            return None;
        }
        self.event(
            pod,
            Some(fp.clone()),
            NORMAL,
            "Started",
            &format!("Started container {}", spec.name),
        )
        .await;
        spawn_waiter(&ctx, &self.wake_tx, &id);
        let wake = self.wake_tx.clone();
        let ip = self.probe_ip(pod);
        let started_at = now();
        if let Err(e) = std::fs::write(
            start_record(&ctx, &self.uid, &spec.name, &id),
            started_at.0.as_second().to_string(),
        ) {
            tracing::warn!(container = %id, error = %e, "recording the start time; a restarted agent will report the creation time");
        }
        let slot = self.slot_mut(init, i);
        slot.current = Some(id.clone());
        slot.rec.state = State::Running { started_at };
        slot.probes
            .start(ctx.runtime.clone(), &spec, &id, ip, &wake);
        slot.probes.apply(&mut slot.rec);
        // postStart runs right after the start; a failure kills the container.
        if let Some(hook) = spec.lifecycle.as_ref().and_then(|l| l.post_start.clone()) {
            let timeout = Duration::from_secs(
                pod.spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .unwrap_or(30)
                    .max(1) as u64,
            );
            if let Err(msg) =
                probes::run_hook(ctx.runtime.as_ref(), &spec, &id, ip, &hook, timeout).await
            {
                let text = format!("PostStartHook failed: {msg}");
                self.event(pod, Some(fp), WARNING, "FailedPostStartHook", &text)
                    .await;
                let grace = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .unwrap_or(30);
                let slot = self.slot_mut(init, i);
                slot.killing = Some("postStart");
                stop_container(
                    &ctx,
                    id,
                    Duration::from_secs(grace.max(0) as u64),
                    stop_signal(&spec),
                );
            }
        }
        None
    }

    fn slot(&self, init: bool, i: usize) -> &Slot {
        if init {
            &self.init[i]
        } else {
            &self.app[i]
        }
    }

    fn slot_mut(&mut self, init: bool, i: usize) -> &mut Slot {
        if init {
            &mut self.init[i]
        } else {
            &mut self.app[i]
        }
    }

    async fn config_error(&mut self, pod: &Pod, init: bool, i: usize, message: &str) {
        let fp = field_path(init, &self.slot(init, i).spec.name);
        let slot = self.slot_mut(init, i);
        let already = matches!(&slot.rec.state, State::Waiting { reason, message: m } if reason == "CreateContainerConfigError" && m.as_deref() == Some(message));
        if let State::Terminated(t) = &slot.rec.state {
            slot.rec.last = Some(t.clone());
        }
        slot.rec.state = State::waiting("CreateContainerConfigError", Some(message.to_string()));
        if !already {
            self.event(
                pod,
                Some(fp),
                WARNING,
                "Failed",
                &format!("Error: {message}"),
            )
            .await;
        }
    }

    /// The image per the pull policy; `Err(retry)` after setting the waiting state.
    async fn ensure_image(
        &mut self,
        pod: &Pod,
        init: bool,
        i: usize,
    ) -> Result<ImageInfo, Option<Duration>> {
        let ctx = self.ctx.clone();
        let spec = self.slot(init, i).spec.clone();
        let fp = field_path(init, &spec.name);
        let image = spec.image.clone().unwrap_or_default();
        let name = normalize(&image);
        let policy = spec
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| default_pull_policy(&image).into());
        let present = match ctx.runtime.image(&name).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(image = %name, error = %e, "looking up an image");
                None
            }
        };
        match (policy.as_str(), present) {
            ("Never", Some(found)) | ("IfNotPresent", Some(found)) => return Ok(found),
            ("Never", None) => {
                let msg =
                    format!("Container image \"{image}\" is not present with pull policy of Never");
                let slot = self.slot_mut(init, i);
                let already = matches!(&slot.rec.state, State::Waiting { reason, .. } if reason == "ErrImageNeverPull");
                slot.rec.state = State::waiting("ErrImageNeverPull", Some(msg.clone()));
                if !already {
                    self.event(pod, Some(fp), WARNING, "ErrImageNeverPull", &msg)
                        .await;
                }
                return Err(Some(ctx.backoff.initial));
            }
            _ => {}
        }
        {
            let slot = self.slot_mut(init, i);
            if let Err(wait) = slot.pull.attempt(&ctx.backoff, Instant::now()) {
                let was_pull_error = matches!(&slot.rec.state, State::Waiting { reason, .. } if reason == "ErrImagePull");
                slot.rec.state = State::waiting(
                    "ImagePullBackOff",
                    Some(format!("Back-off pulling image \"{image}\"")),
                );
                if was_pull_error {
                    self.event(
                        pod,
                        Some(fp),
                        NORMAL,
                        "BackOff",
                        &format!("Back-off pulling image \"{image}\""),
                    )
                    .await;
                }
                return Err(Some(wait));
            }
        }
        self.event(
            pod,
            Some(fp.clone()),
            NORMAL,
            "Pulling",
            &format!("Pulling image \"{image}\""),
        )
        .await;
        let auth = self.pull_credentials(pod, &name).await;
        let started = Instant::now();
        match ctx.runtime.pull_image(&name, auth.as_ref()).await {
            Ok(found) => {
                let took = started.elapsed().as_secs_f64();
                let msg = format!("Successfully pulled image \"{image}\" in {took:.3}s ({took:.3}s including waiting)");
                self.event(pod, Some(fp), NORMAL, "Pulled", &msg).await;
                self.slot_mut(init, i).pull.reset();
                Ok(found)
            }
            Err(e) => {
                let msg = format!("Failed to pull image \"{image}\": {e}");
                self.event(pod, Some(fp.clone()), WARNING, "Failed", &msg)
                    .await;
                self.event(pod, Some(fp), WARNING, "Failed", "Error: ErrImagePull")
                    .await;
                let slot = self.slot_mut(init, i);
                slot.rec.state = State::waiting("ErrImagePull", Some(msg));
                // The next pass comes halfway through the back-off and reports
                // ImagePullBackOff for the rest of it, so clients see both states in turn
                // as they do with the kubelet, whose next sync after a failed one comes
                // 10-15 s later, inside the doubled image back-off.
                Err(slot.pull.delay().map(|d| d / 2))
            }
        }
    }

    /// Credentials from the pod's imagePullSecrets for the image's registry.
    async fn pull_credentials(&self, pod: &Pod, image: &str) -> Option<RegistryAuth> {
        let names: Vec<String> = pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name)
            .collect();
        if names.is_empty() {
            return None;
        }
        let api: Api<Secret> = Api::namespaced(
            self.ctx.client.clone(),
            &pod.namespace().unwrap_or_default(),
        );
        let mut secrets = Vec::new();
        for n in names {
            match api.get_opt(&n).await {
                Ok(Some(s)) => secrets.push(s),
                Ok(None) => {
                    tracing::warn!(secret = %n, "imagePullSecret not found; pulling without it")
                }
                Err(e) => tracing::warn!(secret = %n, error = %e, "reading an imagePullSecret"),
            }
        }
        crate::registry::credentials_for(image, &secrets)
    }

    /// /etc/hosts, /etc/resolv.conf, /etc/hostname and the termination log.
    fn pod_mounts(&self, pod: &Pod, spec: &Container, id: &str) -> Vec<Mount> {
        let dir = self.ctx.pod_dir(&self.uid);
        let mut mounts = Vec::new();
        let explicit: BTreeSet<&str> = spec
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.as_str())
            .collect();
        for (file, dest) in [
            ("etc-hosts", "/etc/hosts"),
            ("resolv.conf", "/etc/resolv.conf"),
            ("hostname", "/etc/hostname"),
        ] {
            if !explicit.contains(dest) {
                mounts.push(Mount {
                    destination: dest.into(),
                    source: dir.join(file),
                    readonly: false,
                });
            }
        }
        let path = spec
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        let log = termination_log(&self.ctx, &self.uid, &spec.name, id);
        if let Some(parent) = log.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if std::fs::write(&log, b"").is_ok() && !path.is_empty() {
            mounts.push(Mount {
                destination: path,
                source: log,
                readonly: false,
            });
        }
        let _ = pod;
        mounts
    }

    /// Reports the status when it differs from what the pod shows.
    async fn report(&mut self, pod: &Pod) {
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let ip = self.pod_ip(host_network);
        let status = state::pod_status(
            pod,
            self.sandbox.is_some() || host_network,
            &self.records(true),
            &self.records(false),
            self.init_failed_for_good,
            &self.ctx.node_ip.to_string(),
            Some(ip.as_str()).filter(|ip| !ip.is_empty()),
            self.start_time.as_ref().unwrap_or(&now()),
            &now(),
        );
        let pod_rv: u64 = pod
            .resource_version()
            .and_then(|rv| rv.parse().ok())
            .unwrap_or(0);
        if pod.status.as_ref() == Some(&status) {
            return;
        }
        if let Some((last, rv)) = &self.reported {
            if *last == status && pod_rv <= *rv {
                return;
            }
        }
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            &pod.namespace().unwrap_or_default(),
        );
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        // Only this pod, not a newer one of the same name; a static pod's status goes to its
        // mirror, which has a UID of its own.
        let patch = if is_static(pod) {
            json!({ "status": status })
        } else {
            json!({ "metadata": { "uid": self.uid }, "status": status })
        };
        match api
            .patch_status(&pod.name_any(), &params, &Patch::Merge(&patch))
            .await
        {
            Ok(written) => {
                let rv = written
                    .resource_version()
                    .and_then(|rv| rv.parse().ok())
                    .unwrap_or(0);
                self.reported = Some((status, rv));
            }
            Err(e) => {
                tracing::warn!(pod = %pod.name_any(), error = %e, "reporting pod status failed; retrying")
            }
        }
    }

    /// The pod reached Succeeded or Failed: stop what still runs and release its address
    /// and volumes. Its exited containers stay for their logs until the pod is deleted.
    async fn finish(&mut self, pod: &Pod) {
        if self.finished {
            return;
        }
        self.report(pod).await;
        let grace = Duration::from_secs(
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30)
                .max(0) as u64,
        );
        self.stop_all(pod, grace).await;
        self.release().await;
        self.finished = true;
    }

    async fn release(&mut self) {
        if let Err(e) = self.ctx.network.teardown(&self.uid).await {
            tracing::warn!(pod = %self.uid, error = %e, "removing the pod's sandbox");
        }
        if let Err(e) = volumes::teardown(&self.ctx.volumes.pods_dir, &self.uid).await {
            tracing::warn!(pod = %self.uid, error = %e, "removing the pod's volumes");
        }
        self.volumes = None;
    }

    /// Stops every running container: preStop, the stop signal, SIGKILL after `grace`.
    async fn stop_all(&mut self, pod: &Pod, grace: Duration) {
        let pod_ip = self.probe_ip(pod);
        let mut stops = Vec::new();
        for slot in self.init.iter_mut().chain(self.app.iter_mut()) {
            slot.probes.stop();
            let Some(id) = slot.current.clone().filter(|_| slot.rec.is_running()) else {
                continue;
            };
            let ctx = self.ctx.clone();
            let spec = slot.spec.clone();
            stops.push(tokio::spawn(async move {
                let deadline = Instant::now() + grace;
                if let Some(hook) = spec.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()) {
                    let run =
                        probes::run_hook(ctx.runtime.as_ref(), &spec, &id, pod_ip, &hook, grace);
                    if let Ok(Err(msg)) = tokio::time::timeout(grace, run).await {
                        tracing::info!(container = %spec.name, %msg, "preStop hook failed");
                    }
                }
                terminate(&ctx, &id, deadline, stop_signal(&spec)).await
            }));
        }
        for s in stops {
            let _ = s.await;
        }
    }

    /// The pod is being deleted (or is gone from the API): stop its containers gracefully,
    /// remove everything it had on this node, and tell the API it can go.
    async fn terminate(&mut self, pod: Option<&Pod>) {
        let grace = pod
            .and_then(|p| p.metadata.deletion_grace_period_seconds)
            .map_or(Duration::from_secs(2), |g| {
                Duration::from_secs(g.max(0) as u64)
            });
        if let Some(pod) = pod {
            self.stop_all(pod, grace).await;
        } else {
            for slot in self.init.iter_mut().chain(self.app.iter_mut()) {
                slot.probes.stop();
                if let Some(id) = slot.current.clone().filter(|_| slot.rec.is_running()) {
                    terminate(&self.ctx, &id, Instant::now() + grace, 15).await;
                }
            }
        }
        for slot in self.init.iter_mut().chain(self.app.iter_mut()) {
            for id in [slot.current.take(), slot.previous.take()]
                .into_iter()
                .flatten()
            {
                remove_container(&self.ctx, &id).await;
            }
        }
        // Containers this worker never knew (a crash between create and bookkeeping).
        if let Ok(all) = self.ctx.runtime.list_containers().await {
            for c in all
                .into_iter()
                .filter(|c| c.labels.get(super::LABEL_POD_UID) == Some(&self.uid))
            {
                remove_container(&self.ctx, &c.id).await;
            }
        }
        self.release().await;
        if let Some(pod) = pod {
            let logs = self.ctx.logs_dir.join(format!(
                "{}_{}_{}",
                pod.namespace().unwrap_or_default(),
                pod.name_any(),
                self.uid
            ));
            let _ = std::fs::remove_dir_all(logs);
            let api: Api<Pod> = Api::namespaced(
                self.ctx.client.clone(),
                &pod.namespace().unwrap_or_default(),
            );
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&pod.name_any(), &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => {
                    tracing::warn!(pod = %pod.name_any(), error = %e, "the final delete failed; the pod stays Terminating until the next attempt")
                }
            }
        }
    }

    async fn event(&self, pod: &Pod, fp: Option<String>, type_: &str, reason: &str, message: &str) {
        events::record(
            &self.ctx.client,
            &self.ctx.node_name,
            pod,
            fp,
            type_,
            reason,
            message,
        )
        .await;
    }
}

/// Removes what belongs to pods that no longer exist: containers, sandboxes, volumes.
pub(super) async fn remove_orphans(
    ctx: &PodContext,
    containers: Vec<ContainerSummary>,
    live: &BTreeSet<String>,
) {
    for c in containers {
        tracing::info!(container = %c.id, "removing a container of a pod that is gone");
        let _ = ctx.runtime.kill(&c.id, 9).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), ctx.runtime.wait(&c.id)).await;
        remove_container(ctx, &c.id).await;
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
                if let Err(e) = volumes::teardown(&ctx.volumes.pods_dir, &uid).await {
                    tracing::warn!(pod = %uid, error = %e, "removing leftover volumes");
                }
            }
        }
    }
}

fn is_static(pod: &Pod) -> bool {
    pod.annotations()
        .get(super::static_pods::ANNOTATION_SOURCE)
        .is_some_and(|s| s == "file")
}

fn spawn_waiter(ctx: &Arc<PodContext>, wake: &mpsc::UnboundedSender<Wake>, id: &str) {
    let (ctx, wake, id) = (ctx.clone(), wake.clone(), id.to_string());
    tokio::spawn(async move {
        loop {
            match ctx.runtime.wait(&id).await {
                Ok(status) => {
                    let _ = wake.send(Wake::Exited { id, status });
                    return;
                }
                Err(e) if e.is_not_found() => return,
                Err(e) => {
                    tracing::warn!(container = %id, error = %e, "waiting for a container; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}

/// Sends the stop signal, then SIGKILL at `deadline` if it still runs; waits for the exit.
async fn terminate(ctx: &PodContext, id: &str, deadline: Instant, signal: u32) {
    if ctx.runtime.kill(id, signal).await.is_err() {
        return;
    }
    if tokio::time::timeout_at(deadline, ctx.runtime.wait(id))
        .await
        .is_ok()
    {
        return;
    }
    let _ = ctx.runtime.kill(id, 9).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), ctx.runtime.wait(id)).await;
}

/// [`terminate`] in the background; the exit reaches the worker through its waiter.
fn stop_container(ctx: &Arc<PodContext>, id: String, grace: Duration, signal: u32) {
    let ctx = ctx.clone();
    tokio::spawn(async move { terminate(&ctx, &id, Instant::now() + grace, signal).await });
}

/// SIGTERM, unless the container's lifecycle names another stop signal.
fn stop_signal(spec: &Container) -> u32 {
    match spec
        .lifecycle
        .as_ref()
        .and_then(|l| l.stop_signal.as_deref())
    {
        Some("SIGKILL") => 9,
        Some("SIGINT") => 2,
        Some("SIGQUIT") => 3,
        Some("SIGHUP") => 1,
        Some("SIGUSR1") => 10,
        Some("SIGUSR2") => 12,
        _ => 15,
    }
}

async fn remove_container(ctx: &PodContext, id: &str) {
    if let Ok(TaskState::Running { .. }) = ctx.runtime.task_state(id).await {
        let _ = ctx.runtime.kill(id, 9).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), ctx.runtime.wait(id)).await;
    }
    if let Err(e) = ctx.runtime.delete(id).await {
        tracing::warn!(container = %id, error = %e, "deleting a container");
    }
}

fn terminated_from(
    status: &ExitStatus,
    started_at: Option<Time>,
    id: &str,
    oom: bool,
) -> Terminated {
    let code = status.code as i32;
    Terminated {
        exit_code: code,
        reason: state::exit_reason(code, oom).into(),
        message: None,
        started_at,
        finished_at: Some(time_of(status.exited_at)),
        container_id: Some(format!("containerd://{id}")),
    }
}

/// Whether the kernel's OOM killer ended a process of the container's cgroup (v1's
/// memory.oom_control or v2's memory.events), read before the task is deleted.
fn oom_killed(ctx: &PodContext, uid: &str, id: &str) -> bool {
    let rel = format!(
        "{}/{}/{}",
        ctx.cgroup_parent.trim_start_matches('/'),
        uid,
        id
    );
    let candidates = [
        (
            Path::new("/sys/fs/cgroup/memory")
                .join(&rel)
                .join("memory.oom_control"),
            "oom_kill ",
        ),
        (
            Path::new("/sys/fs/cgroup").join(&rel).join("memory.events"),
            "oom_kill ",
        ),
    ];
    candidates.iter().any(|(path, key)| {
        std::fs::read_to_string(path).is_ok_and(|text| {
            text.lines().any(|l| {
                l.strip_prefix(key)
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    })
}

fn termination_log(ctx: &PodContext, uid: &str, container: &str, id: &str) -> PathBuf {
    ctx.pod_dir(uid).join("containers").join(container).join(id)
}

/// When a container started, kept beside its termination log. containerd's task API has
/// no start time (the kubelet's CRI runtime keeps one with each container), and a restarted
/// agent that adopts the container must report the same startedAt as before.
fn start_record(ctx: &PodContext, uid: &str, container: &str, id: &str) -> PathBuf {
    termination_log(ctx, uid, container, id).with_extension("started")
}

/// The termination message: the file the container wrote, else (FallbackToLogsOnError and
/// a failure) the end of its log, as upstream.
fn termination_message(
    ctx: &PodContext,
    pod: &Pod,
    spec: &Container,
    uid: &str,
    id: &str,
    exit_code: i32,
) -> Option<String> {
    let file = std::fs::read(termination_log(ctx, uid, &spec.name, id)).unwrap_or_default();
    let text =
        String::from_utf8_lossy(&file[..file.len().min(MAX_TERMINATION_MESSAGE)]).into_owned();
    if !text.is_empty() {
        return Some(text);
    }
    if spec.termination_message_policy.as_deref() == Some("FallbackToLogsOnError") && exit_code != 0
    {
        let attempt = id.rsplit('-').next().unwrap_or("0");
        let log = ctx
            .logs_dir
            .join(format!(
                "{}_{}_{}",
                pod.namespace().unwrap_or_default(),
                pod.name_any(),
                uid
            ))
            .join(&spec.name)
            .join(format!("{attempt}.log"));
        let data = std::fs::read(log).unwrap_or_default();
        let text = String::from_utf8_lossy(&data);
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(80)..].join("\n");
        let cut = tail.len().saturating_sub(2048);
        let start = (cut..tail.len())
            .find(|i| tail.is_char_boundary(*i))
            .unwrap_or(tail.len());
        return Some(tail[start..].to_string()).filter(|s| !s.is_empty());
    }
    None
}

fn image_id(image: &ImageInfo) -> String {
    let repo = match image.name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => image.name.as_str(),
    };
    format!("{repo}@{}", image.digest)
}

fn default_pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        "IfNotPresent"
    } else {
        match last.split_once(':') {
            Some((_, "latest")) | None => "Always",
            _ => "IfNotPresent",
        }
    }
}

fn normalize(image: &str) -> String {
    crate::registry::normalize(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_defaults_as_the_apiserver() {
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_pull_policy("busybox:1.36"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/app"), "Always");
        assert_eq!(default_pull_policy("a@sha256:00"), "IfNotPresent");
    }

    #[test]
    fn references_normalize_as_docker() {
        assert_eq!(normalize("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize("me/app:v1"), "docker.io/me/app:v1");
        assert_eq!(normalize("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
        assert_eq!(
            normalize("kybern.local/busybox:latest"),
            "kybern.local/busybox:latest"
        );
    }

    #[test]
    fn image_ids_name_the_repository_and_digest() {
        let image = ImageInfo {
            name: "127.0.0.1:5000/app:v1".into(),
            digest: "sha256:ab".into(),
            config: Default::default(),
        };
        assert_eq!(image_id(&image), "127.0.0.1:5000/app@sha256:ab");
    }
}
