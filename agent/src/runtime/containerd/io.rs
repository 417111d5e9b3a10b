//! A task's stdin, stdout and stderr: FIFOs the agent's [`ContainerIo`] makes and reads
//! (never the shim's `file://` log, whose two copies into one file could lose a stream's
//! line), and closing a container's stdin through containerd's CloseIO.

use std::sync::Arc;

use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::CloseIoRequest;
use containerd_client::tonic::Request;

use super::Containerd;
use crate::logs::{ContainerIo, IoConfig, IoSpec, LogLimits, PreparedIo, StdinCloser};
use crate::runtime::{ContainerConfig, Error, Result};

/// The I/O a [`Containerd`] uses until told otherwise: FIFOs beside containerd's socket.
pub(super) fn default_io(socket: &std::path::Path, namespace: &str) -> Arc<ContainerIo> {
    let base = socket.parent().unwrap_or(std::path::Path::new("/run"));
    ContainerIo::new(IoConfig {
        fifo_dir: base.join("kybern-io").join(namespace),
        logs_dir: base.join("kybern-logs"),
        limits: LogLimits::default(),
    })
}

/// Makes the FIFOs of `config`'s task and opens the agent's ends.
pub(super) fn prepare(rt: &Containerd, config: &ContainerConfig) -> Result<PreparedIo> {
    let spec = IoSpec {
        id: config.id.clone(),
        log_path: config.log_path.clone(),
        stdin: config.stdin,
        stdin_once: config.stdin_once,
        tty: config.tty,
    };
    rt.io.prepare(&spec).map_err(|source| Error::Io {
        context: format!("preparing the I/O FIFOs of container {}", config.id),
        source,
    })
}

/// Closes a container's stdin in its shim (the shim holds a write end of its own, so the
/// process reads end of file only then).
pub(super) fn stdin_closer(rt: &Containerd) -> StdinCloser {
    let rt = (rt.channel.clone(), rt.namespace.clone());
    Arc::new(move |id: String| {
        let (channel, namespace) = rt.clone();
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(container = %id, "closing stdin outside a runtime; it stays open");
            return;
        };
        handle.spawn(async move {
            let mut req = Request::new(CloseIoRequest {
                container_id: id.clone(),
                exec_id: String::new(),
                stdin: true,
            });
            if let Ok(ns) = namespace.parse() {
                req.metadata_mut().insert("containerd-namespace", ns);
            }
            if let Err(s) = TasksClient::new(channel).close_io(req).await {
                tracing::warn!(container = %id, "closing stdin: {s}");
            }
        });
    })
}
