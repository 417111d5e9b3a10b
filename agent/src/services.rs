//! What the node's network services read from the cluster: Services, EndpointSlices, Nodes
//! and ServiceCIDRs, watched once ([`watch::spawn`]) and kept in a compact shared store
//! ([`store::ClusterState`]) that the service proxy, the cluster DNS server and the peer
//! routes subscribe to.

pub mod convert;
pub mod model;
pub mod store;
pub mod watch;

pub use model::{
    Endpoint, NodeInfo, Protocol, Service, ServiceKey, ServiceKind, ServicePort, Slice,
};
pub use store::{Changes, ClusterState, Kind, SlicesOf, Subscription};
