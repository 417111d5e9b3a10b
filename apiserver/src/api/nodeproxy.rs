//! The subresources the API server answers by asking somewhere else, as upstream's
//! pod, service and node REST storages with its upgrade-aware proxy do:
//!
//! - `pods/log`, `pods/exec`, `pods/attach`, `pods/portforward` and `nodes/proxy` go to
//!   the node's agent (its node API, `status.daemonEndpoints.kubeletEndpoint.Port` on the
//!   node's address), over TLS that checks the agent's certificate against the cluster CA
//!   and presents the API server's kubelet-client certificate;
//! - `pods/proxy` and `services/proxy` go to the pod (a service's ready endpoint) itself,
//!   over plain HTTP, or over TLS for an `https:` name without checking the pod's
//!   certificate (upstream's proxy transport sets InsecureSkipVerify: a pod's
//!   certificate is signed by nothing the API server knows).
//!
//! A request that upgrades (exec, attach, port-forward: WebSocket or SPDY) is passed
//! through unchanged and, once the far side answers 101, the two connections are
//! spliced; the protocols themselves are the agent's business. Log bodies stream through
//! as they come. An error answer from the agent becomes a `Status` with its text.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::{pool, read, Api, Body};
use crate::object;
use crate::request::{Query, ResourcePath};
use crate::status::{ApiError, Result, Target};

/// What a proxied request's body is sent as.
pub(super) type ProxyBody =
    http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// The node API port an agent listens on when its Node does not say (the kubelet's).
pub(super) const DEFAULT_NODE_PORT: u16 = 10250;
/// The buffer of each direction of a spliced (upgraded) connection.
const SPLICE_BUFFER: usize = 64 * 1024;

/// Whether the request is one this module answers.
pub(super) fn handles(p: &ResourcePath) -> bool {
    p.group.is_empty()
        && p.name.is_some()
        && matches!(
            (p.resource.as_str(), p.subresource.as_deref()),
            (
                "pods",
                Some("log" | "exec" | "attach" | "portforward" | "proxy")
            ) | ("services" | "nodes", Some("proxy"))
        )
}

/// Where a proxied request goes: the address, whether over TLS to a node's agent, and the
/// path (with query) on the far side.
struct Destination {
    host: String,
    port: u16,
    /// TLS to a node API (with the kubelet-client certificate); plain HTTP otherwise, or
    /// TLS without a client certificate for `https:` pod and service proxies.
    tls: Tls,
    path_and_query: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tls {
    Node,
    /// TLS whose server certificate is not checked (`https:` pod and service proxies).
    Unverified,
    None,
}

impl Tls {
    /// How a pod or service proxy reaches its target, by the scheme in its name `id`
    /// (`kind` is "pod" or "service" for upstream's message about any other scheme).
    fn for_scheme(scheme: &str, kind: &str, id: &str) -> Result<Tls> {
        match scheme {
            "" | "http" => Ok(Tls::None),
            "https" => Ok(Tls::Unverified),
            _ => Err(ApiError::BadRequest(format!(
                "invalid {kind} request {id:?}"
            ))),
        }
    }

    /// The port a name without one means: the scheme's.
    fn default_port(self) -> u16 {
        if self == Tls::Unverified {
            443
        } else {
            80
        }
    }
}

pub(super) async fn serve<B>(
    api: &Arc<Api>,
    parts: http::request::Parts,
    body: B,
    p: &ResourcePath,
) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let sub = p.subresource.as_deref().unwrap_or_default();
    let result = async {
        let Some(dest) = destination(api, &parts, p).await? else {
            // A pod without a node has no logs yet: an empty answer, as upstream.
            return Ok(super::bytes_response(
                StatusCode::OK,
                "text/plain",
                Bytes::new(),
            ));
        };
        let checked = sub == "log";
        forward(api, parts, body, dest, checked, p).await
    }
    .await;
    result.unwrap_or_else(|e| super::error_response(&e))
}

