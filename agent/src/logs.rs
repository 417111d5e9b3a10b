//! Container I/O on the node: the FIFOs a container's task writes its stdout and stderr to
//! (and reads its stdin from), the copiers that turn that output into the container's CRI
//! log file (`<logs_dir>/<ns>_<pod>_<uid>/<container>/<restartCount>.log`, rotated as the
//! kubelet does), a live broadcast of it for attach, and reads of those logs with the
//! kubelet's containerLogs semantics for the node API.
//!
//! One [`ContainerIo`] per agent, shared (`Arc`) by the runtime (which prepares each task's
//! FIFOs, see [`ContainerIo::prepare`]) and the node API:
//!
//! ```no_run
//! # async fn serve(io: std::sync::Arc<agent::logs::ContainerIo>) -> Result<(), agent::logs::LogError> {
//! use futures::StreamExt;
//! use agent::logs::LogOptions;
//! // GET /containerLogs/default/web/app?follow=true&tailLines=10
//! let opts = LogOptions::from_query("follow=true&tailLines=10")?;
//! let mut body = io.open_log("default", "web", "the-pod-uid", "app", &opts)?;
//! while let Some(chunk) = body.next().await {
//!     let _bytes = chunk.map_err(|e| agent::logs::LogError::Io { path: "log".into(), source: e })?;
//!     // write the bytes to the response
//! }
//! // POST /attach/...: the live output from now on, and the container's stdin if it has one.
//! if let Some(mut attached) = io.attach("containerd-id") {
//!     if let Some(stdin) = &attached.stdin {
//!         stdin.write(b"input\n").await.ok();
//!     }
//!     while let Ok(out) = attached.output.recv().await {
//!         let _ = (out.stream, out.data);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! The FIFOs live in `<fifo_dir>/<container id>/` beside a small record of how the task was
//! made, so a restarted agent ([`ContainerIo::recover`]) reopens them and the output of
//! containers that kept running goes on into their logs. The shim keeps its own read end of
//! each output FIFO open, so while no agent reads, the container's writes wait in the pipe
//! (64 KiB) and then block; nothing is lost beyond that.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::Stream;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::{broadcast, watch};

pub mod cri;
pub mod options;
pub mod read;
pub mod rotate;

pub use cri::LogStream;
pub use options::{LogError, LogOptions};
pub use read::Progress;
pub use rotate::LogLimits;

use cri::LineSplitter;
use rotate::RotatingWriter;

/// Where [`ContainerIo`] keeps FIFOs and finds logs, and how big logs grow.
#[derive(Debug, Clone)]
pub struct IoConfig {
    /// Per-container FIFO folders; must survive an agent restart (not a tmpfs the agent
    /// clears), e.g. `<agent dir>/io`.
    pub fifo_dir: PathBuf,
    /// The pods' log folders (`<agent dir>/logs`), where [`ContainerIo::open_log`] looks.
    pub logs_dir: PathBuf,
    pub limits: LogLimits,
}

/// How a container's task gets its I/O; kept in the FIFO folder for a restarted agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IoSpec {
    pub id: String,
    /// The CRI log file; output is only broadcast when `None`.
    pub log_path: Option<PathBuf>,
    pub stdin: bool,
    /// Close the container's stdin when the first attached client closes it.
    pub stdin_once: bool,
    /// A terminal: stdout carries everything, there is no stderr.
    pub tty: bool,
}

/// The paths and terminal flag a task is created with (containerd's CreateTaskRequest).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskIo {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// A chunk of a container's output, as it was read.
#[derive(Debug, Clone)]
pub struct Output {
    pub stream: LogStream,
    pub data: Bytes,
}

/// What an attach gets: the output from now on, and the container's stdin when it has one.
pub struct Attached {
    /// Lags (and skips) when the reader falls more than 1024 chunks behind.
    pub output: broadcast::Receiver<Output>,
    pub stdin: Option<Stdin>,
    pub tty: bool,
}

/// Closes a container's stdin in the runtime (containerd's CloseIO), given its ID.
pub type StdinCloser = Arc<dyn Fn(String) + Send + Sync>;

impl std::fmt::Debug for ContainerIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerIo")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The agent's container I/O: see the module doc.
pub struct ContainerIo {
    config: IoConfig,
    live: Mutex<HashMap<String, Arc<Instance>>>,
    stdin_closer: OnceLock<StdinCloser>,
}

