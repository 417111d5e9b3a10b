//! What wakes a pod's worker besides updates of its pod: a container's exit or a probe's
//! new result. A leaf module, so the probes can wake the worker without importing it.

use crate::runtime::ExitStatus;

#[derive(Debug)]
pub enum Wake {
    Exited { id: String, status: ExitStatus },
    Probe,
}