async fn destination(
    api: &Arc<Api>,
    parts: &http::request::Parts,
    p: &ResourcePath,
) -> Result<Option<Destination>> {
    let name = p.name.as_deref().unwrap_or_default();
    let raw_query = parts.uri.query().unwrap_or("");
    let query = Query::parse(parts.uri.query());
    let sub = p.subresource.as_deref().unwrap_or_default();
    let snapshot = api.registry.snapshot();
    let resource = |plural: &str| {
        snapshot
            .get("", "v1", plural)
            .cloned()
            .ok_or(ApiError::NoSuchResource)
    };
    match (p.resource.as_str(), sub) {
        ("nodes", _) => {
            let (node_name, port) = split_port(name);
            let node = read::get_object(api, &*resource("nodes")?, None, node_name, false).await?;
            let (host, default_port) = node_address(&node)?;
            let port = port.map_or(Ok(default_port), |p| {
                p.parse::<u16>()
                    .map_err(|_| ApiError::BadRequest(format!("invalid port {p:?}")))
            })?;
            Ok(Some(Destination {
                host,
                port,
                tls: Tls::Node,
                path_and_query: with_query(&proxied_rest(parts.uri.path()), raw_query),
            }))
        }
        ("pods", "proxy") => {
            let (scheme, pod_name, port) = split_scheme_port(name);
            let tls = Tls::for_scheme(scheme, "pod", name)?;
            let pod = read::get_object(
                api,
                &*resource("pods")?,
                p.namespace.as_deref(),
                pod_name,
                false,
            )
            .await?;
            let ip = pod_ip(&pod, pod_name)?;
            let port = match port {
                Some(port) => port_number(&pod, port)?,
                None => tls.default_port(),
            };
            Ok(Some(Destination {
                host: ip,
                port,
                tls,
                path_and_query: with_query(&proxied_rest(parts.uri.path()), raw_query),
            }))
        }
        ("services", _) => {
            let (scheme, svc_name, port) = split_scheme_port(name);
            let tls = Tls::for_scheme(scheme, "service", name)?;
            let ns = p.namespace.as_deref();
            let svc = read::get_object(api, &*resource("services")?, ns, svc_name, false).await?;
            let (host, port) =
                service_endpoint(api, &*resource("endpoints")?, ns, &svc, port).await?;
            Ok(Some(Destination {
                host,
                port,
                tls,
                path_and_query: with_query(&proxied_rest(parts.uri.path()), raw_query),
            }))
        }
        ("pods", _) => {
            let ns = p.namespace.as_deref().unwrap_or_default();
            let pod = read::get_object(api, &*resource("pods")?, Some(ns), name, false).await?;
            // As upstream: the container is resolved first; then a pod without a node has
            // empty logs and nothing to exec into.
            let container = match sub {
                "log" | "exec" | "attach" => {
                    Some(container_of(&pod, name, query.get("container"))?)
                }
                _ => None,
            };
            let node_name = str_at(&pod, "/spec/nodeName").unwrap_or_default();
            if node_name.is_empty() {
                if sub == "log" {
                    return Ok(None);
                }
                return Err(ApiError::BadRequest(format!(
                    "pod {name} does not have a host assigned"
                )));
            }
            let node = read::get_object(api, &*resource("nodes")?, None, node_name, false).await?;
            let (host, port) = node_address(&node)?;
            let container = container.unwrap_or_default();
            let path = match sub {
                "log" => format!("/containerLogs/{ns}/{name}/{container}"),
                "exec" | "attach" => {
                    let phase = str_at(&pod, "/status/phase").unwrap_or_default();
                    if matches!(phase, "Succeeded" | "Failed") {
                        return Err(ApiError::BadRequest(format!(
                            "cannot {sub} into a container in a completed pod; current phase is {phase}"
                        )));
                    }
                    if sub == "exec" && !raw_query.split('&').any(|kv| kv.starts_with("command=")) {
                        return Err(ApiError::BadRequest(
                            "you must specify at least one command for the container".into(),
                        ));
                    }
                    format!("/{sub}/{ns}/{name}/{container}")
                }
                _ => format!("/portForward/{ns}/{name}"),
            };
            Ok(Some(Destination {
                host,
                port,
                tls: Tls::Node,
                path_and_query: with_query(&path, raw_query),
            }))
        }
        _ => Err(ApiError::NoSuchResource),
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

/// The path after `/proxy` in a proxy request (`/` when there is none), kept as sent.
fn proxied_rest(path: &str) -> String {
    let mut segments = path.splitn(2, "/proxy");
    // The first "/proxy" segment is the subresource: names cannot contain '/'.
    let _ = segments.next();
    match segments.next() {
        Some(rest) if rest.starts_with('/') => rest.to_string(),
        _ => "/".to_string(),
    }
}

/// `name:port` → (`name`, `port`).
fn split_port(name: &str) -> (&str, Option<&str>) {
    match name.split_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (name, None),
    }
}

/// `[scheme:]name[:port]` → (scheme, name, port), as upstream's `SplitSchemeNamePort`.
fn split_scheme_port(id: &str) -> (&str, &str, Option<&str>) {
    let parts: Vec<&str> = id.split(':').collect();
    match parts.as_slice() {
        [name] => ("", name, None),
        [name, port] => ("", name, Some(*port)),
        [scheme, name, port] => (scheme, name, Some(*port).filter(|p| !p.is_empty())),
        _ => ("", id, None),
    }
}

/// The node API's address: the node's InternalIP (then ExternalIP, then Hostname, as
/// kubeadm orders `--kubelet-preferred-address-types`) and the port it reports.
fn node_address(node: &Value) -> Result<(String, u16)> {
    let name = object::name(node).to_string();
    let addresses = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let find = |t: &str| {
        addresses
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(t))
            .and_then(|a| a.get("address").and_then(Value::as_str))
            .map(str::to_string)
    };
    let host = find("InternalIP")
        .or_else(|| find("ExternalIP"))
        .or_else(|| find("Hostname"))
        .ok_or_else(|| {
            ApiError::BadRequest(format!("no preferred addresses found for node {name}"))
        })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(DEFAULT_NODE_PORT);
    Ok((host, port))
}

