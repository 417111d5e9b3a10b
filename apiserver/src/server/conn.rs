//! The connection layer: accepting TCP connections, the TLS handshake, serving HTTP/1.1
//! and HTTP/2 with hyper, and the deadlines that stop a client from holding a connection
//! (and the server's file descriptor) without using it, as kube-apiserver's `http.Server`
//! does.

mod activity;
mod guard;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::api::{Api, Body};
use crate::tls;

use activity::{Activity, TrackedIo};
pub use guard::{MAX_HEADER_BYTES, MAX_URL_BYTES};

/// How long a connection may go without doing what a client that uses it does. The
/// defaults are kube-apiserver's (`secure_serving.go`): `ReadHeaderTimeout` 32 s and
/// `IdleTimeout` 90 s (for HTTP/2 too). The TLS handshake gets 10 s: Go bounds it by
/// the header timeout (32 s), but 10 s is Go's own handshake timeout elsewhere and
/// ample for any real client, and a connection that has not even finished its
/// handshake holds a file descriptor for nothing. Nothing here limits a request once its headers are in: watches and slow
/// uploads run as long as they need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionTimeouts {
    /// From accept to the end of the TLS handshake.
    pub tls_handshake: Duration,
    /// To receive an HTTP/1.1 request's line and headers: counted from the handshake for a
    /// connection's first request and from the first byte for later ones.
    pub request_headers: Duration,
    /// A connection with no request in flight (between HTTP/1.1 requests, or an HTTP/2
    /// connection without an open stream) is closed after this long.
    pub idle: Duration,
}

impl Default for ConnectionTimeouts {
    fn default() -> Self {
        ConnectionTimeouts {
            tls_handshake: Duration::from_secs(10),
            request_headers: Duration::from_secs(32),
            idle: Duration::from_secs(90),
        }
    }
}

/// TCP keep-alive probes after this long without traffic, so a peer that vanished (a laptop
/// closed in the middle of a watch) is noticed; upstream's `defaultKeepAlivePeriod`.
const TCP_KEEPALIVE: Duration = Duration::from_secs(180);

/// How long an expired connection gets to finish closing (an HTTP/2 GOAWAY reaching the
/// client) before it is dropped; Go's HTTP/2 server waits one second too.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

pub(super) async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    api: Arc<Api>,
    timeouts: ConnectionTimeouts,
) {
    // Connections live in this set so that ending the server ends them too.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    connections.spawn(connection(tcp, peer, acceptor.clone(), api.clone(), timeouts));
                }
                Err(e) => {
                    // Out of file descriptors (EMFILE) lands here: wait for connections to close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reap finished connections as they end, so the set stays as large as the
            // number of open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    api: Arc<Api>,
    timeouts: ConnectionTimeouts,
) {
    let _ = tcp.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
    if let Err(e) = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive) {
        tracing::debug!(%peer, error = %e, "setting TCP keep-alive failed");
    }
    let tls = match tokio::time::timeout(timeouts.tls_handshake, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, timeout = ?timeouts.tls_handshake, "TLS handshake not finished in time; closing");
            return;
        }
    };
    let session = tls.get_ref().1;
    let identity = session
        .peer_certificates()
        .and_then(tls::identity_from_certs);
    let http2 = session.alpn_protocol() == Some(b"h2".as_slice());
    serve(tls, http2, timeouts, peer, move |req| {
        api.clone().handle(req, identity.clone())
    })
    .await;
}

/// Serves HTTP/1.1 or HTTP/2 (`http2` is what ALPN chose) on `io` until the client closes
/// it, or until it breaks one of `timeouts`. Every request goes through `handler` behind
/// the guards of [`guard`]: head size limits and panics turned into `Status` responses.
pub(crate) async fn serve<I, H, F>(
    io: I,
    http2: bool,
    timeouts: ConnectionTimeouts,
    peer: SocketAddr,
    handler: H,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let activity = Arc::new(Activity::new(http2));
    let io = TokioIo::new(TrackedIo::new(io, activity.clone()));
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        // Counted from the moment hyper hands the request over, until its response body
        // is done or dropped.
        let in_flight = requests.begin();
        let handler = handler.clone();
        async move { Ok::<_, std::convert::Infallible>(guard::respond(req, handler, in_flight).await) }
    });

    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Heads up to MAX_HEADER_BYTES are upstream's to accept; hyper must read somewhat
    // more than that so that `guard` sees an oversized head and answers it with a Status
    // (past these buffers hyper answers 431 itself, without a body). hyper's own
    // header-read timer is not used: it would also run while a keep-alive connection is
    // idle, which `activity` times separately as upstream does.
    builder
        .http1()
        .max_buf_size(guard::HEAD_BUFFER_BYTES)
        .max_headers(guard::MAX_HEADERS);
    builder
        .http2()
        .max_header_list_size(guard::HEAD_BUFFER_BYTES as u32);
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        expiry = activity.expired(timeouts) => {
            tracing::debug!(%peer, reason = expiry.as_str(), "closing connection");
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
        }
    }
}

#[cfg(test)]
mod tests;
