//! The real node: registration with what the host has (capacity and allocatable, addresses,
//! the well-known labels, nodeInfo), the Lease heartbeat every 10 s, and the node's
//! conditions (Ready and the memory, disk and PID pressures) reported when they change and
//! at least every minute, as the kubelet does with node leases.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;

pub mod eviction;
pub mod extended;

pub use eviction::Eviction;

pub const FIELD_MANAGER: &str = "kybern-agent";
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How often the Lease is renewed, and for how long it holds (the kubelet's figures).
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// The longest a node's status goes unreported (the kubelet's nodeStatusReportFrequency is
/// 5 minutes; a minute keeps heartbeat times in `kubectl describe node` recent).
pub const STATUS_REPORT: Duration = Duration::from_secs(60);
/// Pods a node accepts, as the kubelet's default maxPods.
pub const MAX_PODS: u32 = 110;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Api {
        context: String,
        source: kube::Error,
    },
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn api_err(context: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let context = context.into();
    move |source| Error::Api { context, source }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// What the host offers, read once at start (and again for each status report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub memory_available_bytes: u64,
    pub disk_bytes: u64,
    pub disk_available_bytes: u64,
    pub pids: u64,
    pub pid_max: u64,
}

impl HostFacts {
    /// Reads /proc and the file system that holds `data_dir`.
    pub fn read(data_dir: &Path) -> HostFacts {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let (disk_bytes, disk_available_bytes) = disk_space(data_dir).unwrap_or((0, 0));
        HostFacts {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            memory_bytes: meminfo_kib(&meminfo, "MemTotal") * 1024,
            memory_available_bytes: meminfo_kib(&meminfo, "MemAvailable") * 1024,
            disk_bytes,
            disk_available_bytes,
            pids: std::fs::read_dir("/proc").map_or(0, |d| {
                d.flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .bytes()
                            .all(|b| b.is_ascii_digit())
                    })
                    .count() as u64
            }),
            pid_max: read_trimmed("/proc/sys/kernel/pid_max")
                .and_then(|s| s.parse().ok())
                .unwrap_or(32768),
        }
    }
}

