//! A small plain-HTTP server on 127.0.0.1 that mounts `agent::stream` where the apiserver
//! serves `pods/exec`, `pods/attach` and `pods/portforward`, with an in-memory exec handler
//! and a dialer to a local TCP echo server; it also answers the discovery and pod GETs
//! kubectl makes first. Everything it starts ends when it is dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use agent::stream::{self, ExecIo, ExecOptions, HandlerError, PortForwardTarget};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The forwarded port that reaches the echo server; any other port is refused.
pub(crate) const ECHO_PORT: u16 = 7000;

pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    tasks: JoinSet<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

impl Server {
    pub(crate) async fn start() -> Server {
        let mut tasks = JoinSet::new();
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tasks.spawn(echo_server(echo));
        // A port nothing listens on: bound, then released.
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                conns.spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| route(req, echo_addr, closed));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(conn), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Server { addr, tasks }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client of the server (the kubectl tests need none).
    #[allow(dead_code)]
    pub(crate) fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }
}

async fn echo_server(listener: TcpListener) {
    let mut conns = JoinSet::new();
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            return;
        };
        conns.spawn(async move {
            let (mut r, mut w) = conn.into_split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        });
    }
}

/// How many `wait` commands are running (each test runs in a process of its own).
pub(crate) static WAITING: AtomicUsize = AtomicUsize::new(0);

/// Counts one running `wait` until dropped, as a real exec ends when its future is dropped.
struct Waiting;

impl Waiting {
    fn start() -> Waiting {
        WAITING.fetch_add(1, Ordering::SeqCst);
        Waiting
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the in-memory "container" does with a command:
/// `exit N` writes `out` to stdout and `err` to stderr and exits N; `cat` echoes stdin to
/// stdout; `size` prints the first terminal size; `wait` runs until it is dropped; anything
/// else cannot run at all.
async fn handler(mut io: ExecIo) -> Result<u32, HandlerError> {
    let args: Vec<&str> = io.command.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["exit", code] => {
            if let Some(out) = io.stdout.as_mut() {
                out.write_all(b"out\n").await?;
            }
            if let Some(err) = io.stderr.as_mut() {
                err.write_all(b"err\n").await?;
            }
            Ok(code.parse()?)
        }
        ["cat"] => {
            let (Some(mut input), Some(out)) = (io.stdin.take(), io.stdout.as_mut()) else {
                return Err("cat needs stdin and stdout".into());
            };
            tokio::io::copy(&mut input, out).await?;
            Ok(0)
        }
        ["size"] => {
            let size = match io.resize.as_mut() {
                Some(sizes) => sizes.recv().await,
                None => None,
            };
            let text = size.map_or("no terminal".to_string(), |s| {
                format!("{}x{}", s.width, s.height)
            });
            if let Some(out) = io.stdout.as_mut() {
                out.write_all(text.as_bytes()).await?;
            }
            Ok(0)
        }
        ["wait"] => {
            let _running = Waiting::start();
            std::future::pending::<()>().await;
            Ok(0)
        }
        _ => Err(format!("no such command: {args:?}").into()),
    }
}

const POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"default","uid":"1234"},"spec":{"containers":[{"name":"main","image":"test"}]},"status":{"phase":"Running"}}"#;
const API_VERSIONS: &str = r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1"}]}"#;
const API_GROUPS: &str = r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#;
const CORE_RESOURCES: &str = r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["get","list"],"shortNames":["po"]},{"name":"pods/exec","singularName":"","namespaced":true,"kind":"PodExecOptions","verbs":["create","get"]},{"name":"pods/attach","singularName":"","namespaced":true,"kind":"PodAttachOptions","verbs":["create","get"]},{"name":"pods/portforward","singularName":"","namespaced":true,"kind":"PodPortForwardOptions","verbs":["create","get"]}]}"#;

fn json(code: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        "application/json".parse().unwrap(),
    );
    resp
}

async fn route(
    req: Request<Incoming>,
    echo: SocketAddr,
    closed: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let resp = match path.as_str() {
        "/api" => json(StatusCode::OK, API_VERSIONS),
        "/apis" => json(StatusCode::OK, API_GROUPS),
        "/api/v1" => json(StatusCode::OK, CORE_RESOURCES),
        "/api/v1/namespaces/default/pods/web" => json(StatusCode::OK, POD),
        "/api/v1/namespaces/default/pods/web/exec"
        | "/api/v1/namespaces/default/pods/web/attach" => {
            let mut opts = ExecOptions::from_query(&query);
            if path.ends_with("/attach") {
                opts.command = vec!["cat".into()];
            }
            stream::remote_command(req, opts, handler)
        }
        "/api/v1/namespaces/default/pods/web/portforward" => {
            let target = PortForwardTarget {
                pod: "web_default".into(),
                uid: "1234".into(),
            };
            stream::port_forward(req, target, move |port: u16| async move {
                let to = if port == ECHO_PORT { echo } else { closed };
                TcpStream::connect(to).await
            })
        }
        _ => json(
            StatusCode::NOT_FOUND,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"not found","reason":"NotFound","code":404}"#,
        ),
    };
    Ok(resp)
}

/// `n` bytes of a pattern that shows where a corruption happened.
pub(crate) fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Writes `data` to `conn` while reading the same amount back; returns what came back.
pub(crate) async fn echo_through(
    conn: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    data: &[u8],
) -> Vec<u8> {
    let (mut r, mut w) = tokio::io::split(conn);
    let write = async {
        w.write_all(data).await.unwrap();
        w.flush().await.unwrap();
    };
    let read = async {
        let mut back = vec![0u8; data.len()];
        r.read_exact(&mut back).await.unwrap();
        back
    };
    let ((), back) = tokio::join!(write, read);
    back
}
