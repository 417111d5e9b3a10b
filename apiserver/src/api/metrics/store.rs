//! The samples metrics.k8s.io answers from, kept in memory as metrics-server keeps them:
//! for the node and every container the last two readings; CPU is the rate between
//! them (so the window is the last scrape interval), memory the last working set. An
//! object with one reading so far, or whose counter started again (a restarted
//! container), has no rate yet and is left out of answers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::parse::{NodeScrape, Point};

/// The last two readings of one counter.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Series {
    prev: Option<Point>,
    last: Point,
}

impl Series {
    /// The series after a new reading: the old last reading becomes the previous one
    /// unless the counter restarted or the reading is not newer.
    fn next(old: Option<&Series>, new: Point) -> Series {
        match old {
            Some(old) if old.last.timestamp_ms == new.timestamp_ms => *old,
            Some(old)
                if old.last.timestamp_ms < new.timestamp_ms
                    && old.last.start_seconds == new.start_seconds
                    && old.last.cpu_seconds <= new.cpu_seconds =>
            {
                Series {
                    prev: Some(old.last),
                    last: new,
                }
            }
            _ => Series {
                prev: None,
                last: new,
            },
        }
    }

    fn usage(&self) -> Option<Usage> {
        let prev = self.prev?;
        let window_ms = self.last.timestamp_ms - prev.timestamp_ms;
        if window_ms <= 0 {
            return None;
        }
        let cores = (self.last.cpu_seconds - prev.cpu_seconds) / (window_ms as f64 / 1000.0);
        Some(Usage {
            nano_cores: (cores * 1e9).max(0.0) as u64,
            memory_bytes: self.last.memory_bytes.max(0.0) as u64,
            timestamp_ms: self.last.timestamp_ms,
            window_ms,
        })
    }
}

/// What is served for one node or container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub nano_cores: u64,
    pub memory_bytes: u64,
    pub timestamp_ms: i64,
    pub window_ms: i64,
}

#[derive(Default, Debug)]
struct NodeSeries {
    node: Option<Series>,
    pods: BTreeMap<(String, String), BTreeMap<String, Series>>,
}

/// Every node's series; replaced node by node as scrapes arrive.
#[derive(Default, Debug)]
pub struct Samples {
    nodes: Mutex<HashMap<String, NodeSeries>>,
}

impl Samples {
    /// Takes in one scrape of `node`. Pods the node no longer reports are forgotten.
    pub fn record(&self, node: &str, scrape: NodeScrape) {
        let mut nodes = self.nodes.lock().expect("metrics lock poisoned");
        let old = nodes.remove(node).unwrap_or_default();
        let mut new = NodeSeries {
            node: scrape.node.map(|p| Series::next(old.node.as_ref(), p)),
            pods: BTreeMap::new(),
        };
        for (pod, containers) in scrape.pods {
            let before = old.pods.get(&pod);
            let series = containers
                .into_iter()
                .map(|(name, p)| {
                    let prev = before.and_then(|b| b.get(&name));
                    let s = Series::next(prev, p);
                    (name, s)
                })
                .collect();
            new.pods.insert(pod, series);
        }
        nodes.insert(node.to_string(), new);
    }

    /// Forgets nodes that are gone.
    pub fn retain_nodes(&self, keep: impl Fn(&str) -> bool) {
        let mut nodes = self.nodes.lock().expect("metrics lock poisoned");
        nodes.retain(|name, _| keep(name));
    }

    pub fn node(&self, node: &str) -> Option<Usage> {
        let nodes = self.nodes.lock().expect("metrics lock poisoned");
        nodes.get(node)?.node.as_ref()?.usage()
    }

    /// A pod's containers (by name) when every one of them has a rate; the window and
    /// timestamp are the longest and latest among them.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Vec<(String, Usage)>> {
        let nodes = self.nodes.lock().expect("metrics lock poisoned");
        let key = (namespace.to_string(), name.to_string());
        let containers = nodes.values().find_map(|n| n.pods.get(&key))?;
        let usages: Option<Vec<(String, Usage)>> = containers
            .iter()
            .map(|(c, s)| Some((c.clone(), s.usage()?)))
            .collect();
        usages.filter(|u| !u.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(cpu: f64, mem: f64, ts: i64, start: f64) -> Point {
        Point {
            cpu_seconds: cpu,
            memory_bytes: mem,
            timestamp_ms: ts,
            start_seconds: start,
        }
    }

    fn scrape(node: Option<Point>, containers: &[(&str, Point)]) -> NodeScrape {
        let mut s = NodeScrape {
            node,
            ..Default::default()
        };
        for (c, p) in containers {
            s.pods
                .entry(("ns".into(), "web".into()))
                .or_default()
                .insert(c.to_string(), *p);
        }
        s
    }

    #[test]
    fn cpu_is_the_rate_over_the_last_scrape_interval_and_one_sample_gives_nothing() {
        let samples = Samples::default();
        samples.record("n1", scrape(Some(point(100.0, 1e9, 10_000, 0.0)), &[]));
        assert_eq!(samples.node("n1"), None, "one sample: omitted");
        samples.record("n1", scrape(Some(point(103.0, 2e9, 25_000, 0.0)), &[]));
        samples.record("n1", scrape(Some(point(106.0, 3e9, 40_000, 0.0)), &[]));
        // 3 core-seconds over the last 15 s: 0.2 cores.
        assert_eq!(
            samples.node("n1"),
            Some(Usage {
                nano_cores: 200_000_000,
                memory_bytes: 3_000_000_000,
                timestamp_ms: 40_000,
                window_ms: 15_000
            })
        );
    }

    #[test]
    fn pod_rates_follow_each_containers_own_series() {
        let cases = [
            (
                "two samples of every container",
                vec![("a", point(1.0, 10.0, 1000, 5.0))],
                vec![("a", point(1.5, 20.0, 2000, 5.0))],
                Some(vec![("a", 500_000_000u64, 20u64)]),
            ),
            (
                "a restarted container has no rate yet",
                vec![("a", point(10.0, 10.0, 1000, 5.0))],
                vec![("a", point(0.5, 20.0, 2000, 9.0))],
                None,
            ),
            (
                "a container seen once keeps its pod out",
                vec![("a", point(1.0, 10.0, 1000, 5.0))],
                vec![
                    ("a", point(1.5, 20.0, 2000, 5.0)),
                    ("b", point(1.0, 20.0, 2000, 5.0)),
                ],
                None,
            ),
            (
                "the same reading twice changes nothing",
                vec![("a", point(1.0, 10.0, 1000, 5.0))],
                vec![("a", point(1.0, 10.0, 1000, 5.0))],
                None,
            ),
        ];
        for (name, first, second, want) in cases {
            let samples = Samples::default();
            samples.record("n1", scrape(None, &first));
            samples.record("n1", scrape(None, &second));
            let got = samples.pod("ns", "web").map(|cs| {
                cs.into_iter()
                    .map(|(c, u)| (c, u.nano_cores, u.memory_bytes))
                    .collect::<Vec<_>>()
            });
            let want = want.map(|w| {
                w.into_iter()
                    .map(|(c, cpu, mem)| (c.to_string(), cpu, mem))
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, want, "{name}");
        }
    }
}
