//! The control loops' Prometheus metrics and the plain-HTTP endpoint that serves them
//! (`/metrics`, `/healthz`), as kube-controller-manager exposes its own: workqueue
//! series labelled `name=<loop>`, controller-runtime's reconcile counters labelled
//! `controller=<loop>`, `leader_election_master_status` per lease, and the process
//! metrics.
//!
//! kube-runtime's `Controller` has no hooks into its queue, so the series are taken
//! where kybern sees each reconcile: [`metered`] wraps a loop's reconcile function and
//! learns which loop it belongs to from the task-local that [`super`]'s supervisor
//! sets around the loop. Consequences, with upstream's meaning beside each:
//! - `workqueue_adds_total`: objects handed to the reconciler (upstream counts every
//!   `Add`, duplicates included; kube-runtime merges repeated triggers before here);
//! - `workqueue_depth`: reconciles started and not yet finished (kube-runtime starts a
//!   triggered reconcile at once unless the same object is being reconciled);
//! - `workqueue_retries_total`: failed reconciles, each requeued by the error policy
//!   (upstream's `AddRateLimited`);
//! - `workqueue_work_duration_seconds`: time inside the reconcile, exactly upstream's;
//! - `workqueue_queue_duration_seconds` is not served: the wait before a reconcile
//!   happens inside kube-runtime's scheduler and cannot be observed from outside it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write;
use std::future::Future;
use std::sync::{Arc, Mutex};

use apiserver::prometheus::{write_process_metrics, Family, CONTENT_TYPE};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use kube::runtime::controller::Action;

/// Work-duration buckets: client-go's workqueue uses 10^-8 s to 10 s in powers of ten.
const DURATION_BUCKETS: [f64; 10] = [1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0];

tokio::task_local! {
    /// The loop whose future is being polled, set by the supervisor around each loop.
    static CURRENT: Current;
}

#[derive(Clone)]
struct Current {
    name: &'static str,
    metrics: Arc<Metrics>,
}

/// Every series of one process's loops.
pub struct Metrics {
    adds: Family,
    retries: Family,
    work: Family,
    reconciles: Family,
    errors: Family,
    /// Reconciles in progress per loop.
    depth: Mutex<BTreeMap<&'static str, i64>>,
    /// Per lease name: whether this process holds it.
    leading: Mutex<BTreeMap<String, bool>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            adds: Family::counter(
                "workqueue_adds_total",
                "Total number of adds handled by workqueue",
                &["name"],
            ),
            retries: Family::counter(
                "workqueue_retries_total",
                "Total number of retries handled by workqueue",
                &["name"],
            ),
            work: Family::histogram(
                "workqueue_work_duration_seconds",
                "How long in seconds processing an item from workqueue takes.",
                &["name"],
                &DURATION_BUCKETS,
            ),
            reconciles: Family::counter(
                "controller_runtime_reconcile_total",
                "Total number of reconciliations per controller",
                &["controller", "result"],
            ),
            errors: Family::counter(
                "controller_runtime_reconcile_errors_total",
                "Total number of reconciliation errors per controller",
                &["controller"],
            ),
            depth: Mutex::default(),
            leading: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Runs `fut` (one loop's future) so that [`metered`] reconcilers built and polled
    /// inside it count for the loop `name`.
    pub(crate) fn scope<F: Future>(
        self: &Arc<Self>,
        name: &'static str,
        fut: F,
    ) -> impl Future<Output = F::Output> {
        CURRENT.scope(
            Current {
                name,
                metrics: self.clone(),
            },
            fut,
        )
    }

    /// Records whether this process holds the lease `lease` (1 or 0 in
    /// `leader_election_master_status{name=<lease>}`).
    pub fn set_leading(&self, lease: &str, leading: bool) {
        self.leading
            .lock()
            .expect("metrics lock poisoned")
            .insert(lease.to_string(), leading);
    }

    fn started(&self, name: &'static str) {
        self.adds.inc(&[("name", name)]);
        *self
            .depth
            .lock()
            .expect("metrics lock poisoned")
            .entry(name)
            .or_default() += 1;
    }

    fn finished(&self, name: &'static str, seconds: f64, ok: bool) {
        *self
            .depth
            .lock()
            .expect("metrics lock poisoned")
            .entry(name)
            .or_default() -= 1;
        self.work.observe(&[("name", name)], seconds);
        let result = if ok { "success" } else { "error" };
        self.reconciles
            .inc(&[("controller", name), ("result", result)]);
        if !ok {
            self.errors.inc(&[("controller", name)]);
            self.retries.inc(&[("name", name)]);
        }
    }

    /// The text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.adds.write(&mut out);
        gauge(
            &mut out,
            "workqueue_depth",
            "Current depth of workqueue",
            "name",
            self.depth
                .lock()
                .expect("metrics lock poisoned")
                .iter()
                .map(|(k, v)| (k.to_string(), *v)),
        );
        self.retries.write(&mut out);
        self.work.write(&mut out);
        self.reconciles.write(&mut out);
        self.errors.write(&mut out);
        gauge(
            &mut out,
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease. Please make sure to group by name.",
            "name",
            self.leading
                .lock()
                .expect("metrics lock poisoned")
                .iter()
                .map(|(k, v)| (k.clone(), i64::from(*v))),
        );
        write_process_metrics(&mut out);
        out
    }
}

