//! [`Runtime`] on containerd's gRPC API, in a containerd namespace of our own ("kybern" by
//! default), with the overlayfs snapshotter and the runc v2 shim. Image import and unpack
//! live in `import`, leases and garbage collection in `lease`, the tasks' stdio FIFOs in
//! `io` (copied into CRI logs by [`crate::logs::ContainerIo`]); this file holds the
//! connection and the container and task calls.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_client::services::v1::container::Runtime as ContainerRuntime;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest,
};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteTaskRequest, GetContainerRequest, GetImageRequest, GetRequest, KillRequest,
    ListContainersRequest, StartRequest, WaitRequest,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request, Status};

use super::spec::{runtime_spec, SPEC_TYPE_URL};
use super::{
    ContainerConfig, ContainerSummary, Error, ExecOutput, ExitStatus, ImageInfo, RegistryAuth,
    Result, Runtime, TaskState,
};

mod exec;
mod import;
mod io;
mod lease;
mod pull;

pub const DEFAULT_NAMESPACE: &str = "kybern";
pub const SNAPSHOTTER: &str = "overlayfs";
pub const RUNC_RUNTIME: &str = "io.containerd.runc.v2";
/// How long [`Runtime::wait`] waits for an exited task's output to reach its log.
const OUTPUT_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);
/// The label on an image's config blob that keeps its unpacked snapshot from being collected.
const GC_REF_SNAPSHOT: &str = "containerd.io/gc.ref.snapshot.overlayfs";
/// Set on the image so [`Runtime::image`] can find the unpacked snapshot and config without
/// reading content again.
const LABEL_CHAIN_ID: &str = "kybern.io/chain-id";
const LABEL_IMAGE_CONFIG: &str = "kybern.io/image-config";

/// A containerd client bound to one namespace.
#[derive(Clone)]
pub struct Containerd {
    channel: Channel,
    namespace: String,
    /// How pulls reach registries; the default configuration when not set.
    registry: Option<crate::registry::Client>,
    /// The tasks' stdio FIFOs and the logs they are copied into.
    io: Arc<crate::logs::ContainerIo>,
}

/// Maps a gRPC status to our error, naming the call.
fn grpc(op: &'static str) -> impl FnOnce(Status) -> Error {
    move |status| Error::Containerd {
        op,
        status: Box::new(status),
    }
}

impl Containerd {
    /// Connects to containerd's socket (e.g. `/run/containerd/containerd.sock`).
    pub async fn connect(socket: impl AsRef<std::path::Path>, namespace: &str) -> Result<Self> {
        let socket = socket.as_ref();
        let channel =
            containerd_client::connect(socket)
                .await
                .map_err(|source| Error::Connect {
                    socket: socket.display().to_string(),
                    source,
                })?;
        let rt = Containerd {
            channel,
            namespace: namespace.to_string(),
            registry: None,
            io: io::default_io(socket, namespace),
        };
        rt.io.set_stdin_closer(io::stdin_closer(&rt));
        Ok(rt)
    }

    /// Copies the tasks' output with `io` (the agent's one [`crate::logs::ContainerIo`],
    /// which the node API reads logs and attaches through).
    pub fn with_io(mut self, io: Arc<crate::logs::ContainerIo>) -> Self {
        io.set_stdin_closer(io::stdin_closer(&self));
        self.io = io;
        self
    }

    /// The container I/O this runtime copies task output with.
    pub fn io(&self) -> &Arc<crate::logs::ContainerIo> {
        &self.io
    }

    /// Pulls through registries as `config` says (insecure hosts, extra CAs).
    pub fn with_registry(mut self, config: &crate::registry::RegistryConfig) -> Result<Self> {
        let client =
            crate::registry::Client::new(config).map_err(|e| Error::Pull(e.to_string()))?;
        self.registry = Some(client);
        Ok(self)
    }

    fn registry_client(
        &self,
    ) -> std::result::Result<crate::registry::Client, crate::registry::Error> {
        match &self.registry {
            Some(c) => Ok(c.clone()),
            None => crate::registry::Client::new(&Default::default()),
        }
    }

    /// The server's version, which also proves it answers.
    pub async fn version(&self) -> Result<String> {
        let mut client = containerd_client::services::v1::version_client::VersionClient::new(
            self.channel.clone(),
        );
        let v = client
            .version(())
            .await
            .map_err(grpc("version"))?
            .into_inner();
        Ok(v.version)
    }

    /// A request carrying our namespace, and a lease when given (containerd then keeps
    /// everything the call creates until the lease is deleted).
    fn req<T>(&self, msg: T, lease: Option<&str>) -> Request<T> {
        let mut req = Request::new(msg);
        let md = req.metadata_mut();
        // Namespace and lease IDs are ours and ASCII, so they are valid metadata values.
        if let Ok(ns) = self.namespace.parse() {
            md.insert("containerd-namespace", ns);
        }
        if let Some(Ok(lease)) = lease.map(str::parse) {
            md.insert("containerd-lease", lease);
        }
        req
    }

