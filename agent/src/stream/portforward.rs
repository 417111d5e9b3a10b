//! port-forward: every forwarded connection is one TCP connection the [`Dialer`] makes to the
//! pod, carried either as a pair of SPDY streams (data and error, matched by `requestID`;
//! plain or tunnelled in WebSocket) or as a pair of WebSocket channels per `?port=`.
//!
//! Bytes are copied both ways. When one direction ends (the client half-closes its stream,
//! whereupon the pod connection is half-closed too, or the pod closes), the other gets a
//! second to finish, as containerd's forwarder (and socat) do; then the pair is closed. A
//! pod that keeps a connection open after its client went away thus holds nothing.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::exec::{spdy_handshake, spdy_switching, Version};
use super::exec_ws::{decode, Channels};
use super::spdy::session::{Session, Stream, StreamWriter};
use super::ws::{self, Message, Reader, Sink};
use super::{
    form_urlencoded, header_list, is_websocket, status_error, tunnel, Body, PortForwardTarget,
};

const SPDY_PROTOCOL: &str = "portforward.k8s.io";
const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
const WS_PROTOCOLS: [&str; 3] = ["v4.channel.k8s.io", "v4.base64.channel.k8s.io", ""];
/// How long one direction may go on after the other ended (containerd's 1 s).
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// The most read from a pod connection at a time (one message or data frame).
const FROM_POD_READ: usize = 64 * 1024;
/// What is gathered from the client's messages before one write to the pod.
const TO_POD_BUFFER: usize = 64 * 1024;

/// Connects to a port inside the pod (for example [`crate::network::dial_in_netns`]).
pub trait Dialer: Send + Sync + 'static {
    fn dial(&self, port: u16) -> impl Future<Output = std::io::Result<TcpStream>> + Send;
}

impl<F, Fut> Dialer for F
where
    F: Fn(u16) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::io::Result<TcpStream>> + Send,
{
    fn dial(&self, port: u16) -> impl Future<Output = std::io::Result<TcpStream>> + Send {
        self(port)
    }
}

/// Answers a port-forward request: `101 Switching Protocols` and the session on a task of its
/// own, or a `Status` error (400 for a WebSocket request without valid ports, 403 when no
/// protocol fits).
pub fn port_forward<B, D: Dialer>(
    mut req: Request<B>,
    target: PortForwardTarget,
    dialer: D,
) -> Response<Body> {
    let dialer = Arc::new(dialer);
    if is_websocket(req.headers()) {
        let offered = header_list(req.headers(), header::SEC_WEBSOCKET_PROTOCOL.as_str());
        let tunnelled = offered.iter().any(|p| p == TUNNEL_PROTOCOL);
        let ports = if tunnelled {
            Vec::new()
        } else {
            match ports_of(req.uri().query().unwrap_or_default()) {
                Ok(ports) => ports,
                Err(message) => return status_error(StatusCode::BAD_REQUEST, &message),
            }
        };
        let supported: &[&str] = if tunnelled {
            &[TUNNEL_PROTOCOL]
        } else {
            &WS_PROTOCOLS
        };
        let accepted = ws::negotiate(req.headers(), supported)
            .and_then(|protocol| Ok((ws::accept(req.headers(), &protocol)?, protocol)));
        let (resp, protocol) = match accepted {
            Ok(ok) => ok,
            Err(resp) => return *resp,
        };
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let io = match upgrade.await {
                Ok(io) => TokioIo::new(io),
                Err(e) => {
                    return tracing::warn!(error = %e, "port-forward: the WebSocket upgrade failed")
                }
            };
            if tunnelled {
                run_spdy(tunnel::bridge(io), target, dialer).await;
            } else {
                run_ws(io, Version::of(&protocol).base64, ports, target, dialer).await;
            }
        });
        return resp;
    }
    let protocol = match spdy_handshake(&req, &[SPDY_PROTOCOL]) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    let resp = spdy_switching(&protocol);
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(io) => run_spdy(TokioIo::new(io), target, dialer).await,
            Err(e) => tracing::warn!(error = %e, "port-forward: the SPDY upgrade failed"),
        }
    });
    resp
}

