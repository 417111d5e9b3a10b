//! The container runtime behind a narrow trait: import images, create a container from an
//! image (snapshot + OCI spec + task), start it, wait for its exit, signal it, delete it.
//! One real implementation talks to containerd ([`containerd::Containerd`]); a recording
//! fake ([`fake::FakeRuntime`]) serves unit tests. [`daemon`] starts a private containerd.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;

pub use crate::images::ImageConfig;

pub mod containerd;
pub mod daemon;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
pub mod spec;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to containerd at {socket}: {source}")]
    Connect {
        socket: String,
        source: containerd_client::tonic::transport::Error,
    },
    #[error("containerd {op}: {status}")]
    Containerd {
        op: &'static str,
        status: Box<containerd_client::tonic::Status>,
    },
    #[error("image {0} not found")]
    ImageNotFound(String),
    #[error("container {0} not found")]
    ContainerNotFound(String),
    #[error(transparent)]
    Image(#[from] crate::images::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("containerd did not start: {0}")]
    Daemon(String),
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// A registry refused or failed a pull; the message is what the user sees in the pod's
    /// ErrImagePull status.
    #[error("{0}")]
    Pull(String),
    #[error("{0} is not supported yet")]
    Unsupported(&'static str),
}

impl Error {
    /// Whether containerd said the object is absent (deleting it again is then a no-op).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Containerd { status, .. } => {
                status.code() == containerd_client::tonic::Code::NotFound
            }
            Error::ImageNotFound(_) | Error::ContainerNotFound(_) => true,
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An image the runtime holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub name: String,
    /// The manifest digest, `sha256:...`.
    pub digest: String,
    pub config: ImageConfig,
}

/// cgroup limits of a container, as the OCI spec expresses them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub memory_limit_bytes: Option<i64>,
    /// Relative CPU weight (cgroup v1 `cpu.shares`; 1024 is one CPU's worth).
    pub cpu_shares: Option<u64>,
    /// CPU time allowed per period, in microseconds (`cpu.cfs_quota_us`).
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
}

/// A bind mount of a host path into a container (volumes, /etc/hosts, /etc/resolv.conf,
/// the termination log). Memory-backed emptyDirs are tmpfs mounted on the host first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mount {
    /// The path inside the container.
    pub destination: String,
    pub source: PathBuf,
    pub readonly: bool,
}

/// The identity a container's process runs as (`securityContext.runAsUser` and friends).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Everything needed to create one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerConfig {
    /// Unique within the runtime's namespace; also the snapshot key and the task ID.
    pub id: String,
    /// An image name as imported or pulled.
    pub image: String,
    /// The full argv (entrypoint and command already resolved, see [`spec::resolve_args`]).
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// Working directory; `/` when empty.
    pub cwd: String,
    pub hostname: Option<String>,
    /// Join this network namespace (e.g. `/var/run/netns/<pod>`) instead of a new one.
    pub netns_path: Option<PathBuf>,
    /// Join these IPC and UTS namespaces (the pod sandbox's) instead of new ones.
    pub ipc_ns_path: Option<PathBuf>,
    pub uts_ns_path: Option<PathBuf>,
    /// Join this PID namespace (`/proc/<pid>/ns/pid` of an ephemeral container's target)
    /// instead of a new one.
    pub pid_ns_path: Option<PathBuf>,
    /// Bind mounts, in order, after the default /proc, /dev, /sys mounts.
    pub mounts: Vec<Mount>,
    /// Runs as root (uid 0, gid 0) when `None`.
    pub user: Option<User>,
    pub readonly_rootfs: bool,
    /// All capabilities, no masked paths, all devices.
    pub privileged: bool,
    /// Capability names with the `CAP_` prefix, added to or dropped from the default set
    /// ("ALL" drops everything).
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `allowPrivilegeEscalation: false`.
    pub no_new_privileges: bool,
    /// The cgroup (relative to each hierarchy's root), e.g. `/kybern/<pod>/<container>`.
    pub cgroup_path: String,
    pub resources: Resources,
    /// The container's CRI log (`<restartCount>.log`), written by the agent's copier from
    /// the task's output FIFOs (see [`crate::logs`]); output is not kept when `None`.
    pub log_path: Option<PathBuf>,
    /// The Pod spec's `stdin`, `stdinOnce` and `tty`: a stdin FIFO the agent holds open,
    /// closed after the first attach with `stdin_once`; a terminal (stdout carries all).
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
    pub labels: BTreeMap<String, String>,
}

