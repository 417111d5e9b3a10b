//! The node API (upstream's kubelet server on port 10250): what the API server asks a node
//! for on behalf of `kubectl logs`, `exec`, `attach`, `port-forward`, `top` and
//! `get --raw /api/v1/nodes/<node>/proxy/...`.
//!
//! HTTPS with the node's serving certificate from the cluster CA ([`cert`]). Only the API
//! server's kubelet-client certificate (or a `system:masters` member's) is let in: no
//! client certificate is 401, any other is 403, as the kubelet answers with its webhook
//! authorizer denying. HTTP/1.1, so that exec, attach and port-forward can upgrade.
//!
//! ```text
//! let listener = TcpListener::bind("0.0.0.0:10250").await?;
//! let serving = nodeapi::cert::server_config(&client, node, ip, &dir, &ca).await?;
//! tokio::spawn(nodeapi::serve(listener, serving.tls.clone(), Arc::new(NodeApi { .. })));
//! tokio::spawn(serving.rotate()); // renews the certificate while it serves
//! ```

pub mod cert;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use tokio::net::TcpListener;

use crate::logs::{ContainerIo, LogError, LogOptions};
use crate::network::Network;
use crate::pods::{
    LABEL_ATTEMPT, LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID,
};
use crate::runtime::{Runtime, TaskState};
use crate::stream::{self, ExecIo, ExecOptions, PortForwardTarget};

/// The user of the certificate the API server presents (kubeadm's name for it).
pub const APISERVER_USER: &str = "kube-apiserver-kubelet-client";
/// Members of this group may use the node API too (cluster administrators).
pub const ADMIN_GROUP: &str = "system:masters";

pub type Body = BoxBody<Bytes, Infallible>;

/// Who a verified client certificate says the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// What the node API serves from.
pub struct NodeApi {
    pub runtime: Arc<dyn Runtime>,
    /// Container logs and attach; `None` where the runtime keeps no logs (tests).
    pub io: Option<Arc<ContainerIo>>,
    /// Pods' network namespaces, for port-forward.
    pub network: Arc<dyn Network>,
    /// CPU and memory of the node, its pods and containers.
    pub stats: crate::stats::Stats,
    /// The cgroup every pod's containers go below (`<parent>/<pod uid>/<container id>`).
    pub cgroup_parent: String,
}

/// A request the node API understands, from its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Healthz,
    ContainerLogs {
        namespace: String,
        pod: String,
        container: String,
    },
    Exec(Target),
    Attach(Target),
    PortForward {
        namespace: String,
        pod: String,
    },
    StatsSummary,
    ResourceMetrics,
    Metrics,
    NotFound,
}

/// The container an exec or attach is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub pod: String,
    /// Set when the path names it (`/exec/<ns>/<pod>/<uid>/<container>`).
    pub uid: Option<String>,
    pub container: String,
}

impl Route {
    pub fn parse(path: &str) -> Route {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let s = |v: &&str| v.to_string();
        let target = |ns: &&str, pod: &&str, uid: Option<&&str>, c: &&str| Target {
            namespace: s(ns),
            pod: s(pod),
            uid: uid.map(s),
            container: s(c),
        };
        match segments.as_slice() {
            ["healthz"] => Route::Healthz,
            ["containerLogs", ns, pod, container] => Route::ContainerLogs {
                namespace: s(ns),
                pod: s(pod),
                container: s(container),
            },
            ["exec", ns, pod, c] => Route::Exec(target(ns, pod, None, c)),
            ["exec", ns, pod, uid, c] => Route::Exec(target(ns, pod, Some(uid), c)),
            ["attach", ns, pod, c] => Route::Attach(target(ns, pod, None, c)),
            ["attach", ns, pod, uid, c] => Route::Attach(target(ns, pod, Some(uid), c)),
            ["portForward", ns, pod] | ["portForward", ns, pod, _] => Route::PortForward {
                namespace: s(ns),
                pod: s(pod),
            },
            ["stats", "summary"] => Route::StatsSummary,
            ["metrics", "resource"] => Route::ResourceMetrics,
            ["metrics"] => Route::Metrics,
            _ => Route::NotFound,
        }
    }