    async fn create_container_in_lease(&self, config: &ContainerConfig, lease: &str) -> Result<()> {
        let image = self
            .get_image(&config.image)
            .await?
            .ok_or_else(|| Error::ImageNotFound(config.image.clone()))?;
        let chain_id = image
            .labels
            .get(LABEL_CHAIN_ID)
            .cloned()
            .ok_or_else(|| Error::ImageNotFound(format!("{} (not unpacked)", config.image)))?;
        let mut snapshots = SnapshotsClient::new(self.channel.clone());
        let prepare = PrepareSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: config.id.clone(),
            parent: chain_id,
            labels: HashMap::new(),
        };
        let mounts = match snapshots.prepare(self.req(prepare, Some(lease))).await {
            Ok(resp) => resp.into_inner().mounts,
            // A retry after a failed create finds the snapshot already prepared.
            Err(s) if s.code() == Code::AlreadyExists => {
                let req = MountsRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: config.id.clone(),
                };
                snapshots
                    .mounts(self.req(req, Some(lease)))
                    .await
                    .map_err(grpc("snapshot mounts"))?
                    .into_inner()
                    .mounts
            }
            Err(s) => return Err(grpc("prepare snapshot")(s)),
        };
        let spec = serde_json::to_vec(&runtime_spec(config)).map_err(|e| Error::Io {
            context: "encoding the runtime spec".into(),
            source: std::io::Error::other(e),
        })?;
        let container = Container {
            id: config.id.clone(),
            labels: config.labels.clone().into_iter().collect(),
            image: image.name,
            runtime: Some(ContainerRuntime {
                name: RUNC_RUNTIME.into(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.into(),
                value: spec,
            }),
            snapshotter: SNAPSHOTTER.into(),
            snapshot_key: config.id.clone(),
            ..Default::default()
        };
        let mut containers = ContainersClient::new(self.channel.clone());
        let create = CreateContainerRequest {
            container: Some(container),
        };
        match containers.create(self.req(create, Some(lease))).await {
            Ok(_) => {}
            Err(s) if s.code() == Code::AlreadyExists => {}
            Err(s) => return Err(grpc("create container")(s)),
        }
        // The agent's ends of the FIFOs are open before the shim opens its own, and the
        // copying starts once the task (and so the shim's write ends) exists.
        let prepared = io::prepare(self, config)?;
        let stdio = prepared.task_io().clone();
        let task = CreateTaskRequest {
            container_id: config.id.clone(),
            rootfs: mounts,
            stdin: stdio.stdin,
            stdout: stdio.stdout,
            stderr: stdio.stderr,
            terminal: stdio.terminal,
            ..Default::default()
        };
        TasksClient::new(self.channel.clone())
            .create(self.req(task, None))
            .await
            .map_err(grpc("create task"))?;
        prepared.start();
        Ok(())
    }

    /// containerd's image record, `None` when there is no image of that name.
    async fn get_image(
        &self,
        name: &str,
    ) -> Result<Option<containerd_client::services::v1::Image>> {
        let req = GetImageRequest {
            name: name.to_string(),
        };
        match ImagesClient::new(self.channel.clone())
            .get(self.req(req, None))
            .await
        {
            Ok(resp) => Ok(resp.into_inner().image),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(grpc("get image")(s)),
        }
    }
}

#[async_trait]
impl Runtime for Containerd {
    #[tracing::instrument(skip_all, fields(bytes = layout_tar.len()))]
    async fn import_image(&self, layout_tar: &[u8]) -> Result<Vec<String>> {
        let lease = self.lease("import").await?;
        let result = self.import_in_lease(layout_tar, &lease).await;
        let dropped = self.drop_lease(&lease).await;
        let names = result?;
        dropped?;
        Ok(names)
    }

    async fn image(&self, name: &str) -> Result<Option<ImageInfo>> {
        let Some(image) = self.get_image(name).await? else {
            return Ok(None);
        };
        let config = image
            .labels
            .get(LABEL_IMAGE_CONFIG)
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_default();
        Ok(Some(ImageInfo {
            name: image.name,
            digest: image.target.map(|t| t.digest).unwrap_or_default(),
            config,
        }))
    }

    #[tracing::instrument(skip_all, fields(id = %config.id, image = %config.image))]
    async fn create_container(&self, config: &ContainerConfig) -> Result<()> {
        let lease = self.lease("create").await?;
        let result = self.create_container_in_lease(config, &lease).await;
        let dropped = self.drop_lease(&lease).await;
        result?;
        dropped
    }

