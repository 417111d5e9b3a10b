//! The REST API: one entry point that turns an HTTP request into a Kubernetes
//! operation on a registered resource, and errors into `Status` bodies.

mod apply;
mod approval;
mod binding;
pub mod bootstrap;
mod componentstatus;
mod crd;
mod defaults;
mod discovery;
mod eviction;
mod fields;
mod finalize;
mod guarded;
mod kinds;
pub mod metrics;
mod negotiate;
mod nodeproxy;
mod oidc;

pub use nodeproxy::NodeApiScraper;
pub use services::ServiceNet;
mod omitempty;
mod openapi;
mod patch;
pub mod pipeline;
pub mod policy;
mod pool;
mod read;
mod reviews;
mod scale;
mod services;
mod strategy;
mod token;
mod warning;
mod watch;
mod workloads;
mod write;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::registry::{Registry, Resource};
use crate::request::{parse_path, Path, Query, ResourcePath};
use crate::status::{ApiError, Result, Target};
use crate::storage::Storage;
use crate::tls::ClientIdentity;
use crate::watchcache::WatchCache;

pub use negotiate::{Accept, MAX_BODY_BYTES};
pub use token::{ServiceAccountUser, TokenError, TokenSigner};

pub type Body = BoxBody<Bytes, Infallible>;

/// Everything a request handler needs; shared by all connections.
pub struct Api {
    pub storage: Arc<dyn Storage>,
    pub registry: Arc<Registry>,
    caches: Mutex<HashMap<String, Arc<OnceCell<Arc<WatchCache>>>>>,
    /// host:port clients reach this server at (for `/api`'s serverAddressByClientCIDRs).
    pub server_address: String,
    /// Where pods and other nodes reach this server (`--advertise-address` and the bound
    /// port): the `kubernetes` Service's endpoints. Unset, `server_address`.
    pub advertise: std::sync::OnceLock<std::net::SocketAddr>,
    /// The service range, cluster DNS address and domain; unset, the defaults.
    pub service_net: std::sync::OnceLock<ServiceNet>,
    openapi: openapi::OpenApiCache,
    /// Signs service-account tokens (`serviceaccounts/token`); set once at server start.
    pub token_signer: std::sync::OnceLock<TokenSigner>,
    /// Requests with large bodies served at once (see `serve_resource`).
    large_bodies: tokio::sync::Semaphore,
    /// Authentication, authorization and admission plugins.
    pub pipeline: pipeline::Pipeline,
    /// Deleted CRDs whose objects are being deleted now (one clean-up task each).
    crd_cleanups: Mutex<std::collections::HashSet<String>>,
    /// How this server reaches nodes' agents (the cluster CA and its kubelet-client
    /// certificate); unset, node subresources answer 503.
    pub node_tls: std::sync::OnceLock<Arc<rustls::ClientConfig>>,
    /// Kept-alive connections to nodes' agents, for the node subresources' plain
    /// requests (logs, `nodes/proxy`); upgrades (exec, attach, port-forward) take a
    /// connection of their own.
    /// The metrics scraper shares them.
    node_clients: Arc<pool::Pool<nodeproxy::ProxyBody>>,
    /// The nodes' resource samples metrics.k8s.io answers from (see [`metrics`]).
    pub metrics: metrics::Samples,
    /// Counts of and latencies of the requests answered (`GET /metrics`).
    pub request_metrics: crate::request_metrics::RequestMetrics,
}

/// How many requests with large bodies are decoded at once. Each may need tens of
/// megabytes (a 3 MiB body, the `Value` tree of a deeply nested object, the stack pages
/// its recursion touches), so their number is bounded instead of growing with the
/// blocking pool (512 threads); more wait their turn.
const LARGE_BODIES_AT_ONCE: usize = 8;

/// Bodies up to this size are decoded on the thread that read them (a few tens of
/// microseconds of work); larger ones on the blocking pool.
const INLINE_BODY_BYTES: usize = 16 * 1024;

/// The Kubernetes version kybern reports and implements the API of.
pub const KUBERNETES_VERSION: &str = "v1.33.0+kybern";

pub fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    // Upstream's encoder ends every document with a newline.
    let mut body = crate::json::to_vec(value);
    body.push(b'\n');
    bytes_response(code, "application/json", Bytes::from(body))
}

pub fn bytes_response(code: StatusCode, content_type: &str, body: Bytes) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", content_type)
        .header("cache-control", "no-cache, private")
        .body(Full::new(body).boxed())
        .expect("static response parts are valid")
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json_response(code, &e.to_status());
    if let Some(seconds) = e.retry_after() {
        resp.headers_mut()
            .insert("retry-after", http::HeaderValue::from(seconds));
    }
    resp
}

