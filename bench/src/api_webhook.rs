//! `kybern bench api`'s webhook figure: the latency one admission webhook call adds to a
//! create. The bench serves a validating webhook itself over TLS on 127.0.0.1 (its own
//! CA, given as the configuration's `caBundle`) that allows everything; one client
//! creates ConfigMaps one at a time in a namespace without the webhook and then, once
//! the server calls it, with it. The added latency is the difference of the two.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::procs::{self, TempDir};
use super::report::{Report, Row, Samples, Unit};
use super::{progress, workload};

/// The loopback webhook: serves until dropped, counting the reviews it answered.
struct Webhook {
    url: String,
    ca_bundle: String,
    calls: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Webhook {
    async fn start(dir: &std::path::Path) -> Result<Webhook> {
        let pki = apiserver::pki::ensure(dir, &[]).context("making the webhook's CA")?;
        let tls = apiserver::tls::server_config(&pki).context("the webhook's TLS config")?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, counted) = (acceptor.clone(), counted.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(tls, &counted).await;
                    }
                });
            }
        });
        Ok(Webhook {
            url: format!("https://127.0.0.1:{port}/validate"),
            ca_bundle: base64::engine::general_purpose::STANDARD.encode(&pki.ca_cert_pem),
            calls,
            task,
        })
    }
}

/// Answers AdmissionReviews on one connection, as many as the client sends on it.
async fn serve<S>(mut stream: S, calls: &AtomicUsize)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:")?.trim().parse().ok())
            .unwrap_or(0usize);
        while buf.len() < head_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let review: Value =
            serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or_default();
        buf.drain(..head_end + length);
        calls.fetch_add(1, Ordering::Relaxed);
        let answer = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": review["request"]["uid"], "allowed": true}})
        .to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Creates `n` ConfigMaps one after another (after a few untimed ones).
async fn creates(client: &Client, ns: &str, prefix: &str, n: usize) -> Result<Samples> {
    let api = Api::<ConfigMap>::namespaced(client.clone(), ns);
    let mut i = 0usize;
    workload::sequential(10, n, || {
        i += 1;
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": format!("{prefix}-{i:05}")}, "data": {"k": "v"}}))
        .expect("a ConfigMap");
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &cm).await?;
            Ok(())
        }
    })
    .await
}

/// Creates without and with a validating webhook that matches them and prints the
/// added latency.
pub(crate) async fn run(
    cfg: &kube::Config,
    creates_per_side: usize,
    keep: bool,
    started: Instant,
) -> Result<Report> {
    let client = Client::try_from(cfg.clone())?;
    let tmp = TempDir::new("webhook", keep)?;
    let webhook = Webhook::start(&tmp.path).await?;
    let ns = format!("bench-hook-{}", procs::random_suffix(6));
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns, "labels": {"kybern-bench": ns}}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    progress(
        started,
        &format!("webhook: {creates_per_side} creates in {ns} without a webhook"),
    );
    let without = creates(&client, &ns, "plain", creates_per_side).await?;

    let name = format!("bench-{ns}");
    let config: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": name},
        "webhooks": [{
            "name": "allow.bench.kybern.io",
            "clientConfig": {"url": webhook.url, "caBundle": webhook.ca_bundle},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "namespaceSelector": {"matchLabels": {"kybern-bench": ns}},
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 10,
        }],
    }))?;
    let configs = Api::<ValidatingWebhookConfiguration>::all(client.clone());
    configs.create(&PostParams::default(), &config).await?;
    // The server picks configurations up from its watch: create until the hook is called.
    let waited = Instant::now();
    let mut probe = 0;
    while webhook.calls.load(Ordering::Relaxed) == 0 {
        if waited.elapsed() > Duration::from_secs(10) {
            bail!("the webhook was not called within 10 s of its configuration");
        }
        probe += 1;
        creates(&client, &ns, &format!("probe{probe}"), 0).await?;
    }
    progress(
        started,
        &format!("webhook: {creates_per_side} creates in {ns} with a validating webhook"),
    );
    let before = webhook.calls.load(Ordering::Relaxed);
    let with = creates(&client, &ns, "hooked", creates_per_side).await?;
    let called = webhook.calls.load(Ordering::Relaxed) - before;
    configs.delete(&name, &DeleteParams::default()).await?;
    workload::delete_namespace(&client, &ns).await?;

    let mut report = Report::versus(
        "One validating admission webhook (loopback TLS, allows everything), 1 client creating",
        "with the webhook",
        "without",
    );
    for (figure, p) in [("create p50", 50.0), ("create p99", 99.0)] {
        report.row(Row::new(
            figure,
            super::report::ms(with.pct(p)),
            Some(super::report::ms(without.pct(p))),
            Unit::Ms,
        ));
        report.row(Row::new(
            format!("  added by the webhook call ({figure})"),
            super::report::ms(with.pct(p).saturating_sub(without.pct(p))),
            None,
            Unit::Ms,
        ));
    }
    report.note(format!(
        "{} creates per side; the webhook answered {called} reviews during the timed creates",
        without.len()
    ));
    Ok(report)
}