/// A value in KiB from /proc/meminfo ("MemTotal:  16384000 kB").
fn meminfo_kib(meminfo: &str, key: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Total and available bytes of the file system holding `path` (from df, which is in every
/// base system; the workspace has no statvfs binding and forbids unsafe code).
fn disk_space(path: &Path) -> Option<(u64, u64)> {
    let out = std::process::Command::new("df")
        .args(["-P", "-B1"])
        .arg(path)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.lines().nth(1)?.split_whitespace().collect();
    Some((fields.get(1)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The address other hosts reach this one at: the source address the kernel picks for
/// leaving the host. A UDP connect sends nothing; it only asks the routing table. Loopback
/// when the host has no route out.
pub fn primary_ip() -> Ipv4Addr {
    let probe = || -> std::io::Result<IpAddr> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
        Ok(socket.local_addr()?.ip())
    };
    match probe() {
        Ok(IpAddr::V4(ip)) if !ip.is_unspecified() => ip,
        _ => Ipv4Addr::LOCALHOST,
    }
}

/// How the node is set up.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub ip: Ipv4Addr,
    pub data_dir: PathBuf,
    /// Extra labels (`--node-labels`), on top of the well-known ones.
    pub labels: BTreeMap<String, String>,
    /// `containerd://1.6.20`.
    pub runtime_version: String,
    /// The hard eviction thresholds (`--eviction-hard`).
    pub eviction: Eviction,
    /// The node API's port, reported as `daemonEndpoints.kubeletEndpoint.Port` (the API
    /// server's logs, exec and proxies go there); 0 when it serves none.
    pub api_port: u16,
}

pub fn labels(config: &NodeConfig) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", config.name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch()),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", arch()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    labels.extend(config.labels.clone());
    labels
}

/// GOARCH spelling of this machine's architecture.
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Capacity and allocatable: allocatable leaves aside the hard eviction thresholds (by
/// default 100Mi of memory and 10% of the disk), as the kubelet does.
pub fn resources(
    facts: &HostFacts,
    eviction: &Eviction,
) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let q = |s: String| Quantity(s);
    let capacity: BTreeMap<String, Quantity> = [
        ("cpu", q(facts.cpus.to_string())),
        ("memory", q(format!("{}Ki", facts.memory_bytes / 1024))),
        (
            "ephemeral-storage",
            q(format!("{}Ki", facts.disk_bytes / 1024)),
        ),
        ("pods", q(MAX_PODS.to_string())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut allocatable = capacity.clone();
    let memory = facts.memory_bytes.saturating_sub(eviction.memory_bytes);
    allocatable.insert("memory".into(), q(format!("{}Ki", memory / 1024)));
    let disk = facts.disk_bytes - facts.disk_bytes * eviction.disk_percent / 100;
    allocatable.insert("ephemeral-storage".into(), q(disk.to_string()));
    (capacity, allocatable)
}

/// The four conditions, with upstream's reasons and messages. `ready` is `Err(message)`
/// while the runtime or the pod network is not ready.
pub fn conditions(
    facts: &HostFacts,
    eviction: &Eviction,
    ready: &Result<(), String>,
    now: &Time,
) -> Vec<NodeCondition> {
    let condition = |type_: &str, status: bool, reason: &str, message: &str| NodeCondition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    let memory_pressure = facts.memory_available_bytes < eviction.memory_bytes;
    let disk_pressure = facts.disk_bytes > 0
        && facts.disk_available_bytes * 100 < facts.disk_bytes * eviction.disk_percent;
    // The kubelet's pid.available threshold is unset by default; report pressure when the
    // host is within 10% of pid_max, where forks start failing.
    let pid_pressure = facts.pids * 10 > facts.pid_max * 9;
    vec![
        if memory_pressure {
            condition(
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            )
        } else {
            condition(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            )
        },
        if disk_pressure {
            condition(
                "DiskPressure",
                true,
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
            )
        } else {
            condition(
                "DiskPressure",
                false,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            )
        },
        if pid_pressure {
            condition(
                "PIDPressure",
                true,
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            )
        } else {
            condition(
                "PIDPressure",
                false,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            )
        },
        match ready {
            Ok(()) => condition(
                "Ready",
                true,
                "KubeletReady",
                "kubelet is posting ready status",
            ),
            Err(message) => condition("Ready", false, "KubeletNotReady", message),
        },
    ]
}

/// nodeInfo from the host: kernel, OS image, machine and boot IDs.
pub fn node_info(config: &NodeConfig, kubelet_version: &str) -> NodeSystemInfo {
    let os_image = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into());
    let machine_id = read_trimmed("/etc/machine-id").unwrap_or_default();
    NodeSystemInfo {
        architecture: arch().into(),
        operating_system: "linux".into(),
        os_image,
        kernel_version: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        container_runtime_version: config.runtime_version.clone(),
        kubelet_version: kubelet_version.into(),
        kube_proxy_version: String::new(),
        system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid")
            .unwrap_or_else(|| machine_id.clone()),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
        machine_id,
        ..Default::default()
    }
}

/// The version the node reports: the control plane's Kubernetes version with kybern's own,
/// as k3s reports `v1.33.1+k3s1`.
pub fn kubelet_version(apiserver_version: &str) -> String {
    format!(
        "{}+kybern-{}",
        apiserver_version
            .split('+')
            .next()
            .unwrap_or(apiserver_version),
        env!("CARGO_PKG_VERSION")
    )
}

pub fn status(
    config: &NodeConfig,
    facts: &HostFacts,
    ready: &Result<(), String>,
    kubelet_version: &str,
    now: &Time,
) -> NodeStatus {
    let (capacity, allocatable) = resources(facts, &config.eviction);
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        conditions: Some(conditions(facts, &config.eviction, ready, now)),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: config.ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: config.name.clone(),
            },
        ]),
        node_info: Some(node_info(config, kubelet_version)),
        daemon_endpoints: (config.api_port != 0).then(|| NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(config.api_port),
            }),
        }),
        ..Default::default()
    }
}

