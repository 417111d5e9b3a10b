//! The whole node agent: register the node, wait for its podCIDR, prepare the pod network,
//! keep the Lease and status fresh, and run the pods bound to it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kube::Client;

use crate::network::Network;
use crate::node::{self, NodeConfig};
use crate::pods::{self, BackoffConfig, ClusterDns, PodContext};
use crate::runtime::Runtime;
use crate::volumes::VolumeHost;

mod net;
pub use net::{install_safety_routes, Disabled, NetConfig};

/// How the agent is set up (`kybern agent` flags).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    pub node_ip: Ipv4Addr,
    /// Pods' volumes, logs and the network's state live below this.
    pub data_dir: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub dns: ClusterDns,
    /// Service proxy, cluster DNS server, safety and peer routes.
    pub net: NetConfig,
    /// `containerd://1.6.20`.
    pub runtime_version: String,
    pub backoff: BackoffConfig,
    /// Static pod manifests (`--pod-manifest-path`).
    pub static_pods_dir: Option<PathBuf>,
    /// The hard eviction thresholds (`--eviction-hard`).
    pub eviction: node::Eviction,
    /// Local-path volumes' folders live below this (`--local-path-root`); a deleted
    /// volume's folder is removed only from here.
    pub local_path_root: PathBuf,
    /// The node API (`--node-api-listen`), or none.
    pub node_api: Option<NodeApiConfig>,
    /// Container output and logs (the node API reads logs and attaches through it).
    pub io: Option<Arc<crate::logs::ContainerIo>>,
}