/// The I/O of one running container instance.
struct Instance {
    spec: IoSpec,
    progress: watch::Sender<Progress>,
    output: broadcast::Sender<Output>,
    stdin: tokio::sync::Mutex<Option<pipe::Sender>>,
    open_streams: AtomicUsize,
}

const RECORD: &str = "io.json";
const OUTPUT_BACKLOG: usize = 1024;
/// How often a quiet output FIFO is checked for its end (see [`copy`]).
const EOF_PROBE: std::time::Duration = std::time::Duration::from_millis(500);

impl ContainerIo {
    pub fn new(config: IoConfig) -> Arc<Self> {
        Arc::new(ContainerIo {
            config,
            live: Mutex::new(HashMap::new()),
            stdin_closer: OnceLock::new(),
        })
    }

    pub fn config(&self) -> &IoConfig {
        &self.config
    }

    /// Sets how stdin is closed in the runtime (once; later calls are ignored).
    pub fn set_stdin_closer(&self, closer: StdinCloser) {
        let _ = self.stdin_closer.set(closer);
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.config.fifo_dir.join(id)
    }

    /// Makes the FIFOs of a container's task and opens this side of them; create the task
    /// with [`PreparedIo::task_io`], then [`PreparedIo::start`] the copying. Preparing the
    /// same container again starts over.
    pub fn prepare(self: &Arc<Self>, spec: &IoSpec) -> io::Result<PreparedIo> {
        let dir = self.dir(&spec.id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        let mut streams = vec![LogStream::Stdout];
        if !spec.tty {
            streams.push(LogStream::Stderr);
        }
        for s in &streams {
            mkfifo(&dir.join(s.as_str()))?;
        }
        if spec.stdin {
            mkfifo(&dir.join("stdin"))?;
        }
        std::fs::write(dir.join(RECORD), serde_json::to_vec(spec)?)?;
        let opened = Opened::open(&dir, spec)?;
        let path = |name: &str| dir.join(name).display().to_string();
        let task_io = TaskIo {
            stdin: if spec.stdin {
                path("stdin")
            } else {
                String::new()
            },
            stdout: path("stdout"),
            stderr: if spec.tty {
                String::new()
            } else {
                path("stderr")
            },
            terminal: spec.tty,
        };
        Ok(PreparedIo {
            io: self.clone(),
            spec: spec.clone(),
            task_io,
            opened,
        })
    }

    /// Reopens the FIFOs of every container a previous agent prepared and copies their
    /// output on; returns how many it found. Containers whose output already ended are
    /// read to their end.
    pub fn recover(self: &Arc<Self>) -> io::Result<usize> {
        let entries = match std::fs::read_dir(&self.config.fifo_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut found = 0;
        for entry in entries.flatten() {
            let dir = entry.path();
            let Ok(record) = std::fs::read(dir.join(RECORD)) else {
                continue;
            };
            let spec: IoSpec = match serde_json::from_slice(&record) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "unreadable container I/O record");
                    continue;
                }
            };
            if self
                .live
                .lock()
                .expect("not poisoned")
                .contains_key(&spec.id)
            {
                continue;
            }
            match Opened::open(&dir, &spec) {
                Ok(opened) => {
                    self.start(spec, opened);
                    found += 1;
                }
                Err(e) => {
                    tracing::warn!(container = %spec.id, error = %e, "reopening container I/O")
                }
            }
        }
        Ok(found)
    }

    /// Forgets a deleted container: its copiers end with its output; the FIFOs go.
    pub fn remove(&self, id: &str) {
        self.live.lock().expect("not poisoned").remove(id);
        let dir = self.dir(id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), error = %e, "removing container FIFOs");
            }
        }
    }

    fn start(&self, spec: IoSpec, opened: Opened) {
        let (progress, _) = watch::channel(Progress::default());
        let (output, _) = broadcast::channel(OUTPUT_BACKLOG);
        let writer = spec.log_path.as_ref().and_then(|path| {
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            match RotatingWriter::open(path, self.config.limits) {
                Ok(w) => Some(Arc::new(Mutex::new(w))),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "opening a container log; its output is not kept");
                    None
                }
            }
        });
        let instance = Arc::new(Instance {
            spec,
            progress,
            output,
            stdin: tokio::sync::Mutex::new(opened.stdin),
            open_streams: AtomicUsize::new(opened.outputs.len()),
        });
        if opened.outputs.is_empty() {
            instance.progress.send_modify(|p| p.done = true);
        }
        for (stream, rx) in opened.outputs {
            tokio::spawn(copy(instance.clone(), stream, rx, writer.clone()));
        }
        self.live
            .lock()
            .expect("not poisoned")
            .insert(instance.spec.id.clone(), instance);
    }

    /// Waits until the container's output has ended and is in its log (the shim closes the
    /// FIFOs after the process exits, and the copier trails it), at most `limit`: a process
    /// the container left behind may hold its stdout open. Returns at once for a container
    /// whose output is not being copied.
    pub async fn output_ended(&self, container_id: &str, limit: std::time::Duration) -> bool {
        let progress = self
            .live
            .lock()
            .expect("not poisoned")
            .get(container_id)
            .map(|i| i.progress.subscribe());
        let Some(mut progress) = progress else {
            return true;
        };
        let ended =
            tokio::time::timeout(limit, async { progress.wait_for(|p| p.done).await.is_ok() })
                .await;
        ended.unwrap_or(false)
    }

    /// The live output of a running container, and its stdin when it has one; `None` when
    /// the agent copies no output of that container (unknown, or its output has ended).
    pub fn attach(&self, container_id: &str) -> Option<Attached> {
        let instance = self
            .live
            .lock()
            .expect("not poisoned")
            .get(container_id)
            .cloned()?;
        if instance.progress.borrow().done {
            return None;
        }
        Some(Attached {
            output: instance.output.subscribe(),
            stdin: instance.spec.stdin.then(|| Stdin {
                instance: instance.clone(),
                closer: self.stdin_closer.get().cloned(),
            }),
            tty: instance.spec.tty,
        })
    }

    /// A container's log, as the kubelet serves `/containerLogs/<ns>/<pod>/<container>`:
    /// the current instance's (the highest restart count's), or the one before it with
    /// `previous`.
    pub fn open_log(
        &self,
        namespace: &str,
        pod_name: &str,
        pod_uid: &str,
        container: &str,
        opts: &LogOptions,
    ) -> Result<impl Stream<Item = io::Result<Bytes>> + Send + 'static, LogError> {
        let dir = self
            .config
            .logs_dir
            .join(format!("{namespace}_{pod_name}_{pod_uid}"))
            .join(container);
        let attempts = log_attempts(&dir);
        let pick = if opts.previous {
            attempts.iter().rev().nth(1)
        } else {
            attempts.last()
        };
        let Some(attempt) = pick else {
            let (container, pod) = (container.to_string(), pod_name.to_string());
            return Err(if opts.previous && !attempts.is_empty() {
                LogError::PreviousNotFound { container, pod }
            } else {
                LogError::NotAvailable { container, pod }
            });
        };
        let path = dir.join(format!("{attempt}.log"));
        let live = opts.follow.then(|| self.progress_of(&path)).flatten();
        let mut rx = read::stream_log(path, opts.clone(), live);
        Ok(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }

    /// The copier's progress on the log at `path`, when one is copying into it.
    fn progress_of(&self, path: &Path) -> Option<watch::Receiver<Progress>> {
        self.live
            .lock()
            .expect("not poisoned")
            .values()
            .find(|i| i.spec.log_path.as_deref() == Some(path))
            .map(|i| i.progress.subscribe())
    }
}