    /// The verb and subresource the kubelet's authorizer checks for this request (its
    /// message names them).
    fn attributes(&self, method: &Method) -> (&'static str, &'static str) {
        let verb = match *method {
            Method::GET | Method::HEAD => "get",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "*",
        };
        let sub = match self {
            Route::StatsSummary => "stats",
            Route::ResourceMetrics | Route::Metrics => "metrics",
            _ => "proxy",
        };
        (verb, sub)
    }
}

/// Whether an identity may use the node API.
pub fn allowed(identity: &Identity) -> bool {
    identity.user == APISERVER_USER || identity.groups.iter().any(|g| g == ADMIN_GROUP)
}

pub fn text(code: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(body.into()).boxed())
        .expect("static response parts are valid")
}

/// Accepts connections until the listener fails; each is served on its own task.
pub async fn serve(listener: TcpListener, tls: Arc<ServerConfig>, api: Arc<NodeApi>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "node API: accepting a connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, api) = (acceptor.clone(), api.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "node API: TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let identity = tls.get_ref().1.peer_certificates().and_then(identity_of);
            let service = hyper::service::service_fn(move |req| {
                let (api, identity) = (api.clone(), identity.clone());
                async move { Ok::<_, Infallible>(api.handle(req, identity.as_ref()).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "node API: connection ended");
            }
        });
    }
}

