//! The connection layer against the real server in-process, with short deadlines: clients
//! that hold connections without using them are disconnected (handshake, request headers,
//! idle keep-alive, idle HTTP/2), while watches and slow uploads that outlast every
//! deadline go on; oversized request heads get 414/431 `Status` bodies.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use apiserver::server::{
    self, Config, ConnectionTimeouts, Server, MAX_HEADER_BYTES, MAX_URL_BYTES,
};
use apiserver::{pki, tls};

/// Every deadline two seconds: short, yet long enough for a TLS handshake on a busy machine.
const SHORT: ConnectionTimeouts = ConnectionTimeouts {
    tls_handshake: Duration::from_secs(2),
    request_headers: Duration::from_secs(2),
    idle: Duration::from_secs(2),
};

/// Longer than the deadlines in [`SHORT`] together.
const OUTLAST: Duration = Duration::from_secs(7);

/// Bounds every wait so a broken server fails a test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(60);

struct Cluster {
    server: Server,
    dir: tempfile::TempDir,
}

async fn start(connections: ConnectionTimeouts) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        connections,
        ..Config::new(dir.path())
    };
    let server = server::start(config)
        .await
        .expect("starting the apiserver in-process");
    Cluster { server, dir }
}

impl Cluster {
    async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.server.kubeconfig).unwrap();
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .unwrap();
        Client::try_from(config).unwrap()
    }

    /// A TLS connection as the admin, offering `alpn`.
    async fn tls(&self, alpn: &[u8]) -> TlsStream<TcpStream> {
        let pki = pki::ensure(self.dir.path(), &[]).unwrap();
        let mut config =
            (*tls::client_config(&pki, &pki.admin_cert_pem, &pki.admin_key_pem).unwrap()).clone();
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = TcpStream::connect(self.server.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("TLS handshake")
    }

    /// An HTTP/1.1 connection; the task drives it and ends when the connection closes.
    async fn http1(
        &self,
    ) -> (
        hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
        tokio::task::JoinHandle<()>,
    ) {
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(self.tls(b"http/1.1").await))
                .await
                .unwrap();
        (
            sender,
            tokio::spawn(async move {
                let _ = conn.await;
            }),
        )
    }

    async fn http2(
        &self,
    ) -> (
        hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
        tokio::task::JoinHandle<()>,
    ) {
        let io = TokioIo::new(self.tls(b"h2").await);
        let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        (
            sender,
            tokio::spawn(async move {
                let _ = conn.await;
            }),
        )
    }

    /// Sends `req` on a new connection of either protocol.
    async fn send(&self, http2: bool, req: Request<Empty<Bytes>>) -> Response<Incoming> {
        self.send_on_new_connection(http2, req).await.0
    }

    /// Sends `req` on a new connection of either protocol, and returns the response and the
    /// task driving the connection, which ends when the connection closes.
    async fn send_on_new_connection(
        &self,
        http2: bool,
        req: Request<Empty<Bytes>>,
    ) -> (Response<Incoming>, tokio::task::JoinHandle<()>) {
        if http2 {
            let (mut sender, conn) = self.http2().await;
            let resp = sender.send_request(req).await;
            (resp.expect("a response over HTTP/2"), conn)
        } else {
            let (mut sender, conn) = self.http1().await;
            let resp = sender.send_request(req).await;
            (resp.expect("a response over HTTP/1.1"), conn)
        }
    }
}

fn get(uri: &str) -> http::request::Builder {
    Request::get(format!("https://localhost{uri}"))
}

async fn status_body(resp: Response<Incoming>) -> Value {
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("a Status body ({e}): {}", String::from_utf8_lossy(&body)))
}

/// Whether the server closes `stream` (reads end or fail) within [`PATIENCE`].
async fn closed_by_server(stream: &mut (impl AsyncRead + Unpin)) -> bool {
    let mut buf = [0u8; 4096];
    let closed = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(PATIENCE, closed).await.is_ok()
}