/// How a container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code, or 128 + signal number when a signal ended it (as containerd reports).
    pub code: u32,
    /// Seconds and nanoseconds since the epoch, when known.
    pub exited_at: Option<(i64, i32)>,
}

/// A container the runtime holds, with the labels it was created with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSummary {
    pub id: String,
    pub labels: BTreeMap<String, String>,
}

/// The state of a container's task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// The container exists but has no task, or its task was created and not started.
    Created,
    Running {
        pid: u32,
    },
    Exited(ExitStatus),
}

/// The outcome of running a command inside a running container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: u32,
    /// stdout and stderr interleaved, truncated to a few KiB (probe messages quote it).
    pub output: Vec<u8>,
}

/// Credentials for a registry, from an imagePullSecret or the agent's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

#[async_trait]
pub trait Runtime: Send + Sync {
    /// Imports every image in an OCI image layout archive and unpacks it into snapshots;
    /// returns the names imported.
    async fn import_image(&self, layout_tar: &[u8]) -> Result<Vec<String>>;
    /// The image of this name, or `None` when it is not present.
    async fn image(&self, name: &str) -> Result<Option<ImageInfo>>;
    /// Prepares the container's root filesystem from its image and creates the container and
    /// its task, not yet running. When it fails part-way (say runc cannot exec the command),
    /// what was made stays until [`Runtime::delete`]; calling this again with the same
    /// config resumes where it stopped.
    async fn create_container(&self, config: &ContainerConfig) -> Result<()>;
    /// Starts the created task; returns its pid.
    async fn start(&self, id: &str) -> Result<u32>;
    /// Waits until the task exits (returns at once if it already has).
    async fn wait(&self, id: &str) -> Result<ExitStatus>;
    /// Sends a signal to the task's main process.
    async fn kill(&self, id: &str, signal: u32) -> Result<()>;
    /// Deletes the task (which must have exited), the container and its snapshot. Parts that
    /// are already gone are skipped, so it can finish an interrupted delete.
    async fn delete(&self, id: &str) -> Result<()>;
    /// All containers in the runtime's namespace, sorted by ID.
    async fn list_containers(&self) -> Result<Vec<ContainerSummary>>;
    /// The state of the container's task; `Err` with [`Error::is_not_found`] when there is
    /// no such container.
    async fn task_state(&self, id: &str) -> Result<TaskState>;
    /// Runs `args` inside the running container `id` (in its namespaces, as its user) and
    /// waits for it, at most `timeout`; on timeout the process is killed and
    /// [`Error::Timeout`] returned.
    async fn exec(
        &self,
        id: &str,
        args: &[String],
        timeout: std::time::Duration,
    ) -> Result<ExecOutput>;
    /// Runs `args` inside the running container `id` with a client's streams (`kubectl exec
    /// -i -t`): stdin until the client closes it, stdout and stderr as they are written, a
    /// terminal when `io.tty` (stderr then shares it) resized as `io.resize` says. Returns
    /// the exit code. Runtimes without it refuse with [`Error::Unsupported`].
    async fn exec_interactive(
        &self,
        id: &str,
        args: &[String],
        io: crate::stream::ExecIo,
    ) -> Result<u32> {
        let _ = (id, args, io);
        Err(Error::Unsupported("interactive exec"))
    }
    /// Pulls `reference` (e.g. `127.0.0.1:5000/app:v1`, `busybox`) from its registry, picking
    /// linux/amd64 from a manifest list, and unpacks it; returns the stored image.
    async fn pull_image(&self, reference: &str, auth: Option<&RegistryAuth>) -> Result<ImageInfo>;
}
