//! The ruleset as nft text, from the store's model (pure): the base chains, sets and maps
//! every full sync writes, and each Service's own chains, affinity sets and map elements,
//! shaped as kube-proxy's nftables mode writes them (`syncProxyRules`).

use std::net::Ipv4Addr;

use super::categorize::{categorize, Policy, PortEndpoints, Target};
use super::names::PortName;
use super::nft::Transaction;
use crate::network::ipam::Cidr;
use crate::services::{Service, ServiceKey, ServiceKind, Slice};

/// kube-proxy's default masquerade bit 14.
pub const MASQ_MARK: &str = "0x4000";
pub const CLUSTER_IPS: &str = "cluster-ips";
pub const NODEPORT_IPS: &str = "nodeport-ips";
pub const SERVICE_IPS: &str = "service-ips";
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
pub const FIREWALL_IPS: &str = "firewall-ips";
/// The chain only full syncs write; it always holds exactly two rules (the canary).
pub const SERVICES_CHAIN: &str = "services";
pub const SERVICES_CHAIN_RULES: usize = 2;
const MARK_CHAIN: &str = "mark-for-masquerade";
const REJECT_CHAIN: &str = "reject-chain";

/// The maps a full sync empties and refills.
pub const MAPS: [&str; 5] = [
    SERVICE_IPS,
    SERVICE_NODEPORTS,
    NO_ENDPOINT_SERVICES,
    NO_ENDPOINT_NODEPORTS,
    FIREWALL_IPS,
];

/// The hooked chains: name and hook. Priorities are numbers (dstnat is -100, srcnat 100):
/// nft 1.0.6 accepts the `dstnat` keyword only on the prerouting hook.
///
/// `filter-prerouting-post-dnat` is kybern's: the node routes the service range
/// `unreachable`, so a packet to a ClusterIP that was not DNATed would meet that route
/// before any forward hook, and a UDP client is told nothing by a host-unreachable error.
/// Checking right after DNAT, still in prerouting, rejects it with the port-unreachable
/// (or drop) upstream gives in its forward hook.
pub const BASE_CHAINS: [(&str, &str); 9] = [
    (
        "filter-prerouting",
        "type filter hook prerouting priority -110",
    ),
    (
        "filter-prerouting-post-dnat",
        "type filter hook prerouting priority -90",
    ),
    ("filter-input", "type filter hook input priority -110"),
    ("filter-forward", "type filter hook forward priority -110"),
    ("filter-output", "type filter hook output priority -110"),
    (
        "filter-output-post-dnat",
        "type filter hook output priority -90",
    ),
    ("nat-prerouting", "type nat hook prerouting priority -100"),
    ("nat-output", "type nat hook output priority -100"),
    ("nat-postrouting", "type nat hook postrouting priority 100"),
];

/// This node and cluster, as the rules need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub node: String,
    pub cluster_cidr: Cidr,
    /// The flag's range and every ServiceCIDR object's, without ranges inside another.
    pub service_cidrs: Vec<Cidr>,
    /// Served by the agent itself: let through, and its Service skipped.
    pub cluster_dns: Ipv4Addr,
    /// This node's InternalIP and ExternalIP addresses (not loopback).
    pub nodeport_ips: Vec<Ipv4Addr>,
}

/// One element of a set or map, as its owner wants it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Element {
    pub set: &'static str,
    pub key: String,
    /// `comment "..." : goto chain` (everything after the key), or empty for a set.
    pub rest: String,
}

impl Element {
    pub fn text(&self) -> String {
        format!("{}{}", self.key, self.rest)
    }
}

/// A UDP port of a Service: what conntrack cleanup needs when its endpoints change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPort {
    pub addresses: Vec<Ipv4Addr>,
    pub port: u16,
    pub node_port: Option<u16>,
    pub endpoints: Vec<Ipv4Addr>,
}

/// Everything one Service owns in the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceRules {
    /// Affinity sets: name and timeout in seconds.
    pub sets: Vec<(String, u32)>,
    /// Chains with their rules, in order.
    pub chains: Vec<(String, Vec<String>)>,
    pub elements: Vec<Element>,
    pub udp: Vec<UdpPort>,
}