/// A gauge family with one label, nothing when it has no series.
fn gauge(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    series: impl Iterator<Item = (String, i64)>,
) {
    let mut series = series.peekable();
    if series.peek().is_none() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (value, n) in series {
        let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {n}");
    }
}

/// `reconcile` counted and timed for the loop whose future builds it (see the module
/// documentation); outside a supervised loop (a unit test) it only calls `reconcile`.
pub fn metered<K, S, E, F, Fut>(
    reconcile: F,
) -> impl FnMut(Arc<K>, Arc<S>) -> futures::future::BoxFuture<'static, Result<Action, E>>
where
    F: FnMut(Arc<K>, Arc<S>) -> Fut,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
{
    let current = CURRENT.try_with(Current::clone).ok();
    let mut reconcile = reconcile;
    move |obj, state| {
        let fut = reconcile(obj, state);
        let current = current.clone();
        Box::pin(async move {
            let Some(c) = current else {
                return fut.await;
            };
            c.metrics.started(c.name);
            let started = std::time::Instant::now();
            // A reconcile dropped half-way (the loop lost its lease) still leaves the
            // depth it added.
            let mut finish = Finish {
                c: &c,
                started,
                ok: false,
            };
            let result = fut.await;
            finish.ok = result.is_ok();
            drop(finish);
            result
        })
    }
}

/// Records a reconcile's end when dropped: after it returned or when it was cancelled.
struct Finish<'a> {
    c: &'a Current,
    started: std::time::Instant,
    ok: bool,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.c
            .metrics
            .finished(self.c.name, self.started.elapsed().as_secs_f64(), self.ok);
    }
}

/// Serves `/metrics` and `/healthz` over plain HTTP on `listener` until the process
/// ends (kube-controller-manager's paths; bind it to loopback).
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(answer(&req, &metrics)) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(error = %e, "metrics endpoint: connection ended");
            }
        });
    }
}

fn answer(req: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let reply = |code: u16, kind: &str, body: String| {
        Response::builder()
            .status(code)
            .header("content-type", kind)
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return reply(405, "text/plain", "method not allowed\n".into());
    }
    match req.uri().path() {
        "/metrics" => reply(200, CONTENT_TYPE, metrics.render()),
        "/healthz" | "/livez" | "/readyz" => reply(200, "text/plain", "ok".into()),
        _ => reply(404, "text/plain", "404 page not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("failed")]
    struct Failed;

    async fn reconcile(ok: Arc<bool>, _: Arc<()>) -> Result<Action, Failed> {
        if *ok {
            Ok(Action::await_change())
        } else {
            Err(Failed)
        }
    }

    #[tokio::test]
    async fn a_metered_reconcile_counts_for_the_loop_it_runs_in() {
        let metrics = Arc::new(Metrics::default());
        metrics
            .scope("widgets", async {
                let mut r = metered(reconcile);
                r(Arc::new(true), Arc::new(())).await.unwrap();
                r(Arc::new(false), Arc::new(())).await.unwrap_err();
            })
            .await;
        metrics.set_leading("kybern-widgets", true);
        let text = metrics.render();
        for line in [
            "workqueue_adds_total{name=\"widgets\"} 2",
            "workqueue_depth{name=\"widgets\"} 0",
            "workqueue_retries_total{name=\"widgets\"} 1",
            "workqueue_work_duration_seconds_count{name=\"widgets\"} 2",
            "controller_runtime_reconcile_total{controller=\"widgets\",result=\"success\"} 1",
            "controller_runtime_reconcile_total{controller=\"widgets\",result=\"error\"} 1",
            "controller_runtime_reconcile_errors_total{controller=\"widgets\"} 1",
            "leader_election_master_status{name=\"kybern-widgets\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
