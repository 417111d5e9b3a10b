//! `metrics.k8s.io/v1beta1`, served by kybern itself as metrics-server serves it:
//! NodeMetrics and PodMetrics (get and list, label and field selectors, Table rows),
//! computed from each node's `/metrics/resource`. A scrape loop reads every node
//! through a [`NodeScraper`] each resolution (15 s, metrics-server's usual
//! `--metric-resolution`); CPU is the rate between a node's last two readings, memory
//! the last working set, and an object read only once so far is left out.
//!
//! Mounting it (the node client is the caller's):
//!
//! ```ignore
//! struct Kubelets { /* the apiserver's node client */ }
//! #[async_trait::async_trait]
//! impl apiserver::api::metrics::NodeScraper for Kubelets {
//!     async fn resource_metrics(&self, node: &serde_json::Value) -> anyhow::Result<String> {
//!         // GET https://<node address>:10250/metrics/resource with the kubelet-client cert
//!     }
//! }
//! tokio::spawn(apiserver::api::metrics::scrape_loop(
//!     Arc::downgrade(&server.api),
//!     Arc::new(Kubelets { .. }),
//!     apiserver::api::metrics::RESOLUTION,
//! ));
//! ```

mod parse;
mod store;

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::{Method, Response, StatusCode};
use serde_json::{json, Value};

pub use parse::{parse, NodeScrape, Point};
pub use store::{Samples, Usage};

use super::read::{computed_list, Filter};
use super::{json_response, Api, ApiRequest, Body};
use crate::registry::Resource;
use crate::status::{ApiError, Result, Target};
use crate::table::TablePrinter;

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";

/// How often nodes are scraped (metrics-server's `--metric-resolution` as deployed).
pub const RESOLUTION: Duration = Duration::from_secs(15);

/// Reads one node's `/metrics/resource` text. The node is its stored JSON object.
#[async_trait::async_trait]
pub trait NodeScraper: Send + Sync {
    async fn resource_metrics(&self, node: &Value) -> anyhow::Result<String>;
}

/// Scrapes every node each `resolution` until the server is gone.
pub async fn scrape_loop(api: Weak<Api>, scraper: Arc<dyn NodeScraper>, resolution: Duration) {
    let mut tick = tokio::time::interval(resolution);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(api) = api.upgrade() else {
            return;
        };
        // As metrics-server: a scrape may take at most 90 % of the interval.
        if let Err(e) = scrape_all(&api, &*scraper, resolution.mul_f32(0.9)).await {
            tracing::warn!(error = %e, "listing nodes to scrape failed");
        }
    }
}

/// One round: every node at once, each within `timeout`; a node that fails keeps its
/// earlier samples (they age out of nothing: its next good scrape replaces them).
pub async fn scrape_all(
    api: &Arc<Api>,
    scraper: &dyn NodeScraper,
    timeout: Duration,
) -> Result<()> {
    let nodes = stored(api, "nodes", None).await?;
    let rounds = nodes.iter().map(|node| async move {
        let name = crate::object::name(node).to_string();
        let text = tokio::time::timeout(timeout, scraper.resource_metrics(node)).await;
        (name, text)
    });
    let now_ms = crate::object::unix_now() * 1000;
    for (name, text) in futures::future::join_all(rounds).await {
        match text {
            Ok(Ok(text)) => api.metrics.record(&name, parse(&text, now_ms)),
            Ok(Err(e)) => tracing::warn!(node = %name, error = %e, "scraping node metrics failed"),
            Err(_) => tracing::warn!(node = %name, "scraping node metrics timed out"),
        }
    }
    let names: std::collections::HashSet<&str> =
        nodes.iter().map(|n| crate::object::name(n)).collect();
    api.metrics.retain_nodes(|n| names.contains(n));
    Ok(())
}

pub(super) fn is_metrics(r: &Resource) -> bool {
    r.group == GROUP
}

/// The served resources (kind, plural, namespaced, printer columns).
pub(crate) fn resources() -> Vec<(&'static str, &'static str, bool, Value)> {
    let window = json!({"name": "Window", "type": "string", "jsonPath": ".window"});
    vec![
        (
            "NodeMetrics",
            "nodes",
            false,
            json!([
                {"name": "CPU", "type": "string", "jsonPath": ".usage.cpu"},
                {"name": "Memory", "type": "string", "jsonPath": ".usage.memory"},
                window.clone(),
            ]),
        ),
        ("PodMetrics", "pods", true, json!([window])),
    ]
}

/// GET of a list or of one object; every other verb (watch included) is 405.
pub(super) async fn serve(
    api: &Arc<Api>,
    r: &Resource,
    req: &ApiRequest,
) -> Result<Response<Body>> {
    let p = &req.path;
    if req.method != Method::GET || p.subresource.is_some() || p.is_watch(&req.query) {
        return Err(ApiError::MethodNotAllowed);
    }
    let pods = r.plural == "pods";
    if pods && p.name.is_some() && p.namespace.is_none() {
        // A pod is named only within its namespace.
        return Err(ApiError::NoSuchResource);
    }
    let source = if pods { "pods" } else { "nodes" };
    let snapshot = api.registry.snapshot();
    let core = snapshot
        .get("", "v1", source)
        .ok_or(ApiError::NoSuchResource)?
        .clone();
    let filter = Filter::from_request(&core, req)?;
    let namespace = p.namespace.as_deref();
    let objects = stored(api, source, namespace).await?;
    let metrics_of = |obj: &Value| {
        if pods {
            pod_metrics(api, obj)
        } else {
            node_metrics(api, obj)
        }
    };
    if let Some(name) = p.name.as_deref() {
        let found = objects
            .iter()
            .find(|o| crate::object::name(o) == name)
            .and_then(|o| metrics_of(o));
        let Some(obj) = found else {
            let (resource, shown) = match namespace {
                Some(ns) => ("podmetrics", format!("{ns}/{name}")),
                None => ("nodemetrics", name.to_string()),
            };
            return Err(ApiError::NotFound(Target::new(GROUP, resource, &shown)));
        };
        return respond(r, req, vec![obj], false);
    }
    let items: Vec<Value> = objects
        .iter()
        .filter(|o| filter.matches(o))
        .filter_map(|o| metrics_of(o))
        .collect();
    respond(r, req, items, true)
}