/// Keeps `last_transition_time` of conditions whose status did not change, so the node's
/// history stays true across reports.
fn keep_transitions(new: &mut [NodeCondition], old: Option<&Vec<NodeCondition>>) {
    let Some(old) = old else { return };
    for c in new {
        if let Some(prev) = old
            .iter()
            .find(|o| o.type_ == c.type_ && o.status == c.status)
        {
            c.last_transition_time = prev.last_transition_time.clone();
        }
    }
}

/// Whether a report carries news beyond heartbeat times.
fn changed(old: Option<&NodeStatus>, new: &NodeStatus) -> bool {
    let Some(old) = old else { return true };
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        (
            s.capacity,
            s.allocatable,
            s.conditions,
            s.addresses,
            s.node_info,
        )
    };
    strip(old) != strip(new)
}

fn now() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// A registered node.
#[derive(Debug, Clone)]
pub struct Registered {
    pub uid: String,
    pub kubelet_version: String,
}

/// Creates the Node, or brings an existing one's labels up to date (its spec.podCIDR may
/// have come from node IPAM and cannot change), then reports status and takes the Lease.
pub async fn register(
    client: &Client,
    config: &NodeConfig,
    ready: &Result<(), String>,
) -> Result<Registered> {
    let api: Api<Node> = Api::all(client.clone());
    let version = client
        .apiserver_version()
        .await
        .map_err(api_err("reading the apiserver's version"))?;
    let kubelet_version = kubelet_version(&version.git_version);
    let node = Node {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            labels: Some(labels(config)),
            ..Default::default()
        },
        ..Default::default()
    };
    let post = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let node = match api.create(&post, &node).await {
        Ok(node) => node,
        Err(e) if is_status(&e, 409) => {
            let patch = json!({ "metadata": { "labels": labels(config) } });
            api.patch(&config.name, &params(), &Patch::Merge(&patch))
                .await
                .map_err(api_err(format!("updating node {}", config.name)))?
        }
        Err(e) => return Err(api_err(format!("registering node {}", config.name))(e)),
    };
    let registered = Registered {
        uid: node.metadata.uid.clone().unwrap_or_default(),
        kubelet_version,
    };
    report(
        client,
        config,
        &registered,
        ready,
        node.status.as_ref(),
        true,
    )
    .await?;
    renew_lease(client, config, &registered).await?;
    Ok(registered)
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// Sends the node's status when it changed (or always, with `force`); returns whether it did.
pub async fn report(
    client: &Client,
    config: &NodeConfig,
    registered: &Registered,
    ready: &Result<(), String>,
    previous: Option<&NodeStatus>,
    force: bool,
) -> Result<bool> {
    let facts = HostFacts::read(&config.data_dir);
    let mut new = status(config, &facts, ready, &registered.kubelet_version, &now());
    if let Some(conditions) = new.conditions.as_mut() {
        keep_transitions(conditions, previous.and_then(|p| p.conditions.as_ref()));
    }
    let gone = extended::keep(&mut new, previous);
    if !force && gone.is_empty() && !changed(previous, &new) {
        return Ok(false);
    }
    let mut patch = json!({ "status": new });
    for name in gone {
        patch["status"]["allocatable"][name] = serde_json::Value::Null;
    }
    let api: Api<Node> = Api::all(client.clone());
    api.patch_status(&config.name, &params(), &Patch::Merge(&patch))
        .await
        .map_err(api_err(format!(
            "reporting the status of node {}",
            config.name
        )))?;
    let before = previous.and_then(|p| p.conditions.as_deref());
    for reason in condition_events(before, new.conditions.as_deref().unwrap_or_default()) {
        let message = format!("Node {} status is now: {reason}", config.name);
        crate::pods::events::record_node(client, &config.name, "Normal", reason, &message).await;
    }
    Ok(true)
}

