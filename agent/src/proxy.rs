//! The service proxy: programs Services into this agent's own nftables table, as
//! kube-proxy's nftables mode does. (Being built for issue 16; the body lands with it.)

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use crate::network::ipam::Cidr;
use crate::services::ClusterState;

/// What the proxy needs to know about this node and cluster.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub node_name: String,
    /// `--cluster-cidr`: pod traffic from inside it is not masqueraded to ClusterIPs.
    pub cluster_cidr: Cidr,
    /// `--service-cidr` (unioned with the watched ServiceCIDR objects).
    pub service_cidr: Cidr,
    /// The cluster DNS address this agent serves itself; the proxy lets it through.
    pub cluster_dns: Ipv4Addr,
    /// The one nftables table (family `ip`) the proxy owns.
    pub nft_table: String,
    /// `--metrics-bind-address`, or none.
    pub metrics: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the service proxy is not built yet")]
    NotBuilt,
}

/// Runs the proxy until the agent stops. `synced` is fired after the first full sync.
pub async fn run(
    config: ProxyConfig,
    state: Arc<ClusterState>,
    synced: tokio::sync::oneshot::Sender<()>,
) -> Result<(), Error> {
    let _ = (config, state, synced);
    Err(Error::NotBuilt)
}

/// Removes the proxy's nftables table (`kybern agent --reset`); absent is fine.
pub async fn remove_table(table: &str) -> Result<(), Error> {
    let _ = table;
    Err(Error::NotBuilt)
}
