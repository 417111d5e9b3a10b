//! Resource arithmetic: Quantity parsing and what a pod requests / a node offers.
//!
//! CPU is kept in millicores and everything else in whole units (bytes, pods, devices),
//! as upstream's `framework.Resource` does, so comparisons are exact integers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;

use super::objects::{Node, Pod};
pub use controllers::shared::quantity::parse_quantity;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const PODS: &str = "pods";

/// A pod that requests no cpu/memory still counts as 100m and 200Mi when spreading
/// load (upstream `schedutil.DefaultMilliCPURequest` / `DefaultMemoryRequest`).
pub const DEFAULT_MILLI_CPU: i64 = 100;
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// Cpu, memory, ephemeral storage, pod count and extended resources.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    pub scalar: BTreeMap<String, i64>,
}

impl Resource {
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resource {
        let mut r = Resource::default();
        for (name, q) in list.into_iter().flatten() {
            r.set(name, q);
        }
        r
    }

    fn set(&mut self, name: &str, q: &Quantity) {
        let scale = if name == CPU { 1000 } else { 1 };
        let v = parse_quantity(&q.0, scale).unwrap_or(0);
        match name {
            CPU => self.milli_cpu = v,
            MEMORY => self.memory = v,
            EPHEMERAL_STORAGE => self.ephemeral_storage = v,
            PODS => self.pods = v,
            // hugepages and extended resources (vendor.io/gpu) compare as plain counts.
            _ if name.contains('/') || name.starts_with("hugepages-") => {
                self.scalar.insert(name.to_string(), v);
            }
            _ => {}
        }
    }

    pub fn add(&mut self, o: &Resource) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        self.pods += o.pods;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, o: &Resource) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        self.pods -= o.pods;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Component-wise max (init containers run one at a time, before the app containers).
    pub fn max_with(&mut self, o: &Resource) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    pub fn get(&self, name: &str) -> i64 {
        match name {
            CPU => self.milli_cpu,
            MEMORY => self.memory,
            EPHEMERAL_STORAGE => self.ephemeral_storage,
            PODS => self.pods,
            _ => self.scalar.get(name).copied().unwrap_or(0),
        }
    }
}

fn requests(r: Option<&ResourceRequirements>) -> Resource {
    Resource::from_list(r.and_then(|r| r.requests.as_ref()))
}

/// What a pod needs: max(sum of containers, max of init containers) + overhead.
/// A restartable init container (sidecar) keeps running, so it adds to the sum.
/// Example: containers 200m + 300m, init 400m, overhead 50m → max(500m, 400m) + 50m = 550m.
pub fn pod_requests(pod: &Pod) -> Resource {
    let mut r = Resource::default();
    let Some(spec) = &pod.spec else { return r };
    for c in &spec.containers {
        r.add(&requests(c.resources.as_deref()));
    }
    let mut sidecars = Resource::default();
    let mut init_max = Resource::default();
    for c in spec.init_containers.iter().flatten() {
        let req = requests(c.resources.as_deref());
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&req);
            r.add(&req);
        } else {
            let mut with_sidecars = req;
            with_sidecars.add(&sidecars);
            init_max.max_with(&with_sidecars);
        }
    }
    r.max_with(&init_max);
    r.add(&Resource::from_list(spec.overhead.as_ref()));
    r
}

/// Cpu and memory with upstream's non-zero defaults filled in for containers that
/// request none, used by the spreading scores so empty pods still weigh something.
pub fn non_zero_requests(pod: &Pod) -> (i64, i64) {
    let Some(spec) = &pod.spec else { return (0, 0) };
    let (mut cpu, mut mem) = (0, 0);
    for c in &spec.containers {
        let r = requests(c.resources.as_deref());
        let has = |n: &str| {
            c.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .is_some_and(|m| m.contains_key(n))
        };
        cpu += if has(CPU) {
            r.milli_cpu
        } else {
            DEFAULT_MILLI_CPU
        };
        mem += if has(MEMORY) {
            r.memory
        } else {
            DEFAULT_MEMORY
        };
    }
    let overhead = Resource::from_list(spec.overhead.as_ref());
    (cpu + overhead.milli_cpu, mem + overhead.memory)
}

pub fn node_allocatable(node: &Node) -> Resource {
    let status = node.status.as_ref();
    Resource::from_list(
        status
            .and_then(|s| s.allocatable.as_ref())
            .or_else(|| status.and_then(|s| s.capacity.as_ref())),
    )
}
