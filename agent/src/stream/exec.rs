//! exec and attach: which protocol a request asks for, the checks the kubelet makes before
//! upgrading, and the exit status as each protocol version reports it.

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use std::future::Future;

use super::{
    exec_spdy, exec_ws, header_list, is_websocket, spdy, status_error, ws, Body, ExecIo,
    ExecOptions, HandlerError,
};

/// The WebSocket subprotocols of exec and attach, and whether each is base64.
pub(super) const WS_PROTOCOLS: [&str; 6] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
    "",
];

/// The SPDY subprotocols of exec and attach, preferred first (v5 is WebSocket only).
pub(super) const SPDY_PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// What a negotiated subprotocol means for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Version {
    /// 1 to 5; `channel.k8s.io` and the unnamed protocol are 1.
    pub(super) number: u8,
    /// WebSocket messages are base64 text with the channel as an ASCII digit.
    pub(super) base64: bool,
}

impl Version {
    pub(super) fn of(protocol: &str) -> Version {
        let number = match protocol.split('.').next() {
            Some("v5") => 5,
            Some("v4") => 4,
            Some("v3") => 3,
            Some("v2") => 2,
            _ => 1,
        };
        Version {
            number,
            base64: protocol.contains("base64."),
        }
    }

    /// Whether a TTY's size changes are carried (v3 and later over SPDY; WebSocket always).
    pub(super) fn resizes(self) -> bool {
        self.number >= 3
    }
}

/// Answers an exec or attach request: `101 Switching Protocols` and the session on a task of
/// its own (WebSocket or SPDY, whichever the client asks for), or a `Status` error: 400 when
/// no stream is asked for or the upgrade headers are missing, 403 when no protocol fits.
/// With a TTY, stderr is not opened (its output shares the terminal), as upstream.
pub fn remote_command<B, H, Fut>(
    mut req: Request<B>,
    mut opts: ExecOptions,
    handler: H,
) -> Response<Body>
where
    H: FnOnce(ExecIo) -> Fut + Send + 'static,
    Fut: Future<Output = Result<u32, HandlerError>> + Send + 'static,
{
    if opts.tty && opts.stderr {
        tracing::debug!("exec with a TTY and stderr: stderr is not opened");
        opts.stderr = false;
    }
    if !opts.stdin && !opts.stdout && !opts.stderr {
        return status_error(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 of stdin, stdout, stderr",
        );
    }
    if is_websocket(req.headers()) {
        let protocol = match ws::negotiate(req.headers(), &WS_PROTOCOLS) {
            Ok(p) => p,
            Err(resp) => return *resp,
        };
        let resp = match ws::accept(req.headers(), &protocol) {
            Ok(resp) => resp,
            Err(resp) => return *resp,
        };
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            match upgrade.await {
                Ok(io) => {
                    exec_ws::run(TokioIo::new(io), Version::of(&protocol), opts, handler).await
                }
                Err(e) => tracing::warn!(error = %e, "exec: the WebSocket upgrade failed"),
            }
        });
        return resp;
    }
    let protocol = match spdy_handshake(&req, &SPDY_PROTOCOLS) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    let resp = spdy_switching(&protocol);
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(io) => exec_spdy::run(TokioIo::new(io), Version::of(&protocol), opts, handler).await,
            Err(e) => tracing::warn!(error = %e, "exec: the SPDY upgrade failed"),
        }
    });
    resp
}

