//! The desired subsets of a Service's Endpoints: one (address, port) pair per selected
//! pod and service port, repacked as upstream's RepackSubsets does, so that addresses
//! offering the same set of ports share one subset.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Pod, Service};

use crate::podcontrol::is_ready;
use crate::shared::endpoint_pods::{
    belongs_in_endpoints, find_port, hostname, ipv4, is_headless, publishes_not_ready, target_ref,
};

/// (name, port, protocol, appProtocol): an EndpointPort as an ordered key.
type PortKey = (Option<String>, i32, Option<String>, Option<String>);

/// An address by IP and the pod it belongs to (two pods may share a host IP).
type AddrKey = (String, Option<String>);
/// The addresses offering one port, each with whether it is ready.
type Addresses = BTreeMap<AddrKey, (EndpointAddress, bool)>;
/// The ports one set of addresses offers, and those addresses.
type PortsAndAddresses = (Vec<EndpointPort>, Vec<(EndpointAddress, bool)>);

fn port_key(p: &EndpointPort) -> PortKey {
    (
        p.name.clone(),
        p.port,
        p.protocol.clone(),
        p.app_protocol.clone(),
    )
}

/// One address offering one port (or none, for a headless service without ports).
pub struct Offer {
    pub address: EndpointAddress,
    pub ready: bool,
    pub port: Option<EndpointPort>,
}

/// What the Endpoints of `svc` should list for `pods` (the pods it selects).
pub fn desired_subsets(svc: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let tolerate_unready = publishes_not_ready(svc);
    let service_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut offers = Vec::new();
    for pod in pods {
        if !belongs_in_endpoints(pod, tolerate_unready) {
            continue;
        }
        let Some(ip) = ipv4(pod) else { continue };
        let address = EndpointAddress {
            ip,
            hostname: hostname(pod, svc),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(pod)),
        };
        let ready = tolerate_unready || is_ready(pod);
        if service_ports.is_empty() {
            // Only a headless service has endpoints without ports (DNS needs no port).
            if is_headless(svc) {
                offers.push(Offer {
                    address,
                    ready,
                    port: None,
                });
            }
            continue;
        }
        for sp in &service_ports {
            let Some(port) = find_port(pod, sp) else {
                tracing::debug!(pod = ?pod.metadata.name, port = ?sp.name, "pod has no such port; left out of it");
                continue;
            };
            offers.push(Offer {
                address: address.clone(),
                ready,
                port: Some(EndpointPort {
                    name: sp.name.clone(),
                    port,
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                }),
            });
        }
    }
    repack(offers)
}

