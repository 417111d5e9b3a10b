//! The pure part of the EndpointSlice mirroring controller: the slices an Endpoints
//! should be mirrored into, and the writes that make the existing mirrored slices say
//! that (upstream pkg/controller/endpointslicemirroring's reconciler). The Endpoints'
//! subsets are first put in canonical form (upstream RepackSubsets), so one distinct
//! set of ports (and address family) gives one slice of at most
//! [`MAX_ENDPOINTS_PER_SUBSET`] endpoints; the rest are skipped and reported.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CorePort, EndpointSubset, Endpoints,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;

use crate::podcontrol::controller_ref;

/// Upstream's --mirroring-max-endpoints-per-subset default.
pub const MAX_ENDPOINTS_PER_SUBSET: usize = 1000;
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslicemirroring-controller.k8s.io";
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// An Endpoints labelled `"true"` with this is not mirrored (the apiserver's own).
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Endpoints used as leader-election locks carry this and are not mirrored.
pub const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
/// Annotations of the Endpoints that are not copied onto its slices.
const UNMIRRORED_ANNOTATIONS: [&str; 2] = [
    "endpoints.kubernetes.io/last-change-trigger-time",
    "kubectl.kubernetes.io/last-applied-configuration",
];

/// True unless the Endpoints is labelled skip-mirror or is a leader-election lock.
pub fn should_mirror(ep: &Endpoints) -> bool {
    ep.labels().get(SKIP_MIRROR_LABEL).map(String::as_str) != Some("true")
        && !ep.annotations().contains_key(LEADER_ANNOTATION)
}

/// (address type, then each port's name, port, protocol, appProtocol in sorted order):
/// which slice an endpoint belongs in.
pub type SliceKey = (String, Vec<(String, i32, String, Option<String>)>);

fn slice_key(address_type: &str, ports: &[EndpointPort]) -> SliceKey {
    let mut ports: Vec<_> = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or_default(),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.app_protocol.clone(),
            )
        })
        .collect();
    ports.sort();
    (address_type.to_string(), ports)
}

/// What one Endpoints should be mirrored as.
#[derive(Debug, Default, PartialEq)]
pub struct Desired {
    /// Per slice key: its ports and its endpoints, sorted by address.
    pub slices: BTreeMap<SliceKey, (Vec<EndpointPort>, Vec<Endpoint>)>,
    /// Addresses that are not IPs (reported as `InvalidIPAddress`).
    pub invalid: usize,
    /// Addresses not mirrored, invalid ones included (over the per-subset maximum
    /// otherwise, reported as `TooManyAddressesToMirror`).
    pub skipped: usize,
}

type PortId = (String, i32, String, Option<String>);
/// An address is the same address when it has the same IP and target.
type AddressId = (String, Option<String>);