/// The kubelet's events for conditions that are new or changed status: the reason
/// names the new state (`NodeHasSufficientMemory`, `NodeReady`...).
fn condition_events(old: Option<&[NodeCondition]>, new: &[NodeCondition]) -> Vec<&'static str> {
    const REASONS: &[(&str, &str, &str)] = &[
        (
            "MemoryPressure",
            "NodeHasSufficientMemory",
            "NodeHasInsufficientMemory",
        ),
        (
            "DiskPressure",
            "NodeHasNoDiskPressure",
            "NodeHasDiskPressure",
        ),
        (
            "PIDPressure",
            "NodeHasSufficientPID",
            "NodeHasInsufficientPID",
        ),
        ("Ready", "NodeNotReady", "NodeReady"),
    ];
    let status_of = |conditions: &[NodeCondition], type_: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| c.status.clone())
    };
    REASONS
        .iter()
        .filter_map(|(type_, when_false, when_true)| {
            let now = status_of(new, type_)?;
            let before = old.and_then(|o| status_of(o, type_));
            if before.as_deref() == Some(now.as_str()) {
                return None;
            }
            Some(if now == "True" {
                *when_true
            } else {
                *when_false
            })
        })
        .collect()
}

pub fn lease_object(config: &NodeConfig, registered: &Registered) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(LEASE_NAMESPACE.into()),
            owner_references: (!registered.uid.is_empty()).then(|| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: config.name.clone(),
                    uid: registered.uid.clone(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.name.clone()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..Default::default()
        }),
    }
}

/// Renews the node's Lease, creating it when missing.
pub async fn renew_lease(
    client: &Client,
    config: &NodeConfig,
    registered: &Registered,
) -> Result<()> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let lease = lease_object(config, registered);
    match api
        .patch(
            &config.name,
            &params(),
            &Patch::Merge(&json!({ "spec": lease.spec })),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => {
            let post = PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            match api.create(&post, &lease).await {
                Err(e) if is_status(&e, 409) => Ok(()),
                other => other.map(drop).map_err(api_err(format!(
                    "creating the lease of node {}",
                    config.name
                ))),
            }
        }
        Err(e) => Err(api_err(format!(
            "renewing the lease of node {}",
            config.name
        ))(e)),
    }
}

/// Renews the Lease every 10 s and reports status when it changes or a minute passed;
/// `ready` gives the current readiness. Failures are logged and retried at the next tick,
/// as the kubelet does. Runs until dropped.
pub async fn heartbeat_forever(
    client: Client,
    config: NodeConfig,
    registered: Registered,
    ready: impl Fn() -> Result<(), String> + Send,
) {
    let api: Api<Node> = Api::all(client.clone());
    let mut ticks = tokio::time::interval(LEASE_RENEW);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_report = tokio::time::Instant::now();
    loop {
        ticks.tick().await;
        if let Err(e) = renew_lease(&client, &config, &registered).await {
            tracing::warn!(error = %e, "lease renewal failed; retrying in 10s");
        }
        let previous = match api.get_status(&config.name).await {
            Ok(node) => node.status,
            Err(e) => {
                tracing::warn!(error = %e, "reading the node failed; retrying in 10s");
                continue;
            }
        };
        let force = last_report.elapsed() >= STATUS_REPORT;
        match report(
            &client,
            &config,
            &registered,
            &ready(),
            previous.as_ref(),
            force,
        )
        .await
        {
            Ok(true) => last_report = tokio::time::Instant::now(),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "node status report failed; retrying in 10s"),
        }
    }
}

