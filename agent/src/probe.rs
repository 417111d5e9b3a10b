//! Probes (liveness, readiness, startup) and lifecycle hooks (postStart, preStop), run as
//! the kubelet runs them: exec in the container, httpGet, tcpSocket and grpc against the
//! pod's IP.

use std::net::Ipv4Addr;

/// Where a probe or hook runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The runtime's container ID (for exec).
    pub container_id: String,
    /// The pod's IP (for httpGet, tcpSocket, grpc when no host is given).
    pub pod_ip: Ipv4Addr,
}
