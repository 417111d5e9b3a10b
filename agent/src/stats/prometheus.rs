//! `/metrics/resource`: the kubelet's resource metrics in the Prometheus text format
//! 0.0.4, every sample stamped with the time it was read (milliseconds), as upstream.

use std::fmt::Write;

use k8s_openapi::jiff::Timestamp;

use super::{PodCgroups, Stats};

/// The Content-Type of [`Stats::resource_metrics`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// (name, type, help) in the order upstream's collector describes them.
const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
    ),
    (
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set of the container in bytes",
    ),
    (
        "container_start_time_seconds",
        "gauge",
        "Start time of the container since unix epoch in seconds",
    ),
    (
        "node_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the node in core-seconds",
    ),
    (
        "node_memory_working_set_bytes",
        "gauge",
        "Current working set of the node in bytes",
    ),
    (
        "pod_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
    ),
    (
        "pod_memory_working_set_bytes",
        "gauge",
        "Current working set of the pod in bytes",
    ),
    (
        "resource_scrape_error",
        "gauge",
        "1 if there was an error while getting container metrics, 0 otherwise",
    ),
];

/// A label value escaped as the text format wants (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Stats {
    /// The text of `/metrics/resource` for the node and `pods`.
    pub fn resource_metrics(&self, pods: &[PodCgroups]) -> String {
        let now = Timestamp::now();
        let ms = now.as_millisecond();
        // family -> its sample lines
        let mut lines: Vec<Vec<String>> = vec![Vec::new(); FAMILIES.len()];
        let mut push = |family: usize, labels: &str, value: f64| {
            lines[family].push(format!("{}{labels} {value} {ms}", FAMILIES[family].0));
        };
        for pod in pods {
            let (ns, name) = (escape(&pod.namespace), escape(&pod.name));
            for c in &pod.containers {
                // A container whose cgroup is gone (it just exited) is left out, as
                // the kubelet leaves out what cAdvisor no longer has.
                let usage = self.host.cgroup(&c.cgroup);
                let labels = format!(
                    "{{container=\"{}\",namespace=\"{ns}\",pod=\"{name}\"}}",
                    escape(&c.name)
                );
                if let Some(cpu) = usage.cpu_ns {
                    push(0, &labels, cpu as f64 / 1e9);
                }
                if let Some(ws) = usage.working_set {
                    push(1, &labels, ws as f64);
                }
                if let Some(start) = c.start_time {
                    push(2, &labels, start.as_second() as f64);
                }
            }
            let usage = self.host.cgroup(&pod.cgroup);
            let labels = format!("{{namespace=\"{ns}\",pod=\"{name}\"}}");
            if let Some(cpu) = usage.cpu_ns {
                push(5, &labels, cpu as f64 / 1e9);
            }
            if let Some(ws) = usage.working_set {
                push(6, &labels, ws as f64);
            }
        }
        let node = self.host.node();
        if let Some(cpu) = node.cpu_ns {
            push(3, "", cpu as f64 / 1e9);
        }
        if let Some(ws) = node.working_set {
            push(4, "", ws as f64);
        }
        let error = node.is_empty();
        let mut out = String::new();
        for (i, (name, kind, help)) in FAMILIES.iter().enumerate() {
            if name == &"resource_scrape_error" {
                let _ = writeln!(out, "# HELP {name} [STABLE] {help}\n# TYPE {name} {kind}");
                let _ = writeln!(out, "{name} {}", u8::from(error));
                continue;
            }
            if lines[i].is_empty() {
                continue;
            }
            let _ = writeln!(out, "# HELP {name} [STABLE] {help}\n# TYPE {name} {kind}");
            for line in &lines[i] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}