impl Api {
    pub fn new(
        storage: Arc<dyn Storage>,
        registry: Arc<Registry>,
        server_address: String,
    ) -> Arc<Self> {
        Self::with_pipeline(storage, registry, server_address, Default::default())
    }

    /// An API with other authentication, authorization or admission plugins than
    /// `kybern server`'s.
    pub fn with_pipeline(
        storage: Arc<dyn Storage>,
        registry: Arc<Registry>,
        server_address: String,
        pipeline: pipeline::Pipeline,
    ) -> Arc<Self> {
        Arc::new(Api {
            storage,
            registry,
            caches: Mutex::new(HashMap::new()),
            server_address,
            advertise: Default::default(),
            service_net: Default::default(),
            openapi: Default::default(),
            token_signer: Default::default(),
            large_bodies: tokio::sync::Semaphore::new(LARGE_BODIES_AT_ONCE),
            pipeline,
            crd_cleanups: Default::default(),
            node_tls: Default::default(),
            node_clients: Default::default(),
            metrics: Default::default(),
            request_metrics: Default::default(),
        })
    }

    /// The service range, cluster DNS address and domain this server was started with.
    pub fn service_net(&self) -> &ServiceNet {
        static DEFAULT: std::sync::LazyLock<ServiceNet> =
            std::sync::LazyLock::new(ServiceNet::default);
        self.service_net.get().unwrap_or(&DEFAULT)
    }

    /// The watch cache of a resource, started on first use.
    pub async fn cache(&self, r: &Resource) -> Result<Arc<WatchCache>> {
        let prefix = r.key_prefix();
        let cell = self
            .caches
            .lock()
            .expect("cache map poisoned")
            .entry(prefix.clone())
            .or_default()
            .clone();
        let storage = self.storage.clone();
        cell.get_or_try_init(|| WatchCache::start(storage, prefix))
            .await
            .cloned()
    }

