//! Support for the probe tests: servers on 127.0.0.1 (an HTTP/1.1 server, optionally over
//! TLS with a self-signed certificate, that answers from a closure and records the requests
//! it saw; a grpc.health.v1 server on hyper's HTTP/2 with tonic's generic server), and a
//! runtime whose execs take as long as the test says.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use super::grpc::{HealthCheckRequest, HealthCheckResponse, CHECK_PATH};
use crate::runtime::fake::FakeRuntime;
use crate::runtime::{
    ContainerConfig, ContainerSummary, Error, ExecOutput, ExitStatus, ImageInfo, RegistryAuth,
    Result, Runtime, TaskState,
};

/// A request the HTTP server received.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub path: String,
    pub headers: http::HeaderMap,
}

/// What the HTTP server answers to a path: a status and, for redirects, a Location.
pub(super) type Responder = Arc<dyn Fn(&str) -> (u16, Option<String>) + Send + Sync>;

/// A server task that stops when dropped.
pub(super) struct Server {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub(super) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

pub(super) async fn http_server(
    respond: impl Fn(&str) -> (u16, Option<String>) + Send + Sync + 'static,
) -> Server {
    serve_http(Arc::new(respond), None).await
}

/// The same server behind TLS with a fresh self-signed certificate for "localhost".
pub(super) async fn https_server(
    respond: impl Fn(&str) -> (u16, Option<String>) + Send + Sync + 'static,
) -> Server {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = key.cert.der().clone();
    let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], private)
    .unwrap();
    serve_http(
        Arc::new(respond),
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
    )
    .await
}

async fn serve_http(respond: Responder, tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (respond, recorded, tls) = (respond.clone(), recorded.clone(), tls.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<Incoming>| {
                    let path = req
                        .uri()
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_string();
                    recorded.lock().unwrap().push(Seen {
                        path: path.clone(),
                        headers: req.headers().clone(),
                    });
                    let (status, location) = respond(&path);
                    let mut resp = http::Response::builder().status(status);
                    if let Some(location) = location {
                        resp = resp.header(http::header::LOCATION, location);
                    }
                    let resp = resp.body(Empty::<Bytes>::new()).unwrap();
                    async move { Ok::<_, Infallible>(resp) }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            });
        }
    });
    Server { port, seen, task }
}

#[derive(Clone)]
struct Health(Arc<BTreeMap<String, i32>>);

impl tonic::server::UnaryService<HealthCheckRequest> for Health {
    type Response = HealthCheckResponse;
    type Future = std::future::Ready<Result<tonic::Response<HealthCheckResponse>, tonic::Status>>;

    fn call(&mut self, req: tonic::Request<HealthCheckRequest>) -> Self::Future {
        let service = req.into_inner().service;
        std::future::ready(match self.0.get(&service) {
            Some(status) => Ok(tonic::Response::new(HealthCheckResponse {
                status: *status,
            })),
            None => Err(tonic::Status::not_found("unknown service")),
        })
    }
}

/// A grpc.health.v1 server knowing `services` (name to ServingStatus); with `implemented`
/// false it answers every call with UNIMPLEMENTED, as a server without the health service.
pub(super) async fn grpc_health_server(services: &[(&str, i32)], implemented: bool) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let health = Health(Arc::new(
        services.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
    ));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (health, recorded) = (health.clone(), recorded.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<Incoming>| {
                    let health = health.clone();
                    recorded.lock().unwrap().push(Seen {
                        path: req.uri().path().to_string(),
                        headers: req.headers().clone(),
                    });
                    async move {
                        if !implemented || req.uri().path() != CHECK_PATH {
                            return Ok::<_, Infallible>(
                                tonic::Status::unimplemented(
                                    "unknown service grpc.health.v1.Health",
                                )
                                .into_http(),
                            );
                        }
                        let codec = tonic_prost::ProstCodec::<
                            HealthCheckResponse,
                            HealthCheckRequest,
                        >::default();
                        Ok(tonic::server::Grpc::new(codec).unary(health, req).await)
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Server { port, seen, task }
}

/// A [`FakeRuntime`] whose execs take `delay` (virtual time in paused tests), timing out as
/// the real runtime does when that exceeds the exec's timeout.
pub(super) struct SlowExec {
    pub fake: FakeRuntime,
    pub delay: Mutex<Duration>,
}

impl SlowExec {
    pub(super) fn new(delay: Duration) -> Self {
        SlowExec {
            fake: FakeRuntime::new(),
            delay: Mutex::new(delay),
        }
    }
}

#[async_trait]
impl Runtime for SlowExec {
    async fn import_image(&self, layout_tar: &[u8]) -> Result<Vec<String>> {
        self.fake.import_image(layout_tar).await
    }
    async fn image(&self, name: &str) -> Result<Option<ImageInfo>> {
        self.fake.image(name).await
    }
    async fn create_container(&self, config: &ContainerConfig) -> Result<()> {
        self.fake.create_container(config).await
    }
    async fn start(&self, id: &str) -> Result<u32> {
        self.fake.start(id).await
    }
    async fn wait(&self, id: &str) -> Result<ExitStatus> {
        self.fake.wait(id).await
    }
    async fn kill(&self, id: &str, signal: u32) -> Result<()> {
        self.fake.kill(id, signal).await
    }
    async fn delete(&self, id: &str) -> Result<()> {
        self.fake.delete(id).await
    }
    async fn list_containers(&self) -> Result<Vec<ContainerSummary>> {
        self.fake.list_containers().await
    }
    async fn task_state(&self, id: &str) -> Result<TaskState> {
        self.fake.task_state(id).await
    }
    async fn exec(&self, id: &str, args: &[String], timeout: Duration) -> Result<ExecOutput> {
        let delay = *self.delay.lock().unwrap();
        if delay > timeout {
            tokio::time::sleep(timeout).await;
            return Err(Error::Timeout(timeout));
        }
        tokio::time::sleep(delay).await;
        self.fake.exec(id, args, timeout).await
    }
    async fn pull_image(&self, reference: &str, auth: Option<&RegistryAuth>) -> Result<ImageInfo> {
        self.fake.pull_image(reference, auth).await
    }
}

/// A fake runtime with a running container `id` whose execs succeed unless told otherwise.
pub(super) async fn running(rt: &dyn Runtime, fake: &FakeRuntime, id: &str) {
    fake.add_image(ImageInfo {
        name: "busybox".into(),
        digest: "sha256:0".into(),
        config: Default::default(),
    });
    rt.create_container(&ContainerConfig {
        id: id.into(),
        image: "busybox".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    rt.start(id).await.unwrap();
}