/// The identity of a verified client certificate chain: CN the user, each O a group.
fn identity_of(certs: &[rustls::pki_types::CertificateDer<'_>]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(certs.first()?.as_ref()).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    Some(Identity { user, groups })
}

impl NodeApi {
    pub async fn handle(&self, req: Request<Incoming>, who: Option<&Identity>) -> Response<Body> {
        let route = Route::parse(req.uri().path());
        let Some(who) = who else {
            return text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
        };
        if !allowed(who) {
            let (verb, sub) = route.attributes(req.method());
            return text(
                StatusCode::FORBIDDEN,
                format!(
                    "Forbidden (user={}, verb={verb}, resource=nodes, subresource(s)=[{sub}])\n",
                    who.user
                ),
            );
        }
        let query = req.uri().query().unwrap_or_default().to_string();
        match route {
            Route::Healthz => text(StatusCode::OK, "ok"),
            Route::NotFound => text(StatusCode::NOT_FOUND, "404 page not found\n"),
            Route::ContainerLogs {
                namespace,
                pod,
                container,
            } => self.logs(&namespace, &pod, &container, &query).await,
            Route::Exec(target) => {
                let opts = ExecOptions::from_query(&query);
                let id = match self.running_container(&target).await {
                    Ok(id) => id,
                    Err(resp) => return resp,
                };
                let runtime = self.runtime.clone();
                stream::remote_command(req, opts, move |io: ExecIo| async move {
                    let command = io.command.clone();
                    Ok(runtime.exec_interactive(&id, &command, io).await?)
                })
                .map(|b| b.boxed())
            }
            Route::Attach(target) => self.attach(req, &target, &query).await,
            Route::PortForward { namespace, pod } => {
                let Some(uid) = self.pod_uid(&namespace, &pod).await else {
                    return text(StatusCode::NOT_FOUND, format!("pod {pod:?} not found\n"));
                };
                let Some(netns) = self.network.netns(&uid) else {
                    return text(
                        StatusCode::NOT_FOUND,
                        format!("pod {pod:?} has no network namespace on this node\n"),
                    );
                };
                let target = PortForwardTarget {
                    pod: format!("{pod}_{namespace}"),
                    uid,
                };
                stream::port_forward(req, target, move |port: u16| {
                    let netns = netns.clone();
                    async move { crate::network::dial_in_netns(&netns, port).await }
                })
                .map(|b| b.boxed())
            }
            Route::StatsSummary => {
                let pods = self.pod_cgroups().await;
                let summary = self.stats.summary(&pods);
                match serde_json::to_vec(&summary) {
                    Ok(body) => Response::builder()
                        .status(StatusCode::OK)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body)).boxed())
                        .expect("static response parts are valid"),
                    Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
            Route::ResourceMetrics => {
                let pods = self.pod_cgroups().await;
                let body = self.stats.resource_metrics(&pods);
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", crate::stats::CONTENT_TYPE)
                    .body(Full::new(Bytes::from(body)).boxed())
                    .expect("static response parts are valid")
            }
            Route::Metrics => {
                let pods = self.pod_cgroups().await;
                let body = agent_metrics(&pods);
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", crate::stats::CONTENT_TYPE)
                    .body(Full::new(Bytes::from(body)).boxed())
                    .expect("static response parts are valid")
            }
        }
    }

    /// The pods with running containers on this node and their cgroups, from the
    /// runtime's labels.
    async fn pod_cgroups(&self) -> Vec<crate::stats::PodCgroups> {
        let Ok(containers) = self.runtime.list_containers().await else {
            return Vec::new();
        };
        let mut pods: std::collections::BTreeMap<String, crate::stats::PodCgroups> =
            Default::default();
        for c in containers {
            let l = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
            let uid = l(LABEL_POD_UID);
            if uid.is_empty() {
                continue;
            }
            if !matches!(
                self.runtime.task_state(&c.id).await,
                Ok(TaskState::Running { .. })
            ) {
                continue;
            }
            let pod = pods
                .entry(uid.clone())
                .or_insert_with(|| crate::stats::PodCgroups {
                    namespace: l(LABEL_POD_NAMESPACE),
                    name: l(LABEL_POD_NAME),
                    cgroup: format!("{}/{uid}", self.cgroup_parent),
                    uid: uid.clone(),
                    ..Default::default()
                });
            pod.containers.push(crate::stats::ContainerCgroup {
                name: l(LABEL_CONTAINER_NAME),
                cgroup: format!("{}/{uid}/{}", self.cgroup_parent, c.id),
                start_time: None,
            });
        }
        pods.into_values().collect()
    }

    async fn logs(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        query: &str,
    ) -> Response<Body> {
        let Some(io) = &self.io else {
            return text(StatusCode::NOT_FOUND, "this node keeps no container logs\n");
        };
        let opts = match LogOptions::from_query(query) {
            Ok(o) => o,
            Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
        };
        // A pod whose containers are gone still has its logs' folder.
        let uid = self
            .pod_uid(namespace, pod)
            .await
            .or_else(|| newest_log_dir(&io.config().logs_dir, namespace, pod));
        let opened = match uid {
            Some(uid) => io.open_log(namespace, pod, &uid, container, &opts),
            None => Err(LogError::NotAvailable {
                container: container.to_string(),
                pod: pod.to_string(),
            }),
        };
        match opened {
            Ok(stream) => {
                let frames = futures::StreamExt::map(
                    futures::StreamExt::take_while(stream, |chunk| {
                        futures::future::ready(chunk.is_ok())
                    }),
                    |chunk| {
                        Ok::<_, Infallible>(hyper::body::Frame::data(chunk.unwrap_or_default()))
                    },
                );
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "text/plain")
                    .body(BodyExt::boxed(http_body_util::StreamBody::new(frames)))
                    .expect("static response parts are valid")
            }
            Err(LogError::Io { path, source }) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading the log {path}: {source}"),
            ),
            Err(LogError::NotAvailable { container, pod }) => text(
                StatusCode::BAD_REQUEST,
                format!(
                    "container {container:?} in pod {pod:?} is waiting to start: ContainerCreating"
                ),
            ),
            Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
        }
    }

    async fn attach(&self, req: Request<Incoming>, target: &Target, query: &str) -> Response<Body> {
        let opts = ExecOptions::from_query(query);
        let id = match self.running_container(target).await {
            Ok(id) => id,
            Err(resp) => return resp,
        };
        let Some((container_io, attached)) = self
            .io
            .as_ref()
            .and_then(|io| Some((io.clone(), io.attach(&id)?)))
        else {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "container {} is not running its output through this agent\n",
                    target.container
                ),
            );
        };
        let runtime = self.runtime.clone();
        stream::remote_command(req, opts, move |io: ExecIo| async move {
            attach_session(runtime, container_io, id, attached, io).await
        })
        .map(|b| b.boxed())
    }

    /// The pod's UID, from the labels of its containers on this node.
    async fn pod_uid(&self, namespace: &str, pod: &str) -> Option<String> {
        let containers = self.runtime.list_containers().await.ok()?;
        containers
            .iter()
            .filter(|c| {
                c.labels.get(LABEL_POD_NAMESPACE).map(String::as_str) == Some(namespace)
                    && c.labels.get(LABEL_POD_NAME).map(String::as_str) == Some(pod)
            })
            .filter_map(|c| c.labels.get(LABEL_POD_UID).cloned())
            .next_back()
    }

    /// The runtime ID of the container's newest run, if it is running; else the kubelet's
    /// answer.
    async fn running_container(&self, t: &Target) -> Result<String, Response<Body>> {
        let containers = self.runtime.list_containers().await.map_err(|e| {
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("listing containers: {e}\n"),
            )
        })?;
        let attempt = |c: &crate::runtime::ContainerSummary| {
            c.labels
                .get(LABEL_ATTEMPT)
                .and_then(|a| a.parse::<u32>().ok())
                .unwrap_or(0)
        };
        let newest = containers
            .iter()
            .filter(|c| {
                let l = |k: &str| c.labels.get(k).map(String::as_str);
                l(LABEL_POD_NAMESPACE) == Some(t.namespace.as_str())
                    && l(LABEL_POD_NAME) == Some(t.pod.as_str())
                    && l(LABEL_CONTAINER_NAME) == Some(t.container.as_str())
                    && t.uid.as_deref().is_none_or(|u| l(LABEL_POD_UID) == Some(u))
            })
            .max_by_key(|c| attempt(c));
        let not_running = || {
            text(
                StatusCode::BAD_REQUEST,
                format!(
                    "container {} is not valid for pod {}: it is not running\n",
                    t.container, t.pod
                ),
            )
        };
        let Some(c) = newest else {
            return Err(not_running());
        };
        match self.runtime.task_state(&c.id).await {
            Ok(TaskState::Running { .. }) => Ok(c.id.clone()),
            _ => Err(not_running()),
        }
    }
}

