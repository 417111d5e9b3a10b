//! Pod networking behind a narrow trait: each pod gets a sandbox (its own network, IPC and
//! UTS namespaces, bind-mounted under the agent's state dir so they outlive any process), a
//! veth into the node's bridge `kybern0`, an address from the node's podCIDR and the
//! bridge's address as default gateway. Containers of the pod join these namespaces
//! (the role the pause container plays upstream).
//!
//! The real implementation is in [`linux`] (netlink); [`fake`] records calls for unit tests.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use async_trait::async_trait;

#[cfg(any(test, feature = "test-util"))]
pub mod fake;
pub mod ipam;
pub mod linux;
mod netlink;
mod netns;
pub mod peers;
pub mod safety;

pub use safety::{HostRouting, HostState};

/// The name of the bridge pods are attached to.
pub const BRIDGE: &str = "kybern0";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("netlink {op}: {message}")]
    Netlink { op: &'static str, message: String },
    #[error("podCIDR {0} has no free address left")]
    Exhausted(String),
    #[error("invalid podCIDR {0:?}")]
    BadCidr(String),
    #[error("the network is not initialised; call init with the node's podCIDR first")]
    NotInitialised,
    /// A pod UID names files under the state dir, so it must be one plain path component.
    #[error("invalid pod UID {0:?}")]
    InvalidUid(String),
}

/// Checks that `uid` can name a file under the state dir: non-empty, no `/`, not `.`/`..`.
pub fn check_uid(uid: &str) -> Result<()> {
    let plain = !uid.is_empty()
        && uid != "."
        && uid != ".."
        && !uid.starts_with('.')
        && !uid.contains(['/', '\0']);
    if plain {
        Ok(())
    } else {
        Err(Error::InvalidUid(uid.to_string()))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps an I/O error with what was being done.
fn io_err(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// Connects to 127.0.0.1:`port` inside a pod's network namespace (`netns`, the sandbox's
/// file): the way port-forward reaches a pod. The socket is created in the namespace on a
/// thread of its own and then handed to tokio.
pub async fn dial_in_netns(
    netns: &std::path::Path,
    port: u16,
) -> std::io::Result<tokio::net::TcpStream> {
    let netns = netns.to_path_buf();
    let conn = tokio::task::spawn_blocking(move || {
        netns::connect_loopback(&netns, port, std::time::Duration::from_secs(10))
    })
    .await
    .map_err(std::io::Error::other)?
    .map_err(|e| match e {
        Error::Io { context, source } => {
            std::io::Error::new(source.kind(), format!("{context}: {source}"))
        }
        other => std::io::Error::other(other.to_string()),
    })?;
    tokio::net::TcpStream::from_std(conn)
}

/// What identifies a pod's sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxRequest {
    /// The pod's UID; the key of everything the sandbox holds.
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// Set in the sandbox's UTS namespace (the pod's hostname).
    pub hostname: String,
}

/// A pod's sandbox, as containers join it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    pub uid: String,
    pub netns: PathBuf,
    pub ipc_ns: PathBuf,
    pub uts_ns: PathBuf,
    pub ip: Ipv4Addr,
}

/// A route to another node's pods (host-gw): its podCIDR through its node address, which
/// must be on a network this node is directly connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRoute {
    pub pod_cidr: String,
    pub node_ip: Ipv4Addr,
}

#[async_trait]
pub trait Network: Send + Sync {
    /// Prepares the node for pods of `pod_cidr` (e.g. "10.42.0.0/24"): the bridge with the
    /// CIDR's first address, up, and IPv4 forwarding. Idempotent; called at every start.
    async fn init(&self, pod_cidr: &str) -> Result<()>;
    /// Creates the pod's sandbox, or returns the existing one for the same UID (also after
    /// an agent restart) with the same address.
    async fn setup(&self, req: &SandboxRequest) -> Result<Sandbox>;
    /// Removes the sandbox: veth, namespaces, the address reservation. Parts already gone
    /// are skipped, so an interrupted teardown can be finished; unknown UIDs are a no-op.
    async fn teardown(&self, uid: &str) -> Result<()>;
    /// UIDs of every sandbox that exists, so a restarted agent can remove those of pods
    /// deleted while it was down.
    async fn sandboxes(&self) -> Result<Vec<String>>;
    /// Makes the routes to other nodes' pods inside `cluster` (the cluster CIDR) exactly
    /// `peers`: missing ones are added, changed ones replaced, ones for nodes no longer
    /// listed removed. Routes outside `cluster` belong to another cluster's agent and are
    /// left alone. A peer with this node's own podCIDR, or outside `cluster`, is skipped.
    async fn sync_peer_routes(&self, cluster: ipam::Cidr, peers: &[PeerRoute]) -> Result<()>;
    /// Makes this agent's safety routes (unreachable cluster ranges) and the route and rule
    /// that let host sockets reach the service range exactly `want`. Idempotent; removes
    /// only what this agent recorded installing (see [`safety`]).
    async fn sync_host_routing(&self, want: &HostRouting) -> Result<()>;
    /// Removes every route and rule `sync_host_routing` installed (`--reset`).
    async fn remove_host_routing(&self) -> Result<()>;
    /// Adds `ip`/32 to the bridge (the cluster DNS address the agent serves). Needs `init`.
    async fn add_local_address(&self, ip: Ipv4Addr) -> Result<()>;
    /// The network namespace file of the pod's sandbox, if it has one (port-forward dials
    /// into it).
    fn netns(&self, _uid: &str) -> Option<PathBuf> {
        None
    }
}
