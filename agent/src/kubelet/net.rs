//! The node network settings of an agent (`kybern agent` flags) and the configurations of
//! the service proxy and the cluster DNS server built from them.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::dns::DnsConfig;
use crate::network::ipam::Cidr;
use crate::proxy::ProxyConfig;

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
