//! Running a command inside a running container: a containerd task exec. The process spec is
//! the container's own (user, env, cwd, capabilities, rlimits) with the argv replaced, as
//! `ctr task exec` and the CRI plugin build it. stdout and stderr go to temp files through
//! the shim's `file://` IO, which the shim has finished writing once the exec process is
//! deleted (it waits for its copy loops then), so the output is read after the delete. The
//! output is stdout followed by stderr, as the kubelet joins what CRI's ExecSync returns.

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    DeleteProcessRequest, ExecProcessRequest, GetContainerRequest, KillRequest, StartRequest,
    WaitRequest,
};
use containerd_client::tonic::Code;
use tokio::io::AsyncReadExt;

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
    let process = process_spec(rt, id, args).await?;
    let exec = ExecProcess {
        rt: rt.clone(),
        container_id: id.to_string(),
        exec_id: format!("exec-{}", unique_suffix()),
        stdout: std::env::temp_dir().join(format!("kybern-exec-{}.out", unique_suffix())),
        stderr: std::env::temp_dir().join(format!("kybern-exec-{}.err", unique_suffix())),
    };
    let req = ExecProcessRequest {
        container_id: id.to_string(),
        stdin: String::new(),
        stdout: format!("file://{}", exec.stdout.display()),
        stderr: format!("file://{}", exec.stderr.display()),
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
            let output = exec.read_output_of(exit_code).await;
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

/// The container's process spec with `args` as the argv and no terminal.
async fn process_spec(rt: &Containerd, id: &str, args: &[String]) -> Result<Vec<u8>> {
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
    process["terminal"] = serde_json::Value::Bool(false);
    serde_json::to_vec(process).map_err(|e| decode("encoding the exec process", &e))
}

/// Reads at most `limit` bytes from the start of `path`; a missing file is no output.
async fn read_head(path: &Path, limit: usize) -> Result<Vec<u8>> {
    let file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                context: format!("opening exec output {}", path.display()),
                source,
            })
        }
    };
    let mut out = Vec::new();
    file.take(limit as u64)
        .read_to_end(&mut out)
        .await
        .map_err(|source| Error::Io {
            context: format!("reading exec output {}", path.display()),
            source,
        })?;
    Ok(out)
}

/// One exec process in containerd and the files its output goes to.
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

    /// stdout then stderr, as the kubelet joins an exec's output, at most [`MAX_OUTPUT`].
    async fn read_output(&self) -> Result<Vec<u8>> {
        let mut output = read_head(&self.stdout, MAX_OUTPUT).await?;
        let rest = MAX_OUTPUT - output.len();
        output.extend(read_head(&self.stderr, rest).await?);
        Ok(output)
    }

    /// The output of a process that exited with `exit_code`. The shim copies a process's
    /// output to the file in goroutines of its own; once (in one of five full CI runs, a
    /// readiness probe's `cat` of a missing file) a failed process's complaint had not
    /// reached the file when its exit was reported. A failure with no output at
    /// all is read again a few times, 20 ms apart, before it counts as silent.
    async fn read_output_of(&self, exit_code: u32) -> Result<Vec<u8>> {
        let mut output = self.read_output().await?;
        for _ in 0..5 {
            if exit_code == 0 || !output.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            output = self.read_output().await?;
        }
        Ok(output)
    }

    async fn remove_output(&self) {
        let _ = tokio::fs::remove_file(&self.stdout).await;
        let _ = tokio::fs::remove_file(&self.stderr).await;
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
