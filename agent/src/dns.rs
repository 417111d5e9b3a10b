//! The cluster DNS server every agent runs for its node's pods, answering from the shared
//! store as CoreDNS's `kubernetes` plugin does (Kubernetes DNS specification 1.0.1) and
//! forwarding every other name to the host's resolvers through a small cache.
//!
//! - `zone`: the records of the cluster zone, computed per query from the store;
//! - `handler`: one request in, one reply (or "forward this") out, no sockets;
//! - `forward` and `cache`: the upstream resolvers;
//! - `serve`: the UDP and TCP loops.

mod cache;
mod forward;
mod handler;
mod serve;
mod zone;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use crate::services::ClusterState;

pub use serve::Server;

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
    #[error("cluster DNS: cannot listen on {addr} ({proto}): {source}")]
    Bind {
        addr: SocketAddr,
        proto: &'static str,
        source: std::io::Error,
    },
    #[error("cluster DNS: {domain:?} is not a DNS domain: {reason}")]
    Domain { domain: String, reason: String },
    #[error("cluster DNS: {0}")]
    Io(#[from] std::io::Error),
}

/// The DNS port every resolver in a pod asks.
pub const PORT: u16 = 53;

/// Serves until the agent stops. `bound` is fired once both sockets listen.
pub async fn run(
    config: DnsConfig,
    state: Arc<ClusterState>,
    bound: tokio::sync::oneshot::Sender<()>,
) -> Result<(), Error> {
    let server = Server::bind(&config, PORT, state).await?;
    let _ = bound.send(());
    server.serve().await
}
