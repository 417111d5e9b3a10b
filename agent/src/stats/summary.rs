//! The Summary (`/stats/summary`) in upstream's stats/v1alpha1 JSON shape.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use super::cgroup::Usage;
use super::{PodCgroups, Stats};

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    pub node: NodeStats,
    pub pods: Vec<PodStats>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_name: String,
    #[serde(flatten)]
    pub usage: Sampled,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodReference,
    pub containers: Vec<ContainerStats>,
    #[serde(flatten)]
    pub usage: Sampled,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PodReference {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    #[serde(flatten)]
    pub usage: Sampled,
}

/// What the node, a pod and a container each report: since when, and their CPU and
/// memory.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Sampled {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    pub time: Time,
    /// The rate since the previous reading; absent on the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    pub usage_core_nano_seconds: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub time: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_set_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_faults: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major_page_faults: Option<u64>,
}

impl Stats {
    /// The node's Summary: the node, then each of `pods` with its containers. A
    /// container whose cgroup is gone (it just exited) is listed without figures.
    pub fn summary(&self, pods: &[PodCgroups]) -> Summary {
        let now = Timestamp::now();
        let node = self.host.node();
        // Rates are kept only for the cgroups still asked about.
        let mut keys: std::collections::HashSet<&str> = pods
            .iter()
            .flat_map(|p| std::iter::once(&p.cgroup).chain(p.containers.iter().map(|c| &c.cgroup)))
            .map(String::as_str)
            .collect();
        keys.insert(&self.node_name);
        self.previous
            .lock()
            .expect("stats lock poisoned")
            .retain(|k, _| keys.contains(k.as_str()));
        Summary {
            node: NodeStats {
                node_name: self.node_name.clone(),
                usage: self.sampled(
                    &self.node_name,
                    self.host
                        .boot_time()
                        .and_then(|s| Timestamp::from_second(s).ok()),
                    now,
                    &node,
                ),
            },
            pods: pods
                .iter()
                .map(|pod| PodStats {
                    pod_ref: PodReference {
                        name: pod.name.clone(),
                        namespace: pod.namespace.clone(),
                        uid: pod.uid.clone(),
                    },
                    containers: pod
                        .containers
                        .iter()
                        .map(|c| ContainerStats {
                            name: c.name.clone(),
                            usage: self.sampled(
                                &c.cgroup,
                                c.start_time,
                                now,
                                &self.host.cgroup(&c.cgroup),
                            ),
                        })
                        .collect(),
                    usage: self.sampled(
                        &pod.cgroup,
                        pod.start_time,
                        now,
                        &self.host.cgroup(&pod.cgroup),
                    ),
                })
                .collect(),
        }
    }

    /// One level's figures: `key` names its CPU rate's previous reading.
    fn sampled(
        &self,
        key: &str,
        start: Option<Timestamp>,
        now: Timestamp,
        usage: &Usage,
    ) -> Sampled {
        Sampled {
            start_time: start.map(Time),
            cpu: self.cpu(key, now, usage),
            memory: memory(now, usage),
        }
    }

    fn cpu(&self, key: &str, now: Timestamp, usage: &Usage) -> Option<CpuStats> {
        Some(CpuStats {
            time: Time(now),
            usage_nano_cores: self.nano_cores(key, now, usage.cpu_ns),
            usage_core_nano_seconds: usage.cpu_ns?,
        })
    }
}

fn memory(now: Timestamp, usage: &Usage) -> Option<MemoryStats> {
    usage.memory_usage?;
    Some(MemoryStats {
        time: Time(now),
        available_bytes: usage.available,
        usage_bytes: usage.memory_usage,
        working_set_bytes: usage.working_set,
        rss_bytes: usage.rss,
        page_faults: usage.page_faults,
        major_page_faults: usage.major_page_faults,
    })
}
