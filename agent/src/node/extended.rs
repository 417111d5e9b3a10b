//! Extended resources (`example.com/foo`) that an operator or a device plugin's helper
//! patched into the node's capacity: the agent's own reports keep them, and offer each as
//! allocatable too, as the kubelet's MachineInfo setter copies every capacity entry.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::NodeStatus;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Upstream's `IsExtendedResourceName`: a name with a domain that is not kubernetes.io's
/// (those are native resources) and not a quota's `requests.` form.
pub fn is_extended(name: &str) -> bool {
    let Some((domain, _)) = name.split_once('/') else {
        return false;
    };
    let native = domain == "kubernetes.io" || domain.ends_with(".kubernetes.io");
    !native && !name.starts_with("requests.")
}

/// Carries the extended resources of the node's current capacity (`previous`) into the
/// agent's new report, in capacity and allocatable. Returns the extended resources whose
/// allocatable must be removed because their capacity is gone (a merge patch keeps keys it
/// does not name, so the report names them with null).
pub fn keep(new: &mut NodeStatus, previous: Option<&NodeStatus>) -> Vec<String> {
    let empty = BTreeMap::new();
    let old_capacity = previous.and_then(|p| p.capacity.as_ref()).unwrap_or(&empty);
    let extended: Vec<(&String, &Quantity)> = old_capacity
        .iter()
        .filter(|(name, _)| is_extended(name))
        .collect();
    let capacity = new.capacity.get_or_insert_with(BTreeMap::new);
    let allocatable = new.allocatable.get_or_insert_with(BTreeMap::new);
    for (name, quantity) in extended {
        capacity
            .entry(name.clone())
            .or_insert_with(|| quantity.clone());
        allocatable
            .entry(name.clone())
            .or_insert_with(|| quantity.clone());
    }
    previous
        .and_then(|p| p.allocatable.as_ref())
        .into_iter()
        .flat_map(|a| a.keys())
        .filter(|name| is_extended(name) && !capacity.contains_key(*name))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect(),
        )
    }

    #[test]
    fn only_resources_outside_kubernetes_io_are_extended() {
        let cases = [
            ("example.com/foo", true),
            ("nvidia.com/gpu", true),
            ("cpu", false),
            ("hugepages-2Mi", false),
            ("kubernetes.io/batch-cpu", false),
            ("node.kubernetes.io/thing", false),
            ("requests.example.com/foo", false),
        ];
        for (name, want) in cases {
            assert_eq!(is_extended(name), want, "{name}");
        }
    }

    #[test]
    fn an_extended_resource_patched_into_capacity_is_kept_and_becomes_allocatable() {
        let previous = NodeStatus {
            capacity: resources(&[("cpu", "2"), ("example.com/foo", "4")]),
            allocatable: resources(&[("cpu", "2")]),
            ..Default::default()
        };
        let mut new = NodeStatus {
            capacity: resources(&[("cpu", "2")]),
            allocatable: resources(&[("cpu", "2")]),
            ..Default::default()
        };
        let removed = keep(&mut new, Some(&previous));
        assert!(removed.is_empty(), "{removed:?}");
        assert_eq!(
            new.capacity,
            resources(&[("cpu", "2"), ("example.com/foo", "4")])
        );
        assert_eq!(
            new.allocatable,
            resources(&[("cpu", "2"), ("example.com/foo", "4")])
        );
    }

    #[test]
    fn an_extended_resource_removed_from_capacity_leaves_allocatable() {
        let previous = NodeStatus {
            capacity: resources(&[("cpu", "2")]),
            allocatable: resources(&[("cpu", "2"), ("example.com/foo", "4")]),
            ..Default::default()
        };
        let mut new = NodeStatus {
            capacity: resources(&[("cpu", "2")]),
            allocatable: resources(&[("cpu", "2")]),
            ..Default::default()
        };
        assert_eq!(keep(&mut new, Some(&previous)), ["example.com/foo"]);
        assert_eq!(new.allocatable, resources(&[("cpu", "2")]));
    }
}
