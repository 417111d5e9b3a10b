//! The proxy's Prometheus figures, served as plain-text `/metrics` over HTTP (kube-proxy's
//! port 10249 by default): sync durations by kind, failures, and when the last full sync
//! finished.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::sync::SyncKind;

/// kube-proxy's buckets: 1 ms doubling 15 times (to about 16 s).
const BUCKETS: usize = 15;

fn bucket_bound(i: usize) -> f64 {
    0.001 * f64::from(1u32 << i)
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (i, c) in self.counts.iter_mut().enumerate() {
            if seconds <= bucket_bound(i) {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, c) in self.counts.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{}\"}} {c}",
                bucket_bound(i)
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Figures {
    full: Histogram,
    partial: Histogram,
    failures: u64,
    /// Seconds since the epoch of the last successful full sync.
    last_full: Option<f64>,
}

/// Shared between the sync loop and the HTTP listener.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    figures: Arc<Mutex<Figures>>,
}

impl Metrics {
    pub fn synced(&self, kind: SyncKind, took: Duration) {
        let mut f = self.figures.lock().unwrap();
        match kind {
            SyncKind::Full => {
                f.full.observe(took.as_secs_f64());
                f.last_full = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs_f64());
            }
            SyncKind::Partial => f.partial.observe(took.as_secs_f64()),
        }
    }

    pub fn failed(&self) {
        self.figures.lock().unwrap().failures += 1;
    }

    /// How many full syncs succeeded (tests and benches wait on this).
    pub fn full_syncs(&self) -> u64 {
        self.figures.lock().unwrap().full.count
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let f = self.figures.lock().unwrap();
        let mut out = String::new();
        let name = "kybern_proxy_sync_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} How long one sync of the service rules took, by kind (full or partial)."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        f.full.write(&mut out, name, "kind=\"full\"");
        f.partial.write(&mut out, name, "kind=\"partial\"");
        let name = "kybern_proxy_sync_failures_total";
        let _ = writeln!(out, "# HELP {name} Syncs of the service rules that failed.");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {}", f.failures);
        let name = "kybern_proxy_last_full_sync_timestamp_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} When the last full sync of the service rules finished."
        );
        let _ = writeln!(out, "# TYPE {name} gauge");
        let _ = writeln!(out, "{name} {}", f.last_full.unwrap_or(0.0));
        out
    }
}

/// Binds `addr` and serves `/metrics` until the task is dropped.
pub async fn listen(addr: SocketAddr, metrics: Metrics) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(serve(listener, metrics));
    Ok(local)
}

async fn serve(listener: TcpListener, metrics: Metrics) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "proxy metrics: accepting a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(respond(req.uri().path(), &metrics)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn respond(path: &str, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/metrics" => (StatusCode::OK, metrics.render()),
        _ => (StatusCode::NOT_FOUND, "404 page not found\n".to_string()),
    };
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_shows_in_its_kind_s_histogram_and_the_last_full_sync_time() {
        let m = Metrics::default();
        m.synced(SyncKind::Full, Duration::from_millis(3));
        m.synced(SyncKind::Partial, Duration::from_millis(1));
        m.failed();
        let text = m.render();
        for want in [
            "kybern_proxy_sync_duration_seconds_bucket{kind=\"full\",le=\"0.002\"} 0",
            "kybern_proxy_sync_duration_seconds_bucket{kind=\"full\",le=\"0.004\"} 1",
            "kybern_proxy_sync_duration_seconds_count{kind=\"full\"} 1",
            "kybern_proxy_sync_duration_seconds_bucket{kind=\"partial\",le=\"0.001\"} 1",
            "kybern_proxy_sync_failures_total 1",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("kybern_proxy_last_full_sync_timestamp_seconds 0\n"));
        assert_eq!(m.full_syncs(), 1);
    }

    #[tokio::test]
    async fn metrics_are_served_as_prometheus_text_over_plain_http() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let m = Metrics::default();
        m.synced(SyncKind::Full, Duration::from_millis(3));
        let addr = listen("127.0.0.1:0".parse().unwrap(), m).await.unwrap();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        assert!(
            reply.contains("kybern_proxy_sync_duration_seconds_count{kind=\"full\"} 1"),
            "{reply}"
        );
    }
}