/// Upstream's `httpstream.Handshake` and the SPDY upgrader's header check: the first
/// protocol in the client's `X-Stream-Protocol-Version` list the server accepts.
pub(super) fn spdy_handshake<B>(
    req: &Request<B>,
    accepted: &[&str],
) -> Result<String, Box<Response<Body>>> {
    let headers = req.headers();
    if !headers.contains_key("x-stream-protocol-version") {
        return Err(Box::new(status_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "unable to upgrade: header X-Stream-Protocol-Version does not exist in request with {} headers",
                headers.keys_len()
            ),
        )));
    }
    let offered = header_list(headers, "x-stream-protocol-version");
    let Some(protocol) = offered.iter().find(|p| accepted.contains(&p.as_str())) else {
        let mut resp = status_error(
            StatusCode::FORBIDDEN,
            &format!(
                "unable to upgrade: unable to negotiate protocol: client supports [{}], server accepts [{}]",
                offered.join(" "),
                accepted.join(" ")
            ),
        );
        for p in accepted {
            resp.headers_mut().append(
                "x-accepted-stream-protocol-versions",
                HeaderValue::from_str(p).expect("a protocol name is a valid header value"),
            );
        }
        return Err(Box::new(resp));
    };
    let connection_upgrade = header_list(headers, header::CONNECTION.as_str())
        .iter()
        .any(|v| v.eq_ignore_ascii_case("upgrade"));
    let upgrade_spdy = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .contains(&spdy::UPGRADE.to_ascii_lowercase())
        });
    if !connection_upgrade || !upgrade_spdy {
        return Err(Box::new(status_error(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request",
        )));
    }
    Ok(protocol.clone())
}

/// The `101 Switching Protocols` to SPDY/3.1 speaking `protocol`.
pub(super) fn spdy_switching(protocol: &str) -> Response<Body> {
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static(spdy::UPGRADE));
    h.insert(
        "x-stream-protocol-version",
        HeaderValue::from_str(protocol).expect("negotiated from a header value"),
    );
    resp
}

/// The exit status on the error stream: v4 and later a JSON `Status` always, earlier versions
/// the failure message only (nothing on success).
pub(super) fn exit_status(
    version: Version,
    command: &[String],
    result: &Result<u32, HandlerError>,
) -> Option<Vec<u8>> {
    let status = status_of(command, result);
    if version.number >= 4 {
        return Some(status.to_string().into_bytes());
    }
    status
        .get("message")
        .and_then(|m| m.as_str())
        .map(|m| m.as_bytes().to_vec())
}

/// The `Status` the kubelet writes for an exec's outcome. A non-zero exit names the command
/// as containerd's CRI reports it (`error executing command [sh -c exit 3], exit code 3`);
/// clients read the code from the `ExitCode` cause.
pub(super) fn status_of(
    command: &[String],
    result: &Result<u32, HandlerError>,
) -> serde_json::Value {
    match result {
        Ok(0) => serde_json::json!({"metadata": {}, "status": "Success"}),
        Ok(code) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(e) => {
            let err = format!("error executing command in container: {e}");
            serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("Internal error occurred: {err}"),
                "reason": "InternalError",
                "details": {"causes": [{"message": err}]},
                "code": 500,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> Vec<String> {
        ["sh", "-c", "exit 3"].map(String::from).to_vec()
    }

    #[test]
    fn a_zero_exit_is_a_success_status_on_v4() {
        let got = exit_status(Version::of("v4.channel.k8s.io"), &cmd(), &Ok(0)).unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            r#"{"metadata":{},"status":"Success"}"#
        );
    }

    #[test]
    fn a_non_zero_exit_carries_the_code_as_an_exit_code_cause() {
        let got = status_of(&cmd(), &Ok(3));
        assert_eq!(got["reason"], "NonZeroExitCode");
        assert_eq!(got["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(got["details"]["causes"][0]["message"], "3");
        assert_eq!(
            got["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
    }

    #[test]
    fn version_one_reports_only_failures_as_text() {
        let v1 = Version::of("channel.k8s.io");
        assert_eq!(exit_status(v1, &cmd(), &Ok(0)), None);
        let failed = exit_status(v1, &cmd(), &Err("no such container".into())).unwrap();
        assert_eq!(
            String::from_utf8(failed).unwrap(),
            "Internal error occurred: error executing command in container: no such container"
        );
    }

    #[test]
    fn protocol_names_map_to_versions() {
        let cases = [
            ("v5.channel.k8s.io", 5, false),
            ("v4.base64.channel.k8s.io", 4, true),
            ("base64.channel.k8s.io", 1, true),
            ("", 1, false),
        ];
        for (name, number, base64) in cases {
            assert_eq!(Version::of(name), Version { number, base64 }, "{name:?}");
        }
    }
}