fn pod_ip(pod: &Value, name: &str) -> Result<String> {
    str_at(pod, "/status/podIP")
        .filter(|ip| !ip.is_empty())
        .map(str::to_string)
        .ok_or_else(|| ApiError::ServiceUnavailable(format!("pod {name} has no IP address yet")))
}

/// A port given by number or by a container port's name.
fn port_number(pod: &Value, port: &str) -> Result<u16> {
    if let Ok(n) = port.parse::<u16>() {
        return Ok(n);
    }
    containers(pod, "/spec/containers")
        .iter()
        .flat_map(|c| {
            c.get("ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .find(|p| p.get("name").and_then(Value::as_str) == Some(port))
        .and_then(|p| p.get("containerPort").and_then(Value::as_u64))
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| {
            ApiError::BadRequest(format!("no port named {port:?} in the pod's containers"))
        })
}

/// The address of a ready endpoint of a service's port (by name or number, or its only
/// port), as upstream's service proxy picks one.
async fn service_endpoint(
    api: &Arc<Api>,
    endpoints: &crate::registry::Resource,
    ns: Option<&str>,
    svc: &Value,
    port: Option<&str>,
) -> Result<(String, u16)> {
    let name = object::name(svc).to_string();
    let ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let port_name = match port {
        Some(p) => ports
            .iter()
            .find(|sp| {
                sp.get("name").and_then(Value::as_str) == Some(p)
                    || sp
                        .get("port")
                        .and_then(Value::as_u64)
                        .map(|n| n.to_string())
                        .as_deref()
                        == Some(p)
            })
            .map(|sp| {
                sp.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            })
            .ok_or_else(|| {
                ApiError::ServiceUnavailable(format!(
                    "no endpoints available for service \"{name}\""
                ))
            })?,
        None => String::new(),
    };
    let eps = read::get_object(api, endpoints, ns, &name, false)
        .await
        .map_err(|_| {
            ApiError::ServiceUnavailable(format!("no endpoints available for service \"{name}\""))
        })?;
    for subset in eps
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let port = subset
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
            .and_then(|p| p.get("port").and_then(Value::as_u64))
            .and_then(|p| u16::try_from(p).ok());
        let ip = subset
            .get("addresses")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|a| a.get("ip").and_then(Value::as_str));
        if let (Some(port), Some(ip)) = (port, ip) {
            return Ok((ip.to_string(), port));
        }
    }
    Err(ApiError::ServiceUnavailable(format!(
        "no endpoints available for service \"{name}\""
    )))
}