    /// Serves one request. `identity` is the authenticated client, if any. Every
    /// request is counted and timed for `/metrics` (a watch until its response starts).
    pub async fn handle<B>(
        self: Arc<Self>,
        req: Request<B>,
        identity: Option<ClientIdentity>,
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
    {
        let start = std::time::Instant::now();
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let labels = crate::request_metrics::Labels::of(req.method(), req.uri(), content_type);
        let resp = self.clone().serve(req, identity).await;
        self.request_metrics
            .record(&labels, resp.status().as_u16(), start.elapsed());
        resp
    }

    async fn serve<B>(
        self: Arc<Self>,
        req: Request<B>,
        identity: Option<ClientIdentity>,
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
    {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        let query = Query::parse(parts.uri.query());
        let parsed = parse_path(&path);
        // Authentication, then authorization, before anything is read or decoded.
        let credentials = pipeline::Credentials {
            client_certificate: identity.as_ref(),
            headers: &parts.headers,
        };
        let user = match self.pipeline.authenticate(&self, &credentials).await {
            Ok(user) => user,
            Err(e) => return error_response(&e),
        };
        let user = match pipeline::impersonate(&self.pipeline, user, &parts.headers) {
            Ok(user) => user,
            Err(e) => return error_response(&e),
        };
        let resource = match &parsed {
            Path::Resource(rp) => Some(rp),
            _ => None,
        };
        let attributes = pipeline::Attributes::of(user, &parts.method, &path, resource, &query);
        if let Err(e) = self.pipeline.authorize(&attributes) {
            return error_response(&e);
        }
        let user = attributes.user;
        let accept = Accept::parse(
            parts
                .headers
                .get("accept")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        );
        match parsed {
            Path::Resource(rp) if nodeproxy::handles(&rp) => {
                nodeproxy::serve(&self, parts, body, &rp).await
            }
            Path::Resource(rp) => {
                let body = match read_body(body).await {
                    Ok(b) => b,
                    Err(e) => return error_response(&e),
                };
                let header = |h: &str| {
                    parts
                        .headers
                        .get(h)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                let (ctype, user_agent) = (header("content-type"), header("user-agent"));
                let warnings = Warnings::default();
                let req = ApiRequest {
                    method: parts.method,
                    path: rp,
                    query,
                    accept,
                    content_type: ctype,
                    user_agent,
                    body,
                    warnings: warnings.clone(),
                    user,
                };
                let mut resp = match self.serve_resource(req).await {
                    Ok(resp) => resp,
                    Err(e) => error_response(&e),
                };
                for v in warning::headers(warnings.take()) {
                    resp.headers_mut().append("warning", v);
                }
                resp
            }
            Path::Other(p) if oidc::handles(&p) => {
                oidc::serve(&self, &parts.method, &p).unwrap_or_else(|e| error_response(&e))
            }
            Path::Other(p) if p == "/metrics" && parts.method == Method::GET => bytes_response(
                StatusCode::OK,
                crate::prometheus::CONTENT_TYPE,
                Bytes::from(self.request_metrics.render()),
            ),
            other => match discovery::serve(
                &self,
                &parts.method,
                &other,
                &accept,
                parts
                    .headers
                    .get(http::header::IF_NONE_MATCH)
                    .and_then(|v| v.to_str().ok()),
            )
            .await
            {
                Ok(resp) => resp,
                Err(e) => error_response(&e),
            },
        }
    }

    /// Serves a resource request. One with a large body is served on a blocking-pool
    /// thread: decoding, patching and validating it is CPU work in proportion to the
    /// body, which must not hold up the threads that serve every other request.
    async fn serve_resource(self: &Arc<Self>, req: ApiRequest) -> Result<Response<Body>> {
        if req.body.len() <= INLINE_BODY_BYTES {
            return self.resource_request(req).await;
        }
        let _permit = self
            .large_bodies
            .acquire()
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let (api, runtime) = (self.clone(), tokio::runtime::Handle::current());
        tokio::task::spawn_blocking(move || runtime.block_on(api.resource_request(req)))
            .await
            .map_err(|e| ApiError::Internal(format!("serving the request failed: {e}")))?
    }

    async fn resource_request(self: &Arc<Self>, req: ApiRequest) -> Result<Response<Body>> {
        let snapshot = self.registry.snapshot();
        let p = &req.path;
        let pods = || {
            snapshot
                .get("", "v1", "pods")
                .cloned()
                .ok_or(ApiError::NoSuchResource)
        };
        // Bindings are not stored objects: they assign a pod to a node.
        match (
            p.group.as_str(),
            p.resource.as_str(),
            p.subresource.as_deref(),
            &req.method,
        ) {
            ("", "bindings", None, &Method::POST) if p.namespace.is_some() && p.name.is_none() => {
                return binding::bind(self, &*pods()?, &req, None).await;
            }
            ("", "pods", Some("binding"), &Method::POST) if p.name.is_some() => {
                return binding::bind(self, &*pods()?, &req, p.name.as_deref()).await;
            }
            ("", "pods", Some("eviction"), &Method::POST) if p.namespace.is_some() => {
                let name = p.name.as_deref().unwrap_or_default();
                return eviction::evict(self, &*pods()?, &req, name).await;
            }
            ("", "serviceaccounts", Some("token"), method)
                if p.name.is_some() && p.namespace.is_some() =>
            {
                return if method == Method::POST {
                    token::create(self, &req, p.name.as_deref().unwrap_or_default()).await
                } else {
                    Err(ApiError::MethodNotAllowed)
                };
            }
            _ => {}
        }
        let r = snapshot
            .get(&p.group, &p.version, &p.resource)
            .ok_or(ApiError::NoSuchResource)?
            .clone();
        if p.namespace.is_some() && !r.namespaced {
            return Err(ApiError::NoSuchResource);
        }
        if metrics::is_metrics(&r) {
            return metrics::serve(self, &r, &req).await;
        }
        if !r.stored {
            // Review kinds: answered at once, never stored.
            return reviews::serve(self, &r, &req).await;
        }
        if p.name.is_some() && r.namespaced && p.namespace.is_none() {
            return Err(ApiError::NoSuchResource);
        }
        if componentstatus::is_componentstatuses(&r) {
            return componentstatus::serve(self, &r, &req).await;
        }
        let sub = p.subresource.as_deref();
        match sub {
            None => {}
            Some("status") if r.status => {}
            Some("scale") if r.scale.is_some() => {}
            Some("finalize") if finalize::is_namespaces(&r) => {}
            Some("approval") if approval::is_csr(&r) => {}
            Some("ephemeralcontainers") if r.group.is_empty() && r.plural == "pods" => {}
            Some(_) => return Err(ApiError::NoSuchResource),
        }
        let watch = p.is_watch(&req.query);
        match (&req.method, p.name.as_deref(), sub) {
            (&Method::PUT | &Method::PATCH, Some(name), Some("approval")) => {
                approval::update(self, &r, &req, name).await
            }
            (&Method::GET, None, _) if watch => watch::serve(self, &r, &req).await,
            (&Method::GET, Some(name), _) if watch => {
                let mut req = req.clone();
                req.query
                    .0
                    .insert("fieldSelector".into(), format!("metadata.name={name}"));
                watch::serve(self, &r, &req).await
            }
            (&Method::GET, None, None) => read::list(self, &r, &req).await,
            (&Method::GET, Some(name), Some("scale")) => scale::get(self, &r, &req, name).await,
            (&Method::GET, Some(name), _) => read::get(self, &r, &req, name).await,
            (&Method::POST, None, None) => write::create(self, &r, &req).await,
            (&Method::PUT, Some(name), Some("finalize")) => {
                finalize::update(self, &r, &req, name).await
            }
            (_, _, Some("finalize")) => Err(ApiError::MethodNotAllowed),
            (&Method::PUT, Some(name), Some("scale")) => scale::update(self, &r, &req, name).await,
            (&Method::PATCH, Some(name), Some("scale")) => {
                scale::update(self, &r, &req, name).await
            }
            (&Method::PUT, Some(name), _) => write::update(self, &r, &req, name).await,
            (&Method::PATCH, Some(name), _)
                if negotiate::media_type(&req.content_type) == "application/apply-patch+yaml" =>
            {
                apply::serve(self, &r, &req, name).await
            }
            (&Method::PATCH, Some(name), _) => write::patch(self, &r, &req, name).await,
            (&Method::DELETE, Some(name), None) => write::delete(self, &r, &req, name).await,
            (&Method::DELETE, None, None) => write::delete_collection(self, &r, &req).await,
            _ => Err(ApiError::MethodNotAllowed),
        }
    }
}

/// Creates what every cluster has from its first start: the system namespaces, then (once
/// every stored CRD is served) the objects [`bootstrap`] keeps in place.
pub async fn bootstrap(api: &Arc<Api>) -> Result<()> {
    let snap = api.registry.snapshot();
    let r = snap
        .get("", "v1", "namespaces")
        .ok_or(ApiError::NoSuchResource)?;
    for ns in strategy::SYSTEM_NAMESPACES {
        let key = r.key(None, ns);
        if api.storage.get(&key).await?.is_some() {
            continue;
        }
        let mut obj =
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        strategy::prepare_create(r, &mut obj);
        match api.storage.create(&key, write::encode(&obj)?).await {
            Ok(_) | Err(crate::storage::Error::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    crd::load_all(api).await?;
    // Like upstream, every resource's watch cache runs from start-up, so a watch from
    // any resourceVersion a client has read since finds its events in the history.
    let resources: Vec<_> = (api.registry.snapshot().resources())
        .filter(|r| r.stored)
        .cloned()
        .collect();
    futures::future::try_join_all(resources.iter().map(|r| api.cache(r))).await?;
    api.pipeline.start(api).await?;
    if let Err(e) = policy::ensure(api).await {
        // A write of the policy can be refused by something a user made (a webhook that is
        // down, say): that must not keep the server from starting. Retry as upstream's
        // post-start hook does.
        tracing::warn!(error = %e, "writing the default RBAC policy failed; retrying every 10 s");
        let api = api.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                match policy::ensure(&api).await {
                    Ok(()) => break,
                    Err(e) => tracing::warn!(error = %e, "writing the default RBAC policy failed"),
                }
            }
        });
    }
    bootstrap::ensure(api).await
}

/// One resource request, parsed.
#[derive(Clone)]
pub struct ApiRequest {
    pub method: Method,
    pub path: ResourcePath,
    pub query: Query,
    pub accept: Accept,
    pub content_type: String,
    pub user_agent: String,
    pub body: Bytes,
    /// Warnings for the client, sent as `Warning` headers.
    pub warnings: Warnings,
    /// Who sent it (authenticated).
    pub user: pipeline::UserInfo,
}

/// Warnings collected while serving one request.
#[derive(Clone, Default)]
pub struct Warnings(Arc<Mutex<Vec<String>>>);

impl Warnings {
    pub fn push(&self, w: String) {
        self.0.lock().expect("warnings lock poisoned").push(w);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("warnings lock poisoned"))
    }
}

impl ApiRequest {
    pub fn namespace(&self) -> Option<&str> {
        self.path.namespace.as_deref()
    }

    pub fn dry_run(&self) -> bool {
        self.query.get("dryRun") == Some("All")
    }

    pub fn target(&self, r: &Resource, name: &str) -> Target {
        Target::new(&r.group, &r.plural, name)
    }
}

async fn read_body<B>(body: B) -> Result<Bytes>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::TooLarge(format!("limit is {MAX_BODY_BYTES}")))
        }
        Err(e) => Err(ApiError::BadRequest(format!(
            "reading the request body: {e}"
        ))),
    }
}
