//! The kubelet's streaming server, server side: exec/attach and port-forward sessions over
//! an upgraded HTTP connection, in every protocol real clients speak.
//!
//! - exec/attach ([`remote_command`]): WebSocket with the channel subprotocols
//!   `v5.channel.k8s.io` (adds a close signal, channel 255), `v4.channel.k8s.io` (a JSON
//!   `Status` on the error channel), `channel.k8s.io` and the base64 variants; and SPDY/3.1
//!   with `X-Stream-Protocol-Version` `v4`/`v3`/`v2.channel.k8s.io`/`channel.k8s.io`,
//!   streams named by their `streamType` header.
//! - port-forward ([`port_forward`]): SPDY/3.1 `portforward.k8s.io` (a data and an error
//!   stream per connection, paired by `requestID`), the same SPDY tunnelled in WebSocket
//!   binary messages (subprotocol `SPDY/3.1+portforward.k8s.io`, kubectl 1.31+), and the
//!   WebSocket channel protocol (`?port=`/`?ports=`, channels 2i data and 2i+1 error, each
//!   opened by the port as 2 bytes little-endian) of kube-rs and the Python client.
//!
//! A container's exec is `Runtime::exec_interactive` behind the handler:
//! `move |io: ExecIo| async move { let cmd = io.command.clone();
//! Ok(runtime.exec_interactive(&container_id, &cmd, io).await?) }`; port-forward's dialer is
//! `move |port| network::dial_in_netns(&sandbox.netns, port)` (clone the path in).
//!
//! Both functions answer at once: a `101 Switching Protocols` (the session then runs on a
//! task of its own once hyper hands over the connection) or a `Status` error. They need the
//! request as hyper's server received it (its upgrade extension), by value or `&mut`.
//!
//! ```no_run
//! # async fn route(req: http::Request<hyper::body::Incoming>) -> http::Response<http_body_util::Full<bytes::Bytes>> {
//! use agent::stream::{self, ExecIo, ExecOptions, PortForwardTarget};
//! use tokio::io::AsyncWriteExt;
//!
//! let query = req.uri().query().unwrap_or_default().to_string();
//! if req.uri().path().starts_with("/exec/") {
//!     let opts = ExecOptions::from_query(&query);
//!     stream::remote_command(req, opts, |mut io: ExecIo| async move {
//!         if let Some(out) = io.stdout.as_mut() {
//!             out.write_all(b"hello\n").await?;
//!         }
//!         Ok(3) // the exit code; an Err reports an internal error to the client
//!     })
//! } else {
//!     let target = PortForwardTarget { pod: "web_default".into(), uid: "1234".into() };
//!     stream::port_forward(req, target, |port: u16| async move {
//!         tokio::net::TcpStream::connect(("127.0.0.1", port)).await
//!     })
//! }
//! # }
//! ```

use bytes::Bytes;
use http::{header, HeaderMap, Response, StatusCode};
use http_body_util::Full;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;

mod exec;
mod exec_spdy;
mod exec_ws;
mod portforward;
mod spdy;
mod tunnel;
mod ws;

pub use exec::remote_command;
pub use portforward::{port_forward, Dialer};

/// How much a pipe between a session and its handler buffers before the writer waits.
const PIPE_CAPACITY: usize = 64 * 1024;

/// Which streams an exec or attach asks for, and the command (exec only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    pub command: Vec<String>,
}

impl ExecOptions {
    /// Reads the options from a query string, in the kubelet's names (`input`, `output`,
    /// `error`, `tty`, `command`, as the apiserver sends them to a node) or the apiserver's
    /// (`stdin`, `stdout`, `stderr`). A flag is on when its value is `1` or `true`.
    pub fn from_query(query: &str) -> Self {
        let mut opts = ExecOptions::default();
        for (key, value) in form_urlencoded(query) {
            let on = value == "1" || value.eq_ignore_ascii_case("true");
            match key.as_str() {
                "input" | "stdin" => opts.stdin |= on,
                "output" | "stdout" => opts.stdout |= on,
                "error" | "stderr" => opts.stderr |= on,
                "tty" => opts.tty |= on,
                "command" => opts.command.push(value),
                _ => {}
            }
        }
        opts
    }
}

/// A terminal size a client asked for (the resize channel's JSON, upstream's field names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// What an exec handler gets: the streams the client asked for. Reading `stdin` ends when
/// the client closes it; what is written to `stdout`/`stderr` reaches the client before
/// the exit status. Dropping a writer closes that stream.
#[derive(Debug)]
pub struct ExecIo {
    pub stdin: Option<DuplexStream>,
    pub stdout: Option<DuplexStream>,
    pub stderr: Option<DuplexStream>,
    /// Terminal sizes, when a TTY was asked for and the protocol can carry them.
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
    pub tty: bool,
    pub command: Vec<String>,
}

/// Why a command could not be run (not a non-zero exit: that is an `Ok` exit code).
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Names the pod in port-forward error messages, as the kubelet does (`error forwarding
/// port 80 to pod web_default, uid 1234: ...`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortForwardTarget {
    /// The pod's full name, `<name>_<namespace>`.
    pub pod: String,
    pub uid: String,
}

/// The response body every function here answers with.
pub type Body = Full<Bytes>;

/// A `Status` failure as the kubelet's streaming server reports a bad request; `message` is
/// upstream's text.
pub(crate) fn status_error(code: StatusCode, message: &str) -> Response<Body> {
    let reason = match code {
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::FORBIDDEN => "Forbidden",
        _ => "InternalError",
    };
    let status = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    let mut resp = Response::new(Full::new(Bytes::from(status.to_string())));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The values of a header that may be repeated and comma-separated, trimmed, in order.
pub(crate) fn header_list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
        .collect()
}

/// Whether the request asks for a WebSocket (upstream's `IsWebSocketRequest`).
pub(crate) fn is_websocket(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    upgrade
        && header_list(headers, header::CONNECTION.as_str())
            .iter()
            .any(|v| v.eq_ignore_ascii_case("upgrade"))
}

/// Decodes `a=1&b=x%20y` into pairs (`+` is a space).
pub(crate) fn form_urlencoded(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_options_read_the_kubelet_and_the_apiserver_names() {
        let kubelet = ExecOptions::from_query(
            "command=sh&command=-c&command=echo%20hi&input=1&output=1&tty=1",
        );
        assert_eq!(
            kubelet,
            ExecOptions {
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true,
                command: vec!["sh".into(), "-c".into(), "echo hi".into()],
            }
        );
        let apiserver = ExecOptions::from_query("stdout=true&stderr=true&command=ls");
        assert!(apiserver.stdout && apiserver.stderr && !apiserver.stdin && !apiserver.tty);
        assert_eq!(apiserver.command, ["ls"]);
    }

    #[test]
    fn websocket_requests_are_told_by_upgrade_and_connection_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, "WebSocket".parse().unwrap());
        h.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        assert!(is_websocket(&h));
        h.insert(header::UPGRADE, "SPDY/3.1".parse().unwrap());
        assert!(!is_websocket(&h));
    }
}
