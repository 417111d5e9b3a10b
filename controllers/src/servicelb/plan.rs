//! The pure part of ServiceLB (k3s' pkg/cloudprovider/servicelb.go, without its
//! klipper-lb pods: the node agents' proxy forwards the traffic): which Services it
//! serves, the nodes that answer for one, and the ingress IPs those nodes give.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;

/// True for a `type: LoadBalancer` Service without `spec.loadBalancerClass` (a class
/// means another controller implements it).
pub fn serves(svc: &Service) -> bool {
    svc.spec.as_ref().is_some_and(|s| {
        s.type_.as_deref() == Some("LoadBalancer") && s.load_balancer_class.is_none()
    }) && svc.metadata.deletion_timestamp.is_none()
}

/// True when the node's Ready condition is True.
pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn local_traffic_only(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.external_traffic_policy.as_deref())
        == Some("Local")
}

/// The nodes with a ready pod endpoint of the service in `slices` (what
/// externalTrafficPolicy Local limits the nodes to).
pub fn nodes_with_ready_endpoints(slices: &[&EndpointSlice]) -> BTreeSet<String> {
    slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.target_ref.as_ref().and_then(|r| r.kind.as_deref()) == Some("Pod"))
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .filter_map(|e| e.node_name.clone())
        .collect()
}

/// The ingress IPs of `svc`: those of the Ready nodes (with externalTrafficPolicy
/// Local, only those with a ready local endpoint in `slices`), their ExternalIPs if
/// any of them has one, else their InternalIPs, sorted and ordered by the service's
/// ipFamilies.
pub fn ingress_ips(svc: &Service, nodes: &[&Node], slices: &[&EndpointSlice]) -> Vec<String> {
    let local = local_traffic_only(svc).then(|| nodes_with_ready_endpoints(slices));
    let mut external = BTreeSet::new();
    let mut internal = BTreeSet::new();
    for node in nodes.iter().filter(|n| node_ready(n)) {
        if local
            .as_ref()
            .is_some_and(|l| !l.contains(&node.name_any()))
        {
            continue;
        }
        let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
        for a in addresses.into_iter().flatten() {
            let Ok(ip) = a.address.parse::<IpAddr>() else {
                continue;
            };
            match a.type_.as_str() {
                "ExternalIP" => external.insert(ip),
                "InternalIP" => internal.insert(ip),
                _ => false,
            };
        }
    }
    let ips = if external.is_empty() {
        internal
    } else {
        external
    };
    let families = svc
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.clone())
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| vec!["IPv4".into()]);
    families
        .iter()
        .flat_map(|family| {
            ips.iter()
                .filter(move |ip| match family.as_str() {
                    "IPv4" => ip.is_ipv4(),
                    "IPv6" => ip.is_ipv6(),
                    _ => false,
                })
                .map(|ip| ip.to_string())
        })
        .collect()
}

/// The IPs the service's status lists now.
pub fn current_ips(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect()
}

/// The (port, protocol) pairs the service's load balancer listens on.
fn ports(svc: &Service) -> BTreeSet<(i32, String)> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .map(|p| (p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into())))
        .collect()
}

fn older(a: &Service, b: &Service) -> bool {
    let key = |s: &Service| {
        (
            s.metadata.creation_timestamp.as_ref().map(|t| t.0),
            s.namespace(),
            s.name_any(),
        )
    };
    key(a).cmp(&key(b)) == Ordering::Less
}

/// The older served Service that already holds one of `svc`'s ports on the nodes
/// (k3s' per-service pods bind them as hostPorts, so the younger one gets no nodes).
pub fn port_holder<'a>(svc: &Service, services: &'a [&'a Service]) -> Option<&'a Service> {
    let mine = ports(svc);
    services.iter().copied().find(|other| {
        serves(other)
            && other.uid() != svc.uid()
            && older(other, svc)
            && !ports(other).is_disjoint(&mine)
    })
}

/// True when `a` and `b` listen on a port in common (a change of one can change the
/// other's ingress).
pub fn share_a_port(a: &Service, b: &Service) -> bool {
    !ports(a).is_disjoint(&ports(b))
}

/// A list as Go prints a slice of strings: `[a b]`.
pub fn go_list(ips: &[String]) -> String {
    format!("[{}]", ips.join(" "))
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
