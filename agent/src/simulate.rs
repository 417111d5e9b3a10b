//! Simulated nodes for scale tests: N Node objects that register like a kubelet, keep a
//! Lease each, and report the pods bound to them as running (no containers, no network).
//!
//! Work is shared, never per node: one watch for the pods of all simulated nodes, one task
//! that renews every lease, and a single limit on requests in flight (32 by default), so
//! 100 nodes and 1000 pods fit on a small machine.

mod ipam;
mod lease;
mod nodes;
mod pods;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use nodes::{node_name, SimNode};

/// Node lease namespace, as upstream.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The field manager of every write the simulator makes.
pub const FIELD_MANAGER: &str = "kybern-agent";
/// `kybern.io/simulate-exit-code: "N"`: the pod's containers exit with N (see [`status`]).
pub const EXIT_CODE_ANNOTATION: &str = "kybern.io/simulate-exit-code";
/// `kybern.io/simulate-ready: "false"`: the pod runs but never becomes Ready.
pub const READY_ANNOTATION: &str = "kybern.io/simulate-ready";

/// At most this many nodes: each gets its own /24 of the cluster CIDR 10.42.0.0/16.
pub const MAX_NODES: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot simulate {0} nodes: between 1 and {MAX_NODES} (one /24 of 10.42.0.0/16 each)")]
    NodeCount(usize),
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("node {node} has no free pod address left in its /24")]
    AddressesExhausted { node: String },
    #[error("a simulator task stopped: {0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, kube::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Kube {
            what: what(),
            source,
        })
    }
}

/// What to simulate. `SimConfig::new(n)` gives upstream-like defaults.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// How many nodes.
    pub nodes: usize,
    /// Node names are `<prefix><index>`, the index zero-padded to the width of N-1.
    pub name_prefix: String,
    /// Capacity (and allocatable: the simulator reserves nothing), as quantities.
    pub cpu: String,
    pub memory: String,
    pub pods: String,
    pub ephemeral_storage: String,
    /// How often every lease is renewed (upstream: 10 s).
    pub lease_renew_interval: Duration,
    /// The lease's leaseDurationSeconds (upstream: 40).
    pub lease_duration_seconds: i32,
    /// Requests to the apiserver in flight at once, across all nodes and pods.
    pub max_in_flight: usize,
    /// A deleted pod is removed after its grace period, but never later than this
    /// (nothing runs, so nothing needs the full 30 s to stop).
    pub max_termination_delay: Duration,
}

impl SimConfig {
    pub fn new(nodes: usize) -> Self {
        SimConfig {
            nodes,
            name_prefix: "sim-".into(),
            cpu: "32".into(),
            memory: "128Gi".into(),
            pods: "110".into(),
            ephemeral_storage: "100Gi".into(),
            lease_renew_interval: Duration::from_secs(10),
            lease_duration_seconds: 40,
            max_in_flight: 32,
            max_termination_delay: Duration::from_secs(2),
        }
    }
}

/// State shared by the simulator's tasks.
pub(crate) struct Shared {
    pub client: Client,
    pub config: SimConfig,
    pub nodes: Vec<SimNode>,
    /// One permit per request in flight.
    pub limit: Semaphore,
}

/// Running simulated nodes. Dropping it stops them (their leases then expire).
pub struct Simulator {
    shared: Arc<Shared>,
    tasks: JoinSet<Result<()>>,
}

impl Simulator {
    /// Registers (or updates) the nodes and their leases, then starts renewing the leases
    /// and reporting pods. Returns once every node is registered.
    pub async fn start(client: Client, config: SimConfig) -> Result<Self> {
        if config.nodes == 0 || config.nodes > MAX_NODES {
            return Err(Error::NodeCount(config.nodes));
        }
        let limit = Semaphore::new(config.max_in_flight.max(1));
        let nodes = nodes::register_all(&client, &config, &limit).await?;
        let shared = Arc::new(Shared {
            client,
            config,
            nodes,
            limit,
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(lease::renew_forever(shared.clone()));
        tasks.spawn(pods::report_forever(shared.clone()));
        // Simulated nodes have no disk, but their deleted local-path volumes must still go.
        let (client, names) = (
            shared.client.clone(),
            shared
                .nodes
                .iter()
                .map(|n| n.name.clone())
                .collect::<Vec<_>>(),
        );
        tasks.spawn(async move {
            crate::local_path::run(client, names, crate::local_path::Disk::Simulated).await;
            Err(Error::Task("the local-path cleanup stopped".into()))
        });
        Ok(Simulator { shared, tasks })
    }

    /// The simulated nodes, in index order.
    pub fn nodes(&self) -> &[SimNode] {
        &self.shared.nodes
    }

    /// Runs until a task fails (they do not stop on their own).
    pub async fn wait(mut self) -> Result<()> {
        match self.tasks.join_next().await {
            Some(Ok(result)) => result,
            Some(Err(e)) => Err(Error::Task(e.to_string())),
            None => Ok(()),
        }
    }
}

/// Registers the nodes and simulates them until a task fails.
pub async fn run(client: Client, config: SimConfig) -> Result<()> {
    Simulator::start(client, config).await?.wait().await
}

/// `true` when the error is the apiserver answering `code`.
pub(crate) fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}
