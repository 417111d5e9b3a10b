//! A probe worker: one task per probe of one container, with the kubelet prober's
//! semantics. The first attempt runs `initialDelaySeconds` after [`spawn`] (spawn it when
//! the container starts), then one every `periodSeconds` (default 10), each bounded by
//! `timeoutSeconds` (default 1). The result starts as the kubelet's (readiness: not ready,
//! liveness: healthy, startup: not started) and only flips after `failureThreshold`
//! (default 3) failures or `successThreshold` (default 1) successes in a row. Attempts that
//! could not run at all (an [`Outcome::Error`]) are retried up to 3 times, then dropped
//! without counting. Once a startup probe succeeds, or a liveness or startup probe fails,
//! the worker stops probing: the container has started, or it is going to be restarted and
//! its new instance gets a new worker. Dropping the [`ProbeHandle`] ends the task.
//!
//! Gating liveness and readiness on the startup probe is the caller's: spawn them once the
//! startup result turns to success.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::check::{probe_once, Outcome};
use super::Target;
use crate::runtime::Runtime;

/// How often an attempt that could not run is retried before it is dropped (the kubelet's
/// `maxProbeRetries`).
const MAX_RETRIES: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    /// The word the kubelet's events start with ("Liveness probe failed: ...").
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }

    /// The result before any attempt: only liveness assumes the container is fine.
    fn initial(self) -> bool {
        self == ProbeKind::Liveness
    }
}

/// What a worker publishes after every attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeState {
    /// The probe's result with the thresholds applied: ready, healthy or started.
    pub success: bool,
    /// Attempts that ran (succeeded or failed), for callers that report each one.
    pub attempts: u64,
    /// Failed attempts in a row (0 after a success).
    pub consecutive_failures: u32,
    /// The message of the latest failed attempt, e.g. `HTTP probe failed with statuscode:
    /// 500`; kept after later successes.
    pub last_failure: Option<String>,
    /// The message of the latest warning (`Probe terminated redirects`).
    pub last_warning: Option<String>,
    /// Why the latest attempt that could not run failed.
    pub last_error: Option<String>,
    /// The worker has stopped probing (startup succeeded; liveness or startup failed).
    pub stopped: bool,
}

impl ProbeState {
    fn initial(kind: ProbeKind) -> Self {
        ProbeState {
            success: kind.initial(),
            attempts: 0,
            consecutive_failures: 0,
            last_failure: None,
            last_warning: None,
            last_error: None,
            stopped: false,
        }
    }
}

/// A running probe worker; dropping it stops the worker.
pub struct ProbeHandle {
    state: watch::Receiver<ProbeState>,
    task: tokio::task::JoinHandle<()>,
}

impl ProbeHandle {
    /// A receiver of the worker's state; it sees the change after every attempt.
    pub fn subscribe(&self) -> watch::Receiver<ProbeState> {
        self.state.clone()
    }

    pub fn current(&self) -> ProbeState {
        self.state.borrow().clone()
    }
}

impl Drop for ProbeHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The probe's schedule and thresholds with the kubelet's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub initial_delay: Duration,
    pub period: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Schedule {
    pub fn of(probe: &Probe) -> Schedule {
        let secs =
            |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default).max(0) as u64);
        let count = |v: Option<i32>, default: i32| v.unwrap_or(default).max(1) as u32;
        Schedule {
            initial_delay: secs(probe.initial_delay_seconds, 0),
            period: secs(probe.period_seconds, 10).max(Duration::from_secs(1)),
            success_threshold: count(probe.success_threshold, 1),
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

/// Starts probing `target` with `probe` in a task of its own.
pub fn spawn(
    kind: ProbeKind,
    probe: Probe,
    target: Target,
    ports: Vec<ContainerPort>,
    rt: Arc<dyn Runtime>,
) -> ProbeHandle {
    let (tx, rx) = watch::channel(ProbeState::initial(kind));
    let task = tokio::spawn(async move {
        run(kind, &probe, &target, &ports, rt.as_ref(), &tx).await;
        // Keep the last state visible (and the channel open) until the handle is dropped.
        std::future::pending::<()>().await;
    });
    ProbeHandle { state: rx, task }
}

async fn run(
    kind: ProbeKind,
    probe: &Probe,
    target: &Target,
    ports: &[ContainerPort],
    rt: &dyn Runtime,
    tx: &watch::Sender<ProbeState>,
) {
    let schedule = Schedule::of(probe);
    let mut ticks =
        tokio::time::interval_at(Instant::now() + schedule.initial_delay, schedule.period);
    // As with Go's ticker, an attempt that overruns the period is followed at once by the
    // next one, never by a burst of catch-up attempts.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut run_of = (kind.initial(), 0u32);
    loop {
        ticks.tick().await;
        let outcome = attempt(rt, target, ports, probe).await;
        let success = match &outcome {
            Outcome::Error(e) => {
                tracing::warn!(container = %target.container_id, probe = kind.name(), "probe errored: {e}");
                tx.send_modify(|s| s.last_error = Some(e.clone()));
                continue;
            }
            o => o.is_success(),
        };
        run_of = if run_of.0 == success {
            (success, run_of.1 + 1)
        } else {
            (success, 1)
        };
        let threshold = if success {
            schedule.success_threshold
        } else {
            schedule.failure_threshold
        };
        let flips = run_of.1 >= threshold;
        let stop = flips
            && match kind {
                ProbeKind::Startup => true,
                ProbeKind::Liveness => !success,
                ProbeKind::Readiness => false,
            };
        tx.send_modify(|s| {
            s.attempts += 1;
            match &outcome {
                Outcome::Failure(m) => {
                    s.consecutive_failures += 1;
                    s.last_failure = Some(m.clone());
                }
                Outcome::Warning(m) => {
                    s.consecutive_failures = 0;
                    s.last_warning = Some(m.clone());
                }
                _ => s.consecutive_failures = 0,
            }
            if flips {
                s.success = success;
            }
            s.stopped = stop;
        });
        if stop {
            return;
        }
    }
}

/// One attempt, retried while it could not run at all.
async fn attempt(
    rt: &dyn Runtime,
    target: &Target,
    ports: &[ContainerPort],
    probe: &Probe,
) -> Outcome {
    let mut outcome = probe_once(rt, target, ports, probe).await;
    for _ in 1..MAX_RETRIES {
        if !matches!(outcome, Outcome::Error(_)) {
            break;
        }
        outcome = probe_once(rt, target, ports, probe).await;
    }
    outcome
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
