//! An HTTPS webhook server on 127.0.0.1 for admission and conversion webhook tests: its
//! own CA (made in a temp dir, given as the `caBundle` to put in a configuration), one
//! handler deciding each answer, every request and the number of connections accepted
//! kept for the test to look at. Connections are kept alive (HTTP/1.1) until the client
//! closes them. The server task ends on drop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

/// What the handler answers one request with.
pub enum Reply {
    /// 200 with this JSON body.
    Json(Value),
    /// No answer at all (a webhook that times out).
    Hang,
}

type Handler = dyn Fn(&str, &Value) -> Reply + Send + Sync;

pub struct WebhookServer {
    /// `https://127.0.0.1:<port>`; a configuration's `url` is this and a path.
    pub base_url: String,
    /// The base64 PEM of the CA that signed the serving certificate.
    pub ca_bundle: String,
    requests: Arc<Mutex<Vec<(String, Value)>>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl WebhookServer {
    /// Serves on a free loopback port; `handler` gets each request's path (query cut
    /// off) and JSON body.
    pub async fn start(handler: impl Fn(&str, &Value) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_as(&[], handler).await
    }

    /// [`Self::start`] with a serving certificate that also names `hosts` (a `service`
    /// client config's `<name>.<namespace>.svc`).
    pub async fn start_as(
        hosts: &[&str],
        handler: impl Fn(&str, &Value) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let dir = tempfile::tempdir().expect("creating the webhook's temp dir");
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let pki = apiserver::pki::ensure(dir.path(), &hosts).expect("making the webhook's CA");
        let tls = apiserver::tls::server_config(&pki).expect("the webhook's TLS config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the webhook's port");
        let port = listener.local_addr().expect("bound address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let seen = requests.clone();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        let task = tokio::spawn(async move {
            // Connection tasks end with this one (kept-alive ones too).
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                while conns.try_join_next().is_some() {}
                let (acceptor, handler, seen) = (acceptor.clone(), handler.clone(), seen.clone());
                conns.spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(tls, &*handler, &seen).await;
                    }
                });
            }
        });
        WebhookServer {
            base_url: format!("https://127.0.0.1:{port}"),
            ca_bundle: base64::engine::general_purpose::STANDARD.encode(&pki.ca_cert_pem),
            requests,
            connections,
            task,
            _dir: dir,
        }
    }

    /// `clientConfig` for this server at `path`.
    pub fn client_config(&self, path: &str) -> Value {
        json!({"url": format!("{}{path}", self.base_url), "caBundle": self.ca_bundle})
    }

    /// The port it serves on (what a `service` webhook's EndpointSlice points at).
    pub fn port(&self) -> u16 {
        self.base_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the base URL ends with the port")
    }

    /// Every (path, body) received so far.
    pub fn requests(&self) -> Vec<(String, Value)> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// How many TCP connections it has accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An AdmissionReview answer to `review`; `extra` is merged into its `response`
/// (`patch`, `status`, `warnings`).
pub fn admission_response(review: &Value, allowed: bool, extra: Value) -> Value {
    let mut response = json!({"uid": review["request"]["uid"], "allowed": allowed});
    if let (Some(r), Value::Object(extra)) = (response.as_object_mut(), extra) {
        r.extend(extra);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

/// A JSON patch as a response's `patch` field carries it (base64).
pub fn patch_field(ops: Value) -> Value {
    json!(base64::engine::general_purpose::STANDARD.encode(ops.to_string()))
}

/// Requests one after another on one connection, each a head up to the blank line and
/// a Content-Length body, until the client closes it.
async fn serve<S>(mut stream: S, handler: &Handler, seen: &Mutex<Vec<(String, Value)>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    while let Some(request) = crate::http::next_request(&mut stream, &mut buf).await {
        let path = request.path().to_string();
        let close = request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        seen.lock()
            .expect("requests lock")
            .push((path.clone(), body.clone()));
        match handler(&path, &body) {
            Reply::Json(answer) => {
                let text = answer.to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                );
                if stream.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
                if close {
                    let _ = stream.shutdown().await;
                    return;
                }
            }
            Reply::Hang => std::future::pending::<()>().await,
        }
    }
}