    #[tracing::instrument(skip(self))]
    async fn start(&self, id: &str) -> Result<u32> {
        let req = StartRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        };
        let resp = TasksClient::new(self.channel.clone())
            .start(self.req(req, None))
            .await
            .map_err(grpc("start task"))?;
        Ok(resp.into_inner().pid)
    }

    async fn wait(&self, id: &str) -> Result<ExitStatus> {
        let req = WaitRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        };
        let resp = TasksClient::new(self.channel.clone())
            .wait(self.req(req, None))
            .await
            .map_err(grpc("wait task"))?;
        let resp = resp.into_inner();
        // As containerd's CRI waits for a task's I/O before it reports the exit: whoever
        // reads the log after the exit (a termination message, `logs --previous`) finds all
        // of it.
        if !self.io.output_ended(id, OUTPUT_DRAIN).await {
            tracing::debug!(
                container = id,
                "output still open {OUTPUT_DRAIN:?} after the exit"
            );
        }
        Ok(ExitStatus {
            code: resp.exit_status,
            exited_at: resp.exited_at.map(|t| (t.seconds, t.nanos)),
        })
    }

    #[tracing::instrument(skip(self))]
    async fn kill(&self, id: &str, signal: u32) -> Result<()> {
        let req = KillRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
            signal,
            all: false,
        };
        TasksClient::new(self.channel.clone())
            .kill(self.req(req, None))
            .await
            .map_err(grpc("kill task"))?;
        Ok(())
    }

    #[tracing::instrument(skip(self))]
    async fn delete(&self, id: &str) -> Result<()> {
        let req = DeleteTaskRequest {
            container_id: id.to_string(),
        };
        match TasksClient::new(self.channel.clone())
            .delete(self.req(req, None))
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => return Err(grpc("delete task")(s)),
        }
        let mut containers = ContainersClient::new(self.channel.clone());
        let get = GetContainerRequest { id: id.to_string() };
        let snapshot = match containers.get(self.req(get, None)).await {
            Ok(resp) => resp
                .into_inner()
                .container
                .map(|c| (c.snapshotter, c.snapshot_key)),
            Err(s) if s.code() == Code::NotFound => None,
            Err(s) => return Err(grpc("get container")(s)),
        };
        let (snapshotter, key) =
            snapshot.unwrap_or_else(|| (SNAPSHOTTER.to_string(), id.to_string()));
        let req = RemoveSnapshotRequest { snapshotter, key };
        match SnapshotsClient::new(self.channel.clone())
            .remove(self.req(req, None))
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => return Err(grpc("remove snapshot")(s)),
        }
        match containers
            .delete(self.req(DeleteContainerRequest { id: id.to_string() }, None))
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => return Err(grpc("delete container")(s)),
        }
        self.io.remove(id);
        Ok(())
    }

    async fn list_containers(&self) -> Result<Vec<ContainerSummary>> {
        let req = ListContainersRequest {
            filters: Vec::new(),
        };
        let resp = ContainersClient::new(self.channel.clone())
            .list(self.req(req, None))
            .await
            .map_err(grpc("list containers"))?;
        let mut all: Vec<ContainerSummary> = resp
            .into_inner()
            .containers
            .into_iter()
            .map(|c| ContainerSummary {
                id: c.id,
                labels: c.labels.into_iter().collect(),
            })
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    async fn task_state(&self, id: &str) -> Result<TaskState> {
        let req = GetRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        };
        let process = match TasksClient::new(self.channel.clone())
            .get(self.req(req, None))
            .await
        {
            Ok(resp) => resp.into_inner().process,
            Err(s) if s.code() == Code::NotFound => {
                // No task: either the container exists without one, or nothing exists.
                let get = GetContainerRequest { id: id.to_string() };
                ContainersClient::new(self.channel.clone())
                    .get(self.req(get, None))
                    .await
                    .map_err(grpc("get container"))?;
                return Ok(TaskState::Created);
            }
            Err(s) => return Err(grpc("get task")(s)),
        };
        let Some(p) = process else {
            return Ok(TaskState::Created);
        };
        // containerd.v1.types.Status: 1 created, 2 running, 3 stopped, 4 paused, 5 pausing.
        Ok(match p.status {
            2 | 4 | 5 => TaskState::Running { pid: p.pid },
            3 => TaskState::Exited(ExitStatus {
                code: p.exit_status,
                exited_at: p.exited_at.map(|t| (t.seconds, t.nanos)),
            }),
            _ => TaskState::Created,
        })
    }

    async fn exec(
        &self,
        id: &str,
        args: &[String],
        timeout: std::time::Duration,
    ) -> Result<ExecOutput> {
        exec::exec(self, id, args, timeout).await
    }

    async fn exec_interactive(
        &self,
        id: &str,
        args: &[String],
        io: crate::stream::ExecIo,
    ) -> Result<u32> {
        exec::exec_interactive(self, id, args, io).await
    }

    #[tracing::instrument(skip(self, auth))]
    async fn pull_image(&self, reference: &str, auth: Option<&RegistryAuth>) -> Result<ImageInfo> {
        pull::pull(self, reference, auth).await
    }
}
