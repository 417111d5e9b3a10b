//! The pure part of the EndpointSlice controller: the endpoints a Service should have,
//! grouped by the ports they offer (one slice holds one set of ports), and the plan
//! that turns the existing slices into those with few writes (upstream
//! reconcileByPortMapping): keep endpoints where they are, drop those gone, fill slices
//! with room, then create new slices of at most `max_per_slice`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use crate::podcontrol::{controller_ref, is_ready};
use crate::shared::endpoint_pods::{
    self as pods, belongs_in_endpoints, find_port, hostname, ipv4, target_ref,
};

/// Upstream's --max-endpoints-per-slice default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// (name, port, protocol, appProtocol) of each port, in service order: the key that
/// decides which slice an endpoint goes to.
pub type PortsKey = Vec<(Option<String>, Option<i32>, Option<String>, Option<String>)>;

pub fn ports_key(ports: &[EndpointPort]) -> PortsKey {
    ports
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.port,
                p.protocol.clone(),
                p.app_protocol.clone(),
            )
        })
        .collect()
}

/// Endpoints sharing one set of ports, keyed (and so ordered) by their address.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Group {
    pub ports: Vec<EndpointPort>,
    pub endpoints: BTreeMap<Ipv4Addr, Endpoint>,
}

/// The endpoints of `svc` for `pods`, grouped by the ports each pod resolves. Unlike
/// Endpoints, slices keep terminating pods (ready false, serving as their readiness,
/// terminating true) so that proxies can drain them.
pub fn desired_groups(svc: &Service, pods: &[&Pod]) -> BTreeMap<PortsKey, Group> {
    let publish_not_ready = pods::publishes_not_ready(svc);
    let service_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut groups: BTreeMap<PortsKey, Group> = BTreeMap::new();
    for pod in pods {
        if !belongs_in_endpoints(pod, true) {
            continue;
        }
        let Some(ip) = ipv4(pod) else { continue };
        let Ok(key) = ip.parse::<Ipv4Addr>() else {
            continue;
        };
        let ports: Vec<EndpointPort> = service_ports
            .iter()
            .filter_map(|sp| {
                Some(EndpointPort {
                    name: Some(sp.name.clone().unwrap_or_default()),
                    port: Some(find_port(pod, sp)?),
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let serving = publish_not_ready || is_ready(pod);
        let endpoint = Endpoint {
            addresses: vec![ip.clone()],
            conditions: Some(EndpointConditions {
                // Never ready while terminating, unless the service publishes everything.
                ready: Some(serving && (!terminating || publish_not_ready)),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: hostname(pod, svc),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(pod)),
            ..Default::default()
        };
        let group = groups.entry(ports_key(&ports)).or_insert_with(|| Group {
            ports,
            ..Default::default()
        });
        group.endpoints.insert(key, endpoint);
    }
    groups
}

/// The labels every slice of `svc` carries: the Service's, its name, our manager.
pub fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = pods::endpoint_labels(svc);
    labels.insert(SERVICE_NAME_LABEL.into(), svc.name_any());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels
}

/// A new slice of `svc` (named by the apiserver from `<service>-`).
pub fn new_slice(
    svc: &Service,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", svc.name_any())),
            namespace: svc.namespace(),
            labels: Some(slice_labels(svc)),
            owner_references: Some(vec![controller_ref(svc)]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(ports),
    }
}

pub use crate::shared::slice_writes::Plan;

fn address_of(e: &Endpoint) -> Option<Ipv4Addr> {
    e.addresses.first()?.parse().ok()
}

/// Plans the writes for `svc`, whose slices are `existing`, to hold `desired`.
pub fn plan(
    svc: &Service,
    existing: &[EndpointSlice],
    mut desired: BTreeMap<PortsKey, Group>,
    max_per_slice: usize,
) -> Plan {
    let mut plan = Plan::default();
    let labels = slice_labels(svc);
    let owner = controller_ref(svc);
    let mut existing: Vec<&EndpointSlice> = existing.iter().collect();
    existing.sort_by_key(|s| s.name_any());

    if desired.is_empty() {
        // Upstream keeps one placeholder slice, without endpoints or ports, for a
        // service that has none: its existence says "the controller saw this service".
        let mut slices = existing.into_iter();
        match slices.next() {
            Some(first) => {
                let placeholder = EndpointSlice {
                    endpoints: vec![],
                    ports: Some(vec![]),
                    ..first.clone()
                };
                if differs(
                    first,
                    &placeholder.endpoints,
                    &placeholder.ports,
                    &labels,
                    &owner,
                ) {
                    plan.update.push(with_meta(placeholder, &labels, &owner));
                }
            }
            None => plan.create.push(new_slice(svc, vec![], vec![])),
        }
        plan.delete.extend(slices.cloned());
        return plan;
    }

    // Keep endpoints in the slice that has them, with their current data.
    let mut kept: Vec<(EndpointSlice, PortsKey, bool)> = Vec::new();
    let mut placed: BTreeSet<(PortsKey, Ipv4Addr)> = BTreeSet::new();
    for slice in existing {
        let key = ports_key(slice.ports.as_deref().unwrap_or_default());
        let Some(group) = desired.get(&key) else {
            plan.delete.push(slice.clone());
            continue;
        };
        let endpoints: Vec<Endpoint> = slice
            .endpoints
            .iter()
            .filter_map(address_of)
            .filter(|a| placed.insert((key.clone(), *a)))
            .filter_map(|a| group.endpoints.get(&a).cloned())
            .collect();
        if endpoints.is_empty() {
            plan.delete.push(slice.clone());
            continue;
        }
        let changed = differs(slice, &endpoints, &slice.ports, &labels, &owner);
        kept.push((
            EndpointSlice {
                endpoints,
                ..slice.clone()
            },
            key,
            changed,
        ));
    }
    for (key, group) in desired.iter_mut() {
        group
            .endpoints
            .retain(|a, _| !placed.contains(&(key.clone(), *a)));
    }
    // Fill slices with room, then create new ones for what is left.
    for (slice, key, changed) in &mut kept {
        let Some(group) = desired.get_mut(key) else {
            continue;
        };
        while slice.endpoints.len() < max_per_slice {
            let Some((_, e)) = group.endpoints.pop_first() else {
                break;
            };
            slice.endpoints.push(e);
            *changed = true;
        }
    }
    for (slice, _, changed) in kept {
        if changed {
            plan.update.push(with_meta(slice, &labels, &owner));
        }
    }
    for group in desired.into_values() {
        let endpoints: Vec<Endpoint> = group.endpoints.into_values().collect();
        for chunk in endpoints.chunks(max_per_slice.max(1)) {
            plan.create
                .push(new_slice(svc, group.ports.clone(), chunk.to_vec()));
        }
    }
    plan
}

fn differs(
    slice: &EndpointSlice,
    endpoints: &[Endpoint],
    ports: &Option<Vec<EndpointPort>>,
    labels: &BTreeMap<String, String>,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> bool {
    slice.endpoints != endpoints
        || slice.ports.as_deref().unwrap_or_default() != ports.as_deref().unwrap_or_default()
        || slice.labels() != labels
        || !slice
            .owner_references()
            .iter()
            .any(|r| r.uid == owner.uid && r.controller == Some(true))
}

fn with_meta(
    mut slice: EndpointSlice,
    labels: &BTreeMap<String, String>,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> EndpointSlice {
    slice.metadata.labels = Some(labels.clone());
    if !slice.owner_references().iter().any(|r| r.uid == owner.uid) {
        slice
            .metadata
            .owner_references
            .get_or_insert_default()
            .push(owner.clone());
    }
    slice
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
