//! Running a command inside a running container: a containerd task exec. The process spec is
//! the container's own (user, env, cwd, capabilities, rlimits) with the argv replaced, as
//! `ctr task exec` and the CRI plugin build it. stdout and stderr go through FIFOs this side
//! creates and reads to their end from before the process starts, as CRI's ExecSync does:
//! the output is complete when the shim closes the FIFOs' write ends, whenever its copy
//! loops finish. (Files through the shim's `file://` IO were read after the exec's delete,
//! and now and then a last write, such as a line on stderr, had not reached them yet.) The
//! output is stdout followed by stderr, as the kubelet joins what ExecSync returns.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    DeleteProcessRequest, ExecProcessRequest, GetContainerRequest, KillRequest, StartRequest,
    WaitRequest,
};
use containerd_client::tonic::Code;
use tokio::task::JoinHandle;

mod interactive;

pub(super) use interactive::exec_interactive;

use super::lease::unique_suffix;
use super::{grpc, Containerd};
use crate::runtime::{Error, ExecOutput, Result};

/// The type URL containerd expects on an exec's process spec.
const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// How much output is kept: the kubelet keeps the first 10 KiB of an exec probe's output.
const MAX_OUTPUT: usize = 10 * 1024;
/// How long cleanup waits for a killed exec to be reaped and for its delete.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);
const SIGKILL: u32 = 9;

pub(super) async fn exec(
    rt: &Containerd,
    id: &str,
    args: &[String],
    timeout: Duration,
) -> Result<ExecOutput> {
    let process = process_spec(rt, id, args, false).await?;
    let exec = ExecProcess {
        rt: rt.clone(),
        container_id: id.to_string(),
        exec_id: format!("exec-{}", unique_suffix()),
        stdout: std::env::temp_dir().join(format!("kybern-exec-{}.out", unique_suffix())),
        stderr: std::env::temp_dir().join(format!("kybern-exec-{}.err", unique_suffix())),
    };
    let readers = match exec.open_output() {
        Ok(readers) => readers,
        Err(e) => {
            exec.remove_output().await;
            return Err(e);
        }
    };
    // A path without a scheme is a FIFO to the shim.
    let req = ExecProcessRequest {
        container_id: id.to_string(),
        stdin: String::new(),
        stdout: exec.stdout.display().to_string(),
        stderr: exec.stderr.display().to_string(),
        terminal: false,
        spec: Some(prost_types::Any {
            type_url: PROCESS_TYPE_URL.into(),
            value: process,
        }),
        exec_id: exec.exec_id.clone(),
    };
    let created = TasksClient::new(rt.channel.clone())
        .exec(rt.req(req, None))
        .await;
    if let Err(status) = created {
        exec.remove_output().await;
        return Err(match status.code() {
            // No task: the container is not running (or does not exist).
            Code::NotFound => Error::ContainerNotFound(id.to_string()),
            _ => grpc("exec process")(status),
        });
    }
    // From here on the exec process exists in containerd and must be deleted, also when this
    // future is dropped half-way (a probe worker stopped mid-exec): the guard stays armed
    // until the cleanup below is done, and cleaning up twice is harmless.
    let guard = CleanupOnDrop(Some(exec));
    let exec = guard.0.as_ref().expect("set above");
    let result = match tokio::time::timeout(timeout, exec.start_and_wait()).await {
        Ok(Ok(exit_code)) => {
            let deleted = exec.delete().await;
            let output = exec.collect_output(readers).await;
            deleted
                .and(output)
                .map(|output| ExecOutput { exit_code, output })
        }
        Ok(Err(e)) => {
            exec.kill_and_delete().await;
            Err(e)
        }
        Err(_) => {
            tracing::debug!(container = id, exec = %exec.exec_id, "exec timed out; killing it");
            exec.kill_and_delete().await;
            Err(Error::Timeout(timeout))
        }
    };
    exec.remove_output().await;
    guard.disarm();
    result
}

/// The container's process spec with `args` as the argv, with or without a terminal.
async fn process_spec(
    rt: &Containerd,
    id: &str,
    args: &[String],
    terminal: bool,
) -> Result<Vec<u8>> {
    let get = GetContainerRequest { id: id.to_string() };
    let container = match ContainersClient::new(rt.channel.clone())
        .get(rt.req(get, None))
        .await
    {
        Ok(resp) => resp.into_inner().container,
        Err(s) if s.code() == Code::NotFound => None,
        Err(s) => return Err(grpc("get container")(s)),
    }
    .ok_or_else(|| Error::ContainerNotFound(id.to_string()))?;
    let spec = container.spec.map(|s| s.value).unwrap_or_default();
    let decode = |what: &str, e: &dyn std::fmt::Display| Error::Io {
        context: format!("{what} of container {id}"),
        source: std::io::Error::other(e.to_string()),
    };
    let mut spec: serde_json::Value =
        serde_json::from_slice(&spec).map_err(|e| decode("reading the runtime spec", &e))?;
    let process = spec
        .get_mut("process")
        .filter(|p| p.is_object())
        .ok_or_else(|| decode("the runtime spec", &"it has no process"))?;
    process["args"] = serde_json::json!(args);
    process["terminal"] = serde_json::Value::Bool(terminal);
    serde_json::to_vec(process).map_err(|e| decode("encoding the exec process", &e))
}

