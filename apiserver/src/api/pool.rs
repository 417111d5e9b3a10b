//! Kept-alive HTTPS connections to webhooks, as upstream's webhook clients keep them
//! (client-go's transport: idle connections reused, at most 25 idle per host, closed
//! after 90 s idle). One HTTP/1.1 client per (address, server name, caBundle): a
//! changed caBundle is another key, so it gets a client of its own and new TLS
//! handshakes. At most [`MAX_CLIENTS`] clients are kept (upstream's webhook client
//! cache holds 200); past that the least recently used one is dropped with its idle
//! connections.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Idle connections kept per client (client-go's `MaxIdleConnsPerHost`).
const MAX_IDLE: usize = 25;
/// How long an idle connection stays open (Go's `IdleConnTimeout`).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Clients kept at once.
const MAX_CLIENTS: usize = 200;

pub(super) type Client = hyper_util::client::legacy::Client<Connector, Full<Bytes>>;

/// What one client's connections share.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(super) struct Key {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) server_name: String,
    /// The caBundle as configured (empty: the host's trust store).
    pub(super) ca_bundle: String,
}

struct Entry {
    client: Client,
    used: Instant,
}

/// The client for `key`, made with `tls` (called only when there is none yet).
pub(super) fn client(
    key: &Key,
    tls: impl FnOnce() -> Result<Arc<rustls::ClientConfig>, String>,
) -> Result<Client, String> {
    static CLIENTS: OnceLock<Mutex<HashMap<Key, Entry>>> = OnceLock::new();
    let mut clients = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .expect("webhook clients lock poisoned");
    if let Some(entry) = clients.get_mut(key) {
        entry.used = Instant::now();
        return Ok(entry.client.clone());
    }
    let name = ServerName::try_from(key.server_name.clone()).map_err(|e| e.to_string())?;
    let connector = Connector {
        tls: tokio_rustls::TlsConnector::from(tls()?),
        name,
    };
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(MAX_IDLE)
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .build(connector);
    if clients.len() >= MAX_CLIENTS {
        let oldest = clients
            .iter()
            .min_by_key(|(_, e)| e.used)
            .map(|(k, _)| k.clone());
        if let Some(oldest) = oldest {
            clients.remove(&oldest);
        }
    }
    clients.insert(
        key.clone(),
        Entry {
            client: client.clone(),
            used: Instant::now(),
        },
    );
    Ok(client)
}

/// Dials the request's host and port and speaks TLS to it under the client's server
/// name (a `service` webhook is dialled at an endpoint address but verified as
/// `<name>.<namespace>.svc`).
#[derive(Clone)]
pub(super) struct Connector {
    tls: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

/// Why a connection could not be made, worded as Go's dialer and TLS client word it.
#[derive(Debug)]
pub(super) struct ConnectError(pub(super) String);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectError {}

impl tower::Service<http::Uri> for Connector {
    type Response = Conn;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let (tls, name) = (self.tls.clone(), self.name.clone());
        Box::pin(async move {
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let address = format!("{}:{port}", super::bracketed(&host));
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| {
                    ConnectError(format!(
                        "dial tcp {address}: connect: {}",
                        super::go_io_error(&e)
                    ))
                })?;
            let _ = tcp.set_nodelay(true);
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(|e| ConnectError(format!("tls: {e}")))?;
            Ok(Conn(TokioIo::new(stream)))
        })
    }
}

/// One TLS connection to a webhook.
pub(super) struct Conn(TokioIo<TlsStream<TcpStream>>);

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