/// Attach: the container's output from now on to the client's stdout/stderr (with a TTY
/// everything comes on stdout), the client's stdin to the container's, until the
/// container exits (its exit code is the session's) or the client goes.
async fn attach_session(
    runtime: Arc<dyn Runtime>,
    container_io: Arc<crate::logs::ContainerIo>,
    id: String,
    mut attached: crate::logs::Attached,
    io: ExecIo,
) -> Result<u32, stream::HandlerError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ExecIo {
        stdin,
        mut stdout,
        mut stderr,
        ..
    } = io;
    if let (Some(mut from_client), Some(to_container)) = (stdin, attached.stdin.take()) {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match from_client.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to_container.write(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            to_container.finish().await;
        });
    }
    async fn forward(
        out: crate::logs::Output,
        stdout: &mut Option<tokio::io::DuplexStream>,
        stderr: &mut Option<tokio::io::DuplexStream>,
    ) -> bool {
        let sink = match out.stream {
            crate::logs::LogStream::Stderr => stderr.as_mut().or(stdout.as_mut()),
            crate::logs::LogStream::Stdout => stdout.as_mut(),
        };
        match sink {
            Some(sink) => sink.write_all(&out.data).await.is_ok(),
            None => true,
        }
    }
    // The exit is seen before the copier has passed on the container's last output:
    // once it has exited, wait for its output to end, then hand on what is queued.
    let exited = async {
        let _ = runtime.wait(&id).await;
        container_io
            .output_ended(&id, std::time::Duration::from_secs(2))
            .await;
    };
    tokio::pin!(exited);
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    loop {
        tokio::select! {
            got = attached.output.recv() => match got {
                Ok(out) => {
                    if !forward(out, &mut stdout, &mut stderr).await {
                        break;
                    }
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => break,
            },
            () = &mut exited => {
                loop {
                    match attached.output.try_recv() {
                        Ok(out) => {
                            if !forward(out, &mut stdout, &mut stderr).await {
                                break;
                            }
                        }
                        Err(TryRecvError::Lagged(_)) => continue,
                        Err(_) => break,
                    }
                }
                break;
            }
        }
    }
    let status = runtime.wait(&id).await?;
    Ok(status.code)
}

