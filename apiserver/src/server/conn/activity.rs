//! What a connection is doing, for its deadlines: requests in flight, since when it has
//! been idle, and whether an HTTP/1.1 request has begun to arrive.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::ConnectionTimeouts;

/// Why a connection was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expiry {
    /// An HTTP/1.1 request line and headers did not arrive within `request_headers`.
    Headers,
    /// No request in flight for `idle`.
    Idle,
}

impl Expiry {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Expiry::Headers => "request headers not received in time",
            Expiry::Idle => "idle for too long",
        }
    }
}

pub(super) struct Activity {
    http2: bool,
    state: Mutex<State>,
    changed: Notify,
}

struct State {
    /// Requests handed to the service whose responses are not finished (HTTP/2: open streams).
    in_flight: usize,
    /// When `in_flight` last dropped to zero, or the connection started.
    idle_since: Instant,
    /// Whether any request has started on this connection.
    served: bool,
    /// When the first byte arrived while idle: an HTTP/1.1 request has begun.
    first_byte: Option<Instant>,
}

impl Activity {
    pub(super) fn new(http2: bool) -> Self {
        let state = State {
            in_flight: 0,
            idle_since: Instant::now(),
            served: false,
            first_byte: None,
        };
        Activity {
            http2,
            state: Mutex::new(state),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding the lock.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A request has been handed to the service; it counts until the guard is dropped.
    pub(super) fn begin(self: &Arc<Self>) -> InFlight {
        let mut s = self.state();
        s.in_flight += 1;
        s.served = true;
        s.first_byte = None;
        drop(s);
        self.changed.notify_waiters();
        InFlight(self.clone())
    }

    fn bytes_read(&self) {
        if self.http2 {
            // HTTP/2 exchanges frames (pings, settings, window updates) outside requests.
            return;
        }
        let mut s = self.state();
        if s.in_flight == 0 && s.served && s.first_byte.is_none() {
            s.first_byte = Some(Instant::now());
            drop(s);
            self.changed.notify_waiters();
        }
    }

    /// When the connection must be closed if nothing changes, as Go's `http.Server` counts
    /// it: a request's headers within `request_headers` of the handshake (first request)
    /// or of their first byte (later ones); between requests, `idle` without a byte. An
    /// HTTP/2 connection only ever idles: no deadline while it has an open stream.
    fn deadline(&self, t: &ConnectionTimeouts) -> Option<(Instant, Expiry)> {
        let s = self.state();
        if s.in_flight > 0 {
            return None;
        }
        if self.http2 {
            return Some((s.idle_since + t.idle, Expiry::Idle));
        }
        if !s.served {
            return Some((s.idle_since + t.request_headers, Expiry::Headers));
        }
        match s.first_byte {
            Some(first) => Some((first + t.request_headers, Expiry::Headers)),
            None => Some((s.idle_since + t.idle, Expiry::Idle)),
        }
    }

    /// Resolves once the connection has broken one of `timeouts`.
    pub(super) async fn expired(&self, timeouts: ConnectionTimeouts) -> Expiry {
        loop {
            // Registered before the state is read, so no change can slip in between.
            let changed = self.changed.notified();
            match self.deadline(&timeouts) {
                Some((at, why)) if at <= Instant::now() => return why,
                Some((at, _)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// One request in flight; dropped with its response body (or with the request's future
/// when the client goes away first).
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.in_flight -= 1;
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
            s.first_byte = None;
        }
        drop(s);
        self.0.changed.notify_waiters();
    }
}

/// The connection's byte stream, noting in its [`Activity`] when bytes arrive.
pub(super) struct TrackedIo<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> TrackedIo<T> {
    pub(super) fn new(inner: T, activity: Arc<Activity>) -> Self {
        TrackedIo { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