/// Writes `head` and then one more header byte every 200 ms, as a slowloris client does,
/// until the server closes the connection (true) or [`PATIENCE`] runs out (false).
async fn dribble_until_closed(stream: TlsStream<TcpStream>, head: &'static [u8]) -> bool {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let dribble = async move {
        if writer.write_all(head).await.is_err() {
            return;
        }
        while writer.write_all(b"a").await.is_ok() && writer.flush().await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Writes fail once the server is gone; keep the reader's verdict.
        std::future::pending::<()>().await
    };
    tokio::select! {
        closed = closed_by_server(&mut reader) => closed,
        _ = dribble => unreachable!("the dribble never ends by itself"),
    }
}

#[tokio::test]
async fn a_connection_that_never_sends_a_client_hello_is_closed_after_the_handshake_deadline() {
    let cluster = start(SHORT).await;
    let mut tcp = TcpStream::connect(cluster.server.addr).await.unwrap();
    assert!(
        closed_by_server(&mut tcp).await,
        "the silent connection is still open"
    );
}

#[tokio::test]
async fn a_client_dribbling_its_request_headers_is_disconnected_after_the_header_deadline() {
    let cluster = start(SHORT).await;
    // A byte every 200 ms keeps the connection busy, but the headers never end.
    let stream = cluster.tls(b"http/1.1").await;
    assert!(
        dribble_until_closed(
            stream,
            b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
        )
        .await
    );
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let cluster = start(SHORT).await;
    let cases = [
        ("an HTTP/1.1 keep-alive connection", false),
        ("an HTTP/2 connection without open streams", true),
    ];
    for (name, http2) in cases {
        let req = get("/healthz").body(Empty::new()).unwrap();
        let (resp, conn) = cluster.send_on_new_connection(http2, req).await;
        assert_eq!(resp.status(), StatusCode::OK, "{name}");
        resp.into_body().collect().await.unwrap();
        assert!(
            tokio::time::timeout(PATIENCE, conn).await.is_ok(),
            "{name} is still open"
        );
    }
}

#[tokio::test]
async fn a_watch_open_longer_than_every_deadline_keeps_receiving_events() {
    let cluster = start(SHORT).await;
    let client = cluster.client().await;
    let configmaps = kube::Api::<ConfigMap>::namespaced(client, "default");
    let mut events = configmaps
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    tokio::time::sleep(OUTLAST).await;

    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "late"}})).unwrap();
    configmaps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let seen = async {
        while let Some(event) = events.try_next().await.expect("the watch goes on") {
            if let WatchEvent::Added(cm) = event {
                if cm.metadata.name.as_deref() == Some("late") {
                    return true;
                }
            }
        }
        false
    };
    assert!(
        tokio::time::timeout(PATIENCE, seen).await.unwrap_or(false),
        "the watch missed the event"
    );
}

#[tokio::test]
async fn an_http2_watch_open_longer_than_every_deadline_keeps_receiving_events() {
    let cluster = start(SHORT).await;
    let (mut sender, _conn) = cluster.http2().await;
    let watch = get("/api/v1/namespaces/default/configmaps?watch=true")
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(watch).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    tokio::time::sleep(OUTLAST).await;

    let configmaps = kube::Api::<ConfigMap>::namespaced(cluster.client().await, "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "late"}})).unwrap();
    configmaps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let seen = async {
        let mut received = Vec::new();
        while let Some(frame) = body.frame().await {
            received.extend_from_slice(
                frame
                    .expect("the watch stream goes on")
                    .data_ref()
                    .map_or(&[][..], |d| &d[..]),
            );
            if String::from_utf8_lossy(&received).contains("\"name\":\"late\"") {
                return true;
            }
        }
        false
    };
    assert!(
        tokio::time::timeout(PATIENCE, seen).await.unwrap_or(false),
        "the watch missed the event"
    );
}

#[tokio::test]
async fn an_upload_slower_than_every_deadline_is_served() {
    let cluster = start(SHORT).await;
    let body = serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "slow"}, "data": {"k": "v".repeat(200)}})).unwrap();
    let mut stream = cluster.tls(b"http/1.1").await;
    let head = format!(
        "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The body over about four seconds, in 20 pieces.
    for piece in body.chunks(body.len().div_ceil(20)) {
        stream.write_all(piece).await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(OUTLAST / 20).await;
    }
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "the server closed the upload: {}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buf[..n]);
    }
    assert!(
        response.starts_with(b"HTTP/1.1 201"),
        "{}",
        String::from_utf8_lossy(&response)
    );
}

