//! Node registration: names, addresses, the Node object and its status, and the
//! create-or-update a kubelet does when it starts (an existing node is updated, never
//! duplicated).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use tokio::sync::Semaphore;

use super::ipam::{self, Prefix};
use super::{is_status, lease, Context, Result, SimConfig, FIELD_MANAGER};

/// One registered simulated node.
#[derive(Clone, Debug)]
pub struct SimNode {
    pub name: String,
    pub index: usize,
    pub uid: String,
    /// Its InternalIP (10.255.x.y; never contacted).
    pub ip: Ipv4Addr,
    /// The /24 its pods get addresses from (its spec.podCIDR).
    pub pod_prefix: Prefix,
}

impl SimNode {
    pub fn pod_cidr(&self) -> String {
        let [a, b, c] = self.pod_prefix;
        format!("{a}.{b}.{c}.0/24")
    }
}

/// `sim-07` for index 7 of 100 nodes: zero-padded to the width of N-1 so that names sort
/// in index order.
pub fn node_name(prefix: &str, index: usize, count: usize) -> String {
    let width = count.saturating_sub(1).to_string().len();
    format!("{prefix}{index:0width$}")
}

/// The node's InternalIP: 10.255.0.1, 10.255.0.2, …, skipping .0 and .255 of each /24.
pub(super) fn node_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 255, (index / 254) as u8, (index % 254 + 1) as u8)
}

/// The /24 of 10.42.0.0/16 a node gets when nothing assigned it one before.
pub(super) fn default_pod_prefix(index: usize) -> Prefix {
    [10, 42, index as u8]
}

pub(super) fn labels(name: &str) -> BTreeMap<String, String> {
    [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("node.kubernetes.io/instance-type", "simulated"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The Node a simulated kubelet creates: labels and its pod CIDR. Status goes separately
/// through nodes/status.
pub(super) fn node_object(name: &str, index: usize) -> Node {
    let [a, b, c] = default_pod_prefix(index);
    let cidr = format!("{a}.{b}.{c}.0/24");
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(name)),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(cidr.clone()),
            pod_cidrs: Some(vec![cidr]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The status a healthy kubelet reports: capacity (all of it allocatable), Ready and no
/// pressure, addresses, and what it runs. `kubelet_version` is the apiserver's version,
/// as upstream nodes match their control plane.
pub(super) fn node_status(
    config: &SimConfig,
    name: &str,
    ip: Ipv4Addr,
    kubelet_version: &str,
    now: &Time,
) -> NodeStatus {
    let resources: BTreeMap<String, Quantity> = [
        ("cpu", &config.cpu),
        ("memory", &config.memory),
        ("pods", &config.pods),
        ("ephemeral-storage", &config.ephemeral_storage),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v.clone())))
    .collect();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    let id = format!("{:016x}", super::status::fnv64(name.as_bytes()));
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
            ),
        ]),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: name.into(),
            },
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".into(),
            operating_system: "linux".into(),
            os_image: "kybern simulated node".into(),
            kernel_version: "simulated".into(),
            container_runtime_version: "simulated://1.0".into(),
            kubelet_version: kubelet_version.into(),
            kube_proxy_version: String::new(),
            machine_id: id.clone(),
            system_uuid: id.clone(),
            boot_id: id,
            ..Default::default()
        }),
        phase: None,
        ..Default::default()
    }
}

/// Registers every node (bounded concurrency) and its lease.
pub(super) async fn register_all(
    client: &Client,
    config: &SimConfig,
    limit: &Semaphore,
) -> Result<Vec<SimNode>> {
    let version = {
        let _permit = limit.acquire().await;
        client
            .apiserver_version()
            .await
            .context(|| "reading the apiserver's version".into())?
            .git_version
    };
    let now = super::status::now();
    let mut nodes: Vec<SimNode> = stream::iter(0..config.nodes)
        .map(|index| register(client, config, limit, index, &version, &now))
        .buffer_unordered(config.max_in_flight.max(1))
        .try_collect()
        .await?;
    nodes.sort_by_key(|n| n.index);
    Ok(nodes)
}