fn containers(pod: &Value, pointer: &str) -> Vec<Value> {
    pod.pointer(pointer)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn names_of(list: &[Value]) -> Vec<String> {
    list.iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

/// The container a request is for: the one asked for, else the pod's only container or
/// its `kubectl.kubernetes.io/default-container`, with upstream's messages otherwise.
/// An init or ephemeral container may be named too.
fn container_of(pod: &Value, pod_name: &str, asked: Option<&str>) -> Result<String> {
    let regular = containers(pod, "/spec/containers");
    let init = containers(pod, "/spec/initContainers");
    let ephemeral = containers(pod, "/spec/ephemeralContainers");
    let (names, init_names, eph_names) =
        (names_of(&regular), names_of(&init), names_of(&ephemeral));
    let asked = asked
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .or_else(|| {
            str_at(
                pod,
                "/metadata/annotations/kubectl.kubernetes.io~1default-container",
            )
            .filter(|d| names.iter().any(|n| n == d))
            .map(str::to_string)
        });
    let Some(container) = asked else {
        if names.len() == 1 {
            return Ok(names[0].clone());
        }
        let mut message = format!(
            "a container name must be specified for pod {pod_name}, choose one of: [{}]",
            names.join(" ")
        );
        if !init_names.is_empty() {
            message.push_str(&format!(
                " or one of the init containers: [{}]",
                init_names.join(" ")
            ));
        }
        if !eph_names.is_empty() {
            message.push_str(&format!(
                " or one of the ephemeral containers: [{}]",
                eph_names.join(" ")
            ));
        }
        return Err(ApiError::BadRequest(message));
    };
    let known = names.contains(&container)
        || eph_names.contains(&container)
        || init_names.contains(&container);
    if !known {
        return Err(ApiError::BadRequest(format!(
            "container {container} is not valid for pod {pod_name}"
        )));
    }
    Ok(container)
}

/// Request headers that belong to this hop (and credentials meant for this server).
fn forwarded_headers(headers: &HeaderMap, upgrade: bool) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        let hop = matches!(
            n,
            "authorization"
                | "proxy-authorization"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "keep-alive"
                | "host"
        ) || n.starts_with("impersonate-");
        let upgrade_header = matches!(n, "connection" | "upgrade");
        if hop || (upgrade_header && !upgrade) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
        && headers.contains_key(http::header::UPGRADE)
}

async fn forward<B>(
    api: &Arc<Api>,
    mut parts: http::request::Parts,
    body: B,
    dest: Destination,
    checked: bool,
    p: &ResourcePath,
) -> Result<Response<Body>>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let upgrade = is_upgrade(&parts.headers);
    let unreachable = |e: &dyn std::fmt::Display| {
        ApiError::ServiceUnavailable(format!(
            "error dialing backend {}:{}: {e}",
            dest.host, dest.port
        ))
    };
    let authority = authority(&dest.host, dest.port);
    // A kept-alive client to an agent wants the whole URL; a connection of our own only
    // the path.
    let pooled = matches!(dest.tls, Tls::Node) && !upgrade;
    let target = match pooled {
        true => format!("https://{authority}{}", dest.path_and_query),
        false => dest.path_and_query.clone(),
    };
    let uri: Uri = target.parse().map_err(|_| {
        ApiError::BadRequest(format!("invalid proxied path {:?}", dest.path_and_query))
    })?;
    let mut out = Request::builder().method(parts.method.clone()).uri(uri);
    if let Some(h) = out.headers_mut() {
        *h = forwarded_headers(&parts.headers, upgrade);
        h.insert(
            http::header::HOST,
            HeaderValue::from_str(&authority).map_err(|e| ApiError::Internal(e.to_string()))?,
        );
    }
    // An upgrade request has no body: sending one of unknown length would make it chunked,
    // and the far side would read the chunked terminator as the first upgraded bytes.
    let out_body: ProxyBody = if upgrade {
        Full::new(Bytes::new()).boxed_unsync()
    } else {
        let streamed = BodyStream::new(body)
            .filter_map(|frame| async move { frame.ok() })
            .map(Ok::<_, std::convert::Infallible>);
        StreamBody::new(streamed).boxed_unsync()
    };
    let out = out
        .body(out_body)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let node_config = || {
        api.node_tls.get().cloned().ok_or_else(|| {
            ApiError::ServiceUnavailable("this server has no node client certificate".into())
        })
    };
    if pooled {
        let config = node_config()?;
        let key = pool::Key {
            host: dest.host.clone(),
            port: dest.port,
            server_name: dest.host.clone(),
            trust: String::new(),
        };
        let client = api
            .node_clients
            .client(&key, || Ok(config))
            .map_err(|e| unreachable(&e))?;
        let response = client
            .request(out)
            .await
            .map_err(|e| unreachable(&pool::cause(&e)))?;
        return answer(response, checked, p).await;
    }
    let tcp = tokio::net::TcpStream::connect((dest.host.as_str(), dest.port))
        .await
        .map_err(|e| unreachable(&e))?;
    let _ = tcp.set_nodelay(true);
    let response = match dest.tls {
        Tls::Node => {
            let tls = node_tls(node_config()?, &dest.host, tcp)
                .await
                .map_err(|e| unreachable(&e))?;
            send(TokioIo::new(tls), out).await
        }
        Tls::Unverified => {
            let tls = node_tls(unverified_tls(), &dest.host, tcp)
                .await
                .map_err(|e| unreachable(&e))?;
            send(TokioIo::new(tls), out).await
        }
        Tls::None => send(TokioIo::new(tcp), out).await,
    }
    .map_err(|e| unreachable(&e))?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let client_side = parts
            .extensions
            .remove::<hyper::upgrade::OnUpgrade>()
            .ok_or_else(|| ApiError::BadRequest("the connection cannot be upgraded".into()))?;
        let (resp_parts, backend_body) = response.into_parts();
        let backend = hyper::upgrade::on(Response::from_parts(resp_parts.clone(), backend_body));
        tokio::spawn(async move {
            let (Ok(client), Ok(backend)) = (client_side.await, backend.await) else {
                return;
            };
            let (mut client, mut backend) = (TokioIo::new(client), TokioIo::new(backend));
            // 64 KiB at a time, not tokio's 8 KiB: each copy is a TLS read and a write of
            // up to four 16 KiB records, so bulk streams (port-forward) take a quarter of
            // the calls.
            let copied = tokio::io::copy_bidirectional_with_sizes(
                &mut client,
                &mut backend,
                SPLICE_BUFFER,
                SPLICE_BUFFER,
            )
            .await;
            tracing::debug!(?copied, "an upgraded connection to a node ended");
        });
        let mut resp = Response::from_parts(resp_parts, Full::new(Bytes::new()).boxed());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        return Ok(resp);
    }
    answer(response, checked, p).await
}