impl ServiceRules {
    /// Writes sets, then chains, then rules, then elements: an element or rule may only
    /// name a chain or set that already exists.
    pub fn write(&self, tx: &mut Transaction) {
        for (set, timeout) in &self.sets {
            tx.add_set(
                set,
                &format!("type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s"),
            );
        }
        for (chain, _) in &self.chains {
            tx.add_chain(chain, None);
            tx.flush_chain(chain);
        }
        for (chain, rules) in &self.chains {
            for rule in rules {
                tx.add_rule(chain, rule);
            }
        }
        for element in &self.elements {
            tx.add_element(element.set, &element.text());
        }
    }
}

/// The base part every full sync writes. `first` also re-creates each hooked chain (added
/// and deleted once) so a hook or priority changed since an older agent never fails.
pub fn base(ctx: &Context, tx: &mut Transaction, first: bool) {
    tx.add_table("rules for kybern's service proxy");
    for (chain, hook) in BASE_CHAINS {
        if first {
            tx.add_chain(chain, Some(hook));
            tx.delete_chain(chain);
        }
        tx.add_chain(chain, Some(hook));
    }
    for (chain, _) in BASE_CHAINS {
        tx.flush_chain(chain);
    }
    let helper = |tx: &mut Transaction, chain: &str, jumps: &[(&str, &str)]| {
        tx.add_chain(chain, None);
        tx.flush_chain(chain);
        for (from, how) in jumps {
            tx.add_rule(from, &format!("{how}{chain}"));
        }
    };
    helper(
        tx,
        "nodeport-endpoints-check",
        &[("filter-input", "ct state new jump ")],
    );
    helper(
        tx,
        "service-endpoints-check",
        &[
            ("filter-input", "ct state new jump "),
            ("filter-prerouting-post-dnat", "ct state new jump "),
            ("filter-output", "ct state new jump "),
        ],
    );
    helper(
        tx,
        "firewall-check",
        &[
            ("filter-prerouting", "ct state new jump "),
            ("filter-output", "ct state new jump "),
        ],
    );
    helper(
        tx,
        SERVICES_CHAIN,
        &[("nat-output", "jump "), ("nat-prerouting", "jump ")],
    );
    helper(tx, "masquerading", &[("nat-postrouting", "jump ")]);
    helper(
        tx,
        "cluster-ips-check",
        &[
            ("filter-prerouting-post-dnat", "ct state new jump "),
            ("filter-output-post-dnat", "ct state new jump "),
        ],
    );
    helper(tx, "pod-egress", &[("nat-postrouting", "jump ")]);
    helper(tx, MARK_CHAIN, &[]);
    tx.add_rule(MARK_CHAIN, &format!("mark set mark or {MASQ_MARK}"));
    tx.add_rule("masquerading", &format!("mark and {MASQ_MARK} == 0 return"));
    tx.add_rule("masquerading", &format!("mark set mark xor {MASQ_MARK}"));
    tx.add_rule("masquerading", "masquerade fully-random");
    let pods = ctx.cluster_cidr;
    tx.add_rule(
        "pod-egress",
        &format!("ip saddr {pods} ip daddr {pods} return"),
    );
    tx.add_rule(
        "pod-egress",
        &format!("ip saddr {pods} ip daddr != 224.0.0.0/4 masquerade fully-random"),
    );

    tx.add_set(
        CLUSTER_IPS,
        "type ipv4_addr ; comment \"Active ClusterIPs\"",
    );
    tx.add_rule(
        "cluster-ips-check",
        &format!(
            "ip daddr {} return comment \"cluster DNS, served by this agent\"",
            ctx.cluster_dns
        ),
    );
    tx.add_rule(
        "cluster-ips-check",
        &format!("ip daddr @{CLUSTER_IPS} reject comment \"Reject traffic to invalid ports of ClusterIPs\""),
    );
    if !ctx.service_cidrs.is_empty() {
        let cidrs: Vec<String> = ctx.service_cidrs.iter().map(|c| c.to_string()).collect();
        tx.add_rule(
            "cluster-ips-check",
            &format!(
                "ip daddr {{ {} }} drop comment \"Drop traffic to unallocated ClusterIPs\"",
                cidrs.join(", ")
            ),
        );
    }
    tx.add_set(
        NODEPORT_IPS,
        "type ipv4_addr ; comment \"IPs that accept NodePort traffic\"",
    );
    tx.flush_set(NODEPORT_IPS);
    for ip in &ctx.nodeport_ips {
        tx.add_element(NODEPORT_IPS, &ip.to_string());
    }
    tx.add_map(NO_ENDPOINT_SERVICES, "type ipv4_addr . inet_proto . inet_service : verdict ; comment \"vmap to drop or reject packets to services with no endpoints\"");
    tx.add_map(NO_ENDPOINT_NODEPORTS, "type inet_proto . inet_service : verdict ; comment \"vmap to drop or reject packets to service nodeports with no endpoints\"");
    tx.add_chain_with_comment(
        REJECT_CHAIN,
        "helper for @no-endpoint-services / @no-endpoint-nodeports",
    );
    tx.flush_chain(REJECT_CHAIN);
    tx.add_rule(REJECT_CHAIN, "reject");
    tx.add_rule(
        "service-endpoints-check",
        &format!("ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}"),
    );
    tx.add_rule(
        "nodeport-endpoints-check",
        &format!("ip daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"),
    );
    tx.add_map(FIREWALL_IPS, "type ipv4_addr . inet_proto . inet_service : verdict ; comment \"destinations that are subject to LoadBalancerSourceRanges\"");
    tx.add_rule(
        "firewall-check",
        &format!("ip daddr . meta l4proto . th dport vmap @{FIREWALL_IPS}"),
    );
    tx.add_map(SERVICE_IPS, "type ipv4_addr . inet_proto . inet_service : verdict ; comment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\"");
    tx.add_map(
        SERVICE_NODEPORTS,
        "type inet_proto . inet_service : verdict ; comment \"NodePort traffic\"",
    );
    tx.add_rule(
        SERVICES_CHAIN,
        &format!("ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"),
    );
    tx.add_rule(
        SERVICES_CHAIN,
        &format!("ip daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"),
    );
    tx.flush_set(CLUSTER_IPS);
    for map in MAPS {
        tx.flush_map(map);
    }
}