/// The agent's own Prometheus metrics (the kubelet's names): pods and containers
/// running, and the process's memory and start time.
fn agent_metrics(pods: &[crate::stats::PodCgroups]) -> String {
    let containers: usize = pods.iter().map(|p| p.containers.len()).sum();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    format!(
        "# HELP kubelet_running_pods [ALPHA] Number of pods that have a running pod sandbox\n\
         # TYPE kubelet_running_pods gauge\n\
         kubelet_running_pods {}\n\
         # HELP kubelet_running_containers [ALPHA] Number of containers currently running\n\
         # TYPE kubelet_running_containers gauge\n\
         kubelet_running_containers{{container_state=\"running\"}} {containers}\n\
         # HELP process_resident_memory_bytes Resident memory size in bytes.\n\
         # TYPE process_resident_memory_bytes gauge\n\
         process_resident_memory_bytes {}\n",
        pods.len(),
        rss_kib * 1024,
    )
}

/// The UID of the newest `<ns>_<pod>_<uid>` log folder (a pod whose containers are gone).
fn newest_log_dir(logs_dir: &std::path::Path, namespace: &str, pod: &str) -> Option<String> {
    let prefix = format!("{namespace}_{pod}_");
    std::fs::read_dir(logs_dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let uid = name.strip_prefix(&prefix)?.to_string();
            let modified = e.metadata().ok()?.modified().ok()?;
            Some((modified, uid))
        })
        .max()
        .map(|(_, uid)| uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_the_kubelets_routes() {
        let t = |uid: Option<&str>| Target {
            namespace: "ns".into(),
            pod: "p".into(),
            uid: uid.map(str::to_string),
            container: "c".into(),
        };
        let cases = [
            ("/healthz", Route::Healthz),
            (
                "/containerLogs/ns/p/c",
                Route::ContainerLogs {
                    namespace: "ns".into(),
                    pod: "p".into(),
                    container: "c".into(),
                },
            ),
            ("/exec/ns/p/c", Route::Exec(t(None))),
            ("/exec/ns/p/u1/c", Route::Exec(t(Some("u1")))),
            ("/attach/ns/p/c", Route::Attach(t(None))),
            (
                "/portForward/ns/p",
                Route::PortForward {
                    namespace: "ns".into(),
                    pod: "p".into(),
                },
            ),
            ("/stats/summary", Route::StatsSummary),
            ("/metrics/resource", Route::ResourceMetrics),
            ("/metrics", Route::Metrics),
            ("/run/ns/p/c", Route::NotFound),
        ];
        for (path, want) in cases {
            assert_eq!(Route::parse(path), want, "{path}");
        }
    }

    #[test]
    fn only_the_api_server_and_administrators_are_let_in() {
        let id = |user: &str, groups: &[&str]| Identity {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        assert!(allowed(&id(APISERVER_USER, &[])));
        assert!(allowed(&id("kybern-admin", &[ADMIN_GROUP])));
        assert!(!allowed(&id("alice", &["developers"])));
        assert!(!allowed(&id("system:node:other", &["system:nodes"])));
    }
}
