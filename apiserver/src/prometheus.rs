//! A small in-house Prometheus registry: counter and histogram families keyed by label
//! values, written in the text exposition format 0.0.4 (labels sorted by name, as
//! Go's client writes them), plus the process metrics every Go component exports.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// The Content-Type of [`Family::write`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family; `L` label names, values given in the same order on each call.
#[derive(Debug)]
pub struct Family {
    name: &'static str,
    help: &'static str,
    /// Label names, sorted.
    labels: Vec<&'static str>,
    /// Bucket upper bounds for a histogram; `None` for a counter.
    buckets: Option<&'static [f64]>,
    series: Mutex<BTreeMap<Vec<String>, Series>>,
}

#[derive(Debug, Default, Clone)]
struct Series {
    /// Counter value, or the histogram's count.
    count: u64,
    sum: f64,
    /// Per-bucket (not cumulative) counts.
    buckets: Vec<u64>,
}

impl Family {
    /// `labels` in any order; they are written sorted.
    pub fn counter(name: &'static str, help: &'static str, labels: &[&'static str]) -> Self {
        Self::new(name, help, labels, None)
    }

    pub fn histogram(
        name: &'static str,
        help: &'static str,
        labels: &[&'static str],
        buckets: &'static [f64],
    ) -> Self {
        Self::new(name, help, labels, Some(buckets))
    }

    fn new(
        name: &'static str,
        help: &'static str,
        labels: &[&'static str],
        buckets: Option<&'static [f64]>,
    ) -> Self {
        let mut labels = labels.to_vec();
        labels.sort_unstable();
        Family {
            name,
            help,
            labels,
            buckets,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// `values` as (name, value) pairs; names not declared are ignored, missing ones empty.
    fn key(&self, values: &[(&str, &str)]) -> Vec<String> {
        self.labels
            .iter()
            .map(|l| {
                values
                    .iter()
                    .find(|(k, _)| k == l)
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Adds one to a counter series.
    pub fn inc(&self, values: &[(&str, &str)]) {
        let key = self.key(values);
        let mut series = self.series.lock().expect("metrics lock poisoned");
        series.entry(key).or_default().count += 1;
    }

    /// Records one observation in a histogram series.
    pub fn observe(&self, values: &[(&str, &str)], value: f64) {
        let key = self.key(values);
        let bounds = self.buckets.unwrap_or(&[]);
        let mut series = self.series.lock().expect("metrics lock poisoned");
        let s = series.entry(key).or_insert_with(|| Series {
            buckets: vec![0; bounds.len()],
            ..Default::default()
        });
        s.count += 1;
        s.sum += value;
        if let Some(i) = bounds.iter().position(|b| value <= *b) {
            s.buckets[i] += 1;
        }
    }

    fn labels_text(&self, key: &[String], extra: Option<(&str, &str)>) -> String {
        let mut pairs: Vec<String> = self
            .labels
            .iter()
            .zip(key)
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        if let Some((k, v)) = extra {
            pairs.push(format!("{k}=\"{v}\""));
        }
        if pairs.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", pairs.join(","))
        }
    }

    /// Appends the family in the text format (nothing when it has no series yet).
    pub fn write(&self, out: &mut String) {
        let series = self.series.lock().expect("metrics lock poisoned").clone();
        if series.is_empty() {
            return;
        }
        let kind = if self.buckets.is_some() {
            "histogram"
        } else {
            "counter"
        };
        let (name, help) = (self.name, self.help);
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (key, s) in &series {
            let Some(bounds) = self.buckets else {
                let _ = writeln!(out, "{name}{} {}", self.labels_text(key, None), s.count);
                continue;
            };
            let mut cumulative = 0;
            for (bound, n) in bounds.iter().zip(&s.buckets) {
                cumulative += n;
                let le = format!("{bound}");
                let labels = self.labels_text(key, Some(("le", &le)));
                let _ = writeln!(out, "{name}_bucket{labels} {cumulative}");
            }
            let labels = self.labels_text(key, Some(("le", "+Inf")));
            let _ = writeln!(out, "{name}_bucket{labels} {}", s.count);
            let plain = self.labels_text(key, None);
            let _ = writeln!(out, "{name}_sum{plain} {}", s.sum);
            let _ = writeln!(out, "{name}_count{plain} {}", s.count);
        }
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// process_cpu_seconds_total, process_resident_memory_bytes, process_start_time_seconds,
/// process_open_fds and process_max_fds from `/proc/self` (what Go's process collector
/// reports); nothing where `/proc` cannot be read.
pub fn write_process_metrics(out: &mut String) {
    const TICKS: f64 = 100.0; // USER_HZ
    const PAGE: u64 = 4096;
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name: state is field 3, utime 14, stime
    // 15, starttime 22 (1-based over the whole line).
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let mut gauge = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(v) = value {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
    };
    gauge(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        field(14)
            .zip(field(15))
            .map(|(u, s)| (u + s) as f64 / TICKS),
    );
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok());
    gauge(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        rss.map(|pages| (pages * PAGE) as f64),
    );
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())
    });
    gauge(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        boot.zip(field(22))
            .map(|(b, start)| b as f64 + start as f64 / TICKS),
    );
    gauge(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as f64),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_writes_cumulative_buckets_sum_and_count_with_sorted_labels() {
        static BUCKETS: [f64; 3] = [0.1, 0.5, 1.0];
        let h = Family::histogram("d_seconds", "Help.", &["verb", "code"], &BUCKETS);
        h.observe(&[("verb", "GET"), ("code", "200")], 0.05);
        h.observe(&[("code", "200"), ("verb", "GET")], 0.3);
        h.observe(&[("verb", "GET"), ("code", "200")], 7.0);
        let mut out = String::new();
        h.write(&mut out);
        assert_eq!(
            out,
            "# HELP d_seconds Help.\n# TYPE d_seconds histogram\n\
             d_seconds_bucket{code=\"200\",verb=\"GET\",le=\"0.1\"} 1\n\
             d_seconds_bucket{code=\"200\",verb=\"GET\",le=\"0.5\"} 2\n\
             d_seconds_bucket{code=\"200\",verb=\"GET\",le=\"1\"} 2\n\
             d_seconds_bucket{code=\"200\",verb=\"GET\",le=\"+Inf\"} 3\n\
             d_seconds_sum{code=\"200\",verb=\"GET\"} 7.35\n\
             d_seconds_count{code=\"200\",verb=\"GET\"} 3\n"
        );
    }

    #[test]
    fn counters_count_per_label_set_and_escape_values() {
        let c = Family::counter("c_total", "Help.", &["a"]);
        c.inc(&[("a", "x\"y")]);
        c.inc(&[("a", "x\"y")]);
        c.inc(&[("a", "z")]);
        let mut out = String::new();
        c.write(&mut out);
        assert!(out.contains("c_total{a=\"x\\\"y\"} 2\n"), "{out}");
        assert!(out.contains("c_total{a=\"z\"} 1\n"), "{out}");
    }
}