/// The canonical form of `subsets` (upstream RepackSubsets): every address offering
/// exactly the same ports with the same readiness in one subset, an address ready on
/// a port if any subset says so, no address twice, subsets and addresses sorted.
pub fn repack(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    let mut addresses: BTreeMap<AddressId, EndpointAddress> = BTreeMap::new();
    let mut ports: BTreeMap<PortId, CorePort> = BTreeMap::new();
    // Per port (None: a subset without ports), each address and whether it is ready.
    let mut by_port: BTreeMap<Option<PortId>, BTreeMap<AddressId, bool>> = BTreeMap::new();
    for subset in subsets {
        let subset_ports: Vec<Option<PortId>> = match subset.ports.as_deref() {
            None | Some([]) => vec![None],
            Some(ps) => ps
                .iter()
                .map(|p| {
                    let id = (
                        p.name.clone().unwrap_or_default(),
                        p.port,
                        p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        p.app_protocol.clone(),
                    );
                    ports.insert(id.clone(), p.clone());
                    Some(id)
                })
                .collect(),
        };
        let listed = [
            (subset.addresses.as_deref().unwrap_or_default(), true),
            (
                subset.not_ready_addresses.as_deref().unwrap_or_default(),
                false,
            ),
        ];
        for (list, ready) in listed {
            for a in list {
                let id = (
                    a.ip.clone(),
                    a.target_ref.as_ref().and_then(|r| r.uid.clone()),
                );
                addresses.entry(id.clone()).or_insert_with(|| a.clone());
                for port in &subset_ports {
                    let seen = by_port.entry(port.clone()).or_default();
                    *seen.entry(id.clone()).or_insert(ready) |= ready;
                }
            }
        }
    }
    // Ports whose addresses and readiness are the same share one subset.
    let mut grouped: BTreeMap<BTreeMap<AddressId, bool>, BTreeSet<PortId>> = BTreeMap::new();
    for (port, members) in by_port {
        let ports_of = grouped.entry(members).or_default();
        ports_of.extend(port);
    }
    grouped
        .into_iter()
        .map(|(members, port_ids)| {
            let pick = |want: bool| -> Option<Vec<EndpointAddress>> {
                let list: Vec<EndpointAddress> = members
                    .iter()
                    .filter(|(_, r)| **r == want)
                    .map(|(id, _)| addresses[id].clone())
                    .collect();
                (!list.is_empty()).then_some(list)
            };
            EndpointSubset {
                addresses: pick(true),
                not_ready_addresses: pick(false),
                ports: Some(port_ids.iter().map(|p| ports[p].clone()).collect()),
            }
        })
        .collect()
}

/// An Endpoints address as a slice endpoint and its address type, or None if its IP
/// is not an IP. Only `ready` is set, as upstream does.
fn to_endpoint(address: &EndpointAddress, ready: bool) -> Option<(Endpoint, &'static str)> {
    let ip: IpAddr = address.ip.trim().parse().ok()?;
    let address_type = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    let endpoint = Endpoint {
        addresses: vec![ip.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: None,
            terminating: None,
        }),
        hostname: address.hostname.clone().filter(|h| !h.is_empty()),
        node_name: address.node_name.clone(),
        target_ref: address.target_ref.clone(),
        ..Default::default()
    };
    Some((endpoint, address_type))
}

fn to_slice_ports(ports: &[CorePort]) -> Vec<EndpointPort> {
    let mut out: Vec<EndpointPort> = ports
        .iter()
        .map(|p| EndpointPort {
            name: Some(p.name.clone().unwrap_or_default()),
            port: Some(p.port),
            protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
            app_protocol: p.app_protocol.clone(),
        })
        .collect();
    out.sort_by_key(|p| slice_key("", std::slice::from_ref(p)).1);
    out
}

/// The slices `ep` should be mirrored into, at most `max_per_subset` endpoints each
/// (ready addresses first).
pub fn desired(ep: &Endpoints, max_per_subset: usize) -> Desired {
    let mut out = Desired::default();
    for subset in repack(ep.subsets.as_deref().unwrap_or_default()) {
        let ports = to_slice_ports(subset.ports.as_deref().unwrap_or_default());
        let listed = [
            (subset.addresses.as_deref().unwrap_or_default(), true),
            (
                subset.not_ready_addresses.as_deref().unwrap_or_default(),
                false,
            ),
        ];
        let total: usize = listed.iter().map(|(l, _)| l.len()).sum();
        let mut added = 0;
        for (list, ready) in listed {
            for address in list {
                if added >= max_per_subset {
                    break;
                }
                match to_endpoint(address, ready) {
                    Some((endpoint, address_type)) => {
                        added += 1;
                        out.slices
                            .entry(slice_key(address_type, &ports))
                            .or_insert_with(|| (ports.clone(), Vec::new()))
                            .1
                            .push(endpoint);
                    }
                    None => out.invalid += 1,
                }
            }
        }
        out.skipped += total - added;
    }
    for (_, endpoints) in out.slices.values_mut() {
        endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
        // Two subsets of the same address type can meet in one slice key only by IP
        // spelling; keep the first of each address.
        endpoints.dedup_by(|a, b| a.addresses == b.addresses);
        endpoints.truncate(max_per_subset);
    }
    out
}