/// Whether the proxy programs anything for this Service.
pub fn is_proxied(ctx: &Context, service: &Service) -> bool {
    !matches!(service.kind, ServiceKind::ExternalName(_))
        && service
            .cluster_ip
            .is_some_and(|ip| ip != ctx.cluster_dns && !ip.is_unspecified())
}

/// Everything `service` owns in the table; nothing for headless and ExternalName Services
/// and for the cluster DNS Service (the agent answers on that address itself).
pub fn service_rules(
    ctx: &Context,
    key: &ServiceKey,
    service: &Service,
    slices: &[std::sync::Arc<Slice>],
) -> ServiceRules {
    let mut out = ServiceRules::default();
    if !is_proxied(ctx, service) {
        return out;
    }
    let cluster_ip = service
        .cluster_ip
        .expect("proxied Services have a ClusterIP");
    for port in &service.ports {
        let name = PortName {
            service: key.clone(),
            port: port.name.to_string(),
            protocol: port.protocol,
        };
        let node_port = match service.kind {
            ServiceKind::NodePort | ServiceKind::LoadBalancer => port.node_port,
            _ => None,
        };
        let lb: &[Ipv4Addr] = if service.kind == ServiceKind::LoadBalancer {
            &service.lb_ingress
        } else {
            &[]
        };
        let externally_accessible =
            node_port.is_some() || !lb.is_empty() || !service.external_ips.is_empty();
        let policy = Policy {
            internal_local: service.internal_local,
            external_local: service.external_local && externally_accessible,
            externally_accessible,
        };
        let endpoints = port_endpoints(slices, &port.name, port.protocol, port.port);
        let cat = categorize(&endpoints, policy, &ctx.node);
        let proto = port.protocol.lower();

        let service_chain = name.service_chain();
        let local_chain = name.local_chain();
        let external_chain = name.external_chain();
        let uses_cluster_chain = !cat.cluster.is_empty() && policy.uses_cluster();
        let uses_local_chain = !cat.local.is_empty() && policy.uses_local();
        let has_internal = if policy.internal_local {
            !cat.local.is_empty()
        } else {
            !cat.cluster.is_empty()
        };
        let has_external = if policy.external_local {
            !cat.local.is_empty()
        } else {
            !cat.cluster.is_empty()
        };
        let internal_chain = if policy.internal_local {
            &local_chain
        } else {
            &service_chain
        };
        let external_policy_chain = if policy.external_local {
            &local_chain
        } else {
            &service_chain
        };
        let (internal_verdict, external_verdict) = if !cat.any {
            (
                format!("goto {REJECT_CHAIN}"),
                format!("goto {REJECT_CHAIN}"),
            )
        } else {
            ("drop".to_string(), "drop".to_string())
        };
        let affinity = service.affinity_timeout;

        // Affinity sets first: endpoint chains update them, service chains read them.
        if let Some(timeout) = affinity {
            for t in &cat.reachable {
                out.sets.push((name.affinity_set(t.ip, t.port), timeout));
            }
        }
        if uses_cluster_chain {
            let mut rules = vec![format!(
                "ip daddr {cluster_ip} {proto} dport {} ip saddr != {} jump {MARK_CHAIN}",
                port.port, ctx.cluster_cidr
            )];
            dispatch(&name, &cat.cluster, affinity.is_some(), &mut rules);
            out.chains.push((service_chain.clone(), rules));
        }
        if uses_local_chain {
            let mut rules = Vec::new();
            dispatch(&name, &cat.local, affinity.is_some(), &mut rules);
            out.chains.push((local_chain.clone(), rules));
        }
        if has_external && externally_accessible {
            let mut rules = Vec::new();
            if !policy.external_local {
                rules.push(format!("jump {MARK_CHAIN}"));
            } else {
                rules.push(format!(
                    "ip saddr {} goto {service_chain} comment \"short-circuit pod traffic\"",
                    ctx.cluster_cidr
                ));
                rules.push(format!(
                    "fib saddr type local jump {MARK_CHAIN} comment \"masquerade local traffic\""
                ));
                rules.push(format!(
                    "fib saddr type local goto {service_chain} comment \"short-circuit local traffic\""
                ));
            }
            rules.push(format!("goto {external_policy_chain}"));
            out.chains.push((external_chain.clone(), rules));
        }
        let firewall = !lb.is_empty() && !service.lb_source_ranges.is_empty();
        if firewall {
            let mut sources: Vec<String> = service
                .lb_source_ranges
                .iter()
                .map(|c| c.to_string())
                .collect();
            let from_node = service
                .lb_source_ranges
                .iter()
                .any(|c| ctx.nodeport_ips.iter().any(|ip| contains(c, *ip)));
            if from_node {
                sources.extend(lb.iter().map(|ip| ip.to_string()));
            }
            out.chains.push((
                name.firewall_chain(),
                vec![format!("ip saddr != {{ {} }} drop", sources.join(", "))],
            ));
        }
        for t in &cat.reachable {
            let mut rules = vec![format!("ip saddr {} jump {MARK_CHAIN}", t.ip)];
            if affinity.is_some() {
                rules.push(format!(
                    "update @{} {{ ip saddr }}",
                    name.affinity_set(t.ip, t.port)
                ));
            }
            rules.push(format!("meta l4proto {proto} dnat to {}:{}", t.ip, t.port));
            out.chains.push((name.endpoint_chain(t.ip, t.port), rules));
        }

        // Elements.
        let comment = format!(" comment \"{}\"", name.display());
        out.elements.push(Element {
            set: CLUSTER_IPS,
            key: cluster_ip.to_string(),
            rest: String::new(),
        });
        let key_of = |ip: Ipv4Addr| format!("{ip} . {proto} . {}", port.port);
        if has_internal {
            out.elements.push(Element {
                set: SERVICE_IPS,
                key: key_of(cluster_ip),
                rest: format!(" : goto {internal_chain}"),
            });
        } else {
            out.elements.push(Element {
                set: NO_ENDPOINT_SERVICES,
                key: key_of(cluster_ip),
                rest: format!("{comment} : {internal_verdict}"),
            });
        }
        for ip in service.external_ips.iter().chain(lb) {
            if has_external {
                out.elements.push(Element {
                    set: SERVICE_IPS,
                    key: key_of(*ip),
                    rest: format!(" : goto {external_chain}"),
                });
            } else {
                out.elements.push(Element {
                    set: NO_ENDPOINT_SERVICES,
                    key: key_of(*ip),
                    rest: format!("{comment} : {external_verdict}"),
                });
            }
        }
        if firewall {
            for ip in lb {
                out.elements.push(Element {
                    set: FIREWALL_IPS,
                    key: key_of(*ip),
                    rest: format!(" : goto {}", name.firewall_chain()),
                });
            }
        }
        if let Some(np) = node_port {
            let key = format!("{proto} . {np}");
            if has_external {
                out.elements.push(Element {
                    set: SERVICE_NODEPORTS,
                    key,
                    rest: format!(" : goto {external_chain}"),
                });
            } else {
                out.elements.push(Element {
                    set: NO_ENDPOINT_NODEPORTS,
                    key,
                    rest: format!("{comment} : {external_verdict}"),
                });
            }
        }
        if port.protocol == crate::services::Protocol::Udp {
            let mut addresses = vec![cluster_ip];
            addresses.extend(service.external_ips.iter().chain(lb).copied());
            out.udp.push(UdpPort {
                addresses,
                port: port.port,
                node_port,
                endpoints: cat.reachable.iter().map(|t| t.ip).collect(),
            });
        }
    }
    // Two ports of one Service share its ClusterIP.
    out.elements.dedup();
    let mut seen = std::collections::HashSet::new();
    out.elements.retain(|e| seen.insert((e.set, e.key.clone())));
    out
}

