//! The cluster DNS server every agent runs for its node's pods, answering from the shared
//! store as CoreDNS's `kubernetes` plugin does. (Being built for issue 16; the body lands
//! with it.)

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use crate::services::ClusterState;

#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// The address served (`--cluster-dns`), on port 53 over UDP and TCP.
    pub listen: Ipv4Addr,
    /// `--cluster-domain` ("cluster.local").
    pub domain: String,
    /// `--dns-upstream`; empty: the nameservers of `resolv_conf`.
    pub upstreams: Vec<SocketAddr>,
    /// `--resolv-conf`.
    pub resolv_conf: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the cluster DNS server is not built yet")]
    NotBuilt,
}

/// Serves until the agent stops. `bound` is fired once both sockets listen.
pub async fn run(
    config: DnsConfig,
    state: Arc<ClusterState>,
    bound: tokio::sync::oneshot::Sender<()>,
) -> Result<(), Error> {
    let _ = (config, state, bound);
    Err(Error::NotBuilt)
}
