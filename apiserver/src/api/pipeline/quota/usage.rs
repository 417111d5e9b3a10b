//! What an object counts against a ResourceQuota, as upstream's quota evaluators
//! (`pkg/quota/v1/evaluator/core`) compute it: object counts for every kind, compute
//! requests and limits of pods, node ports and load balancers of services, storage
//! of claims; and which quotas (by scope) an object falls under. Pure functions, shared
//! by the admission plugin and the quota controller.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::quantity::Quantity;

pub type ResourceList = BTreeMap<String, Quantity>;

/// The kinds whose object count has a legacy name besides `count/<resource>`.
const LEGACY_COUNTS: [&str; 7] = [
    "pods",
    "services",
    "configmaps",
    "secrets",
    "replicationcontrollers",
    "resourcequotas",
    "persistentvolumeclaims",
];

/// The compute resources that, once a quota tracks them, every container must state
/// (upstream's backward-compatible "must specify" rule).
const MUST_SPECIFY: [&str; 6] = [
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

pub fn parse_list(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| Some((k.clone(), Quantity::parse(q.as_str()?)?)))
        .collect()
}

pub fn to_json(list: &ResourceList) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, q)| (k.clone(), json!(q.to_string())))
            .collect(),
    )
}

/// `a=1,b=2` as upstream prints resource lists in quota messages.
pub fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, q)| format!("{k}={q}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `count/pods`, `count/deployments.apps`.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// Whether the quota resource `name` is one objects of `group`/`plural` count against.
pub fn tracks(group: &str, plural: &str, name: &str) -> bool {
    if name == count_name(group, plural) {
        return true;
    }
    if !group.is_empty() {
        return false;
    }
    if name == plural && LEGACY_COUNTS.contains(&plural) {
        return true;
    }
    match plural {
        "pods" => {
            matches!(name, "cpu" | "memory" | "ephemeral-storage")
                || name.starts_with("hugepages-")
                || name.starts_with("requests.")
                || name.starts_with("limits.")
        }
        "services" => matches!(name, "services.nodeports" | "services.loadbalancers"),
        "persistentvolumeclaims" => {
            name == "requests.storage"
                || name
                    .split_once(STORAGE_CLASS_SUFFIX)
                    .is_some_and(|(_, r)| r == "requests.storage" || r == "persistentvolumeclaims")
        }
        _ => false,
    }
}

/// What `obj` of `group`/`plural` uses.
pub fn usage(group: &str, plural: &str, obj: &Value) -> ResourceList {
    let mut used = ResourceList::new();
    used.insert(count_name(group, plural), Quantity::count(1));
    if !group.is_empty() {
        return used;
    }
    match plural {
        "pods" => {
            // `count/pods` counts every stored pod; `pods` and compute resources only
            // those that have not finished (upstream's QuotaV1Pod).
            if !pod_is_live(obj) {
                return used;
            }
            used.insert("pods".into(), Quantity::count(1));
            let (requests, limits) = pod_requests_and_limits(obj);
            for (name, q) in &requests {
                if matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage")
                    || name.starts_with("hugepages-")
                {
                    used.insert(name.clone(), *q);
                }
                used.insert(format!("requests.{name}"), *q);
            }
            for (name, q) in &limits {
                if matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                    used.insert(format!("limits.{name}"), *q);
                }
            }
        }
        "services" => {
            used.insert("services".into(), Quantity::count(1));
            let ports = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            match obj.pointer("/spec/type").and_then(Value::as_str) {
                Some("NodePort") => {
                    used.insert(
                        "services.nodeports".into(),
                        Quantity::count(ports.len() as i128),
                    );
                }
                Some("LoadBalancer") => {
                    // Without node ports allocated, only the explicitly set ones count.
                    let node_ports = if obj.pointer("/spec/allocateLoadBalancerNodePorts")
                        == Some(&Value::Bool(false))
                    {
                        ports.iter().filter(|p| p.get("nodePort").is_some()).count()
                    } else {
                        ports.len()
                    };
                    used.insert(
                        "services.nodeports".into(),
                        Quantity::count(node_ports as i128),
                    );
                    used.insert("services.loadbalancers".into(), Quantity::count(1));
                }
                _ => {}
            }
        }
        "persistentvolumeclaims" => {
            used.insert("persistentvolumeclaims".into(), Quantity::count(1));
            let class = obj
                .pointer("/spec/storageClassName")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty());
            if let Some(class) = class {
                used.insert(
                    format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
                    Quantity::count(1),
                );
            }
            if let Some(storage) = obj
                .pointer("/spec/resources/requests/storage")
                .and_then(Value::as_str)
                .and_then(Quantity::parse)
            {
                used.insert("requests.storage".into(), storage);
                if let Some(class) = class {
                    used.insert(
                        format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"),
                        storage,
                    );
                }
            }
        }
        p if LEGACY_COUNTS.contains(&p) => {
            used.insert(p.into(), Quantity::count(1));
        }
        _ => {}
    }
    used
}