/// The labels of a slice mirroring `ep`: the Endpoints' own, with the service name and
/// this controller as manager.
pub fn slice_labels(ep: &Endpoints) -> BTreeMap<String, String> {
    let mut labels = ep.labels().clone();
    labels.insert(SERVICE_NAME_LABEL.into(), ep.name_any());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels
}

/// The annotations of a slice mirroring `ep`: the Endpoints' own, but its change
/// trigger time and kubectl's last applied configuration.
pub fn slice_annotations(ep: &Endpoints) -> BTreeMap<String, String> {
    let mut annotations = ep.annotations().clone();
    annotations.retain(|k, _| !UNMIRRORED_ANNOTATIONS.contains(&k.as_str()));
    annotations
}

/// A slice of `ep`'s, named `name`, or (when None) by the apiserver from `<name>-`.
pub fn new_slice(
    ep: &Endpoints,
    name: Option<String>,
    address_type: &str,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: name.is_none().then(|| format!("{}-", ep.name_any())),
            name,
            namespace: ep.namespace(),
            labels: Some(slice_labels(ep)),
            annotations: Some(slice_annotations(ep)),
            owner_references: Some(vec![controller_ref(ep)]),
            ..Default::default()
        },
        address_type: address_type.into(),
        endpoints,
        ports: Some(ports),
    }
}

pub use crate::shared::slice_writes::Plan;

fn owned_by(slice: &EndpointSlice, owner: &OwnerReference) -> bool {
    slice
        .owner_references()
        .iter()
        .any(|r| r.uid == owner.uid && r.controller == Some(true))
}

/// Plans the writes for `ep`, whose mirrored slices are `existing`: per slice key the
/// first existing slice (by name) is kept and rewritten when it differs, the others
/// deleted; a slice to delete is reused for one to create (keeping its name).
pub fn plan(ep: &Endpoints, existing: &[EndpointSlice], desired: Desired) -> Plan {
    let mut plan = Plan::default();
    let labels = slice_labels(ep);
    let annotations = slice_annotations(ep);
    let owner = controller_ref(ep);
    let mut existing: Vec<&EndpointSlice> = existing.iter().collect();
    existing.sort_by_key(|s| s.name_any());
    let mut by_key: BTreeMap<SliceKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        let key = slice_key(
            &slice.address_type,
            slice.ports.as_deref().unwrap_or_default(),
        );
        by_key.entry(key).or_default().push(slice);
    }
    for (key, (ports, endpoints)) in desired.slices {
        let mut current = by_key.remove(&key).unwrap_or_default().into_iter();
        match current.next() {
            Some(first) => {
                let same = first.endpoints == endpoints
                    && first.labels() == &labels
                    && first.annotations() == &annotations
                    && owned_by(first, &owner);
                if !same {
                    let mut slice =
                        new_slice(ep, first.metadata.name.clone(), &key.0, ports, endpoints);
                    slice.metadata.resource_version = first.metadata.resource_version.clone();
                    plan.update.push(slice);
                }
            }
            None => plan
                .create
                .push(new_slice(ep, None, &key.0, ports, endpoints)),
        }
        plan.delete.extend(current.cloned());
    }
    // Slices of port sets no longer wanted.
    plan.delete.extend(by_key.into_values().flatten().cloned());
    // Recycle: rewrite a slice that would be deleted instead of creating a new one of
    // the same address type (the type of a slice cannot change).
    let mut creates = Vec::new();
    for mut slice in std::mem::take(&mut plan.create) {
        let same_type = plan
            .delete
            .iter()
            .position(|old| old.address_type == slice.address_type);
        match same_type {
            Some(i) => {
                let old = plan.delete.remove(i);
                slice.metadata.generate_name = None;
                slice.metadata.name = old.metadata.name.clone();
                slice.metadata.resource_version = old.metadata.resource_version.clone();
                plan.update.push(slice);
            }
            None => creates.push(slice),
        }
    }
    plan.create = creates;
    plan
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
