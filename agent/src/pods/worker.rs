//! One pod's worker, the kubelet's pod worker: the per-pod loop that runs a pass whenever
//! the pod changes, a container exits or a probe result comes in (and at least every
//! [`RESYNC`]), graceful termination when the pod is deleted, and the status reported
//! whenever it changes. What a pass does is decided in [`super::actions`]; [`sync`] carries
//! it out with [`super::containers`] and [`super::image_manager`]; everything for the API
//! goes through the [`super::status::StatusSink`].
//!
//! The init and app container slots are made once from the first spec the worker sees (a
//! pod's containers never change); ephemeral container slots follow the spec, since
//! `pods/ephemeralcontainers` adds to a running pod (kubectl debug). Each ephemeral
//! container runs once in the pod's sandbox, is never restarted, and is reported in
//! `status.ephemeralContainerStatuses`; its log is where the other containers' are, so the
//! node API's logs, attach and exec find it by name like any other container.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::actions::{compute_pod_actions, ContainerView, Kind, PodView};
use super::admission::Verdict;
use super::containers::{
    self, now, recorded_start, remove_container, spawn_waiter, stop_signal, terminated_from,
    time_at,
};
use super::image_manager::{image_id, normalize};
use super::probes;
use super::slot::{ephemeral_as_container, Slot};
use super::state::{self, Record, State};
use super::status::Reporter;
use super::wake::Wake;
use super::{
    PodContext, LABEL_ATTEMPT, LABEL_CONTAINER_NAME, LABEL_CREATED, LABEL_EPHEMERAL, LABEL_INIT,
    LABEL_POD_UID,
};
use crate::network::Sandbox;
use crate::runtime::{ContainerSummary, TaskState};
use crate::volumes::{self, PodVolumes};

mod sync;

/// A pass with nothing to wait for still runs this often, to catch anything missed.
const RESYNC: Duration = Duration::from_secs(30);

pub(super) struct Worker {
    ctx: Arc<PodContext>,
    uid: String,
    pod_rx: watch::Receiver<Option<Arc<Pod>>>,
    wake_tx: mpsc::UnboundedSender<Wake>,
    wake_rx: mpsc::UnboundedReceiver<Wake>,
    sandbox: Option<Sandbox>,
    sandbox_retry: super::backoff::Backoff,
    volumes: Option<(PodVolumes, Instant)>,
    init: Vec<Slot>,
    app: Vec<Slot>,
    /// One per ephemeral container of the spec, in its order; see [`Worker::follow_ephemeral`].
    ephemeral: Vec<Slot>,
    init_failed_for_good: bool,
    start_time: Option<Time>,
    reporter: Reporter,
    /// Set once the pod reached Succeeded or Failed and its resources were released.
    finished: bool,
    /// Why the pod failed on the node itself (refused at admission, past its
    /// activeDeadlineSeconds): the status's reason and message, with phase Failed.
    verdict: Option<Verdict>,
    /// False for a pod refused at admission: it never gets a sandbox or a container.
    admitted: bool,
}

