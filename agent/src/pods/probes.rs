//! A container's probes as its worker sees them: the startup probe first, then liveness and
//! readiness once it has started, as the kubelet holds them back; every result change wakes
//! the pod's worker, and failed attempts become `Unhealthy` events.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod, Probe};
use tokio::sync::mpsc;

use crate::probe::{self, ProbeHandle, ProbeKind, Target};
use crate::runtime::Runtime;

use super::state::Record;
use super::wake::Wake;

struct Running {
    kind: ProbeKind,
    handle: ProbeHandle,
    forwarder: tokio::task::JoinHandle<()>,
    /// Attempts already turned into events.
    seen: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.forwarder.abort();
    }
}

/// What the probes need to start and restart.
struct Setup {
    runtime: Arc<dyn Runtime>,
    spec: Container,
    target: Target,
    wake: mpsc::UnboundedSender<Wake>,
}

#[derive(Default)]
pub struct Probes {
    setup: Option<Setup>,
    running: Vec<Running>,
}

impl Probes {
    /// Starts the container's probes: the startup probe if it has one, else liveness and
    /// readiness.
    pub fn start(
        &mut self,
        runtime: Arc<dyn Runtime>,
        spec: &Container,
        id: &str,
        pod_ip: Ipv4Addr,
        wake: &mpsc::UnboundedSender<Wake>,
    ) {
        self.stop();
        self.setup = Some(Setup {
            runtime,
            spec: spec.clone(),
            target: Target {
                container_id: id.to_string(),
                pod_ip,
            },
            wake: wake.clone(),
        });
        match spec.startup_probe.clone() {
            Some(p) => self.spawn(ProbeKind::Startup, p),
            None => self.start_after_startup(),
        }
    }

    fn start_after_startup(&mut self) {
        let Some(setup) = &self.setup else { return };
        let (liveness, readiness) = (
            setup.spec.liveness_probe.clone(),
            setup.spec.readiness_probe.clone(),
        );
        if let Some(p) = liveness {
            self.spawn(ProbeKind::Liveness, p);
        }
        if let Some(p) = readiness {
            self.spawn(ProbeKind::Readiness, p);
        }
    }

    fn spawn(&mut self, kind: ProbeKind, p: Probe) {
        let Some(setup) = &self.setup else { return };
        let ports = setup.spec.ports.clone().unwrap_or_default();
        let handle = probe::spawn(kind, p, setup.target.clone(), ports, setup.runtime.clone());
        let mut rx = handle.subscribe();
        let wake = setup.wake.clone();
        let forwarder = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                if wake.send(Wake::Probe).is_err() {
                    return;
                }
            }
        });
        self.running.push(Running {
            kind,
            handle,
            forwarder,
            seen: 0,
        });
    }

    pub fn stop(&mut self) {
        self.running.clear();
        self.setup = None;
    }

    fn state(&self, kind: ProbeKind) -> Option<probe::ProbeState> {
        self.running
            .iter()
            .find(|r| r.kind == kind)
            .map(|r| r.handle.current())
    }

    /// Applies the probes' results to the record: started, ready. Starts liveness and
    /// readiness once the startup probe succeeded. Returns the `Unhealthy` event messages
    /// of attempts that failed since the last call.
    pub fn apply(&mut self, rec: &mut Record) -> Vec<String> {
        let Some(setup) = &self.setup else {
            rec.started = false;
            rec.ready = false;
            return Vec::new();
        };
        let has_startup = setup.spec.startup_probe.is_some();
        let has_readiness = setup.spec.readiness_probe.is_some();
        let started = !has_startup || self.state(ProbeKind::Startup).is_some_and(|s| s.success);
        if started && has_startup && !self.running.iter().any(|r| r.kind != ProbeKind::Startup) {
            self.start_after_startup();
        }
        rec.started = rec.is_running() && started;
        rec.ready = rec.started
            && (!has_readiness || self.state(ProbeKind::Readiness).is_some_and(|s| s.success));
        let mut events = Vec::new();
        for r in &mut self.running {
            let s = r.handle.current();
            if s.attempts > r.seen {
                r.seen = s.attempts;
                if s.consecutive_failures > 0 {
                    if let Some(m) = &s.last_failure {
                        events.push(format!("{} probe failed: {m}", r.kind.name()));
                    }
                }
            }
        }
        events
    }

    /// Which probe wants the container restarted: liveness failed, or startup gave up.
    pub fn wants_restart(&self) -> Option<&'static str> {
        if self.state(ProbeKind::Liveness).is_some_and(|s| !s.success) {
            return Some("liveness");
        }
        if self
            .state(ProbeKind::Startup)
            .is_some_and(|s| s.stopped && !s.success)
        {
            return Some("startup");
        }
        None
    }

    /// The grace period for a probe's restart: the probe's own terminationGracePeriodSeconds,
    /// else the pod's.
    pub fn kill_grace(&self, pod: &Pod, reason: &str) -> Duration {
        let probe = self.setup.as_ref().and_then(|s| match reason {
            "liveness" => s.spec.liveness_probe.as_ref(),
            _ => s.spec.startup_probe.as_ref(),
        });
        let secs = probe
            .and_then(|p| p.termination_grace_period_seconds)
            .or_else(|| {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }
}

/// Runs a lifecycle hook (postStart, preStop) in or against the container.
pub async fn run_hook(
    runtime: &dyn Runtime,
    spec: &Container,
    id: &str,
    pod_ip: Ipv4Addr,
    hook: &LifecycleHandler,
    timeout: Duration,
) -> Result<(), String> {
    let target = Target {
        container_id: id.to_string(),
        pod_ip,
    };
    probe::run_hook(
        runtime,
        &target,
        hook,
        spec.ports.as_deref().unwrap_or(&[]),
        timeout,
    )
    .await
}