/// The ports of a WebSocket port-forward: `port` (the kubelet's name, repeated) or `ports`
/// (the apiserver's), each possibly comma-separated; upstream's messages when invalid.
pub(super) fn ports_of(query: &str) -> Result<Vec<u16>, String> {
    let values: Vec<String> = form_urlencoded(query)
        .into_iter()
        .filter(|(k, _)| k == "port" || k == "ports")
        .map(|(_, v)| v)
        .collect();
    if values.is_empty() {
        return Err(r#"query parameter "port" is required"#.into());
    }
    let mut ports = Vec::new();
    for value in values {
        if value.is_empty() {
            return Err(r#"query parameter "port" cannot be empty"#.into());
        }
        for p in value.split(',') {
            let port: u16 = p.parse().map_err(|_| {
                format!(r#"unable to parse "{value}" as a port: strconv.ParseUint: parsing "{p}": invalid syntax"#)
            })?;
            if port < 1 {
                return Err(format!(r#"port "{value}" must be > 0"#));
            }
            ports.push(port);
        }
    }
    Ok(ports)
}

/// Where a pod connection's bytes go back to the client.
#[derive(Clone)]
enum ToClient {
    Spdy(StreamWriter),
    Ws(Channels, u8),
}

impl ToClient {
    async fn write(&self, data: Bytes) -> std::io::Result<()> {
        match self {
            ToClient::Spdy(s) => s.write_bytes(data).await,
            ToClient::Ws(c, ch) => c.send_bytes(*ch, data).await,
        }
    }
}

fn forward_error(port: u16, target: &PortForwardTarget, e: &dyn std::fmt::Display) -> String {
    format!(
        "error forwarding port {port} to pod {}, uid {}: {e}",
        target.pod, target.uid
    )
}

/// Copies between the client and one pod connection until one direction is done, then
/// gives the other [`CLOSE_GRACE`].
async fn copy_both_ways(
    conn: TcpStream,
    mut from_client: mpsc::Receiver<Bytes>,
    to_client: ToClient,
) {
    let (mut rd, wr) = conn.into_split();
    let to_pod = async move {
        // Clients send small messages (kube-rs 4 KiB, kubectl 32 KiB): what has arrived
        // meanwhile goes to the pod in one write.
        let mut wr = BufWriter::with_capacity(TO_POD_BUFFER, wr);
        while let Some(data) = from_client.recv().await {
            if wr.write_all(&data).await.is_err() {
                return;
            }
            if from_client.is_empty() && wr.flush().await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    };
    let from_pod = async move {
        let mut buf = BytesMut::new();
        loop {
            buf.reserve(FROM_POD_READ);
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if to_client.write(buf.split().freeze()).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::pin!(to_pod, from_pod);
    tokio::select! {
        () = &mut to_pod => {
            let _ = tokio::time::timeout(CLOSE_GRACE, from_pod).await;
        }
        () = &mut from_pod => {
            let _ = tokio::time::timeout(CLOSE_GRACE, to_pod).await;
        }
    }
}

/// Runs a SPDY port-forward session on `io` (plain or out of a WebSocket tunnel).
async fn run_spdy<T, D>(io: T, target: PortForwardTarget, dialer: Arc<D>)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
    D: Dialer,
{
    let mut session = Session::start(io);
    let mut pending: HashMap<String, (Option<Stream>, Option<Stream>)> = HashMap::new();
    let mut pairs = JoinSet::new();
    while let Some(stream) = session.accept().await {
        let kind = stream.header("streamtype").unwrap_or_default().to_string();
        // Clients older than request IDs open error then data with consecutive odd IDs.
        let request_id = match stream.header("requestid") {
            Some(id) if !id.is_empty() => id.to_string(),
            _ if kind == "data" => stream.id().wrapping_sub(2).to_string(),
            _ => stream.id().to_string(),
        };
        let entry = pending.entry(request_id.clone()).or_default();
        match kind.as_str() {
            "data" => entry.0 = Some(stream),
            "error" => entry.1 = Some(stream),
            other => {
                tracing::debug!(stream_type = other, "port-forward: unexpected stream type");
                continue;
            }
        }
        if matches!(pending.get(&request_id), Some((Some(_), Some(_)))) {
            if let Some((Some(data), Some(error))) = pending.remove(&request_id) {
                pairs.spawn(forward_pair(data, error, target.clone(), dialer.clone()));
            }
        }
    }
    while pairs.join_next().await.is_some() {}
    session.shutdown().await;
}

async fn forward_pair<D: Dialer>(
    data: Stream,
    error: Stream,
    target: PortForwardTarget,
    dialer: Arc<D>,
) {
    let errors = error.writer();
    let port = data.header("port").unwrap_or_default().to_string();
    let (from_client, to_client) = data.split();
    let dialed = match port.parse::<u16>() {
        Ok(p) => dialer
            .dial(p)
            .await
            .map_err(|e| forward_error(p, &target, &e)),
        Err(e) => Err(forward_error(
            0,
            &target,
            &format!("invalid port {port:?}: {e}"),
        )),
    };
    match dialed {
        Ok(conn) => copy_both_ways(conn, from_client, ToClient::Spdy(to_client.clone())).await,
        Err(message) => {
            tracing::debug!(%message, "port-forward failed");
            let _ = errors.write(message.as_bytes()).await;
        }
    }
    to_client.close().await;
    errors.close().await;
}

/// Runs a WebSocket channel port-forward session: channel 2i carries port i's data both
/// ways, 2i+1 its errors; each opens with the port, 2 bytes little-endian.
async fn run_ws<T, D>(
    io: T,
    base64: bool,
    ports: Vec<u16>,
    target: PortForwardTarget,
    dialer: Arc<D>,
) where
    T: AsyncRead + AsyncWrite + Send + 'static,
    D: Dialer,
{
    let (read, write) = tokio::io::split(io);
    let (sink, writer) = Sink::spawn(write);
    let out = Channels {
        sink: sink.clone(),
        base64,
    };
    let mut inputs = Vec::new();
    let mut forwards = JoinSet::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let (data, error) = (2 * i as u8, 2 * i as u8 + 1);
        let _ = out.send(data, &port.to_le_bytes()).await;
        let _ = out.send(error, &port.to_le_bytes()).await;
        let (tx, rx) = mpsc::channel(64);
        inputs.push(tx);
        let (out, target, dialer) = (out.clone(), target.clone(), dialer.clone());
        forwards.spawn(async move {
            match dialer.dial(port).await {
                Ok(conn) => copy_both_ways(conn, rx, ToClient::Ws(out, data)).await,
                Err(e) => {
                    let message = forward_error(port, &target, &e);
                    tracing::debug!(%message, "port-forward failed");
                    let _ = out.send(error, message.as_bytes()).await;
                }
            }
        });
    }
    let reader = tokio::spawn(async move {
        let mut reader = Reader::new(read);
        loop {
            let message = match reader.next().await {
                Ok(Some(Message::Ping(data))) => {
                    let _ = sink.pong(data).await;
                    continue;
                }
                Ok(Some(Message::Close) | None) | Err(_) => break,
                Ok(Some(m)) => m,
            };
            let Some((channel, data)) = decode(message, base64) else {
                continue;
            };
            let input = inputs
                .get(usize::from(channel / 2))
                .filter(|_| channel % 2 == 0);
            if let (Some(tx), false) = (input, data.is_empty()) {
                let _ = tx.send(data).await;
            }
        }
    });
    while forwards.join_next().await.is_some() {}
    out.sink.close().await;
    let _ = writer.await;
    reader.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_port_or_ports_and_may_be_comma_separated() {
        assert_eq!(ports_of("port=80&port=8080"), Ok(vec![80, 8080]));
        assert_eq!(ports_of("ports=80,443"), Ok(vec![80, 443]));
    }

    #[test]
    fn bad_ports_are_refused_with_upstreams_messages() {
        let cases = [
            ("missing", "", r#"query parameter "port" is required"#),
            (
                "empty",
                "port=",
                r#"query parameter "port" cannot be empty"#,
            ),
            (
                "not a number",
                "port=http",
                r#"unable to parse "http" as a port: strconv.ParseUint: parsing "http": invalid syntax"#,
            ),
            ("zero", "port=0", r#"port "0" must be > 0"#),
        ];
        for (name, query, want) in cases {
            assert_eq!(ports_of(query), Err(want.to_string()), "{name}");
        }
    }
}
