//! The compact form of the cluster objects the proxy, the DNS server and the peer routes
//! read: only the fields they use, with shared strings, so 10,000 Services and 50,000
//! endpoints stay small. Conversions from the API objects are in `convert.rs`.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::network::ipam::Cidr;

/// A Service's namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl ServiceKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The API's spelling ("TCP"); anything else is not a protocol a Service may use.
    pub fn from_api(text: &str) -> Option<Self> {
        match text {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    /// Lower case, as nftables and DNS SRV names spell it ("tcp").
    pub fn lower(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The port's name; empty for a Service's single unnamed port.
    pub name: Arc<str>,
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    ClusterIp,
    NodePort,
    LoadBalancer,
    /// `spec.externalName`: DNS answers a CNAME, the proxy programs nothing.
    ExternalName(Arc<str>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub kind: ServiceKind,
    /// `None` for a headless Service (clusterIP "None") and for ExternalName.
    pub cluster_ip: Option<Ipv4Addr>,
    pub ports: Vec<ServicePort>,
    pub external_ips: Vec<Ipv4Addr>,
    /// `status.loadBalancer.ingress[].ip`.
    pub lb_ingress: Vec<Ipv4Addr>,
    pub lb_source_ranges: Vec<Cidr>,
    /// sessionAffinity ClientIP: its timeout in seconds (10800 when not given).
    pub affinity_timeout: Option<u32>,
    /// externalTrafficPolicy Local (only meaningful for NodePort and LoadBalancer).
    pub external_local: bool,
    /// internalTrafficPolicy Local.
    pub internal_local: bool,
    pub publish_not_ready: bool,
    /// `spec.loadBalancerClass` is set: another controller owns the load balancer.
    pub lb_class: bool,
}

impl Service {
    pub fn is_headless(&self) -> bool {
        self.cluster_ip.is_none() && !matches!(self.kind, ServiceKind::ExternalName(_))
    }
}

/// One address of an EndpointSlice, with the API's defaults already applied (ready nil →
/// true, serving nil → ready, terminating nil → false).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub node: Option<Arc<str>>,
    /// `hostname` of the endpoint (a pod's spec.hostname under a subdomain).
    pub hostname: Option<Arc<str>>,
}

/// An EndpointSlice of address type IPv4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    /// The Service of the `kubernetes.io/service-name` label.
    pub service: ServiceKey,
    /// (name, protocol, port); the name is empty for an unnamed port.
    pub ports: Vec<(Arc<str>, Protocol, u16)>,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: Arc<str>,
    pub internal: Vec<Ipv4Addr>,
    pub external: Vec<Ipv4Addr>,
    pub pod_cidrs: Vec<Cidr>,
}
