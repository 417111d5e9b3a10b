//! Reading a node's `/metrics/resource` (Prometheus text format 0.0.4) into the
//! samples metrics-server keeps: the node's and each container's cumulative CPU
//! seconds, working set bytes and the time of the reading; a container's start time
//! tells a restart (whose counter began again) from a sample to take a rate against.

use std::collections::BTreeMap;

/// One reading of cumulative CPU and the working set.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Point {
    /// Cumulative CPU in core-seconds.
    pub cpu_seconds: f64,
    pub memory_bytes: f64,
    /// When it was read, milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// The container's start, seconds since the epoch (0 for the node or when unknown).
    pub start_seconds: f64,
}

/// Everything one scrape of one node gave.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeScrape {
    pub node: Option<Point>,
    /// (namespace, pod) -> container -> point.
    pub pods: BTreeMap<(String, String), BTreeMap<String, Point>>,
}

#[derive(Default)]
struct Partial {
    cpu: Option<(f64, i64)>,
    memory: Option<(f64, i64)>,
    start: f64,
}

impl Partial {
    /// A point only when both CPU and memory were reported, stamped with the CPU
    /// sample's time (the one a rate is taken over).
    fn point(&self) -> Option<Point> {
        let (cpu_seconds, timestamp_ms) = self.cpu?;
        let (memory_bytes, _) = self.memory?;
        Some(Point {
            cpu_seconds,
            memory_bytes,
            timestamp_ms,
            start_seconds: self.start,
        })
    }
}

/// Parses the text; `now_ms` stamps samples that carry no timestamp. Lines that are
/// not samples of the families metrics-server reads are skipped.
pub fn parse(text: &str, now_ms: i64) -> NodeScrape {
    let mut node = Partial::default();
    let mut containers: BTreeMap<(String, String, String), Partial> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, labels, rest)) = split_sample(line) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let Some(value) = fields.next().and_then(parse_value) else {
            continue;
        };
        let ts = fields
            .next()
            .and_then(|t| t.parse::<i64>().ok())
            .unwrap_or(now_ms);
        let target = match name {
            "node_cpu_usage_seconds_total" | "node_memory_working_set_bytes" => &mut node,
            "container_cpu_usage_seconds_total"
            | "container_memory_working_set_bytes"
            | "container_start_time_seconds" => {
                let get = |k: &str| {
                    labels
                        .iter()
                        .find(|(key, _)| key == k)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let key = (get("namespace"), get("pod"), get("container"));
                if key.0.is_empty() || key.1.is_empty() || key.2.is_empty() {
                    continue;
                }
                containers.entry(key).or_default()
            }
            _ => continue,
        };
        match name {
            "node_cpu_usage_seconds_total" | "container_cpu_usage_seconds_total" => {
                target.cpu = Some((value, ts))
            }
            "container_start_time_seconds" => target.start = value,
            _ => target.memory = Some((value, ts)),
        }
    }
    let mut out = NodeScrape {
        node: node.point(),
        ..Default::default()
    };
    for ((ns, pod, container), partial) in containers {
        if let Some(point) = partial.point() {
            out.pods
                .entry((ns, pod))
                .or_default()
                .insert(container, point);
        }
    }
    out
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => None,
        _ => s.parse().ok(),
    }
}

/// A sample line's metric name, labels (values unescaped) and what follows them.
type Sample<'a> = (&'a str, Vec<(String, String)>, &'a str);

/// `name{k="v",...} rest` into its parts.
fn split_sample(line: &str) -> Option<Sample<'_>> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    let rest = &line[name_end..];
    let Some(body) = rest.strip_prefix('{') else {
        return Some((name, Vec::new(), rest));
    };
    let mut labels = Vec::new();
    let mut chars = body.char_indices().peekable();
    loop {
        // Skip separators, then read `key="value"` or the closing brace.
        while let Some(&(_, c)) = chars.peek() {
            if c == ',' || c.is_whitespace() {
                chars.next();
            } else {
                break;
            }
        }
        let (start, c) = chars.next()?;
        if c == '}' {
            return Some((name, labels, &body[start + 1..]));
        }
        let mut key_end = start;
        for (i, c) in chars.by_ref() {
            if c == '=' {
                key_end = i;
                break;
            }
        }
        let key = body[start..key_end].trim().to_string();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            let (_, c) = chars.next()?;
            match c {
                '"' => break,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        }
        labels.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubelets_resource_metrics_parse_into_node_and_container_points() {
        let text = r#"# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",namespace="default",pod="web-1"} 1.5 1700000000123
container_cpu_usage_seconds_total{container="side \"car\"",namespace="default",pod="web-1"} 0.25 1700000000123
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="app",namespace="default",pod="web-1"} 1.048576e+07 1700000000123
container_memory_working_set_bytes{container="side \"car\"",namespace="default",pod="web-1"} 2048 1700000000123
container_start_time_seconds{container="app",namespace="default",pod="web-1"} 1.6999e+09 1700000000123
container_memory_working_set_bytes{container="lonely",namespace="default",pod="web-1"} 2048 1700000000123
node_cpu_usage_seconds_total 357.5 1700000000100
node_memory_working_set_bytes 1.5e+09 1700000000100
resource_scrape_error 0
"#;
        let got = parse(text, 0);
        assert_eq!(
            got.node,
            Some(Point {
                cpu_seconds: 357.5,
                memory_bytes: 1.5e9,
                timestamp_ms: 1_700_000_000_100,
                start_seconds: 0.0
            })
        );
        let pod = &got.pods[&("default".to_string(), "web-1".to_string())];
        assert_eq!(
            pod.keys().collect::<Vec<_>>(),
            ["app", "side \"car\""],
            "a container with memory but no CPU is left out"
        );
        assert_eq!(
            pod["app"],
            Point {
                cpu_seconds: 1.5,
                memory_bytes: 10_485_760.0,
                timestamp_ms: 1_700_000_000_123,
                start_seconds: 1.6999e9
            }
        );
    }

    #[test]
    fn samples_without_a_timestamp_are_stamped_with_the_scrape_time() {
        let got = parse(
            "node_cpu_usage_seconds_total 1\nnode_memory_working_set_bytes 2\n",
            42,
        );
        assert_eq!(got.node.map(|p| p.timestamp_ms), Some(42));
    }
}
