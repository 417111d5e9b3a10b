//! `agent::stream` against real clients: kube-rs's exec, attach and Portforwarder (WebSocket
//! v5/v4 channels and the WebSocket port-forward protocol), and raw requests for the errors
//! upstream answers before upgrading. kubectl's protocols are in `stream_kubectl.rs`.

#[path = "stream/server.rs"]
mod server;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use server::{echo_through, pattern, Server, ECHO_PORT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn read_all(r: Option<impl tokio::io::AsyncRead + Unpin>) -> String {
    let mut s = String::new();
    if let Some(mut r) = r {
        r.read_to_string(&mut s).await.unwrap();
    }
    s
}

#[tokio::test]
async fn kube_rs_exec_gets_stdout_stderr_and_the_exit_status() {
    // (name, command, status, reason, exit-code cause)
    let cases = [
        ("exit 0 is a success", "0", "Success", None, None),
        (
            "exit 3 is a non-zero exit code",
            "3",
            "Failure",
            Some("NonZeroExitCode"),
            Some("3"),
        ),
    ];
    let server = Server::start().await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    for (name, code, want_status, want_reason, want_cause) in cases {
        let mut attached = pods
            .exec("web", ["exit", code], &AttachParams::default())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let status = attached.take_status().unwrap();
        let (stdout, stderr) =
            tokio::join!(read_all(attached.stdout()), read_all(attached.stderr()));
        let status = status.await.unwrap_or_else(|| panic!("{name}: no status"));
        assert_eq!(
            (stdout.as_str(), stderr.as_str()),
            ("out\n", "err\n"),
            "{name}"
        );
        assert_eq!(status.status.as_deref(), Some(want_status), "{name}");
        assert_eq!(status.reason.as_deref(), want_reason, "{name}");
        let cause = status
            .details
            .and_then(|d| d.causes)
            .and_then(|c| c.into_iter().next());
        assert_eq!(
            cause.as_ref().and_then(|c| c.reason.as_deref()),
            want_cause.map(|_| "ExitCode"),
            "{name}"
        );
        assert_eq!(
            cause.and_then(|c| c.message).as_deref(),
            want_cause,
            "{name}"
        );
        attached.join().await.unwrap();
    }
}

#[tokio::test]
async fn kube_rs_exec_stdin_reaches_the_command_and_closing_it_ends_the_command() {
    let server = Server::start().await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let params = AttachParams::default().stdin(true).stderr(false);
    let mut attached = pods.exec("web", ["cat"], &params).await.unwrap();
    let mut stdin = attached.stdin().unwrap();
    let stdout = attached.stdout();
    let status = attached.take_status().unwrap();
    stdin.write_all(b"hello over v5\n").await.unwrap();
    // Closing stdin sends v5's close signal for channel 0: `cat` sees the end and exits.
    stdin.shutdown().await.unwrap();
    assert_eq!(read_all(stdout).await, "hello over v5\n");
    assert_eq!(status.await.unwrap().status.as_deref(), Some("Success"));
    attached.join().await.unwrap();
}

#[tokio::test]
async fn kube_rs_exec_with_a_tty_gets_the_terminal_size() {
    let server = Server::start().await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let params = AttachParams::interactive_tty();
    let mut attached = pods.exec("web", ["size"], &params).await.unwrap();
    let mut sizes = attached.terminal_size().unwrap();
    let stdout = attached.stdout();
    futures::SinkExt::send(
        &mut sizes,
        kube::api::TerminalSize {
            width: 120,
            height: 40,
        },
    )
    .await
    .unwrap();
    assert_eq!(read_all(stdout).await, "120x40");
    attached.join().await.unwrap();
}

async fn waiting_commands(want: usize) {
    kybern_testkit::eventually("the number of running commands", || async {
        let now = server::WAITING.load(std::sync::atomic::Ordering::SeqCst);
        (now == want).then_some(()).ok_or(format!("{now} running"))
    })
    .await;
}

#[tokio::test]
async fn a_client_that_goes_away_ends_its_command() {
    let server = Server::start().await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let attached = pods
        .exec("web", ["wait"], &AttachParams::default())
        .await
        .unwrap();
    waiting_commands(1).await;
    // Ends kube-rs's side: the connection closes without a close frame.
    attached.abort();
    waiting_commands(0).await;
}

#[tokio::test]
async fn kube_rs_attach_streams_stdin_back() {
    let server = Server::start().await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let params = AttachParams::default().stdin(true).stderr(false);
    let mut attached = pods.attach("web", &params).await.unwrap();
    let mut stdin = attached.stdin().unwrap();
    let stdout = attached.stdout();
    stdin.write_all(b"attached\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    assert_eq!(read_all(stdout).await, "attached\n");
    attached.join().await.unwrap();
}

#[tokio::test]
async fn kube_rs_portforwarder_moves_a_few_mebibytes_intact() {
    let server = Server::start().await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let mut pf = pods.portforward("web", &[ECHO_PORT]).await.unwrap();
    let conn = pf.take_stream(ECHO_PORT).unwrap();
    let data = pattern(4 << 20);
    let back = echo_through(conn, &data).await;
    assert!(back == data, "the echoed bytes differ from what was sent");
    pf.abort();
}

#[tokio::test]
async fn kube_rs_portforwarder_keeps_ports_apart_and_reports_a_refused_one_on_its_error_channel() {
    let server = Server::start().await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    // Port i travels on channels 2i (data) and 2i+1 (errors): 7001 is the second pair.
    let mut pf = pods.portforward("web", &[ECHO_PORT, 7001]).await.unwrap();
    let error = pf
        .take_error(7001)
        .unwrap()
        .await
        .expect("an error message");
    assert!(
        error.starts_with("error forwarding port 7001 to pod web_default, uid 1234: "),
        "{error}"
    );
    let conn = pf.take_stream(ECHO_PORT).unwrap();
    assert_eq!(echo_through(conn, b"still here").await, b"still here");
    pf.abort();
}

/// Sends a raw request and returns the status line and the body.
async fn raw(server: &Server, request: &str) -> (String, String) {
    let mut conn = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).await.unwrap();
    let status = resp.lines().next().unwrap_or_default().to_string();
    let body = resp
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

#[tokio::test]
async fn bad_streaming_requests_get_upstreams_errors_before_any_upgrade() {
    let ws = "Connection: Upgrade, close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let cases = [
        (
            "exec without any stream",
            format!("GET /api/v1/namespaces/default/pods/web/exec?command=ls HTTP/1.1\r\nHost: x\r\n{ws}Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n"),
            "400",
            "you must specify at least 1 of stdin, stdout, stderr",
        ),
        (
            "exec with an unknown WebSocket protocol",
            format!("GET /api/v1/namespaces/default/pods/web/exec?command=ls&stdout=1 HTTP/1.1\r\nHost: x\r\n{ws}Sec-WebSocket-Protocol: v9.channel.k8s.io\r\n\r\n"),
            "403",
            "requested protocol(s) are not supported: [v9.channel.k8s.io]",
        ),
        (
            "exec with an unknown SPDY protocol",
            "POST /api/v1/namespaces/default/pods/web/exec?command=ls&stdout=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v9.channel.k8s.io\r\n\r\n".to_string(),
            "403",
            "unable to upgrade: unable to negotiate protocol: client supports [v9.channel.k8s.io], server accepts [v4.channel.k8s.io v3.channel.k8s.io v2.channel.k8s.io channel.k8s.io]",
        ),
        (
            "WebSocket port-forward without a port",
            format!("GET /api/v1/namespaces/default/pods/web/portforward HTTP/1.1\r\nHost: x\r\n{ws}Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n"),
            "400",
            r#"query parameter \"port\" is required"#,
        ),
        (
            "SPDY port-forward without a protocol header",
            "POST /api/v1/namespaces/default/pods/web/portforward HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: SPDY/3.1\r\n\r\n".to_string(),
            "400",
            "unable to upgrade: header X-Stream-Protocol-Version does not exist",
        ),
    ];
    let server = Server::start().await;
    for (name, request, code, message) in cases {
        let (status, body) = raw(&server, &request).await;
        assert!(status.contains(code), "{name}: {status}\n{body}");
        assert!(body.contains(message), "{name}: {body}");
        assert!(body.contains(r#""kind":"Status""#), "{name}: {body}");
    }
}

/// Runs `exit <code>` with stdout and stderr over a raw WebSocket speaking `protocol`;
/// returns every message as (channel, decoded data).
async fn raw_ws_exec(server: &Server, protocol: &str, code: &str) -> Vec<(u8, Vec<u8>)> {
    use base64::Engine;
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let url = format!(
        "ws://{}/api/v1/namespaces/default/pods/web/exec?command=exit&command={code}&stdout=1&stderr=1",
        server.addr
    );
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let conn = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(req, conn).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], protocol);
    let mut messages = Vec::new();
    while let Some(Ok(message)) = ws.next().await {
        match message {
            Message::Binary(b) if !b.is_empty() => messages.push((b[0], b[1..].to_vec())),
            Message::Text(t) if !t.is_empty() => {
                let t = t.as_bytes();
                let data = base64::engine::general_purpose::STANDARD
                    .decode(&t[1..])
                    .unwrap();
                messages.push((t[0] - b'0', data));
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    messages
}

fn on_channel(messages: &[(u8, Vec<u8>)], channel: u8) -> String {
    let bytes: Vec<u8> = messages
        .iter()
        .filter(|(c, _)| *c == channel)
        .flat_map(|(_, d)| d.clone())
        .collect();
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn older_websocket_channel_protocols_report_the_exit_as_their_version_says() {
    let failure_v4 = r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
    let failure_v1 =
        "command terminated with non-zero exit code: error executing command [exit 3], exit code 3";
    // (name, protocol, exit code, what the error channel carries)
    let cases = [
        ("v4 binary, failure", "v4.channel.k8s.io", "3", failure_v4),
        (
            "v4 base64, failure",
            "v4.base64.channel.k8s.io",
            "3",
            failure_v4,
        ),
        (
            "v4 binary, success",
            "v4.channel.k8s.io",
            "0",
            r#"{"metadata":{},"status":"Success"}"#,
        ),
        (
            "v1 binary, failure is text",
            "channel.k8s.io",
            "3",
            failure_v1,
        ),
        (
            "v1 base64, success says nothing",
            "base64.channel.k8s.io",
            "0",
            "",
        ),
    ];
    let server = Server::start().await;
    for (name, protocol, code, want_error) in cases {
        let messages = raw_ws_exec(&server, protocol, code).await;
        assert_eq!(on_channel(&messages, 1), "out\n", "{name}");
        assert_eq!(on_channel(&messages, 2), "err\n", "{name}");
        assert_eq!(on_channel(&messages, 3), want_error, "{name}");
    }
}
