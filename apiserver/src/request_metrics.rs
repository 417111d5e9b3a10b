//! The apiserver's own Prometheus metrics (`GET /metrics`): upstream's
//! `apiserver_request_total` and `apiserver_request_duration_seconds` with their label
//! sets and buckets, labelled as upstream's MonitorRequest labels a request, plus the
//! process metrics.

use std::time::Duration;

use http::Method;

use crate::prometheus::{write_process_metrics, Family};
use crate::request::{parse_path, Path, Query};

/// Upstream's buckets of apiserver_request_duration_seconds (1.33).
static DURATION_BUCKETS: [f64; 23] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// Non-resource paths recorded under their own name (in `subresource`, as upstream);
/// every other one is `other`, so clients cannot grow the series without bound.
const KNOWN_PATHS: &[&str] = &[
    "/api",
    "/apis",
    "/healthz",
    "/livez",
    "/readyz",
    "/version",
    "/metrics",
    "/openapi/v2",
    "/openapi/v3",
];

/// The counters and histograms of every request this server answered.
#[derive(Debug)]
pub struct RequestMetrics {
    total: Family,
    duration: Family,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics {
            total: Family::counter(
                "apiserver_request_total",
                "[STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
                &["verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component", "code"],
            ),
            duration: Family::histogram(
                "apiserver_request_duration_seconds",
                "[STABLE] Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
                &["verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component"],
                &DURATION_BUCKETS,
            ),
        }
    }
}

/// What a request is, as the metrics label it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels {
    pub verb: String,
    pub dry_run: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub scope: String,
}

impl Labels {
    /// Labels a request as upstream's RequestInfo and MonitorRequest do: LIST, WATCH,
    /// APPLY and DELETECOLLECTION told from GET, PATCH and DELETE; scope `resource`
    /// for a named object or a create, `namespace`, `cluster`, or empty for
    /// non-resource paths.
    pub fn of(method: &Method, uri: &http::Uri, content_type: &str) -> Labels {
        let query = Query::parse(uri.query());
        let dry_run = query.get("dryRun").unwrap_or("").to_string();
        match parse_path(uri.path()) {
            Path::Resource(p) => {
                let named = p.name.is_some();
                let verb = if *method == Method::GET && p.is_watch(&query) {
                    "WATCH"
                } else if *method == Method::GET && !named {
                    "LIST"
                } else if *method == Method::PATCH
                    && content_type.starts_with("application/apply-patch")
                {
                    "APPLY"
                } else if *method == Method::DELETE && !named {
                    "DELETECOLLECTION"
                } else {
                    method.as_str()
                }
                .to_string();
                let scope = if named || *method == Method::POST {
                    "resource"
                } else if p.namespace.is_some() {
                    "namespace"
                } else {
                    "cluster"
                };
                Labels {
                    verb,
                    dry_run,
                    group: p.group,
                    version: p.version,
                    resource: p.resource,
                    subresource: p.subresource.unwrap_or_default(),
                    scope: scope.into(),
                }
            }
            _ => {
                let path = uri.path().trim_end_matches('/');
                let known = if KNOWN_PATHS.contains(&path) {
                    path
                } else if path.starts_with("/apis/") || path.starts_with("/api/") {
                    "/apis/*"
                } else {
                    "other"
                };
                Labels {
                    verb: method.as_str().to_string(),
                    dry_run,
                    subresource: known.into(),
                    ..Default::default()
                }
            }
        }
    }
}

impl RequestMetrics {
    /// Counts one answered request.
    pub fn record(&self, labels: &Labels, code: u16, elapsed: Duration) {
        let code = code.to_string();
        let mut values = vec![
            ("verb", labels.verb.as_str()),
            ("dry_run", labels.dry_run.as_str()),
            ("group", labels.group.as_str()),
            ("version", labels.version.as_str()),
            ("resource", labels.resource.as_str()),
            ("subresource", labels.subresource.as_str()),
            ("scope", labels.scope.as_str()),
            ("component", "apiserver"),
        ];
        self.duration.observe(&values, elapsed.as_secs_f64());
        values.push(("code", &code));
        self.total.inc(&values);
    }

    /// The `/metrics` text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.duration.write(&mut out);
        self.total.write(&mut out);
        write_process_metrics(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_labelled_with_upstreams_verbs_and_scopes() {
        let cases = [
            (
                "list in a namespace",
                Method::GET,
                "/api/v1/namespaces/d/pods",
                "",
                ("LIST", "", "pods", "", "namespace"),
            ),
            (
                "list everywhere",
                Method::GET,
                "/apis/apps/v1/deployments",
                "",
                ("LIST", "apps", "deployments", "", "cluster"),
            ),
            (
                "get",
                Method::GET,
                "/api/v1/namespaces/d/pods/p",
                "",
                ("GET", "", "pods", "", "resource"),
            ),
            (
                "watch",
                Method::GET,
                "/api/v1/pods?watch=true",
                "",
                ("WATCH", "", "pods", "", "cluster"),
            ),
            (
                "create",
                Method::POST,
                "/api/v1/namespaces/d/pods",
                "",
                ("POST", "", "pods", "", "resource"),
            ),
            (
                "apply",
                Method::PATCH,
                "/apis/apps/v1/namespaces/d/deployments/x",
                "application/apply-patch+yaml",
                ("APPLY", "apps", "deployments", "", "resource"),
            ),
            (
                "status",
                Method::PUT,
                "/api/v1/namespaces/d/pods/p/status",
                "",
                ("PUT", "", "pods", "status", "resource"),
            ),
            (
                "deletecollection",
                Method::DELETE,
                "/api/v1/namespaces/d/pods",
                "",
                ("DELETECOLLECTION", "", "pods", "", "namespace"),
            ),
            (
                "health",
                Method::GET,
                "/healthz",
                "",
                ("GET", "", "", "/healthz", ""),
            ),
            (
                "anything else",
                Method::GET,
                "/nope/x",
                "",
                ("GET", "", "", "other", ""),
            ),
        ];
        for (name, method, uri, ctype, (verb, group, resource, sub, scope)) in cases {
            let l = Labels::of(&method, &uri.parse().unwrap(), ctype);
            assert_eq!(
                (
                    l.verb.as_str(),
                    l.group.as_str(),
                    l.resource.as_str(),
                    l.subresource.as_str(),
                    l.scope.as_str()
                ),
                (verb, group, resource, sub, scope),
                "{name}"
            );
        }
    }
}