/// Runs the worker of pod `uid` until the pod is gone; `adopt` are the containers an earlier
/// agent left. A `refused` pod runs nothing: the worker reports it Failed with that verdict
/// and only waits for its deletion, to finish it.
pub(super) async fn run(
    ctx: Arc<PodContext>,
    uid: String,
    pod_rx: watch::Receiver<Option<Arc<Pod>>>,
    adopt: Vec<ContainerSummary>,
    refused: Option<Verdict>,
) {
    let (wake_tx, wake_rx) = mpsc::unbounded_channel();
    let mut w = Worker {
        ctx,
        uid,
        pod_rx,
        wake_tx,
        wake_rx,
        sandbox: None,
        sandbox_retry: Default::default(),
        volumes: None,
        init: Vec::new(),
        app: Vec::new(),
        ephemeral: Vec::new(),
        init_failed_for_good: false,
        start_time: None,
        reporter: Reporter::default(),
        finished: false,
        admitted: refused.is_none(),
        verdict: refused,
    };
    w.run(adopt).await
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
            .map(|c| Slot::new(c, Kind::Init))
            .collect();
        self.app = spec
            .containers
            .iter()
            .map(|c| Slot::new(c, Kind::App))
            .collect();
        self.follow_ephemeral(&pod);
        self.start_time = pod.status.as_ref().and_then(|s| s.start_time.clone());
        if !self.admitted {
            return self.run_refused().await;
        }
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
            self.follow_ephemeral(&pod);
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

    /// Adds a slot for each ephemeral container the spec gained. The API only ever adds
    /// them (none is removed or changed), so the slots keep the spec's order.
    fn follow_ephemeral(&mut self, pod: &Pod) {
        let spec = pod
            .spec
            .as_ref()
            .and_then(|s| s.ephemeral_containers.as_ref());
        for e in spec.into_iter().flatten() {
            if !self.ephemeral.iter().any(|s| s.spec.name == e.name) {
                let slot = Slot::new(&ephemeral_as_container(e), Kind::Ephemeral);
                self.ephemeral.push(slot);
            }
        }
    }

    /// A pod refused at admission: its Failed status until it is deleted, then its removal.
    async fn run_refused(&mut self) {
        loop {
            let pod = self.pod();
            match pod.as_deref() {
                Some(p) if p.metadata.deletion_timestamp.is_none() => self.report(p).await,
                _ => return self.terminate(pod.as_deref()).await,
            }
            if self.pod_rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Takes over the containers a previous agent started for this pod.
    async fn adopt(&mut self, adopt: Vec<ContainerSummary>) {
        let mut by_name: BTreeMap<(String, Kind), Vec<(u32, ContainerSummary)>> = BTreeMap::new();
        for c in adopt {
            let name = c
                .labels
                .get(LABEL_CONTAINER_NAME)
                .cloned()
                .unwrap_or_default();
            let kind = if c.labels.get(LABEL_EPHEMERAL).is_some_and(|v| v == "true") {
                Kind::Ephemeral
            } else if c.labels.get(LABEL_INIT).is_some_and(|v| v == "true") {
                Kind::Init
            } else {
                Kind::App
            };
            let attempt = c
                .labels
                .get(LABEL_ATTEMPT)
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            by_name.entry((name, kind)).or_default().push((attempt, c));
        }
        for ((name, kind), mut runs) in by_name {
            runs.sort_by_key(|(a, _)| *a);
            // The field itself, not `slots_mut`: the loop borrows `ctx` and `uid` too.
            let slots = match kind {
                Kind::Init => &mut self.init,
                Kind::App => &mut self.app,
                Kind::Ephemeral => &mut self.ephemeral,
            };
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
            let started_at = recorded_start(&self.ctx, &self.uid, &name, &current.id)
                .or_else(|| {
                    current
                        .labels
                        .get(LABEL_CREATED)
                        .and_then(|s| s.trim().parse().ok().and_then(time_at))
                })
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
                // Ephemeral containers have no probes.
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
                    .chain(self.ephemeral.iter_mut())
                    .find(|s| s.current.as_deref() == Some(&id))
                else {
                    return;
                };
                let oom = containers::oom_killed(&ctx, &self.uid, &id);
                let started_at = match &slot.rec.state {
                    State::Running { started_at } => Some(started_at.clone()),
                    _ => None,
                };
                let mut t = terminated_from(&status, started_at, &id, oom);
                t.message = containers::termination_message(
                    &ctx,
                    pod,
                    &slot.spec,
                    &self.uid,
                    &id,
                    t.exit_code,
                );
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

    /// The pod and its containers as [`compute_pod_actions`] sees them now.
    fn view(&self, pod: Option<&Pod>, now: Instant) -> PodView {
        let views = |slots: &[Slot]| {
            slots
                .iter()
                .map(|s| ContainerView {
                    rec: s.rec.clone(),
                    created: s.current.is_some(),
                    probe_restart: s.probes.wants_restart(),
                    backoff: s.restart.pending(now),
                })
                .collect()
        };
        PodView {
            restart_policy: pod
                .and_then(|p| p.spec.as_ref())
                .and_then(|s| s.restart_policy.clone())
                .unwrap_or_else(|| "Always".into()),
            deleting: pod.is_none_or(|p| p.metadata.deletion_timestamp.is_some()),
            init_failed_for_good: self.init_failed_for_good,
            init: views(&self.init),
            app: views(&self.app),
            ephemeral: views(&self.ephemeral),
        }
    }

    fn records(&self, kind: Kind) -> Vec<Record> {
        self.slots(kind).iter().map(|s| s.rec.clone()).collect()
    }

    fn slots(&self, kind: Kind) -> &[Slot] {
        match kind {
            Kind::Init => &self.init,
            Kind::App => &self.app,
            Kind::Ephemeral => &self.ephemeral,
        }
    }

    fn slots_mut(&mut self, kind: Kind) -> &mut Vec<Slot> {
        match kind {
            Kind::Init => &mut self.init,
            Kind::App => &mut self.app,
            Kind::Ephemeral => &mut self.ephemeral,
        }
    }

    fn slot(&self, kind: Kind, i: usize) -> &Slot {
        &self.slots(kind)[i]
    }

    fn slot_mut(&mut self, kind: Kind, i: usize) -> &mut Slot {
        &mut self.slots_mut(kind)[i]
    }

    fn all_slots_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        (self.init.iter_mut())
            .chain(self.app.iter_mut())
            .chain(self.ephemeral.iter_mut())
    }

    /// The address probes and hooks reach the pod at.
    fn probe_ip(&self, pod: &Pod) -> std::net::Ipv4Addr {
        self.pod_ip(host_network(pod))
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

    /// Reports the status when it differs from what the pod shows.
    async fn report(&mut self, pod: &Pod) {
        if !self.admitted {
            let verdict = self
                .verdict
                .as_ref()
                .expect("a refused pod has its verdict");
            let status = state::refused_status(pod, &verdict.reason, &verdict.message);
            self.reporter
                .report(self.ctx.sink.as_ref(), pod, &self.uid, status)
                .await;
            return;
        }
        let host_network = host_network(pod);
        let ip = self.pod_ip(host_network);
        let mut status = state::pod_status(
            pod,
            self.sandbox.is_some() || host_network,
            &self.records(Kind::Init),
            &self.records(Kind::App),
            self.init_failed_for_good,
            &self.ctx.node_ip.to_string(),
            Some(ip.as_str()).filter(|ip| !ip.is_empty()),
            self.start_time.as_ref().unwrap_or(&now()),
            &now(),
        );
        status.ephemeral_container_statuses =
            state::ephemeral_statuses(&self.records(Kind::Ephemeral));
        if let Some(v) = &self.verdict {
            status.phase = Some("Failed".into());
            status.reason = Some(v.reason.clone());
            status.message = Some(v.message.clone());
        }
        self.reporter
            .report(self.ctx.sink.as_ref(), pod, &self.uid, status)
            .await;
    }

    /// The pod reached Succeeded or Failed: stop what still runs and release its address
    /// and volumes. Its exited containers stay for their logs until the pod is deleted.
    async fn finish(&mut self, pod: &Pod) {
        if self.finished {
            return;
        }
        self.report(pod).await;
        let running = self.running();
        self.stop(pod, grace_period(pod), &running).await;
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

    /// The running containers, as (kind, index).
    fn running(&self) -> Vec<(Kind, usize)> {
        [Kind::Init, Kind::App, Kind::Ephemeral]
            .into_iter()
            .flat_map(|kind| {
                (self.slots(kind).iter().enumerate())
                    .filter(|(_, s)| s.current.is_some() && s.rec.is_running())
                    .map(move |(i, _)| (kind, i))
            })
            .collect()
    }

    /// Stops the probes of every container and the containers `which` in parallel: preStop,
    /// the stop signal, SIGKILL after `grace`.
    async fn stop(&mut self, pod: &Pod, grace: Duration, which: &[(Kind, usize)]) {
        let pod_ip = self.probe_ip(pod);
        for slot in self.all_slots_mut() {
            slot.probes.stop();
        }
        let mut stops = Vec::new();
        for &(kind, i) in which {
            let slot = self.slot(kind, i);
            let Some(id) = slot.current.clone() else {
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
                containers::terminate(&ctx, &id, deadline, stop_signal(&spec)).await
            }));
        }
        for s in stops {
            let _ = s.await;
        }
    }

    /// The pod is being deleted (or is gone from the API): stop its containers gracefully,
    /// remove everything it had on this node, and tell the API it can go.
    async fn terminate(&mut self, pod: Option<&Pod>) {
        let actions = compute_pod_actions(&self.view(pod, Instant::now()));
        let kill = actions.kills();
        let grace = pod
            .and_then(|p| p.metadata.deletion_grace_period_seconds)
            .map_or(Duration::from_secs(2), |g| {
                Duration::from_secs(g.max(0) as u64)
            });
        if let Some(pod) = pod {
            self.stop(pod, grace, &kill).await;
        } else {
            // Gone from the API: no hooks (there is no pod to read them from the spec of).
            for slot in self.all_slots_mut() {
                slot.probes.stop();
            }
            for (kind, i) in kill {
                if let Some(id) = self.slot(kind, i).current.clone() {
                    containers::terminate(&self.ctx, &id, Instant::now() + grace, 15).await;
                }
            }
        }
        let ctx = self.ctx.clone();
        for slot in self.all_slots_mut() {
            for id in [slot.current.take(), slot.previous.take()]
                .into_iter()
                .flatten()
            {
                remove_container(&ctx, &id).await;
            }
        }
        // Containers this worker never knew (a crash between create and bookkeeping).
        if let Ok(all) = self.ctx.runtime.list_containers().await {
            for c in all
                .into_iter()
                .filter(|c| c.labels.get(LABEL_POD_UID) == Some(&self.uid))
            {
                remove_container(&self.ctx, &c.id).await;
            }
        }
        self.release().await;
        if let Some(pod) = pod {
            let _ = std::fs::remove_dir_all(containers::pod_logs_dir(&self.ctx, pod, &self.uid));
            if let Err(e) = self.ctx.sink.delete_pod(pod, &self.uid).await {
                tracing::warn!(pod = %pod.name_any(), error = %e, "the final delete failed; the pod stays Terminating until the next attempt")
            }
        }
    }

    async fn event(&self, pod: &Pod, fp: Option<String>, type_: &str, reason: &str, message: &str) {
        self.ctx.sink.event(pod, fp, type_, reason, message).await;
    }
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// The pod's terminationGracePeriodSeconds (30 by default).
fn grace_period(pod: &Pod) -> Duration {
    Duration::from_secs(
        pod.spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0) as u64,
    )
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