async fn register(
    client: &Client,
    config: &SimConfig,
    limit: &Semaphore,
    index: usize,
    version: &str,
    now: &Time,
) -> Result<SimNode> {
    let api: Api<Node> = Api::all(client.clone());
    let name = node_name(&config.name_prefix, index, config.nodes);
    let ip = node_ip(index);
    let created = {
        let _permit = limit.acquire().await;
        match api
            .create(
                &PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                },
                &node_object(&name, index),
            )
            .await
        {
            Err(e) if is_status(&e, 409) => None,
            other => Some(other.context(|| format!("creating node {name}"))?),
        }
    };
    let node = match created {
        Some(node) => node,
        None => {
            // Already registered (an earlier run): bring the labels up to date, keep the
            // rest (spec.podCIDR may have come from node IPAM and cannot change).
            let _permit = limit.acquire().await;
            let patch = json!({ "metadata": { "labels": labels(&name) } });
            api.patch(
                &name,
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                },
                &Patch::Merge(&patch),
            )
            .await
            .context(|| format!("updating node {name}"))?
        }
    };
    {
        let _permit = limit.acquire().await;
        let status = json!({ "status": node_status(config, &name, ip, version, now) });
        api.patch_status(
            &name,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &Patch::Merge(&status),
        )
        .await
        .context(|| format!("reporting the status of node {name}"))?;
    }
    let pod_prefix = node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_deref())
        .and_then(ipam::parse_slash24)
        .unwrap_or_else(|| default_pod_prefix(index));
    let sim = SimNode {
        name,
        index,
        uid: node.metadata.uid.unwrap_or_default(),
        ip,
        pod_prefix,
    };
    lease::ensure(client, config, limit, &sim).await?;
    Ok(sim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_zero_padded_to_the_width_of_the_last_index() {
        assert_eq!(node_name("sim-", 0, 1), "sim-0");
        assert_eq!(node_name("sim-", 2, 3), "sim-2");
        assert_eq!(node_name("sim-", 7, 100), "sim-07");
        assert_eq!(node_name("sim-", 99, 100), "sim-99");
        assert_eq!(node_name("x", 5, 101), "x005");
        let mut names: Vec<String> = (0..101).map(|i| node_name("sim-", i, 101)).collect();
        let in_order = names.clone();
        names.sort();
        assert_eq!(names, in_order);
    }

    #[test]
    fn node_addresses_stay_in_the_test_range_and_skip_network_and_broadcast() {
        assert_eq!(node_ip(0), Ipv4Addr::new(10, 255, 0, 1));
        assert_eq!(node_ip(253), Ipv4Addr::new(10, 255, 0, 254));
        assert_eq!(node_ip(254), Ipv4Addr::new(10, 255, 1, 1));
        assert_eq!(node_ip(255), Ipv4Addr::new(10, 255, 1, 2));
    }

    #[test]
    fn a_registered_node_is_ready_with_capacity_and_no_pressure() {
        let now = super::super::status::now();
        let status = node_status(&SimConfig::new(3), "sim-1", node_ip(1), "v1.33.0", &now);
        let conditions = status.conditions.unwrap();
        let get = |t: &str| {
            conditions
                .iter()
                .find(|c| c.type_ == t)
                .unwrap_or_else(|| panic!("no {t}"))
        };
        assert_eq!(get("Ready").status, "True");
        assert_eq!(get("Ready").reason.as_deref(), Some("KubeletReady"));
        assert_eq!(
            get("Ready").message.as_deref(),
            Some("kubelet is posting ready status")
        );
        for t in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
            assert_eq!(get(t).status, "False", "{t}");
        }
        let capacity = status.capacity.unwrap();
        assert_eq!(capacity["cpu"].0, "32");
        assert_eq!(capacity["memory"].0, "128Gi");
        assert_eq!(capacity["pods"].0, "110");
        assert!(capacity.contains_key("ephemeral-storage"));
        assert_eq!(status.allocatable.unwrap(), capacity);
        let addresses = status.addresses.unwrap();
        assert_eq!(addresses[0].type_, "InternalIP");
        assert_eq!(addresses[0].address, "10.255.0.2");
        assert_eq!(addresses[1].address, "sim-1");
        let info = status.node_info.unwrap();
        assert_eq!(info.kubelet_version, "v1.33.0");
        assert_eq!(info.container_runtime_version, "simulated://1.0");
        assert_eq!(
            (info.architecture.as_str(), info.operating_system.as_str()),
            ("amd64", "linux")
        );
    }

    #[test]
    fn a_node_object_carries_the_well_known_labels_and_its_own_slash_24() {
        let node = node_object("sim-3", 3);
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "sim-3");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
        assert_eq!(labels["node.kubernetes.io/instance-type"], "simulated");
        assert_eq!(node.spec.unwrap().pod_cidr.as_deref(), Some("10.42.3.0/24"));
    }
}
