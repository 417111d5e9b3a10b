//! One container of a pod's spec as its worker tracks it: the status record, the runtime
//! IDs of its current and previous run, and its restart and pull back-offs and probes.

use k8s_openapi::api::core::v1::Container;

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
    pub(super) fn new(spec: &Container, init: bool) -> Slot {
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
}
