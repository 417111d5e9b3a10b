//! The node network settings of an agent (`kybern agent` flags) and the configurations of
//! the service proxy and the cluster DNS server built from them.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::dns::DnsConfig;
use crate::network::ipam::Cidr;
use crate::network::{peers, HostRouting, Network};
use crate::proxy::ProxyConfig;
use crate::services::ClusterState;

/// How long pods wait for the DNS server to bind and the proxy's first sync.
const SERVICES_WAIT: Duration = Duration::from_secs(10);

/// How the node's network services are set up.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// `--cluster-cidr`.
    pub cluster_cidr: Cidr,
    /// `--service-cidr` (unioned with the watched ServiceCIDR objects).
    pub service_cidr: Cidr,
    /// `--cluster-dns`: the address this agent serves DNS on.
    pub cluster_dns: Ipv4Addr,
    /// `--resolv-conf`: the host's resolver configuration.
    pub resolv_conf: PathBuf,
    /// `--dns-upstream`; empty: the nameservers of `resolv_conf`.
    pub dns_upstreams: Vec<SocketAddr>,
    /// The nftables table the proxy owns.
    pub nft_table: String,
    pub disabled: Disabled,
    /// Where the proxy and DNS server serve /metrics, or nowhere.
    pub metrics: Option<SocketAddr>,
}

/// The node network services switched off (`--disable-proxy`, `--disable-dns`,
/// `--disable-peer-routes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Disabled {
    pub proxy: bool,
    pub dns: bool,
    pub peer_routes: bool,
}

impl Disabled {
    /// Nothing runs: no proxy, no DNS server, no peer routes.
    pub const ALL: Self = Self {
        proxy: true,
        dns: true,
        peer_routes: true,
    };
}

impl Default for NetConfig {
    /// The defaults of the flags with every service switched off: what tests with fake
    /// networks run (a proxy there would program the host's own nftables).
    fn default() -> Self {
        Self {
            cluster_cidr: Cidr::parse("10.42.0.0/16").expect("a valid range"),
            service_cidr: Cidr::parse("10.43.0.0/16").expect("a valid range"),
            cluster_dns: Ipv4Addr::new(10, 43, 0, 10),
            resolv_conf: "/etc/resolv.conf".into(),
            dns_upstreams: Vec::new(),
            nft_table: "kybern".into(),
            disabled: Disabled::ALL,
            metrics: None,
        }
    }
}

impl NetConfig {
    /// Whether anything needs the watches of Services, EndpointSlices, Nodes and
    /// ServiceCIDRs.
    pub fn needs_watches(&self) -> bool {
        self.disabled != Disabled::ALL
    }

    /// The safety routes for the flags' ranges and the watched ServiceCIDRs; with
    /// `bridge_ready`, also the host's way to the service ranges through the bridge.
    pub fn host_routing(&self, watched: &[Cidr], bridge_ready: bool) -> HostRouting {
        let mut services = vec![self.service_cidr];
        for cidr in watched {
            if !services.contains(cidr) {
                services.push(*cidr);
            }
        }
        let mut unreachable = services.clone();
        if !unreachable.contains(&self.cluster_cidr) {
            unreachable.push(self.cluster_cidr);
        }
        HostRouting {
            unreachable,
            local_service_cidrs: if bridge_ready { services } else { Vec::new() },
        }
    }

    pub fn proxy_config(&self, node_name: &str) -> ProxyConfig {
        ProxyConfig {
            node_name: node_name.to_string(),
            cluster_cidr: self.cluster_cidr,
            service_cidr: self.service_cidr,
            cluster_dns: self.cluster_dns,
            nft_table: self.nft_table.clone(),
            metrics: self.metrics,
        }
    }

    pub fn dns_config(&self, domain: &str) -> DnsConfig {
        DnsConfig {
            listen: self.cluster_dns,
            domain: domain.to_string(),
            upstreams: self.dns_upstreams.clone(),
            resolv_conf: self.resolv_conf.clone(),
        }
    }
}

/// Installs the safety routes for the flags' ranges: the first thing an agent does, before
/// it registers its node or runs any pod.
pub async fn install_safety_routes(
    network: &dyn Network,
    net: &NetConfig,
) -> Result<(), crate::network::Error> {
    network
        .sync_host_routing(&net.host_routing(&[], false))
        .await
}

/// Once the bridge exists: the DNS address on it, the host's route to the service ranges,
/// then the tasks that follow the store (host routing for new ServiceCIDRs, peer routes,
/// proxy, DNS). Returns those tasks and waits until DNS is bound and the proxy synced once,
/// or [`SERVICES_WAIT`] passed, so pods' first lookups find a server.
pub(super) async fn start(
    net: &NetConfig,
    node_name: &str,
    domain: &str,
    network: Arc<dyn Network>,
    state: Option<Arc<ClusterState>>,
) -> Result<Vec<JoinHandle<()>>, crate::network::Error> {
    if !net.disabled.dns {
        network.add_local_address(net.cluster_dns).await?;
    }
    let watched = state
        .as_ref()
        .map(|s| s.service_cidrs())
        .unwrap_or_default();
    network
        .sync_host_routing(&net.host_routing(&watched, true))
        .await?;
    let Some(state) = state else {
        return Ok(Vec::new());
    };
    let mut tasks = vec![tokio::spawn(follow_service_cidrs(
        net.clone(),
        network.clone(),
        state.clone(),
    ))];
    if !net.disabled.peer_routes {
        tasks.push(tokio::spawn(peers::run(
            state.subscribe(),
            network.clone(),
            node_name.to_string(),
            net.cluster_cidr,
        )));
    }
    let mut waits = Vec::new();
    if !net.disabled.proxy {
        let (synced, wait) = oneshot::channel();
        waits.push(("the service proxy's first sync", wait));
        let (config, state) = (net.proxy_config(node_name), state.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::proxy::run(config, state, synced).await {
                tracing::error!(error = %e, "the service proxy stopped; ClusterIPs do not work on this node");
            }
        }));
    }
    if !net.disabled.dns {
        let (bound, wait) = oneshot::channel();
        waits.push(("the cluster DNS server", wait));
        let (config, state) = (net.dns_config(domain), state.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::dns::run(config, state, bound).await {
                tracing::error!(error = %e, "the cluster DNS server stopped; pods on this node resolve no names");
            }
        }));
    }
    let deadline = tokio::time::Instant::now() + SERVICES_WAIT;
    for (what, wait) in waits {
        // A sender dropped unfired (the task ended) means there is nothing to wait for.
        if tokio::time::timeout_at(deadline, wait).await.is_err() {
            tracing::warn!("{what} is not ready after {SERVICES_WAIT:?}; starting pods anyway");
        }
    }
    Ok(tasks)
}

/// Re-syncs the host routing whenever ServiceCIDR objects come or go: a new range gets
/// its safety route and the host's route to it.
async fn follow_service_cidrs(net: NetConfig, network: Arc<dyn Network>, state: Arc<ClusterState>) {
    let mut changes = state.subscribe();
    loop {
        let c = changes.next().await;
        if !(c.service_cidrs || c.became_synced) {
            continue;
        }
        let want = net.host_routing(&state.service_cidrs(), true);
        if let Err(e) = network.sync_host_routing(&want).await {
            tracing::warn!(error = %e, "routing the service ranges; retried at the next change");
        }
    }
}