fn respond(
    r: &Resource,
    req: &ApiRequest,
    items: Vec<Value>,
    list: bool,
) -> Result<Response<Body>> {
    if !list && !req.accept.table {
        req.accept.require_json()?;
        let obj = items.into_iter().next().unwrap_or(Value::Null);
        return Ok(json_response(StatusCode::OK, &obj));
    }
    let printer = TablePrinter::new(GROUP, &r.plural, r.printer_columns.as_ref());
    computed_list(
        req,
        &printer,
        &items,
        &r.list_kind,
        &format!("{GROUP}/{VERSION}"),
    )
}

/// The stored objects of a core resource (from the watch cache), in one namespace or all.
async fn stored(api: &Arc<Api>, plural: &str, namespace: Option<&str>) -> Result<Vec<Arc<Value>>> {
    let snapshot = api.registry.snapshot();
    let r = snapshot
        .get("", "v1", plural)
        .ok_or(ApiError::NoSuchResource)?
        .clone();
    let cache = api.cache(&r).await?;
    Ok(cache.list(&r.prefix_in(namespace)).0)
}

fn metadata(obj: &Value, namespaced: bool) -> Value {
    let mut meta = json!({
        "name": crate::object::name(obj),
        "creationTimestamp": crate::object::now_rfc3339(),
    });
    if namespaced {
        meta["namespace"] = json!(crate::object::namespace(obj).unwrap_or(""));
    }
    if let Some(labels) = crate::object::labels(obj) {
        meta["labels"] = Value::Object(labels.clone());
    }
    meta
}

fn node_metrics(api: &Api, node: &Value) -> Option<Value> {
    let usage = api.metrics.node(crate::object::name(node))?;
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": metadata(node, false),
        "timestamp": crate::object::rfc3339(usage.timestamp_ms.div_euclid(1000)),
        "window": go_duration(usage.window_ms),
        "usage": usage_json(&usage),
    }))
}

fn pod_metrics(api: &Api, pod: &Value) -> Option<Value> {
    let ns = crate::object::namespace(pod)?;
    let containers = api.metrics.pod(ns, crate::object::name(pod))?;
    let timestamp = containers.iter().map(|(_, u)| u.timestamp_ms).max()?;
    let window = containers.iter().map(|(_, u)| u.window_ms).max()?;
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": metadata(pod, true),
        "timestamp": crate::object::rfc3339(timestamp.div_euclid(1000)),
        "window": go_duration(window),
        "containers": containers
            .iter()
            .map(|(name, u)| json!({"name": name, "usage": usage_json(u)}))
            .collect::<Vec<_>>(),
    }))
}

fn usage_json(u: &Usage) -> Value {
    json!({"cpu": cpu_quantity(u.nano_cores), "memory": memory_quantity(u.memory_bytes)})
}

/// Nanocores in a Quantity's canonical decimal form: 200000000 -> "200m", 2533316 ->
/// "2533316n", 1000000000 -> "1".
pub fn cpu_quantity(nano_cores: u64) -> String {
    if nano_cores == 0 {
        return "0".into();
    }
    let (mut v, mut suffix) = (nano_cores, 0);
    const SUFFIXES: [&str; 4] = ["n", "u", "m", ""];
    while suffix < 3 && v % 1000 == 0 {
        v /= 1000;
        suffix += 1;
    }
    format!("{v}{}", SUFFIXES[suffix])
}

/// Bytes in a Quantity's canonical binary form: 10485760 -> "10Mi", 1500 -> "1500".
pub fn memory_quantity(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let (mut v, mut suffix) = (bytes, 0);
    while suffix < 6 && v % 1024 == 0 {
        v /= 1024;
        suffix += 1;
    }
    format!("{v}{}", SUFFIXES[suffix])
}

/// Milliseconds as Go's time.Duration prints them: "15.012s", "1m0.5s", "500ms".
pub fn go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    if ms.abs() < 1000 {
        return format!("{ms}ms");
    }
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let seconds = if frac == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => format!("{sign}{seconds}"),
        (0, m) => format!("{sign}{m}m{seconds}"),
        (h, m) => format!("{sign}{h}h{m}m{seconds}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_windows_are_written_as_metrics_server_writes_them() {
        let cpu = [
            ("zero", 0, "0"),
            ("nanocores", 2_533_316, "2533316n"),
            ("microcores", 2_000, "2u"),
            ("millicores", 200_000_000, "200m"),
            ("whole cores", 2_000_000_000, "2"),
        ];
        for (name, n, want) in cpu {
            assert_eq!(cpu_quantity(n), want, "{name}");
        }
        let memory = [
            ("bytes", 1500, "1500"),
            ("kibibytes", 1_442_680 * 1024, "1442680Ki"),
            ("mebibytes", 10 << 20, "10Mi"),
        ];
        for (name, n, want) in memory {
            assert_eq!(memory_quantity(n), want, "{name}");
        }
        let windows = [
            ("seconds", 15_000, "15s"),
            ("fraction", 15_012, "15.012s"),
            ("short", 500, "500ms"),
            ("minutes", 60_500, "1m0.5s"),
        ];
        for (name, ms, want) in windows {
            assert_eq!(go_duration(ms), want, "{name}");
        }
    }
}
