//! What stands between hyper and the API for every request: upstream's limits on the size
//! of a request's head, answered with `Status` bodies (414, 431), and panics, answered
//! with a 500 `Status` and logged, never a dropped connection.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::FutureExt;
use http::{Request, Response, StatusCode, Uri};
use hyper::body::{Frame, Incoming, SizeHint};

use super::activity::InFlight;
use crate::api::{error_response, json_response, Body};
use crate::status::ApiError;

/// The most bytes of request line and headers a request may have: Go's `http.Server`
/// `MaxHeaderBytes` as kube-apiserver sets it (1 MiB).
pub const MAX_HEADER_BYTES: usize = 1 << 20;

/// The longest URL (request target) served. Upstream only counts the URL against
/// [`MAX_HEADER_BYTES`], but hyper cannot carry one over 65,534 bytes (`http::Uri` keeps
/// u16 offsets) and refuses those itself with a bodiless 414; stopping at 60 KiB
/// answers every URL that comes near that with a `Status` that names the limit.
pub const MAX_URL_BYTES: usize = 60 * 1024;

/// How much of a request's head hyper buffers (HTTP/1.1) or decodes (HTTP/2): twice the
/// limit, so a head that is over the limit by up to as much again still reaches
/// [`head_too_large`] and gets its `Status`.
pub(super) const HEAD_BUFFER_BYTES: usize = 2 * MAX_HEADER_BYTES;

/// How many header fields hyper parses in an HTTP/1.1 request (its default is 100; Go has
/// no count, only [`MAX_HEADER_BYTES`]). hyper allocates this many slots per parse, so it
/// is bounded; past it hyper answers 431 itself.
pub(super) const MAX_HEADERS: usize = 1024;

/// Upstream's text for a handler that panicked (`WithPanicRecovery`).
const PANIC_MESSAGE: &str = "This request caused apiserver to panic. Look in the logs for details.";

/// Serves one request: checks its head, runs `handler` catching any panic, and ties
/// `in_flight` to the response body.
pub(super) async fn respond<H, F>(
    req: Request<Incoming>,
    handler: H,
    in_flight: InFlight,
) -> Response<GuardedBody>
where
    H: Fn(Request<Incoming>) -> F,
    F: Future<Output = Response<Body>>,
{
    let request = format!("{} {}", req.method(), req.uri());
    let resp = match head_too_large(&req) {
        Some(resp) => resp,
        // Calling the handler happens inside the guarded future, so a panic while
        // building its future is caught too.
        None => match AssertUnwindSafe(async move { handler(req).await })
            .catch_unwind()
            .await
        {
            Ok(resp) => resp,
            Err(panic) => {
                tracing::error!(request = %request, panic = panic_message(&*panic), "apiserver panic'd");
                error_response(&ApiError::Internal(PANIC_MESSAGE.into()))
            }
        },
    };
    resp.map(|body| GuardedBody {
        inner: body,
        request,
        in_flight: Some(in_flight),
    })
}

/// A 414 or 431 `Status` for a request whose URL or head is over upstream's limits.
fn head_too_large<B>(req: &Request<B>) -> Option<Response<Body>> {
    let url = url_len(req.uri());
    if url > MAX_URL_BYTES {
        let message =
            format!("Request-URI Too Long: the URL is {url} bytes, the limit is {MAX_URL_BYTES}");
        return Some(status(
            StatusCode::URI_TOO_LONG,
            "RequestURITooLong",
            message,
        ));
    }
    // The head as HTTP/1.1 puts it on the wire: "METHOD URL HTTP/1.1\r\n", one
    // "name: value\r\n" per field, then "\r\n" (for HTTP/2, its equivalent).
    let line = req.method().as_str().len() + 1 + url + 1 + "HTTP/1.1\r\n".len();
    let fields: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    let head = line + fields + 2;
    if head > MAX_HEADER_BYTES {
        let message = format!("Request Header Fields Too Large: the request line and headers are {head} bytes, the limit is {MAX_HEADER_BYTES}");
        return Some(status(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "RequestHeaderFieldsTooLarge",
            message,
        ));
    }
    None
}

/// The length of the request target as the client sent it (origin or absolute form).
fn url_len(uri: &Uri) -> usize {
    let path = uri.path_and_query().map_or(0, |p| p.as_str().len());
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => {
            scheme.len() + "://".len() + authority.as_str().len() + path
        }
        (None, Some(authority)) => authority.as_str().len() + path,
        _ => path,
    }
}

/// A `metav1.Status` failure for a code upstream's error enum has no reason for.
fn status(code: StatusCode, reason: &str, message: String) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    json_response(code, &body)
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(not a string)"
    }
}

/// A response body that keeps its request counted as in flight until it is finished or
/// dropped, and turns a panic while producing it (a watch's event stream) into the end of
/// the stream with an error: hyper then aborts the response (HTTP/1.1 closes the
/// connection, HTTP/2 resets the stream), as Go does for a panic after the headers.
pub(crate) struct GuardedBody {
    inner: Body,
    /// "METHOD URL", for the log.
    request: String,
    /// None once the body is finished or has panicked.
    in_flight: Option<InFlight>,
}

impl hyper::body::Body for GuardedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.in_flight.is_none() {
            return Poll::Ready(None);
        }
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| {
            Pin::new(&mut this.inner).poll_frame(cx)
        }));
        match polled {
            Ok(Poll::Ready(Some(Ok(frame)))) => Poll::Ready(Some(Ok(frame))),
            Ok(Poll::Ready(Some(Err(never)))) => match never {},
            Ok(Poll::Ready(None)) => {
                this.in_flight = None;
                Poll::Ready(None)
            }
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => {
                tracing::error!(request = %this.request, panic = panic_message(&*panic), "apiserver panic'd while writing a response");
                this.in_flight = None;
                Poll::Ready(Some(Err("the response body panicked".into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.in_flight.is_none() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
