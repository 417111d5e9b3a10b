//! Upstream's `LimitRanger` admission plugin: the LimitRanges of a namespace give a
//! created pod's containers their default requests and limits (recorded in the
//! `kubernetes.io/limit-ranger` annotation), and refuse pods and claims outside their
//! min, max and maxLimitRequestRatio with upstream's 403 messages. Pod updates are
//! left alone (containers cannot change), as upstream.

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use super::quota::quantity::Quantity;
use super::quota::usage::{parse_list, pod_requests_and_limits, ResourceList};
use super::{AdmissionRequest, MutatingAdmission, Operation, ValidatingAdmission};
use crate::api::Api;
use crate::status::{ApiError, Result, Target};

pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

pub struct LimitRanger;

/// What kind of object this write is to LimitRanger, if any.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Subject {
    Pod,
    Claim,
}

fn subject(request: &AdmissionRequest<'_>) -> Option<Subject> {
    let r = request.resource;
    if request.subresource.is_some() || !r.group.is_empty() {
        return None;
    }
    match (r.plural.as_str(), request.operation) {
        ("pods", Operation::Create) => Some(Subject::Pod),
        ("persistentvolumeclaims", Operation::Create | Operation::Update) => Some(Subject::Claim),
        _ => None,
    }
}

/// The namespace's LimitRange items (each `spec.limits` entry), in name order.
async fn limit_items(api: &Api, namespace: &str) -> Result<Vec<Value>> {
    let snap = api.registry.snapshot();
    let Some(res) = snap.get("", "v1", "limitranges") else {
        return Ok(Vec::new());
    };
    let (mut ranges, _) = api.cache(res).await?.list(&res.prefix_in(Some(namespace)));
    ranges.sort_by(|a, b| crate::object::name(a).cmp(crate::object::name(b)));
    Ok(ranges
        .iter()
        .flat_map(|r| {
            r.pointer("/spec/limits")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .collect())
}

/// A Container item's default limits and requests, after upstream's LimitRange
/// defaulting: the limit defaults to max, the request to the default limit, then to min.
fn container_defaults(item: &Value) -> (ResourceList, ResourceList) {
    let mut limits = parse_list(item.get("default"));
    for (k, q) in parse_list(item.get("max")) {
        limits.entry(k).or_insert(q);
    }
    let mut requests = parse_list(item.get("defaultRequest"));
    for (k, q) in &limits {
        requests.entry(k.clone()).or_insert(*q);
    }
    for (k, q) in parse_list(item.get("min")) {
        requests.entry(k).or_insert(q);
    }
    (limits, requests)
}

/// Fills what a container leaves out; the phrases the annotation lists.
fn merge_container(
    c: &mut Map<String, Value>,
    limits: &ResourceList,
    requests: &ResourceList,
    kind: &str,
) -> Vec<String> {
    let name = c
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let resources = c.entry("resources").or_insert_with(|| json!({}));
    let mut said = Vec::new();
    // Upstream's pod defaulting already made a limit without a request the request.
    let stated_limits = resources.get("limits").cloned();
    if let (Some(stated), Some(r)) = (
        stated_limits.as_ref().and_then(Value::as_object),
        resources.as_object_mut(),
    ) {
        let reqs = r.entry("requests").or_insert_with(|| json!({}));
        if let Some(reqs) = reqs.as_object_mut() {
            for (k, v) in stated {
                reqs.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    let mut fill = |field: &str, defaults: &ResourceList, what: &str| {
        let mut set: Vec<&str> = Vec::new();
        let Some(r) = resources.as_object_mut() else {
            return;
        };
        let list = r.entry(field).or_insert_with(|| json!({}));
        let Some(list) = list.as_object_mut() else {
            return;
        };
        for (k, q) in defaults {
            if !list.contains_key(k) {
                list.insert(k.clone(), json!(q.to_string()));
                set.push(k);
            }
        }
        if !set.is_empty() {
            set.sort();
            said.push(format!("{} {what} for {kind} {name}", set.join(", ")));
        }
    };
    fill("requests", requests, "request");
    fill("limits", limits, "limit");
    if let Some(r) = resources.as_object_mut() {
        for field in ["requests", "limits"] {
            if r.get(field)
                .and_then(Value::as_object)
                .is_some_and(Map::is_empty)
            {
                r.remove(field);
            }
        }
    }
    said
}

/// Upstream's `PodMutateLimitFunc` for every Container item.
fn default_pod(pod: &mut Value, items: &[Value]) {
    let mut said = Vec::new();
    for item in items
        .iter()
        .filter(|i| i.get("type").and_then(Value::as_str) == Some("Container"))
    {
        let (limits, requests) = container_defaults(item);
        for (field, kind) in [
            ("containers", "container"),
            ("initContainers", "init container"),
        ] {
            let Some(list) = pod
                .pointer_mut(&format!("/spec/{field}"))
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for c in list.iter_mut().filter_map(Value::as_object_mut) {
                said.extend(merge_container(c, &limits, &requests, kind));
            }
        }
    }
    if !said.is_empty() {
        let meta = crate::object::metadata_mut(pod);
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if !annotations.is_object() {
            *annotations = json!({});
        }
        annotations[ANNOTATION] = json!(format!("LimitRanger plugin set: {}", said.join("; ")));
    }
}

fn min_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let Some(req) = requests.get(name) else {
        return Some(format!(
            "minimum {name} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if req < enforced {
        return Some(format!(
            "minimum {name} usage per {kind} is {enforced}, but request is {req}"
        ));
    }
    match limits.get(name) {
        Some(lim) if lim < enforced => Some(format!(
            "minimum {name} usage per {kind} is {enforced}, but limit is {lim}"
        )),
        _ => None,
    }
}

fn max_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let Some(lim) = limits.get(name) else {
        return Some(format!(
            "maximum {name} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if lim > enforced {
        return Some(format!(
            "maximum {name} usage per {kind} is {enforced}, but limit is {lim}"
        ));
    }
    match requests.get(name) {
        Some(req) if req > enforced => Some(format!(
            "maximum {name} usage per {kind} is {enforced}, but request is {req}"
        )),
        _ => None,
    }
}

fn ratio_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let req = requests.get(name).map_or(0, |q| q.milli);
    let lim = limits.get(name).map_or(0, |q| q.milli);
    if req == 0 {
        return Some(format!("{name} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"));
    }
    if lim == 0 {
        return Some(format!("{name} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"));
    }
    let ratio = lim as f64 / req as f64;
    (ratio * 1000.0 > enforced.milli as f64).then(|| {
        format!("{name} max limit to request ratio per {kind} is {enforced}, but provided ratio is {ratio:.6}")
    })
}

/// Every min, max and ratio of `item` checked against one set of requests and limits.
fn check(
    item: &Value,
    kind: &str,
    requests: &ResourceList,
    limits: &ResourceList,
    errors: &mut Vec<String>,
) {
    for (name, q) in parse_list(item.get("min")) {
        errors.extend(min_constraint(kind, &name, &q, requests, limits));
    }
    for (name, q) in parse_list(item.get("max")) {
        errors.extend(max_constraint(kind, &name, &q, requests, limits));
    }
    for (name, q) in parse_list(item.get("maxLimitRequestRatio")) {
        errors.extend(ratio_constraint(kind, &name, &q, requests, limits));
    }
}

/// Upstream's `PodValidateLimitFunc` and `PersistentVolumeClaimValidateLimitFunc`.
fn violations(subject: Subject, obj: &Value, items: &[Value]) -> Vec<String> {
    let mut errors = Vec::new();
    for item in items {
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
        match (subject, kind) {
            (Subject::Pod, "Container") => {
                for field in ["containers", "initContainers"] {
                    for c in obj
                        .pointer(&format!("/spec/{field}"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let requests = parse_list(c.pointer("/resources/requests"));
                        let limits = parse_list(c.pointer("/resources/limits"));
                        check(item, kind, &requests, &limits, &mut errors);
                    }
                }
            }
            (Subject::Pod, "Pod") => {
                let (requests, limits) = pod_requests_and_limits(obj);
                check(item, kind, &requests, &limits, &mut errors);
            }
            (Subject::Claim, "PersistentVolumeClaim") => {
                let requests = parse_list(obj.pointer("/spec/resources/requests"));
                for (name, q) in parse_list(item.get("min")) {
                    errors.extend(min_constraint(
                        kind,
                        &name,
                        &q,
                        &requests,
                        &ResourceList::new(),
                    ));
                }
                for (name, q) in parse_list(item.get("max")) {
                    errors.extend(match requests.get(&name) {
                        None => Some(format!(
                            "maximum {name} usage per {kind} is {q}.  No request is specified"
                        )),
                        Some(req) if *req > q => Some(format!(
                            "maximum {name} usage per {kind} is {q}, but request is {req}"
                        )),
                        Some(_) => None,
                    });
                }
            }
            _ => {}
        }
    }
    errors
}

#[async_trait]
impl MutatingAdmission for LimitRanger {
    async fn admit(
        &self,
        api: &Api,
        request: &AdmissionRequest<'_>,
        obj: &mut Value,
        _old: Option<&Value>,
    ) -> Result<()> {
        let (Some(Subject::Pod), Some(ns)) = (subject(request), request.namespace) else {
            return Ok(());
        };
        let items = limit_items(api, ns).await?;
        if items.is_empty() {
            return Ok(());
        }
        default_pod(obj, &items);
        // The QoS class was derived before admission; the defaults may change it.
        if obj.pointer("/status/qosClass").is_some() {
            obj["status"]["qosClass"] = json!(crate::api::kinds::pod::qos_class(obj));
        }
        Ok(())
    }
}

#[async_trait]
impl ValidatingAdmission for LimitRanger {
    async fn validate(
        &self,
        api: &Api,
        request: &AdmissionRequest<'_>,
        obj: &Value,
        old: Option<&Value>,
    ) -> Result<()> {
        let (Some(subject), Some(ns)) = (subject(request), request.namespace) else {
            return Ok(());
        };
        if old.is_some_and(crate::object::is_deleting) {
            return Ok(());
        }
        let items = limit_items(api, ns).await?;
        let mut errors = violations(subject, obj, &items);
        if errors.is_empty() {
            return Ok(());
        }
        // Upstream's aggregate error: one message alone, several in brackets.
        let message = if errors.len() == 1 {
            errors.swap_remove(0)
        } else {
            format!("[{}]", errors.join(", "))
        };
        let r = request.resource;
        Err(ApiError::Forbidden(
            Target::new(&r.group, &r.plural, request.name),
            message,
            None,
        ))
    }
}

#[cfg(test)]
#[path = "limitranger_tests.rs"]
mod tests;
