//! Resource statistics of the node, its pods and their containers, as the kubelet's
//! `/stats/summary` (upstream's stats/v1alpha1 Summary, the fields metrics-server and
//! `kubectl top` rely on) and `/metrics/resource` (Prometheus text with upstream's
//! metric names, what metrics-server and kybern's own metrics.k8s.io scrape).
//!
//! CPU is cumulative nanoseconds from the cgroup (v2 `cpu.stat` usage_usec, or v1
//! `cpuacct.usage`), memory the working set as cAdvisor defines it (`memory.current`
//! minus `inactive_file`); the node's come from `/proc/stat` and `/proc/meminfo`. The
//! caller, which knows its pods, names their cgroups:
//!
//! ```no_run
//! use agent::stats::{ContainerCgroup, PodCgroups, Stats};
//! let stats = Stats::host("node-1");
//! let pods = vec![PodCgroups {
//!     namespace: "default".into(),
//!     name: "web".into(),
//!     uid: "1234".into(),
//!     cgroup: "/kybern/1234".into(),
//!     start_time: None,
//!     containers: vec![ContainerCgroup {
//!         name: "app".into(),
//!         cgroup: "/kybern/1234/abcd".into(),
//!         start_time: None,
//!     }],
//! }];
//! let summary = stats.summary(&pods); // serialize with serde_json for /stats/summary
//! let text = stats.resource_metrics(&pods); // text/plain; version=0.0.4
//! # let _ = (summary, text);
//! ```

mod cgroup;
mod prometheus;
mod summary;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use k8s_openapi::jiff::Timestamp;

pub use prometheus::CONTENT_TYPE;
pub use summary::{
    ContainerStats, CpuStats, MemoryStats, NodeStats, PodReference, PodStats, Summary,
};

/// One pod the node runs and where its cgroups are (relative to the cgroup root, as
/// `ContainerConfig::cgroup_path`).
#[derive(Clone, Debug, Default)]
pub struct PodCgroups {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The pod's cgroup, the parent of its containers' (`<cgroup parent>/<uid>`).
    pub cgroup: String,
    pub start_time: Option<Timestamp>,
    pub containers: Vec<ContainerCgroup>,
}

#[derive(Clone, Debug, Default)]
pub struct ContainerCgroup {
    pub name: String,
    /// `ContainerConfig::cgroup_path` of the running container.
    pub cgroup: String,
    pub start_time: Option<Timestamp>,
}

/// Reads the node's statistics. Keeps the previous CPU sample of each cgroup, so the
/// Summary can carry `usageNanoCores` (a rate) beside the cumulative figure.
#[derive(Debug)]
pub struct Stats {
    node_name: String,
    host: cgroup::Host,
    previous: Mutex<HashMap<String, (Timestamp, u64)>>,
}

impl Stats {
    /// The host's statistics: `/sys/fs/cgroup` and `/proc`.
    pub fn host(node_name: &str) -> Self {
        Self::new(node_name, "/sys/fs/cgroup", "/proc")
    }

    /// Statistics read from another cgroup root and `/proc` (tests lay out a fake tree).
    pub fn new(
        node_name: &str,
        cgroup_root: impl Into<PathBuf>,
        proc_root: impl Into<PathBuf>,
    ) -> Self {
        Stats {
            node_name: node_name.to_string(),
            host: cgroup::Host {
                cgroup_root: cgroup_root.into(),
                proc_root: proc_root.into(),
            },
            previous: Mutex::new(HashMap::new()),
        }
    }

    /// The rate in nanocores since the last reading of `key`, remembering this one.
    fn nano_cores(&self, key: &str, now: Timestamp, cpu_ns: Option<u64>) -> Option<u64> {
        let cpu_ns = cpu_ns?;
        let mut previous = self.previous.lock().expect("stats lock poisoned");
        let rate = previous.get(key).and_then(|&(then, before)| {
            let nanos = now.duration_since(then).as_nanos();
            (nanos > 0 && cpu_ns >= before)
                .then(|| ((cpu_ns - before) as u128 * 1_000_000_000 / nanos as u128) as u64)
        });
        previous.insert(key.to_string(), (now, cpu_ns));
        rate
    }
}
