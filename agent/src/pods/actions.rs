//! What a pass of a pod's worker should do, decided without side effects, as the kubelet's
//! `computePodActions` decides it: per container start, restart, wait out a back-off, kill
//! or leave be; init containers one at a time in order; ephemeral containers started once
//! and never again; the pod's phase as its containers stand. The worker carries the actions
//! out (see `worker.rs`).

use std::time::Duration;

use super::state::{self, Record};

/// Which list of the pod's spec a container comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `spec.initContainers`.
    Init,
    /// `spec.containers`.
    App,
    /// `spec.ephemeralContainers`: debugging containers added to a running pod.
    Ephemeral,
}

impl Kind {
    pub fn is_init(self) -> bool {
        self == Kind::Init
    }
}

/// One container as the decision sees it.
#[derive(Debug, Clone)]
pub struct ContainerView {
    pub rec: Record,
    /// A run of it exists in the runtime (running, or exited and not yet replaced).
    pub created: bool,
    /// The probe that wants it restarted: `liveness` failed or `startup` gave up.
    pub probe_restart: Option<&'static str>,
    /// How long its restart back-off still runs, if it does.
    pub backoff: Option<Duration>,
}

impl ContainerView {
    /// Whether a run of it was made before (it ended, or it exists in the runtime).
    fn has_run(&self) -> bool {
        self.rec.ended().is_some() || self.created
    }

    /// A start after an earlier run waits out the restart back-off; a first start does not.
    fn start(&self) -> Action {
        if !self.has_run() {
            Action::Start
        } else if let Some(wait) = self.backoff {
            Action::BackOff(wait)
        } else {
            Action::Restart
        }
    }
}

/// The pod as the decision sees it.
#[derive(Debug, Clone)]
pub struct PodView {
    /// `Always` (the default), `OnFailure` or `Never`.
    pub restart_policy: String,
    /// The pod is being deleted or is gone from the API.
    pub deleting: bool,
    /// An init container failed under restartPolicy Never in an earlier pass.
    pub init_failed_for_good: bool,
    pub init: Vec<ContainerView>,
    pub app: Vec<ContainerView>,
    /// The ephemeral containers the worker knows of (those of the spec it has seen).
    pub ephemeral: Vec<ContainerView>,
}

/// What to do with one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing now: it runs, it ended for good, or it waits for an earlier init container.
    Keep,
    /// Create and start its first run.
    Start,
    /// Start a new run: the last one ended, the restart policy wants another and the
    /// back-off has passed.
    Restart,
    /// A new run is due but its back-off runs this long yet (CrashLoopBackOff).
    BackOff(Duration),
    /// Stop it: `liveness` or `startup` (a probe; the exit then restarts it) or `deletion`.
    Kill(&'static str),
    /// An app container not created yet while init containers run (PodInitializing).
    WaitForInit,
}

/// The decisions of one pass, parallel to the pod's init and app containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodActions {
    /// Stop every container, release the pod's resources and let the API remove it.
    pub terminate: bool,
    /// An init container failed under restartPolicy Never: the pod fails.
    pub init_failed_for_good: bool,
    pub init: Vec<Action>,
    pub app: Vec<Action>,
    pub ephemeral: Vec<Action>,
    /// The phase as the containers stand before the actions. A start can end at once (a
    /// StartError), so the worker asks [`state::phase`] again after carrying them out.
    pub phase: &'static str,
}

impl PodActions {
    /// The containers to kill, as (kind, index).
    pub fn kills(&self) -> Vec<(Kind, usize)> {
        [
            (Kind::Init, &self.init),
            (Kind::App, &self.app),
            (Kind::Ephemeral, &self.ephemeral),
        ]
        .into_iter()
        .flat_map(|(kind, actions)| {
            actions
                .iter()
                .enumerate()
                .filter(|(_, a)| matches!(a, Action::Kill(_)))
                .map(move |(i, _)| (kind, i))
        })
        .collect()
    }
}

pub fn compute_pod_actions(pod: &PodView) -> PodActions {
    let mut out = PodActions {
        terminate: false,
        init_failed_for_good: pod.init_failed_for_good,
        init: vec![Action::Keep; pod.init.len()],
        app: vec![Action::Keep; pod.app.len()],
        ephemeral: vec![Action::Keep; pod.ephemeral.len()],
        phase: "Pending",
    };
    if pod.deleting {
        out.terminate = true;
        for (action, c) in out
            .init
            .iter_mut()
            .zip(&pod.init)
            .chain(out.app.iter_mut().zip(&pod.app))
            .chain(out.ephemeral.iter_mut().zip(&pod.ephemeral))
        {
            if c.created && c.rec.is_running() {
                *action = Action::Kill("deletion");
            }
        }
    } else {
        decide_ephemeral(pod, &mut out);
        decide_init(pod, &mut out);
        if !out.init_failed_for_good {
            decide_app(pod, &mut out);
        }
    }
    let records = |cs: &[ContainerView]| cs.iter().map(|c| c.rec.clone()).collect::<Vec<_>>();
    out.phase = state::phase(
        &pod.restart_policy,
        &records(&pod.init),
        &records(&pod.app),
        out.init_failed_for_good,
    );
    out
}

/// Ephemeral containers, as upstream's: each starts once, whatever the init containers do
/// (so a pod stuck in init can be debugged), and is never restarted, whatever the restart
/// policy says; they count for neither the phase nor readiness.
fn decide_ephemeral(pod: &PodView, out: &mut PodActions) {
    for (action, c) in out.ephemeral.iter_mut().zip(&pod.ephemeral) {
        if !c.has_run() {
            *action = Action::Start;
        }
    }
}

/// Init containers run one at a time, in order: the first that has not succeeded is the
/// only one acted on. A failed one is retried, except under restartPolicy Never, where it
/// fails the pod.
fn decide_init(pod: &PodView, out: &mut PodActions) {
    if out.init_failed_for_good {
        return;
    }
    let Some(i) = pod.init.iter().position(|c| !c.rec.succeeded()) else {
        return;
    };
    let c = &pod.init[i];
    if c.rec.is_running() {
        return;
    }
    if c.has_run() && pod.restart_policy == "Never" {
        out.init_failed_for_good = true;
        return;
    }
    out.init[i] = c.start();
}

/// App containers once every init container succeeded: a failed probe kills a running one,
/// one not created yet starts, an ended one restarts as the restart policy says.
fn decide_app(pod: &PodView, out: &mut PodActions) {
    let initialized = pod.init.iter().all(|c| c.rec.succeeded());
    for (action, c) in out.app.iter_mut().zip(&pod.app) {
        if !initialized {
            if !c.created {
                *action = Action::WaitForInit;
            }
            continue;
        }
        if c.rec.is_running() {
            if let Some(probe) = c.probe_restart {
                *action = Action::Kill(probe);
            }
            continue;
        }
        let restart = match c.rec.ended() {
            None => !c.created,
            Some(t) => match pod.restart_policy.as_str() {
                "Always" => true,
                "OnFailure" => t.exit_code != 0,
                _ => false,
            },
        };
        if restart {
            *action = c.start();
        }
    }
}

#[cfg(test)]
#[path = "actions_tests.rs"]
mod tests;
