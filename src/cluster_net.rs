//! The cluster's network ranges and DNS names, which the API server and every agent must
//! agree on: `kybern server` and `kybern agent` take the same flags, `kybern up` takes them
//! once for both.

use std::net::Ipv4Addr;

use agent::network::ipam::Cidr;
use clap::Args;

#[derive(Args, Clone, Debug)]
pub(crate) struct ClusterNetArgs {
    /// The range pods' addresses come from; each node gets a part of it as its podCIDR.
    #[arg(long, default_value = "10.42.0.0/16", value_parser = cidr)]
    pub cluster_cidr: Cidr,
    /// The range ClusterIPs come from; its first address is the `kubernetes` Service's.
    #[arg(long, default_value = "10.43.0.0/16", value_parser = cidr)]
    pub service_cidr: Cidr,
    /// The cluster DNS address (the `kube-dns` Service's ClusterIP): written into pods'
    /// resolv.conf and answered by every agent.
    #[arg(long, default_value = "10.43.0.10")]
    pub cluster_dns: Ipv4Addr,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
}

fn cidr(text: &str) -> Result<Cidr, String> {
    Cidr::parse(text).map_err(|_| format!("{text:?} is not an IPv4 range like 10.42.0.0/16"))
}