/// Upstream RepackSubsets: the set of (address, ready) offering each port, then one
/// subset per distinct set holding all the ports that set offers. The result is sorted
/// (subsets by their addresses, addresses by IP, ports by name), so equal inputs give
/// equal Endpoints and nothing is written when nothing changed.
pub fn repack(offers: Vec<Offer>) -> Vec<EndpointSubset> {
    let addr_key = |a: &EndpointAddress| {
        (
            a.ip.clone(),
            a.target_ref.as_ref().and_then(|r| r.uid.clone()),
        )
    };
    let mut by_port: BTreeMap<Option<PortKey>, (Option<EndpointPort>, Addresses)> = BTreeMap::new();
    for o in offers {
        let entry = by_port
            .entry(o.port.as_ref().map(port_key))
            .or_insert_with(|| (o.port.clone(), BTreeMap::new()));
        entry.1.insert(addr_key(&o.address), (o.address, o.ready));
    }
    // Group ports by the exact set of (address, ready) offering them.
    let mut by_addresses: BTreeMap<Vec<(AddrKey, bool)>, PortsAndAddresses> = BTreeMap::new();
    for (_, (port, addrs)) in by_port {
        let key: Vec<(AddrKey, bool)> = addrs
            .iter()
            .map(|(k, (_, ready))| (k.clone(), *ready))
            .collect();
        let entry = by_addresses
            .entry(key)
            .or_insert_with(|| (Vec::new(), addrs.into_values().collect()));
        entry.0.extend(port);
    }
    by_addresses
        .into_values()
        .map(|(ports, addrs)| {
            let (ready, not_ready): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|(_, r)| *r);
            let strip = |v: Vec<(EndpointAddress, bool)>| {
                let v: Vec<EndpointAddress> = v.into_iter().map(|(a, _)| a).collect();
                (!v.is_empty()).then_some(v)
            };
            EndpointSubset {
                addresses: strip(ready),
                not_ready_addresses: strip(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::endpoint_pods::fixtures::*;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    /// A subset as "ready IPs | not-ready IPs | ports" for readable assertions.
    fn show(subsets: &[EndpointSubset]) -> Vec<String> {
        subsets
            .iter()
            .map(|s| {
                let ips = |v: &Option<Vec<EndpointAddress>>| {
                    v.iter()
                        .flatten()
                        .map(|a| a.ip.clone())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let ports = s
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| format!("{}={}", p.name.clone().unwrap_or_default(), p.port))
                    .collect::<Vec<_>>();
                format!(
                    "{} | {} | {}",
                    ips(&s.addresses),
                    ips(&s.not_ready_addresses),
                    ports.join(",")
                )
            })
            .collect()
    }

    #[test]
    fn subsets_are_packed_by_the_ports_their_addresses_offer() {
        let named = |n: &str| IntOrString::String(n.into());
        let two_ports = || {
            service("web").ports(vec![
                svc_port("http", 80, named("http")),
                svc_port("metrics", 9100, IntOrString::Int(9100)),
            ])
        };
        let cases: Vec<(&str, Service, Vec<Pod>, Vec<&str>)> = vec![
            (
                "ready and unready pods share a subset",
                two_ports(),
                vec![
                    pod("a").ip("10.42.0.1").ready().port("http", 8080),
                    pod("b").ip("10.42.0.2").port("http", 8080),
                ],
                vec!["10.42.0.1 | 10.42.0.2 | http=8080,metrics=9100"],
            ),
            (
                "a pod without the named port gets its own subset",
                two_ports(),
                vec![
                    pod("a").ip("10.42.0.1").ready().port("http", 8080),
                    pod("b").ip("10.42.0.2").ready(),
                ],
                vec![
                    "10.42.0.1 |  | http=8080",
                    "10.42.0.1,10.42.0.2 |  | metrics=9100",
                ],
            ),
            (
                "named ports resolving differently split subsets",
                two_ports(),
                vec![
                    pod("a").ip("10.42.0.1").ready().port("http", 8080),
                    pod("b").ip("10.42.0.2").ready().port("http", 8081),
                ],
                vec![
                    "10.42.0.1 |  | http=8080",
                    "10.42.0.1,10.42.0.2 |  | metrics=9100",
                    "10.42.0.2 |  | http=8081",
                ],
            ),
            (
                "pods without an address, terminating or finished are left out",
                two_ports(),
                vec![
                    pod("a").ready().port("http", 8080),
                    pod("b")
                        .ip("10.42.0.2")
                        .ready()
                        .port("http", 8080)
                        .terminating(),
                    pod("c")
                        .ip("10.42.0.3")
                        .ready()
                        .port("http", 8080)
                        .phase("Succeeded"),
                ],
                vec![],
            ),
            (
                "publishNotReadyAddresses lists every pod as ready",
                two_ports().publish_not_ready(),
                vec![
                    pod("a").ip("10.42.0.1").port("http", 8080),
                    pod("b").ip("10.42.0.2").port("http", 8080).terminating(),
                ],
                vec!["10.42.0.1,10.42.0.2 |  | http=8080,metrics=9100"],
            ),
            (
                "a headless service without ports lists addresses only",
                service("web").headless(),
                vec![pod("a").ip("10.42.0.1").ready()],
                vec!["10.42.0.1 |  | "],
            ),
            (
                "a service without ports that is not headless lists nothing",
                service("web"),
                vec![pod("a").ip("10.42.0.1").ready()],
                vec![],
            ),
        ];
        for (name, svc, pods, want) in cases {
            let pods: Vec<&Pod> = pods.iter().collect();
            assert_eq!(show(&desired_subsets(&svc, &pods)), want, "{name}");
        }
    }

    #[test]
    fn addresses_carry_node_pod_and_hostname() {
        let svc = service("web")
            .headless()
            .ports(vec![svc_port("http", 80, IntOrString::Int(80))]);
        let p = pod("a")
            .ip("10.42.0.1")
            .ready()
            .on_node("sim-0")
            .host("a", "web");
        let subsets = desired_subsets(&svc, &[&p]);
        let addr = &subsets[0].addresses.as_ref().unwrap()[0];
        assert_eq!(addr.node_name.as_deref(), Some("sim-0"));
        assert_eq!(addr.hostname.as_deref(), Some("a"));
        let r = addr.target_ref.as_ref().unwrap();
        assert_eq!(
            (r.kind.as_deref(), r.name.as_deref(), r.uid.as_deref()),
            (Some("Pod"), Some("a"), Some("uid-a"))
        );
    }
}