/// Waits until node IPAM gave the node its spec.podCIDR, and returns it.
pub async fn wait_for_pod_cidr(client: &Client, name: &str) -> Result<String> {
    let api: Api<Node> = Api::all(client.clone());
    let cidr_of = |n: &Node| {
        n.spec
            .as_ref()
            .and_then(|s| s.pod_cidr.clone())
            .filter(|c| !c.is_empty())
    };
    if let Some(cidr) = api.get(name).await.ok().as_ref().and_then(cidr_of) {
        return Ok(cidr);
    }
    tracing::info!(
        node = name,
        "waiting for node IPAM to give this node a podCIDR"
    );
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher::watcher(api, config).boxed();
    while let Some(event) = events
        .try_next()
        .await
        .map_err(|e| Error::Other(format!("watching node {name}: {e}")))?
    {
        if let watcher::Event::Apply(n) | watcher::Event::InitApply(n) = event {
            if let Some(cidr) = cidr_of(&n) {
                return Ok(cidr);
            }
        }
    }
    Err(Error::Other(format!(
        "the watch of node {name} ended before it got a podCIDR"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> HostFacts {
        HostFacts {
            cpus: 2,
            memory_bytes: 4 << 30,
            memory_available_bytes: 2 << 30,
            disk_bytes: 100 << 30,
            disk_available_bytes: 50 << 30,
            pids: 300,
            pid_max: 32768,
        }
    }

    fn config() -> NodeConfig {
        NodeConfig {
            name: "n1".into(),
            ip: Ipv4Addr::new(192, 168, 1, 10),
            data_dir: "/tmp".into(),
            labels: [("role".to_string(), "edge".to_string())].into(),
            runtime_version: "containerd://1.6.20".into(),
            eviction: Eviction::default(),
            api_port: 10250,
        }
    }

    #[test]
    fn allocatable_leaves_aside_the_eviction_thresholds() {
        let (capacity, allocatable) = resources(&facts(), &Eviction::default());
        assert_eq!(capacity["cpu"].0, "2");
        assert_eq!(capacity["memory"].0, "4194304Ki");
        assert_eq!(allocatable["memory"].0, format!("{}Ki", 4194304 - 102400));
        assert_eq!(capacity["pods"].0, "110");
        assert_eq!(
            allocatable["ephemeral-storage"].0,
            (90u64 * (1 << 30)).to_string()
        );
    }

    #[test]
    fn pressure_conditions_follow_the_thresholds() {
        let now = now();
        let status_of = |f: &HostFacts, t: &str| {
            conditions(f, &Eviction::default(), &Ok(()), &now)
                .into_iter()
                .find(|c| c.type_ == t)
                .unwrap()
                .status
        };
        let cases = [
            (
                "plenty",
                facts(),
                [
                    ("MemoryPressure", "False"),
                    ("DiskPressure", "False"),
                    ("PIDPressure", "False"),
                ],
            ),
            (
                "memory low",
                HostFacts {
                    memory_available_bytes: 50 << 20,
                    ..facts()
                },
                [
                    ("MemoryPressure", "True"),
                    ("DiskPressure", "False"),
                    ("PIDPressure", "False"),
                ],
            ),
            (
                "disk low",
                HostFacts {
                    disk_available_bytes: 5 << 30,
                    ..facts()
                },
                [
                    ("MemoryPressure", "False"),
                    ("DiskPressure", "True"),
                    ("PIDPressure", "False"),
                ],
            ),
            (
                "pids near max",
                HostFacts {
                    pids: 30000,
                    ..facts()
                },
                [
                    ("MemoryPressure", "False"),
                    ("DiskPressure", "False"),
                    ("PIDPressure", "True"),
                ],
            ),
        ];
        for (name, f, want) in cases {
            for (t, s) in want {
                assert_eq!(status_of(&f, t), s, "{name}: {t}");
            }
        }
    }

    #[test]
    fn conditions_that_appear_or_change_status_become_the_kubelets_events() {
        let set = |statuses: &[(&str, &str)]| -> Vec<NodeCondition> {
            statuses
                .iter()
                .map(|(t, s)| NodeCondition {
                    type_: t.to_string(),
                    status: s.to_string(),
                    ..Default::default()
                })
                .collect()
        };
        let healthy = set(&[
            ("MemoryPressure", "False"),
            ("DiskPressure", "False"),
            ("PIDPressure", "False"),
            ("Ready", "True"),
        ]);
        for (name, old, new, want) in [
            (
                "first_report",
                None,
                healthy.clone(),
                vec![
                    "NodeHasSufficientMemory",
                    "NodeHasNoDiskPressure",
                    "NodeHasSufficientPID",
                    "NodeReady",
                ],
            ),
            ("no_change", Some(healthy.clone()), healthy.clone(), vec![]),
            (
                "becomes_ready",
                Some(set(&[("MemoryPressure", "False"), ("Ready", "False")])),
                set(&[("MemoryPressure", "False"), ("Ready", "True")]),
                vec!["NodeReady"],
            ),
            (
                "memory_runs_short_and_not_ready",
                Some(healthy.clone()),
                set(&[
                    ("MemoryPressure", "True"),
                    ("DiskPressure", "False"),
                    ("PIDPressure", "False"),
                    ("Ready", "False"),
                ]),
                vec!["NodeHasInsufficientMemory", "NodeNotReady"],
            ),
            (
                "unknown_after_silence_is_news",
                Some(set(&[("Ready", "Unknown")])),
                set(&[("Ready", "True")]),
                vec!["NodeReady"],
            ),
        ] {
            assert_eq!(condition_events(old.as_deref(), &new), want, "{name}");
        }
    }

    #[test]
    fn not_ready_carries_the_reason() {
        let c = conditions(
            &facts(),
            &Eviction::default(),
            &Err("network not ready".into()),
            &now(),
        );
        let ready = c.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("KubeletNotReady"));
        assert_eq!(ready.message.as_deref(), Some("network not ready"));
    }

    #[test]
    fn labels_add_the_well_known_ones_to_the_configured() {
        let l = labels(&config());
        assert_eq!(l["kubernetes.io/hostname"], "n1");
        assert_eq!(l["kubernetes.io/os"], "linux");
        assert_eq!(l["kubernetes.io/arch"], arch());
        assert_eq!(l["role"], "edge");
    }

    #[test]
    fn version_joins_the_control_plane_and_kybern() {
        assert_eq!(
            kubelet_version("v1.33.0"),
            format!("v1.33.0+kybern-{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            kubelet_version("v1.33.0+abc"),
            format!("v1.33.0+kybern-{}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn meminfo_values_are_read_in_kib() {
        let text = "MemTotal:       16384000 kB\nMemFree:  1 kB\nMemAvailable:   8000000 kB\n";
        assert_eq!(meminfo_kib(text, "MemTotal"), 16384000);
        assert_eq!(meminfo_kib(text, "MemAvailable"), 8000000);
        assert_eq!(meminfo_kib(text, "Missing"), 0);
    }

    #[test]
    fn only_heartbeat_times_are_no_news() {
        let c = config();
        let f = facts();
        let a = status(&c, &f, &Ok(()), "v", &Time(Timestamp::UNIX_EPOCH));
        let b = status(&c, &f, &Ok(()), "v", &now());
        let mut b_same_transitions = b.clone();
        keep_transitions(
            b_same_transitions.conditions.as_mut().unwrap(),
            a.conditions.as_ref(),
        );
        assert!(!changed(Some(&a), &b_same_transitions));
        let not_ready = status(&c, &f, &Err("x".into()), "v", &now());
        assert!(changed(Some(&a), &not_ready));
        assert!(changed(None, &a));
    }

    #[test]
    fn host_facts_are_read_from_this_machine() {
        let f = HostFacts::read(Path::new("/"));
        assert!(f.cpus >= 1);
        assert!(f.memory_bytes > f.memory_available_bytes && f.memory_available_bytes > 0);
        assert!(f.disk_bytes > 0 && f.pids > 0 && f.pid_max > 0);
    }
}