/// Where the node API listens and the cluster CA its clients' certificates (and its own)
/// come from.
#[derive(Debug, Clone)]
pub struct NodeApiConfig {
    pub listen: std::net::SocketAddr,
    pub ca: crate::nodeapi::cert::ClusterCa,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Node(#[from] node::Error),
    #[error("setting up the pod network for {cidr}: {source}")]
    Network {
        cidr: String,
        source: crate::network::Error,
    },
    #[error(transparent)]
    Pods(#[from] pods::Error),
    #[error("binding the node API on {addr} (is another agent or kubelet using it? pick another with --node-api-listen): {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Runs the agent until the pod watch ends (it does not, short of the process ending).
pub async fn run(
    client: Client,
    config: AgentConfig,
    runtime: Arc<dyn Runtime>,
    network: Arc<dyn Network>,
) -> Result<(), Error> {
    // Safety first: no cluster address may leave by the default route, from before the
    // node exists until after the agent is gone.
    net::install_safety_routes(network.as_ref(), &config.net)
        .await
        .map_err(|source| Error::Network {
            cidr: config.net.cluster_cidr.to_string(),
            source,
        })?;
    // Bound first: the Node reports the port the API server reaches it at.
    let node_api = match &config.node_api {
        Some(c) => {
            let listener = tokio::net::TcpListener::bind(c.listen)
                .await
                .map_err(|source| Error::Listen {
                    addr: c.listen,
                    source,
                })?;
            let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
            Some((listener, port, c.ca.clone()))
        }
        None => None,
    };
    let node_config = NodeConfig {
        api_port: node_api.as_ref().map_or(0, |(_, port, _)| *port),
        name: config.node_name.clone(),
        ip: config.node_ip,
        data_dir: config.data_dir.clone(),
        labels: config.labels.clone(),
        runtime_version: config.runtime_version.clone(),
        eviction: config.eviction,
    };
    let readiness: Arc<Mutex<Result<(), String>>> = Arc::new(Mutex::new(Err(
        "container runtime network not ready: waiting for the node's podCIDR".into(),
    )));
    let initial = readiness.lock().expect("not poisoned").clone();
    let registered = node::register(&client, &node_config, &initial).await?;
    crate::pods::events::record_node(
        &client,
        &config.node_name,
        "Normal",
        "Starting",
        "Starting kubelet.",
    )
    .await;
    let heartbeat = {
        let (client, node_config, registered, readiness) = (
            client.clone(),
            node_config.clone(),
            registered.clone(),
            readiness.clone(),
        );
        tokio::spawn(node::heartbeat_forever(
            client,
            node_config,
            registered,
            move || {
                readiness
                    .lock()
                    .map(|r| r.clone())
                    .unwrap_or_else(|_| Err("agent state poisoned".into()))
            },
        ))
    };
    let _heartbeat = AbortOnDrop(heartbeat);
    let name_for_stats = config.node_name.clone();
    let _node_api = node_api.map(|(listener, port, ca)| {
        let (client, name, ip) = (client.clone(), config.node_name.clone(), config.node_ip);
        let dir = config.data_dir.join("pki");
        let api = Arc::new(crate::nodeapi::NodeApi {
            runtime: runtime.clone(),
            io: config.io.clone(),
            network: network.clone(),
            stats: crate::stats::Stats::host(&name_for_stats),
            cgroup_parent: CGROUP_PARENT.into(),
        });
        AbortOnDrop(tokio::spawn(async move {
            match crate::nodeapi::cert::server_config(&client, &name, ip, &dir, &ca).await {
                Ok(serving) => {
                    tracing::info!(port, "serving the node API");
                    let tls = serving.tls.clone();
                    tokio::join!(crate::nodeapi::serve(listener, tls, api), serving.rotate());
                }
                Err(e) => {
                    tracing::error!(error = %e, "the node API is not served: logs, exec and port-forward to this node's pods fail");
                }
            }
        }))
    });
    let _cleanup = AbortOnDrop(tokio::spawn(crate::local_path::run(
        client.clone(),
        [config.node_name.clone()],
        crate::local_path::Disk::Host {
            root: config.local_path_root.clone(),
        },
    )));
    let state = config
        .net
        .needs_watches()
        .then(crate::services::ClusterState::new);
    let _watches = state
        .as_ref()
        .map(|state| AbortOnDrop(crate::services::watch::spawn(client.clone(), state.clone())));
    let cidr = node::wait_for_pod_cidr(&client, &config.node_name).await?;
    network.init(&cidr).await.map_err(|source| Error::Network {
        cidr: cidr.clone(),
        source,
    })?;
    let _services: Vec<AbortOnDrop> = net::start(
        &config.net,
        &config.node_name,
        &config.dns.domain,
        network.clone(),
        state,
    )
    .await
    .map_err(|source| Error::Network {
        cidr: cidr.clone(),
        source,
    })?
    .into_iter()
    .map(AbortOnDrop)
    .collect();
    {
        *readiness.lock().expect("not poisoned") = Ok(());
    }
    // Report Ready now rather than at the next tick (against what is stored, so the
    // other conditions keep their transition times).
    let stored = kube::Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .get_status(&config.node_name)
        .await
        .ok()
        .and_then(|n| n.status);
    if let Err(e) = node::report(
        &client,
        &node_config,
        &registered,
        &Ok(()),
        stored.as_ref(),
        true,
    )
    .await
    {
        tracing::warn!(error = %e, "reporting the node ready; the heartbeat retries");
    }
    tracing::info!(node = %config.node_name, %cidr, "node ready");
    let sink = Arc::new(pods::status::ApiStatusSink::new(
        client.clone(),
        &config.node_name,
    ));
    let ctx = Arc::new(PodContext {
        client: client.clone(),
        node_name: config.node_name.clone(),
        node_ip: config.node_ip,
        runtime,
        network,
        volumes: VolumeHost {
            client,
            pods_dir: config.data_dir.join("pods"),
            node_name: config.node_name.clone(),
        },
        dns: config.dns.clone(),
        logs_dir: config.data_dir.join("logs"),
        cgroup_parent: CGROUP_PARENT.into(),
        backoff: config.backoff,
        static_pods_dir: config.static_pods_dir.clone(),
        sink,
    });
    pods::run(ctx).await?;
    Ok(())
}

/// The cgroup every pod's containers go below.
const CGROUP_PARENT: &str = "/kybern";

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