/// The far side's answer, streamed back; with `checked`, a failure is turned into the
/// Status upstream gives for it.
async fn answer(
    response: Response<hyper::body::Incoming>,
    checked: bool,
    p: &ResourcePath,
) -> Result<Response<Body>> {
    if checked && !response.status().is_success() {
        let code = response.status();
        let text = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
            .unwrap_or_default();
        let name = p.name.clone().unwrap_or_default();
        return Err(match code {
            StatusCode::BAD_REQUEST => ApiError::BadRequest(text),
            StatusCode::NOT_FOUND => ApiError::NotFound(Target::new("", "pods/log", &name)),
            _ => ApiError::Internal(text),
        });
    }
    let (resp_parts, backend_body) = response.into_parts();
    let streamed = BodyStream::new(backend_body)
        .take_while(|frame| futures::future::ready(frame.is_ok()))
        .filter_map(|frame| async move { frame.ok() })
        .map(|f: Frame<Bytes>| Ok::<_, std::convert::Infallible>(f));
    let mut resp = Response::from_parts(resp_parts, BodyExt::boxed(StreamBody::new(streamed)));
    // Hop-by-hop answers stay on the far side's connection.
    resp.headers_mut().remove(http::header::CONNECTION);
    resp.headers_mut().remove(http::header::TRANSFER_ENCODING);
    Ok(resp)
}

/// metrics.k8s.io's source: each node's `/metrics/resource`, over the node API, on the
/// node proxy's kept-alive connections.
pub struct NodeApiScraper {
    tls: Arc<rustls::ClientConfig>,
    clients: Arc<pool::Pool<ProxyBody>>,
}

impl NodeApiScraper {
    /// A scraper reaching agents as `api`'s node proxy does: with its node client
    /// configuration (the cluster CA and the kubelet-client certificate) and its
    /// connections. `None` while the server has no node client configuration.
    pub fn of(api: &Api) -> Option<Self> {
        Some(NodeApiScraper {
            tls: api.node_tls.get()?.clone(),
            clients: api.node_clients.clone(),
        })
    }
}

