//! One container of a pod's spec as its worker tracks it: the status record, the runtime
//! IDs of its current and previous run, and its restart and pull back-offs and probes.

use k8s_openapi::api::core::v1::{Container, EphemeralContainer};

use super::actions::Kind;
use super::backoff::Backoff;
use super::probes::Probes;
use super::state::Record;

pub(super) struct Slot {
    pub(super) spec: Container,
    pub(super) rec: Record,
    /// The runtime ID of the current (running, or exited and not yet replaced) run.
    pub(super) current: Option<String>,
    /// The run before it, kept for its logs until the current one ends.
    pub(super) previous: Option<String>,
    /// The attempt number the next run gets.
    pub(super) next_attempt: u32,
    pub(super) restart: Backoff,
    pub(super) pull: Backoff,
    pub(super) probes: Probes,
    /// Set while the agent is stopping the container on purpose (liveness, deletion).
    pub(super) killing: Option<&'static str>,
}

impl Slot {
    pub(super) fn new(spec: &Container, kind: Kind) -> Slot {
        let waiting = if kind.is_init() {
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
}

/// An ephemeral container as the container it runs as. Upstream's validation forbids
/// ephemeral containers ports, probes, lifecycle hooks and resources, so they are not
/// carried over: nothing probes or hooks a debugger, whatever the spec says.
///
/// `targetContainerName` is not carried either: the worker reads it from the pod's spec
/// when it starts the run, to join the target's PID namespace.
pub(super) fn ephemeral_as_container(e: &EphemeralContainer) -> Container {
    Container {
        name: e.name.clone(),
        image: e.image.clone(),
        image_pull_policy: e.image_pull_policy.clone(),
        command: e.command.clone(),
        args: e.args.clone(),
        working_dir: e.working_dir.clone(),
        env: e.env.clone(),
        env_from: e.env_from.clone(),
        volume_mounts: e.volume_mounts.clone(),
        volume_devices: e.volume_devices.clone(),
        security_context: e.security_context.clone(),
        stdin: e.stdin,
        stdin_once: e.stdin_once,
        tty: e.tty,
        termination_message_path: e.termination_message_path.clone(),
        termination_message_policy: e.termination_message_policy.clone(),
        ..Default::default()
    }
}