/// Affinity lookups, then one random pick among `endpoints`: endpoint i of n is taken with
/// probability 1/(n-i) when none before it was (iptables mode's `statistic` chain), which
/// is uniform: with 3, the first takes 1/3, the second 1/2 of the other 2/3, the last the
/// rest. kube-proxy's nftables mode writes one `numgen random mod n vmap { … }` instead,
/// but each such anonymous map costs the kernel a scan of all sets of the table when it
/// is named, so 10,000 Services took 40 s to load instead of 4.5 s.
fn dispatch(name: &PortName, endpoints: &[Target], affinity: bool, rules: &mut Vec<String>) {
    if affinity {
        for t in endpoints {
            rules.push(format!(
                "ip saddr @{} goto {}",
                name.affinity_set(t.ip, t.port),
                name.endpoint_chain(t.ip, t.port)
            ));
        }
    }
    let n = endpoints.len();
    for (i, t) in endpoints.iter().enumerate() {
        let chain = name.endpoint_chain(t.ip, t.port);
        if i + 1 == n {
            rules.push(format!("goto {chain}"));
        } else {
            rules.push(format!("numgen random mod {} == 0 goto {chain}", n - i));
        }
    }
}

/// The endpoints behind one Service port: every slice's matching port (same name and
/// protocol), de-duplicated, sorted by address.
fn port_endpoints(
    slices: &[std::sync::Arc<Slice>],
    port_name: &str,
    protocol: crate::services::Protocol,
    _service_port: u16,
) -> PortEndpoints {
    let mut all: Vec<(Target, crate::services::Endpoint)> = Vec::new();
    for slice in slices {
        let Some((_, _, target)) = slice
            .ports
            .iter()
            .find(|(n, p, _)| &**n == port_name && *p == protocol)
        else {
            continue;
        };
        for e in &slice.endpoints {
            let t = Target {
                ip: e.ip,
                port: *target,
            };
            if !all.iter().any(|(seen, _)| *seen == t) {
                all.push((t, e.clone()));
            }
        }
    }
    all.sort_by_key(|(t, _)| *t);
    PortEndpoints { all }
}

/// Whether `ip` is inside `cidr`.
pub fn contains(cidr: &Cidr, ip: Ipv4Addr) -> bool {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(cidr.prefix()))
        .unwrap_or(0);
    u32::from(ip) & mask == u32::from(cidr.network())
}

/// The ranges for `cluster-ips-check`: each once, none inside another (nft refuses
/// overlapping intervals in one set).
pub fn outermost(mut cidrs: Vec<Cidr>) -> Vec<Cidr> {
    cidrs.sort_by_key(|c| (c.prefix(), u32::from(c.network())));
    let mut out: Vec<Cidr> = Vec::new();
    for c in cidrs {
        if !out.iter().any(|o| contains(o, c.network())) {
            out.push(c);
        }
    }
    out.sort_by_key(|c| u32::from(c.network()));
    out
}
