//! One pass of a pod's worker, as the kubelet's `SyncPod`: the sandbox, the pod's files and
//! volumes, then the actions [`compute_pod_actions`] decided, carried out container by
//! container; the pod finishes when its phase says so.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use tokio::time::Instant;

use super::{grace_period, host_network, Worker};
use crate::network::SandboxRequest;
use crate::pods::actions::{compute_pod_actions, Action, Kind};
use crate::pods::admission::Verdict;
use crate::pods::backoff::go_duration;
use crate::pods::containers::{
    self, now, remove_container, spawn_waiter, stop_container, stop_signal, RunRequest,
};
use crate::pods::events::{field_path, NORMAL, WARNING};
use crate::pods::image_manager::{self, image_id};
use crate::pods::state::{self, State, Terminated};
use crate::pods::wake::Wake;
use crate::pods::{files, probes};
use crate::runtime::TaskState;
use crate::volumes;

/// The reason and message of a pod past its activeDeadlineSeconds, as upstream's.
const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";
/// How often configMap, secret, downward API and token volumes are refreshed.
const VOLUME_REFRESH: Duration = Duration::from_secs(60);
/// Retry delay after a failed sandbox or volume setup.
const SETUP_RETRY: Duration = Duration::from_secs(2);

impl Worker {
    /// One pass: what can be done now. Returns when to run again at the latest.
    pub(super) async fn sync(&mut self, pod: &Pod) -> Option<Duration> {
        if self.finished {
            return None;
        }
        if self.start_time.is_none() {
            self.start_time = Some(now());
        }
        let deadline = self.deadline_left(pod);
        if deadline == Some(Duration::ZERO) {
            // The kubelet's active deadline handler: the pod fails and its containers are
            // stopped (with the pod's grace period); an event says why.
            self.verdict = Some(Verdict {
                reason: DEADLINE_EXCEEDED.into(),
                message: DEADLINE_MESSAGE.into(),
            });
            self.event(pod, None, NORMAL, DEADLINE_EXCEEDED, DEADLINE_MESSAGE)
                .await;
            self.finish(pod).await;
            return None;
        }
        let host_network = host_network(pod);
        // Probe results since the last pass.
        let mut unhealthy = Vec::new();
        for slot in self.init.iter_mut().chain(self.app.iter_mut()) {
            if slot.rec.is_running() {
                for m in slot.probes.apply(&mut slot.rec) {
                    unhealthy.push((field_path(Kind::App, &slot.spec.name), m));
                }
            }
        }
        for (fp, m) in unhealthy {
            self.event(pod, Some(fp), WARNING, "Unhealthy", &m).await;
        }
        if let Err(wait) = self.setup(pod, host_network).await {
            return Some(wait);
        }
        let pod_ip = self.pod_ip(host_network);
        let mut next: Option<Duration> = self
            .volumes
            .as_ref()
            .map(|(_, at)| VOLUME_REFRESH.saturating_sub(at.elapsed()));
        let mut soonest = |d: Option<Duration>| {
            if let Some(d) = d {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        };
        soonest(deadline);
        let actions = compute_pod_actions(&self.view(Some(pod), Instant::now()));
        self.init_failed_for_good = actions.init_failed_for_good;
        // Ephemeral containers first, as the kubelet's SyncPod: a pod whose init containers
        // fail can still be debugged.
        for (i, action) in actions.ephemeral.iter().enumerate() {
            soonest(self.act(pod, Kind::Ephemeral, i, *action, &pod_ip).await);
        }
        for (i, action) in actions.init.iter().enumerate() {
            soonest(self.act(pod, Kind::Init, i, *action, &pod_ip).await);
        }
        if self.init_failed_for_good {
            self.finish(pod).await;
            return None;
        }
        for (i, action) in actions.app.iter().enumerate() {
            soonest(self.act(pod, Kind::App, i, *action, &pod_ip).await);
        }
        // Asked again: a start may have ended at once (StartError).
        let policy = pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always");
        let phase = state::phase(
            policy,
            &self.records(Kind::Init),
            &self.records(Kind::App),
            self.init_failed_for_good,
        );
        if phase == "Succeeded" || phase == "Failed" {
            self.finish(pod).await;
            return None;
        }
        next
    }

    /// What is left of the pod's activeDeadlineSeconds, counted from its start time on
    /// this node (zero once it passed); `None` without a deadline.
    fn deadline_left(&self, pod: &Pod) -> Option<Duration> {
        let seconds = pod.spec.as_ref()?.active_deadline_seconds?;
        let start = self.start_time.as_ref()?.0.as_second();
        let left = start
            .saturating_add(seconds)
            .saturating_sub(Timestamp::now().as_second());
        Some(Duration::from_secs(left.max(0) as u64))
    }

    /// The sandbox, the pod's files and its volumes (refreshed now and then); `Err(retry)`
    /// when one of them cannot be made yet.
    async fn setup(&mut self, pod: &Pod, host_network: bool) -> Result<(), Duration> {
        if self.sandbox.is_none() && !host_network {
            self.sandbox_retry
                .attempt(&self.ctx.backoff, Instant::now())?;
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
                    return Err(SETUP_RETRY);
                }
            }
        }
        let pod_ip = self.pod_ip(host_network);
        if let Err(e) = files::write_all(&self.ctx.pod_dir(&self.uid), pod, &pod_ip, &self.ctx.dns)
        {
            tracing::warn!(pod = %self.uid, error = %e, "writing the pod's hosts and resolv.conf");
            return Err(SETUP_RETRY);
        }
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
                    let msg = format!("MountVolume.SetUp failed: {}", e.message);
                    self.event(pod, None, WARNING, e.reason, &msg).await;
                    return Err(SETUP_RETRY);
                }
            }
        }
        Ok(())
    }

    /// Carries out one container's action; returns when to look again, if sooner than
    /// the next pass would.
    async fn act(
        &mut self,
        pod: &Pod,
        kind: Kind,
        i: usize,
        action: Action,
        pod_ip: &str,
    ) -> Option<Duration> {
        match action {
            Action::Keep => None,
            Action::Start => self.start_slot(pod, kind, i, pod_ip, false).await,
            Action::Restart => self.start_slot(pod, kind, i, pod_ip, true).await,
            Action::BackOff(wait) => Some(self.back_off(pod, kind, i, wait).await),
            Action::WaitForInit => {
                self.slot_mut(kind, i).rec.state = State::waiting("PodInitializing", None);
                None
            }
            Action::Kill(reason) => {
                // Liveness or startup failure: stop it; the exit restarts it.
                let slot = self.slot(kind, i);
                let grace = slot.probes.kill_grace(pod, reason);
                let msg = format!(
                    "Container {} failed {reason} probe, will be restarted",
                    slot.spec.name
                );
                let fp = field_path(kind, &slot.spec.name);
                self.event(pod, Some(fp), NORMAL, "Killing", &msg).await;
                let slot = self.slot_mut(kind, i);
                slot.killing = Some("probe");
                slot.probes.stop();
                let (id, signal) = (
                    slot.current.clone().unwrap_or_default(),
                    stop_signal(&slot.spec),
                );
                stop_container(&self.ctx, id, grace, signal);
                None
            }
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

    /// A restart waits out its back-off: the container shows CrashLoopBackOff (with an
    /// event when it starts to). Returns `wait`.
    async fn back_off(&mut self, pod: &Pod, kind: Kind, i: usize, wait: Duration) -> Duration {
        let uid = self.uid.clone();
        let fp = field_path(kind, &self.slot(kind, i).spec.name);
        let slot = self.slot_mut(kind, i);
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
        wait
    }

    /// Starts a new run of a container: the image, its environment and mounts, create and
    /// start, the waiter, probes and postStart. A `restart` is recorded in the back-off
    /// first. Returns when to retry when the run could not be made yet.
    async fn start_slot(
        &mut self,
        pod: &Pod,
        kind: Kind,
        i: usize,
        pod_ip: &str,
        restart: bool,
    ) -> Option<Duration> {
        let ctx = self.ctx.clone();
        let uid = self.uid.clone();
        let fp = field_path(kind, &self.slot(kind, i).spec.name);
        if restart {
            let slot = self.slot_mut(kind, i);
            if let Err(wait) = slot.restart.attempt(&ctx.backoff, Instant::now()) {
                return Some(self.back_off(pod, kind, i, wait).await);
            }
        }
        let image = match image_manager::ensure_image(&ctx, pod, kind, self.slot_mut(kind, i)).await
        {
            Ok(image) => image,
            Err(wait) => return wait,
        };
        // Environment and mounts.
        let spec = self.slot(kind, i).spec.clone();
        let with_ips = self.pod_with_ips(pod, pod_ip);
        let env = match volumes::container_env(&ctx.volumes, &with_ips, &spec).await {
            Ok(env) => env,
            Err(e) => {
                self.config_error(pod, kind, i, &e.message).await;
                return Some(ctx.backoff.initial);
            }
        };
        let mounts = match self
            .volumes
            .as_ref()
            .map(|(v, _)| v.mounts_with_env(pod, &spec, &env))
        {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                self.config_error(pod, kind, i, &e.message).await;
                return Some(ctx.backoff.initial);
            }
            None => Vec::new(),
        };
        // An ephemeral container with a target joins the target's PID namespace, as the
        // kubelet asks the CRI for (NamespaceMode TARGET): it sees the target's processes.
        let pid_ns_path = match self.target_pid_namespace(pod, kind, &spec.name).await {
            Ok(path) => path,
            Err(message) => {
                self.config_error(pod, kind, i, &message).await;
                return Some(ctx.backoff.initial);
            }
        };
        let attempt = self.slot(kind, i).next_attempt;
        let mut cfg = containers::container_config(
            &ctx,
            RunRequest {
                pod,
                uid: &uid,
                spec: &spec,
                kind,
                attempt,
                image: &image,
                env,
                mounts,
                sandbox: self.sandbox.as_ref().filter(|_| !host_network(pod)),
            },
        );
        cfg.pid_ns_path = pid_ns_path;
        let id = cfg.id.clone();
        // The previous run goes once a new one is made (its logs stay on disk).
        {
            let slot = self.slot_mut(kind, i);
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
        let started = match ctx.runtime.create_container(&cfg).await {
            Ok(()) => {
                let msg = format!("Created container: {}", spec.name);
                self.event(pod, Some(fp.clone()), NORMAL, "Created", &msg)
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
            let slot = self.slot_mut(kind, i);
            slot.current = Some(id.clone());
            slot.rec.state = State::Terminated(Terminated {
                exit_code: 128,
                reason: "StartError".into(),
                message: Some(message),
                started_at: Some(Time(Timestamp::UNIX_EPOCH)),
                finished_at: Some(now()),
                container_id: Some(format!("containerd://{id}")),
            });
            let _ = self.wake_tx.send(Wake::Probe);
            return None;
        }
        let msg = format!("Started container {}", spec.name);
        self.event(pod, Some(fp.clone()), NORMAL, "Started", &msg)
            .await;
        spawn_waiter(&ctx, &self.wake_tx, &id);
        let wake = self.wake_tx.clone();
        let ip = self.probe_ip(pod);
        let started_at = now();
        containers::record_start(&ctx, &uid, &spec.name, &id, &started_at);
        let slot = self.slot_mut(kind, i);
        slot.current = Some(id.clone());
        slot.rec.state = State::Running { started_at };
        slot.probes
            .start(ctx.runtime.clone(), &spec, &id, ip, &wake);
        slot.probes.apply(&mut slot.rec);
        // postStart runs right after the start; a failure kills the container.
        if let Some(hook) = spec.lifecycle.as_ref().and_then(|l| l.post_start.clone()) {
            let grace = grace_period(pod);
            let timeout = grace.max(Duration::from_secs(1));
            if let Err(msg) =
                probes::run_hook(ctx.runtime.as_ref(), &spec, &id, ip, &hook, timeout).await
            {
                let text = format!("PostStartHook failed: {msg}");
                self.event(pod, Some(fp), WARNING, "FailedPostStartHook", &text)
                    .await;
                self.slot_mut(kind, i).killing = Some("postStart");
                stop_container(&ctx, id, grace, stop_signal(&spec));
            }
        }
        None
    }

    /// The PID namespace an ephemeral container `name` joins: its `targetContainerName`'s,
    /// which must be running (its `/proc/<pid>/ns/pid`); `None` without a target. `Err`
    /// with the message a CreateContainerConfigError carries while the target is missing
    /// or not running; the start is retried.
    async fn target_pid_namespace(
        &self,
        pod: &Pod,
        kind: Kind,
        name: &str,
    ) -> Result<Option<std::path::PathBuf>, String> {
        if kind != Kind::Ephemeral {
            return Ok(None);
        }
        let target = pod
            .spec
            .as_ref()
            .and_then(|s| s.ephemeral_containers.as_ref())
            .and_then(|es| es.iter().find(|e| e.name == name))
            .and_then(|e| e.target_container_name.as_deref())
            .filter(|t| !t.is_empty());
        let Some(target) = target else {
            return Ok(None);
        };
        let current = (self.init.iter())
            .chain(self.app.iter())
            .find(|s| s.spec.name == target)
            .ok_or_else(|| format!("unable to find target container {target}"))?
            .current
            .clone();
        let state = match current {
            Some(id) => self.ctx.runtime.task_state(&id).await.ok(),
            None => None,
        };
        match state {
            Some(TaskState::Running { pid }) => Ok(Some(format!("/proc/{pid}/ns/pid").into())),
            _ => Err(format!("target container {target} is not running")),
        }
    }

    async fn config_error(&mut self, pod: &Pod, kind: Kind, i: usize, message: &str) {
        let fp = field_path(kind, &self.slot(kind, i).spec.name);
        let slot = self.slot_mut(kind, i);
        let already = matches!(&slot.rec.state, State::Waiting { reason, message: m } if reason == "CreateContainerConfigError" && m.as_deref() == Some(message));
        if let State::Terminated(t) = &slot.rec.state {
            slot.rec.last = Some(t.clone());
        }
        slot.rec.state = State::waiting("CreateContainerConfigError", Some(message.to_string()));
        if !already {
            let msg = format!("Error: {message}");
            self.event(pod, Some(fp), WARNING, "Failed", &msg).await;
        }
    }
}