/// A pod still holds its resources until it succeeded or failed.
fn pod_is_live(pod: &Value) -> bool {
    !matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

/// A container's requests, a missing request being its limit (as defaulting sets it).
fn container_resources(c: &Value) -> (ResourceList, ResourceList) {
    let limits = parse_list(c.pointer("/resources/limits"));
    let mut requests = parse_list(c.pointer("/resources/requests"));
    for (name, q) in &limits {
        requests.entry(name.clone()).or_insert(*q);
    }
    (requests, limits)
}

/// The pod's effective requests and limits: the sum over its containers, at least each
/// init container's (upstream's `PodRequests`/`PodLimits`), plus the overhead.
pub fn pod_requests_and_limits(pod: &Value) -> (ResourceList, ResourceList) {
    let containers = |f: &str| {
        pod.pointer(&format!("/spec/{f}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut requests = ResourceList::new();
    let mut limits = ResourceList::new();
    for c in containers("containers") {
        let (r, l) = container_resources(&c);
        add_into(&mut requests, &r);
        add_into(&mut limits, &l);
    }
    for c in containers("initContainers") {
        let (r, l) = container_resources(&c);
        max_into(&mut requests, &r);
        max_into(&mut limits, &l);
    }
    let overhead = parse_list(pod.pointer("/spec/overhead"));
    add_into(&mut requests, &overhead);
    for (name, q) in &overhead {
        if let Some(l) = limits.get_mut(name) {
            *l = *l + *q;
        }
    }
    (requests, limits)
}

pub fn add_into(into: &mut ResourceList, other: &ResourceList) {
    for (k, q) in other {
        let sum = into.get(k).map_or(*q, |have| *have + *q);
        into.insert(k.clone(), sum);
    }
}

fn max_into(into: &mut ResourceList, other: &ResourceList) {
    for (k, q) in other {
        if into.get(k).is_none_or(|have| have < q) {
            into.insert(k.clone(), *q);
        }
    }
}

/// Upstream's QoS class: BestEffort when no container states cpu or memory.
fn best_effort(pod: &Value) -> bool {
    ["containers", "initContainers"].iter().all(|f| {
        pod.pointer(&format!("/spec/{f}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .all(|c| {
                ["requests", "limits"].iter().all(|k| {
                    let list = parse_list(c.pointer(&format!("/resources/{k}")));
                    !list.contains_key("cpu") && !list.contains_key("memory")
                })
            })
    })
}

/// One scope a quota applies to (`spec.scopes` are `Exists` selectors).
struct ScopeSelector<'a> {
    scope: &'a str,
    operator: &'a str,
    values: Vec<&'a str>,
}

fn scope_selectors(quota: &Value) -> Vec<ScopeSelector<'_>> {
    let mut out: Vec<ScopeSelector<'_>> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|scope| ScopeSelector {
            scope,
            operator: "Exists",
            values: Vec::new(),
        })
        .collect();
    for e in quota
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(ScopeSelector {
            scope: e.get("scopeName").and_then(Value::as_str).unwrap_or(""),
            operator: e.get("operator").and_then(Value::as_str).unwrap_or(""),
            values: e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect(),
        });
    }
    out
}

fn pod_matches_scope(pod: &Value, s: &ScopeSelector<'_>) -> bool {
    let terminating = pod
        .pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|d| d >= 0);
    match s.scope {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort(pod),
        "NotBestEffort" => !best_effort(pod),
        "PriorityClass" => {
            let class = pod
                .pointer("/spec/priorityClassName")
                .and_then(Value::as_str)
                .unwrap_or("");
            match s.operator {
                "Exists" => !class.is_empty(),
                "In" => s.values.contains(&class),
                "NotIn" => !s.values.contains(&class),
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether `quota` applies to `obj`: it limits something the object uses, and the
/// object is in every one of its scopes (only pods have scopes).
pub fn quota_matches(
    quota: &Value,
    hard: &ResourceList,
    group: &str,
    plural: &str,
    obj: &Value,
) -> bool {
    if !hard.keys().any(|k| tracks(group, plural, k)) {
        return false;
    }
    let is_pod = group.is_empty() && plural == "pods";
    scope_selectors(quota)
        .iter()
        .all(|s| is_pod && pod_matches_scope(obj, s))
}

/// Upstream's pod constraint: each container states every compute resource in
/// `required` the quota limits. The error is upstream's text after "failed quota: q: ".
pub fn pod_constraints(pod: &Value, required: &BTreeSet<&str>) -> Result<(), String> {
    let required: BTreeSet<&str> = required
        .iter()
        .copied()
        .filter(|r| MUST_SPECIFY.contains(r))
        .collect();
    if required.is_empty() {
        return Ok(());
    }
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for f in ["containers", "initContainers"] {
        for c in pod
            .pointer(&format!("/spec/{f}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (requests, limits) = container_resources(c);
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            for r in &required {
                let stated = match *r {
                    "cpu" | "requests.cpu" => requests.contains_key("cpu"),
                    "memory" | "requests.memory" => requests.contains_key("memory"),
                    "limits.cpu" => limits.contains_key("cpu"),
                    _ => limits.contains_key("memory"),
                };
                if !stated {
                    missing.entry(r).or_default().insert(name.to_string());
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!(
                "{r} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