#[tokio::test]
async fn a_client_is_served_while_many_slow_connections_are_held() {
    let cluster = start(SHORT).await;
    let mut silent = Vec::new();
    for _ in 0..150 {
        silent.push(TcpStream::connect(cluster.server.addr).await.unwrap());
    }
    let mut dribblers = Vec::new();
    for _ in 0..50 {
        let stream = cluster.tls(b"http/1.1").await;
        dribblers.push(tokio::spawn(dribble_until_closed(
            stream,
            b"GET /api HTTP/1.1\r\nHost: localhost\r\nX-Slow: ",
        )));
    }

    let namespaces = kube::Api::<Namespace>::all(cluster.client().await);
    let listed = namespaces
        .list(&ListParams::default())
        .await
        .expect("a normal client is served");
    assert!(listed
        .items
        .iter()
        .any(|ns| ns.metadata.name.as_deref() == Some("default")));

    for mut tcp in silent {
        assert!(
            closed_by_server(&mut tcp).await,
            "a silent connection is still open"
        );
    }
    for dribbler in dribblers {
        assert!(
            dribbler.await.unwrap(),
            "a dribbling connection is still open"
        );
    }
}

#[tokio::test]
async fn a_url_over_the_limit_gets_a_414_status() {
    let cluster = start(ConnectionTimeouts::default()).await;
    for http2 in [false, true] {
        let padding = "a".repeat(MAX_URL_BYTES);
        let resp = cluster
            .send(
                http2,
                get(&format!("/api/v1/namespaces?labelSelector={padding}"))
                    .body(Empty::new())
                    .unwrap(),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::URI_TOO_LONG, "http2: {http2}");
        let status = status_body(resp).await;
        assert_eq!(status["kind"], "Status", "http2: {http2}: {status}");
        assert_eq!(status["code"], 414, "http2: {http2}: {status}");
        assert_eq!(
            status["reason"], "RequestURITooLong",
            "http2: {http2}: {status}"
        );
    }
}

#[tokio::test]
async fn headers_over_1_mib_get_a_431_status() {
    let cluster = start(ConnectionTimeouts::default()).await;
    for http2 in [false, true] {
        let big = "a".repeat(MAX_HEADER_BYTES + 1024);
        let resp = cluster
            .send(
                http2,
                get("/healthz")
                    .header("x-big", big)
                    .body(Empty::new())
                    .unwrap(),
            )
            .await;
        assert_eq!(
            resp.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "http2: {http2}"
        );
        let status = status_body(resp).await;
        assert_eq!(status["kind"], "Status", "http2: {http2}: {status}");
        assert_eq!(status["code"], 431, "http2: {http2}: {status}");
        assert_eq!(
            status["reason"], "RequestHeaderFieldsTooLarge",
            "http2: {http2}: {status}"
        );
    }
}

#[tokio::test]
async fn heads_within_upstreams_limits_are_served() {
    let cluster = start(ConnectionTimeouts::default()).await;
    for http2 in [false, true] {
        // Upstream reads up to 1 MiB of request line and headers, in any number of fields.
        let mut req = get("/healthz").header("x-big", "a".repeat(MAX_HEADER_BYTES - 64 * 1024));
        for i in 0..200 {
            req = req.header(format!("x-field-{i}"), "v");
        }
        let resp = cluster.send(http2, req.body(Empty::new()).unwrap()).await;
        assert_eq!(resp.status(), StatusCode::OK, "http2: {http2}");
        let url = format!("/healthz?padding={}", "a".repeat(MAX_URL_BYTES - 100));
        let resp = cluster
            .send(http2, get(&url).body(Empty::new()).unwrap())
            .await;
        assert_eq!(resp.status(), StatusCode::OK, "http2: {http2}");
    }
}