/// Reads a FIFO to its end, keeping the first `limit` bytes and draining the rest (so the
/// writer never blocks on a full pipe). Opening blocks until the shim opens the write end.
fn read_fifo(path: &Path, limit: usize) -> std::io::Result<Vec<u8>> {
    let mut fifo = std::fs::File::open(path)?;
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match fifo.read(&mut buf) {
            Ok(0) => return Ok(kept),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let room = limit.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// The readers of an exec's stdout and stderr FIFOs.
type Readers = [JoinHandle<std::io::Result<Vec<u8>>>; 2];

/// One exec process in containerd and the FIFOs its output goes to.
struct ExecProcess {
    rt: Containerd,
    container_id: String,
    exec_id: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl ExecProcess {
    fn tasks(&self) -> TasksClient<containerd_client::tonic::transport::Channel> {
        TasksClient::new(self.rt.channel.clone())
    }

    /// Starts the process and returns its exit code.
    async fn start_and_wait(&self) -> Result<u32> {
        let start = StartRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
        };
        self.tasks()
            .start(self.rt.req(start, None))
            .await
            .map_err(grpc("start exec process"))?;
        self.wait().await
    }

    async fn wait(&self) -> Result<u32> {
        let wait = WaitRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
        };
        let resp = self
            .tasks()
            .wait(self.rt.req(wait, None))
            .await
            .map_err(grpc("wait exec process"))?;
        Ok(resp.into_inner().exit_status)
    }

    /// Deletes the exited process; the shim closes (and stops writing) its output then.
    async fn delete(&self) -> Result<()> {
        let req = DeleteProcessRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
        };
        let deleted = tokio::time::timeout(
            CLEANUP_TIMEOUT,
            self.tasks().delete_process(self.rt.req(req, None)),
        )
        .await
        .map_err(|_| Error::Timeout(CLEANUP_TIMEOUT))?;
        match deleted {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(grpc("delete exec process")(s)),
        }
    }

    /// Kills the process (if still running), waits for it and deletes it and its output;
    /// failures are logged, as there is nobody left to return them to.
    async fn kill_and_delete(&self) {
        let kill = KillRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
            signal: SIGKILL,
            all: false,
        };
        match self.tasks().kill(self.rt.req(kill, None)).await {
            Ok(_) => {
                if tokio::time::timeout(CLEANUP_TIMEOUT, self.wait())
                    .await
                    .is_err()
                {
                    tracing::warn!(exec = %self.exec_id, "killed exec process did not exit");
                }
            }
            // Already exited (and reaped) or gone: nothing to kill.
            Err(s) if matches!(s.code(), Code::NotFound | Code::FailedPrecondition) => {}
            Err(s) => tracing::warn!(exec = %self.exec_id, "killing exec process: {s}"),
        }
        if let Err(e) = self.delete().await {
            tracing::warn!(container = %self.container_id, exec = %self.exec_id, "deleting exec process: {e}");
        }
        self.remove_output().await;
    }

    /// Creates the stdout and stderr FIFOs and starts reading them.
    fn open_output(&self) -> Result<Readers> {
        for path in [&self.stdout, &self.stderr] {
            nix::unistd::mkfifo(
                path.as_path(),
                nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
            )
            .map_err(|e| Error::Io {
                context: format!("creating the exec output FIFO {}", path.display()),
                source: e.into(),
            })?;
        }
        Ok([&self.stdout, &self.stderr].map(|path| {
            let path = path.clone();
            tokio::task::spawn_blocking(move || read_fifo(&path, MAX_OUTPUT))
        }))
    }

    /// stdout then stderr, as the kubelet joins an exec's output, at most [`MAX_OUTPUT`]:
    /// all of it, once the shim has closed both FIFOs.
    async fn collect_output(&self, readers: Readers) -> Result<Vec<u8>> {
        let read = async {
            let mut output = Vec::new();
            for (reader, path) in readers.into_iter().zip([&self.stdout, &self.stderr]) {
                let io = |source| Error::Io {
                    context: format!("reading exec output {}", path.display()),
                    source,
                };
                let part = reader
                    .await
                    .map_err(|e| io(std::io::Error::other(e.to_string())))?
                    .map_err(io)?;
                let room = MAX_OUTPUT - output.len();
                output.extend_from_slice(&part[..part.len().min(room)]);
            }
            Ok(output)
        };
        match tokio::time::timeout(CLEANUP_TIMEOUT, read).await {
            Ok(output) => output,
            // A process the command started in the background still holds its output.
            Err(_) => Err(Error::Io {
                context: format!("reading the output of exec {}", self.exec_id),
                source: std::io::Error::other(format!(
                    "still open {CLEANUP_TIMEOUT:?} after the process exited (a process it started keeps it open)"
                )),
            }),
        }
    }

    /// Ends any reader still waiting for the shim to open a FIFO (a writer that opens and
    /// closes at once is an end of output to it), then removes the FIFOs.
    async fn remove_output(&self) {
        for path in [&self.stdout, &self.stderr] {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(path);
            let _ = tokio::fs::remove_file(path).await;
        }
    }
}

/// Kills and deletes the exec process in the background when dropped armed.
struct CleanupOnDrop(Option<ExecProcess>);

impl CleanupOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CleanupOnDrop {
    fn drop(&mut self) {
        let Some(exec) = self.0.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move { exec.kill_and_delete().await });
            }
            Err(_) => tracing::warn!(
                exec = %exec.exec_id,
                "exec dropped outside a runtime; its process is left to containerd"
            ),
        }
    }
}