/// A container's stdin, for an attached client.
pub struct Stdin {
    instance: Arc<Instance>,
    closer: Option<StdinCloser>,
}

impl Stdin {
    /// Writes to the container's stdin; fails once it is closed.
    pub async fn write(&self, data: &[u8]) -> io::Result<()> {
        let mut guard = self.instance.stdin.lock().await;
        let pipe = guard
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "stdin is closed"))?;
        pipe.write_all(data).await
    }

    /// The client closed its stdin: with `stdinOnce` the container's stdin is closed too
    /// (it reads end of file), otherwise it stays open for the next attach.
    pub async fn finish(self) {
        if !self.instance.spec.stdin_once {
            return;
        }
        self.instance.stdin.lock().await.take();
        if let Some(closer) = &self.closer {
            closer(self.instance.spec.id.clone());
        }
    }
}

/// This side of a task's FIFOs.
struct Opened {
    outputs: Vec<(LogStream, pipe::Receiver)>,
    stdin: Option<pipe::Sender>,
}

impl Opened {
    /// Opens the output FIFOs for reading without waiting for a writer (so the shim's open
    /// for writing finds a reader), and stdin read-write (so it never waits for the shim).
    fn open(dir: &Path, spec: &IoSpec) -> io::Result<Self> {
        let mut outputs = Vec::new();
        for stream in [LogStream::Stdout, LogStream::Stderr] {
            let path = dir.join(stream.as_str());
            if path.exists() {
                outputs.push((stream, pipe::OpenOptions::new().open_receiver(&path)?));
            }
        }
        let stdin = if spec.stdin {
            Some(
                pipe::OpenOptions::new()
                    .read_write(true)
                    .open_sender(dir.join("stdin"))?,
            )
        } else {
            None
        };
        Ok(Opened { outputs, stdin })
    }
}

