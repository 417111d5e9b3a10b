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
//! let tls = nodeapi::cert::server_config(&client, node, ip, &dir, &ca).await?;
//! tokio::spawn(nodeapi::serve(listener, tls, Arc::new(NodeApi { .. })));
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

use crate::runtime::Runtime;

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
            Route::ContainerLogs { .. } => "proxy",
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
        match route {
            Route::Healthz => text(StatusCode::OK, "ok"),
            Route::NotFound => text(StatusCode::NOT_FOUND, "404 page not found\n"),
            other => text(
                StatusCode::NOT_IMPLEMENTED,
                format!("{other:?} is not served by this node yet\n"),
            ),
        }
    }
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
