//! Kept-alive HTTPS connections, as upstream's clients keep them (client-go's
//! transport: idle connections reused, at most 25 idle per host, closed after 90 s
//! idle). A [`Pool`] holds one HTTP/1.1 client per (address, server name, trust): the
//! trust names what the TLS configuration was made from (a webhook's caBundle), so a
//! changed caBundle is another key with a client and TLS handshakes of its own. At most
//! [`MAX_CLIENTS`] clients are kept (upstream's webhook client cache holds 200); past
//! that the least recently used one is dropped with its idle connections. Webhook calls
//! share one pool; each server's node proxy and metrics scraper share another, since
//! their TLS configuration is that server's.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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

pub(crate) type Client<B> = hyper_util::client::legacy::Client<Connector, B>;

/// What one client's connections share.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) server_name: String,
    /// What the client's TLS configuration is made from (a webhook's caBundle; empty
    /// for a pool whose configuration never changes).
    pub(crate) trust: String,
}

struct Entry<B> {
    client: Client<B>,
    used: Instant,
}

/// Clients sending requests with bodies of type `B`, by [`Key`].
pub(crate) struct Pool<B> {
    clients: Mutex<HashMap<Key, Entry<B>>>,
}

impl<B> Default for Pool<B> {
    fn default() -> Self {
        Pool {
            clients: Mutex::new(HashMap::new()),
        }
    }
}

impl<B> Pool<B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// The client for `key`, made with `tls` (called only when there is none yet).
    pub(crate) fn client(
        &self,
        key: &Key,
        tls: impl FnOnce() -> Result<Arc<rustls::ClientConfig>, String>,
    ) -> Result<Client<B>, String> {
        let mut clients = self.clients.lock().expect("client pool lock poisoned");
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
}

/// What went wrong, without the pooling client's own wrapping (`client error
/// (Connect)`): the dialer's or TLS client's words, or HTTP's.
pub(crate) fn cause(e: &hyper_util::client::legacy::Error) -> String {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<ConnectError>() || s.is::<hyper::Error>() {
            return s.to_string();
        }
        source = s.source();
    }
    e.to_string()
}

/// An I/O error as Go's dialer words it.
fn go_io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => e.to_string(),
    }
}

/// A host as it stands before `:port` (an IPv6 address in brackets).
pub(crate) fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Dials the request's host and port and speaks TLS to it under the client's server
/// name (a `service` webhook is dialled at an endpoint address but verified as
/// `<name>.<namespace>.svc`; a node under its address).
#[derive(Clone)]
pub(crate) struct Connector {
    tls: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

/// Why a connection could not be made, worded as Go's dialer and TLS client word it.
#[derive(Debug)]
pub(crate) struct ConnectError(String);

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
            let address = format!("{}:{port}", bracketed(&host));
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| {
                    ConnectError(format!("dial tcp {address}: connect: {}", go_io_error(&e)))
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

/// One kept-alive TLS connection.
pub(crate) struct Conn(TokioIo<TlsStream<TcpStream>>);

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