#[async_trait::async_trait]
impl super::metrics::NodeScraper for NodeApiScraper {
    async fn resource_metrics(&self, node: &Value) -> anyhow::Result<String> {
        let (host, port) = node_address(node).map_err(|e| anyhow::anyhow!("{e}"))?;
        let key = pool::Key {
            host: host.clone(),
            port,
            server_name: host.clone(),
            trust: String::new(),
        };
        let client = self
            .clients
            .client(&key, || Ok(self.tls.clone()))
            .map_err(|e| anyhow::anyhow!("{host}:{port}: {e}"))?;
        let authority = authority(&host, port);
        let req = Request::get(format!("https://{authority}/metrics/resource"))
            .header(http::header::HOST, &authority)
            .body(Full::new(Bytes::new()).boxed_unsync())?;
        let resp = client
            .request(req)
            .await
            .map_err(|e| anyhow::anyhow!("{authority}: {}", pool::cause(&e)))?;
        let code = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if !code.is_success() {
            anyhow::bail!("{host}:{port} answered {code}");
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}

/// TLS on `tcp` as `config` says: to a node's agent, its certificate checked for `host`
/// against the cluster CA and the kubelet-client certificate presented; to an `https:`
/// pod, nothing checked ([`unverified_tls`]).
async fn node_tls(
    config: Arc<rustls::ClientConfig>,
    host: &str,
    tcp: tokio::net::TcpStream,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let name =
        rustls::pki_types::ServerName::try_from(host.to_string()).map_err(std::io::Error::other)?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// A TLS client that takes any certificate the far side presents (its handshake
/// signature is still checked against it), with no client certificate of its own.
fn unverified_tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Upstream's InsecureSkipVerify: no chain or name check.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `host:port` for a Host header (an IPv6 address in brackets).
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn send<IO, B>(io: IO, req: Request<B>) -> hyper::Result<Response<hyper::body::Incoming>>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    sender.send_request(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_container_is_the_asked_one_the_only_one_or_the_default_annotation() {
        let one = json!({"spec": {"containers": [{"name": "app"}]}});
        let two = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/default-container": "b"}},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "init"}]}
        });
        let two_plain = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "init"}]}});
        type Case<'a> = (
            &'a str,
            &'a Value,
            Option<&'a str>,
            std::result::Result<&'a str, &'a str>,
        );
        let cases: [Case<'_>; 6] = [
            ("only container", &one, None, Ok("app")),
            ("asked for", &two, Some("a"), Ok("a")),
            ("default-container annotation", &two, None, Ok("b")),
            ("an init container by name", &two, Some("init"), Ok("init")),
            (
                "no choice made",
                &two_plain,
                None,
                Err("a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [init]"),
            ),
            ("unknown", &one, Some("x"), Err("container x is not valid for pod p")),
        ];
        for (name, pod, asked, want) in cases {
            let got = container_of(pod, "p", asked).map_err(|e| e.to_string());
            assert_eq!(
                got.as_deref(),
                want.map_err(str::to_string).as_deref(),
                "{name}"
            );
        }
    }

    #[test]
    fn proxy_ids_split_into_scheme_name_and_port() {
        assert_eq!(split_scheme_port("web"), ("", "web", None));
        assert_eq!(split_scheme_port("web:8080"), ("", "web", Some("8080")));
        assert_eq!(
            split_scheme_port("https:web:443"),
            ("https", "web", Some("443"))
        );
        assert_eq!(split_scheme_port("http:web:"), ("http", "web", None));
    }

    #[test]
    fn the_proxied_path_is_what_follows_the_proxy_segment() {
        assert_eq!(proxied_rest("/api/v1/namespaces/d/pods/p/proxy"), "/");
        assert_eq!(proxied_rest("/api/v1/namespaces/d/pods/p/proxy/"), "/");
        assert_eq!(
            proxied_rest("/api/v1/nodes/n/proxy/stats/summary"),
            "/stats/summary"
        );
        assert_eq!(
            proxied_rest("/api/v1/namespaces/d/services/s:80/proxy/a/b/"),
            "/a/b/"
        );
    }

    #[test]
    fn the_node_api_is_reached_at_the_internal_ip_and_the_reported_port() {
        let node = json!({"metadata": {"name": "n"}, "status": {
            "addresses": [{"type": "Hostname", "address": "n"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 31250}}
        }});
        assert_eq!(
            node_address(&node).unwrap(),
            ("10.0.0.5".to_string(), 31250)
        );
        let bare = json!({"metadata": {"name": "n"}, "status": {"addresses": [{"type": "Hostname", "address": "n"}]}});
        assert_eq!(
            node_address(&bare).unwrap(),
            ("n".to_string(), DEFAULT_NODE_PORT)
        );
    }
}