/// FIFOs made and opened for a task about to be created.
pub struct PreparedIo {
    io: Arc<ContainerIo>,
    spec: IoSpec,
    task_io: TaskIo,
    opened: Opened,
}

impl PreparedIo {
    pub fn task_io(&self) -> &TaskIo {
        &self.task_io
    }

    /// The task exists (its shim holds the FIFOs' write ends): copy its output from now on.
    pub fn start(self) {
        self.io.start(self.spec, self.opened);
    }
}

/// Copies one output stream to the broadcast and the log until the shim closes it.
async fn copy(
    instance: Arc<Instance>,
    stream: LogStream,
    rx: pipe::Receiver,
    writer: Option<Arc<Mutex<RotatingWriter>>>,
) {
    let mut splitter = LineSplitter::new(stream);
    let mut buf = vec![0u8; 32 * 1024];
    let write = |records: Vec<cri::Record>| {
        let Some(writer) = &writer else { return };
        let lines: Vec<Vec<u8>> = records.iter().map(cri::Record::to_line).collect();
        let written = writer
            .lock()
            .expect("not poisoned")
            .write_lines(lines.iter().map(Vec::as_slice));
        if let Err(e) = written {
            tracing::warn!(container = %instance.spec.id, error = %e, "writing the container log");
        }
    };
    loop {
        // Linux reports no hang-up on a FIFO whose writers all opened before this reader
        // (a restarted agent's reopen) or that never had one, so a quiet FIFO is also read
        // directly now and then: 0 bytes there is the end of the output.
        let read = match tokio::time::timeout(EOF_PROBE, rx.readable()).await {
            Ok(Ok(())) => rx.try_read(&mut buf),
            Ok(Err(e)) => Err(e),
            // tokio's try_read trusts its readiness, so the probe reads the FIFO itself.
            Err(_) => nix::unistd::read(&rx, &mut buf).map_err(io::Error::from),
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                tracing::warn!(container = %instance.spec.id, error = %e, "reading container output");
                break;
            }
        };
        let data = Bytes::copy_from_slice(&buf[..n]);
        let _ = instance.output.send(Output {
            stream,
            data: data.clone(),
        });
        write(splitter.feed(&data, &cri::now()));
        instance.progress.send_modify(|p| p.writes += 1);
    }
    write(splitter.finish(&cri::now()).into_iter().collect());
    if instance.open_streams.fetch_sub(1, Ordering::AcqRel) == 1 {
        instance.progress.send_modify(|p| {
            p.writes += 1;
            p.done = true;
        });
    }
}

fn mkfifo(path: &Path) -> io::Result<()> {
    nix::unistd::mkfifo(
        path,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .map_err(io::Error::from)
}

/// The restart counts that have a log in a container's log folder, ascending.
fn log_attempts(dir: &Path) -> Vec<u32> {
    let mut found: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    found.sort_unstable();
    found
}

/// Removes the logs of a container's instances before `attempt - 1` (the kubelet keeps the
/// current and the previous instance's logs), rotated files included.
pub fn remove_older_logs(dir: &Path, attempt: u32) {
    for old in log_attempts(dir)
        .into_iter()
        .filter(|a| a.saturating_add(1) < attempt)
    {
        let path = dir.join(format!("{old}.log"));
        let rotated = rotate::rotated_files(&path).unwrap_or_default();
        for p in rotated.into_iter().chain([path]) {
            if let Err(e) = std::fs::remove_file(&p) {
                tracing::warn!(path = %p.display(), error = %e, "removing an old container log");
            }
        }
    }
}

#[cfg(test)]
#[path = "logs/logs_tests.rs"]
mod tests;
