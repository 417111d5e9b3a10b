//! API objects (k8s-openapi) to the compact model, applying the API's defaults the way
//! kube-proxy and CoreDNS read them. Pure functions; IPv4 only (the agent programs no IPv6):
//! IPv6 addresses, ranges and EndpointSlices are dropped.

use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::ServiceCIDR;

use super::model::{
    Endpoint, NodeInfo, Protocol, Service, ServiceKey, ServiceKind, ServicePort, Slice,
};
use crate::network::ipam::Cidr;

/// The label that names an EndpointSlice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// sessionAffinityConfig.clientIP.timeoutSeconds when not given (3 hours, the API default).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

/// A Service, keyed by namespace and name; `None` when it has no name.
pub fn service(svc: &core::Service) -> Option<(ServiceKey, Service)> {
    let name = svc.metadata.name.as_deref()?;
    let namespace = svc.metadata.namespace.as_deref().unwrap_or("default");
    let spec = svc.spec.clone().unwrap_or_default();
    let kind = match spec.type_.as_deref() {
        Some("NodePort") => ServiceKind::NodePort,
        Some("LoadBalancer") => ServiceKind::LoadBalancer,
        Some("ExternalName") => {
            ServiceKind::ExternalName(spec.external_name.as_deref().unwrap_or_default().into())
        }
        _ => ServiceKind::ClusterIp,
    };
    let external_name = matches!(kind, ServiceKind::ExternalName(_));
    // clusterIPs[0] is clusterIP; a dual-stack Service may list its IPv4 address second.
    let cluster_ip = if external_name {
        None
    } else {
        spec.cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter())
            .find_map(|ip| ip.parse::<Ipv4Addr>().ok())
    };
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(ServicePort {
                name: p.name.as_deref().unwrap_or_default().into(),
                protocol: Protocol::from_api(p.protocol.as_deref().unwrap_or("TCP"))?,
                port: u16::try_from(p.port).ok()?,
                node_port: p
                    .node_port
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n != 0),
            })
        })
        .collect();
    let load_balancer = kind == ServiceKind::LoadBalancer;
    // Ingress IPs with ipMode Proxy are reached through the load balancer, which forwards
    // to the nodes: kube-proxy programs no rule for them.
    let lb_ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter(|_| load_balancer)
        .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect();
    let external_ips: Vec<Ipv4Addr> = ipv4s(spec.external_ips.iter().flatten());
    // Upstream's ExternallyAccessible: NodePort, LoadBalancer, or a ClusterIP Service with
    // externalIPs; only those honour externalTrafficPolicy.
    let externally_accessible = matches!(kind, ServiceKind::NodePort | ServiceKind::LoadBalancer)
        || (kind == ServiceKind::ClusterIp && !external_ips.is_empty());
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    });
    let model = Service {
        cluster_ip,
        ports,
        external_ips,
        lb_ingress,
        lb_source_ranges: spec
            .load_balancer_source_ranges
            .iter()
            .flatten()
            .filter_map(|r| Cidr::parse_range(r).ok())
            .collect(),
        affinity_timeout,
        external_local: externally_accessible
            && spec.external_traffic_policy.as_deref() == Some("Local"),
        internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
        publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
        lb_class: load_balancer && spec.load_balancer_class.is_some(),
        kind,
    };
    Some((ServiceKey::new(namespace, name), model))
}

/// An EndpointSlice of address type IPv4 that names its Service, keyed by (namespace,
/// name); `None` for any other (IPv6 and FQDN slices, slices without the label).
pub fn slice(slice: &EndpointSlice) -> Option<((String, String), Slice)> {
    if slice.address_type != "IPv4" {
        return None;
    }
    let name = slice.metadata.name.clone()?;
    let namespace = slice
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    let ports = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some((
                Arc::<str>::from(p.name.as_deref().unwrap_or_default()),
                Protocol::from_api(p.protocol.as_deref().unwrap_or("TCP"))?,
                u16::try_from(p.port?).ok()?,
            ))
        })
        .collect();
    let endpoints = slice
        .endpoints
        .iter()
        .filter_map(|e| {
            // The API allows exactly one address per endpoint; consumers use the first.
            let ip = e.addresses.first()?.parse().ok()?;
            let conditions = e.conditions.clone().unwrap_or_default();
            // The API's defaults: ready nil means ready, serving nil means as ready,
            // terminating nil means not terminating.
            let ready = conditions.ready.unwrap_or(true);
            Some(Endpoint {
                ip,
                ready,
                serving: conditions.serving.unwrap_or(ready),
                terminating: conditions.terminating.unwrap_or(false),
                node: e.node_name.as_deref().map(Arc::from),
                hostname: e.hostname.as_deref().map(Arc::from),
            })
        })
        .collect();
    Some((
        (namespace.clone(), name),
        Slice {
            service: ServiceKey::new(&namespace, service),
            ports,
            endpoints,
        },
    ))
}

/// A Node's addresses and podCIDRs (IPv4 ones).
pub fn node(node: &core::Node) -> Option<NodeInfo> {
    let name = node.metadata.name.as_deref()?;
    let addresses = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let of_type = |t: &str| {
        ipv4s(
            addresses
                .iter()
                .filter(|a| a.type_ == t)
                .map(|a| &a.address),
        )
    };
    let spec = node.spec.clone().unwrap_or_default();
    // podCIDRs, when set, holds podCIDR as its first entry.
    let mut pod_cidrs: Vec<Cidr> = Vec::new();
    for text in spec.pod_cidrs.iter().flatten().chain(spec.pod_cidr.iter()) {
        if let Ok(cidr) = Cidr::parse(text) {
            if !pod_cidrs.contains(&cidr) {
                pod_cidrs.push(cidr);
            }
        }
    }
    Some(NodeInfo {
        name: name.into(),
        internal: of_type("InternalIP"),
        external: of_type("ExternalIP"),
        pod_cidrs,
    })
}

/// A ServiceCIDR's IPv4 ranges, keyed by its name.
pub fn service_cidr(object: &ServiceCIDR) -> Option<(String, Vec<Cidr>)> {
    let name = object.metadata.name.clone()?;
    let cidrs = object
        .spec
        .as_ref()
        .and_then(|s| s.cidrs.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| Cidr::parse(c).ok())
        .collect();
    Some((name, cidrs))
}

fn ipv4s<'a>(texts: impl Iterator<Item = &'a String>) -> Vec<Ipv4Addr> {
    texts.filter_map(|t| t.parse().ok()).collect()
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
