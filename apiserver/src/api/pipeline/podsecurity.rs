//! Upstream's `PodSecurity` admission plugin (k8s.io/pod-security-admission, v1.33) with
//! upstream's default configuration: every mode privileged:latest unless a namespace's
//! `pod-security.kubernetes.io/*` labels say otherwise, and no exemptions.
//!
//! - Pods (create, and updates that change a container image or add an ephemeral
//!   container): refused with 403 when they violate the enforce level; otherwise a
//!   `Warning` when they violate the warn level.
//! - Workloads with a pod template (Deployments, ReplicaSets, StatefulSets,
//!   DaemonSets, Jobs, CronJobs, ReplicationControllers, PodTemplates): warnings only.
//! - Namespaces: label values are validated (422), and a stricter enforce level warns
//!   about the existing pods that violate it.
//!
//! The audit mode's verdict goes to the server's log (target `audit`), as kybern has no
//! audit log to annotate.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use serde_json::Value;

use super::{AdmissionRequest, Operation, ValidatingAdmission};
use crate::api::Api;
use crate::object;
use crate::status::{ApiError, Cause, Result, Target};
use crate::watchcache::decode;

mod checks;
mod policy;

use checks::{evaluate, forbidden_detail, forbidden_reason};
use policy::{Level, LevelVersion, Policy};

pub struct PodSecurity;

#[async_trait]
impl ValidatingAdmission for PodSecurity {
    async fn validate(
        &self,
        api: &Api,
        request: &AdmissionRequest<'_>,
        obj: &Value,
        old: Option<&Value>,
    ) -> Result<()> {
        if !matches!(request.operation, Operation::Create | Operation::Update) {
            return Ok(());
        }
        let r = request.resource;
        match (r.group.as_str(), r.plural.as_str()) {
            ("", "namespaces") => validate_namespace(api, request, obj, old).await,
            ("", "pods") => validate_pod(api, request, obj, old).await,
            (group, plural) => match template_pointer(group, plural) {
                Some(pointer) => validate_workload(api, request, obj, pointer).await,
                None => Ok(()),
            },
        }
    }
}

/// Where a workload kind keeps its pod template.
fn template_pointer(group: &str, plural: &str) -> Option<&'static str> {
    match (group, plural) {
        ("", "replicationcontrollers")
        | ("apps", "replicasets" | "deployments" | "statefulsets" | "daemonsets")
        | ("batch", "jobs") => Some("/spec/template"),
        ("", "podtemplates") => Some("/template"),
        ("batch", "cronjobs") => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// Pod subresources whose writes cannot change what the policy checks.
const IGNORED_POD_SUBRESOURCES: &[&str] = &[
    "exec",
    "attach",
    "binding",
    "eviction",
    "log",
    "portforward",
    "proxy",
    "status",
];

/// The most existing pods a new enforce level is checked against (upstream's limit).
const NAMESPACE_MAX_PODS_TO_CHECK: usize = 3000;

fn labels(obj: &Value) -> BTreeMap<String, String> {
    object::labels(obj)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .collect()
}

fn invalid_labels(request: &AdmissionRequest<'_>, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid {
        target: Target::new("", "namespaces", request.name),
        kind: "Namespace".into(),
        causes,
    }
}

async fn validate_namespace(
    api: &Api,
    request: &AdmissionRequest<'_>,
    obj: &Value,
    old: Option<&Value>,
) -> Result<()> {
    if request.subresource.is_some() {
        return Ok(());
    }
    let (new_policy, new_errors) = Policy::from_labels(&labels(obj));
    let Some(old) = old.filter(|_| request.operation == Operation::Update) else {
        // A new namespace's labels must be valid; it has no pods to check.
        if !new_errors.is_empty() {
            return Err(invalid_labels(request, new_errors));
        }
        return Ok(());
    };
    let (old_policy, old_errors) = Policy::from_labels(&labels(old));
    // Labels that were already invalid (and are unchanged) do not block other updates.
    if !new_errors.is_empty() && (old_errors.is_empty() || new_errors != old_errors) {
        return Err(invalid_labels(request, new_errors));
    }
    let (new, old) = (new_policy.enforce, old_policy.enforce);
    let relaxed_or_same = new.version == old.version && new.level <= old.level;
    if new == old || new.level == Level::Privileged || relaxed_or_same {
        return Ok(());
    }
    let pods = namespace_pods(api, request.name).await?;
    for w in existing_pod_warnings(request.name, new, &pods) {
        request.warnings.push(w);
    }
    Ok(())
}

async fn validate_pod(
    api: &Api,
    request: &AdmissionRequest<'_>,
    obj: &Value,
    old: Option<&Value>,
) -> Result<()> {
    if request
        .subresource
        .is_some_and(|s| IGNORED_POD_SUBRESOURCES.contains(&s))
    {
        return Ok(());
    }
    // Before the namespace is read (upstream reads it first): most pod updates change
    // nothing the policy checks, and need no lookup.
    if let Some(old) = old.filter(|_| request.operation == Operation::Update) {
        if !significant_pod_update(obj, old) {
            return Ok(());
        }
    }
    let ns = request.namespace.unwrap_or("");
    let namespace = match namespace_labels(api, ns).await {
        Ok(Some(labels)) => labels,
        Ok(None) | Err(_) => {
            return Err(ApiError::Internal(format!(
                "failed to lookup namespace \"{ns}\""
            )))
        }
    };
    let (policy, errors) = Policy::from_labels(&namespace);
    if errors.is_empty() && policy.fully_privileged() {
        return Ok(());
    }
    let meta = obj.get("metadata").unwrap_or(&Value::Null);
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    evaluate_pod(request, &policy, &errors, meta, spec, true)
}

async fn validate_workload(
    api: &Api,
    request: &AdmissionRequest<'_>,
    obj: &Value,
    template: &str,
) -> Result<()> {
    if request.subresource.is_some() {
        return Ok(());
    }
    let ns = request.namespace.unwrap_or("");
    // Workloads are only warned about: a namespace that cannot be read lets them pass.
    let namespace = match namespace_labels(api, ns).await {
        Ok(Some(labels)) => labels,
        Ok(None) | Err(_) => {
            tracing::info!(target: "audit", namespace = ns, "pod-security.kubernetes.io/error: failed to lookup namespace");
            return Ok(());
        }
    };
    let (policy, errors) = Policy::from_labels(&namespace);
    if errors.is_empty()
        && policy.warn.level == Level::Privileged
        && policy.audit.level == Level::Privileged
    {
        return Ok(());
    }
    let Some(template) = obj.pointer(template).filter(|t| !t.is_null()) else {
        return Ok(());
    };
    let meta = template.get("metadata").unwrap_or(&Value::Null);
    let spec = template.get("spec").unwrap_or(&Value::Null);
    evaluate_pod(request, &policy, &errors, meta, spec, false)
}

/// Upstream's `EvaluatePod`: enforce (for pods) refuses, audit is logged, warn adds a
/// warning to a request that is not refused.
fn evaluate_pod(
    request: &AdmissionRequest<'_>,
    policy: &Policy,
    policy_errors: &[Cause],
    meta: &Value,
    spec: &Value,
    enforce: bool,
) -> Result<()> {
    let (ns, name) = (request.namespace.unwrap_or(""), request.name);
    if !policy_errors.is_empty() {
        let errors: Vec<String> = policy_errors
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        tracing::info!(target: "audit", namespace = ns, name, "pod-security.kubernetes.io/error: Failed to parse policy: {}", errors.join(", "));
    }
    let mut refusal = None;
    if enforce {
        let results = evaluate(policy.enforce, meta, spec);
        if !results.is_empty() {
            let r = request.resource;
            refusal = Some(ApiError::Forbidden(
                Target::new(&r.group, &r.plural, name),
                format!(
                    "violates PodSecurity \"{}\": {}",
                    policy.enforce,
                    forbidden_detail(&results)
                ),
                None,
            ));
        }
    }
    let audit = evaluate(policy.audit, meta, spec);
    if !audit.is_empty() {
        tracing::info!(
            target: "audit",
            namespace = ns,
            name,
            "pod-security.kubernetes.io/audit-violations: would violate PodSecurity \"{}\": {}",
            policy.audit,
            forbidden_detail(&audit)
        );
    }
    if let Some(e) = refusal {
        return Err(e);
    }
    let warn = evaluate(policy.warn, meta, spec);
    if !warn.is_empty() {
        request.warnings.push(format!(
            "would violate PodSecurity \"{}\": {}",
            policy.warn,
            forbidden_detail(&warn)
        ));
    }
    Ok(())
}

/// Whether a pod update changes what the policy looks at: the number of containers or
/// init containers, an image, or an ephemeral container added or changed (upstream's
/// `isSignificantPodUpdate`; every other checked field is immutable).
fn significant_pod_update(pod: &Value, old: &Value) -> bool {
    fn containers<'a>(p: &'a Value, field: &str) -> &'a [Value] {
        p.get("spec")
            .and_then(|s| s.get(field))
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }
    fn image(c: &Value) -> Option<&Value> {
        c.get("image")
    }
    for field in ["containers", "initContainers"] {
        let (new, old) = (containers(pod, field), containers(old, field));
        if new.len() != old.len() || new.iter().zip(old).any(|(n, o)| image(n) != image(o)) {
            return true;
        }
    }
    let old_ephemeral = containers(old, "ephemeralContainers");
    containers(pod, "ephemeralContainers").iter().any(|c| {
        match old_ephemeral
            .iter()
            .find(|o| o.get("name") == c.get("name"))
        {
            None => true,
            Some(o) => image(c) != image(o),
        }
    })
}

/// Upstream's warnings for a namespace whose enforce level became `enforce`: one line
/// saying so, then each distinct violation with the (first by name) pod showing it and
/// how many others do.
fn existing_pod_warnings(ns: &str, enforce: LevelVersion, pods: &[Value]) -> Vec<String> {
    let prioritized = prioritize(pods);
    let total = prioritized.len();
    let checked = &prioritized[..total.min(NAMESPACE_MAX_PODS_TO_CHECK)];
    // violation -> (first pod name, pod count), and the violations in the order seen.
    let mut counts: HashMap<String, (String, usize)> = HashMap::new();
    let mut order = Vec::new();
    for pod in checked {
        let meta = pod.get("metadata").unwrap_or(&Value::Null);
        let spec = pod.get("spec").unwrap_or(&Value::Null);
        let results = evaluate(enforce, meta, spec);
        if results.is_empty() {
            continue;
        }
        let warning = forbidden_reason(&results);
        let name = object::name(pod);
        let entry = counts.entry(warning.clone()).or_insert_with(|| {
            order.push(warning.clone());
            (name.to_string(), 0)
        });
        if name < entry.0.as_str() {
            entry.0 = name.to_string();
        }
        entry.1 += 1;
    }
    let mut warnings = Vec::new();
    if checked.len() < total {
        warnings.push(format!(
            "new PodSecurity enforce level only checked against the first {} of {total} existing pods",
            checked.len()
        ));
    }
    if !order.is_empty() {
        warnings.push(format!(
            "existing pods in namespace \"{ns}\" violate the new PodSecurity enforce level \"{enforce}\""
        ));
    }
    let mut per_pod: Vec<String> = order
        .into_iter()
        .map(|w| {
            let (pod, count) = &counts[&w];
            match count {
                1 => format!("{pod}: {w}"),
                2 => format!("{pod} (and 1 other pod): {w}"),
                n => format!("{pod} (and {} other pods): {w}", n - 1),
            }
        })
        .collect();
    per_pod.sort();
    warnings.extend(per_pod);
    warnings
}

/// Pods without a controller and the first pod of each controller first, then the
/// other pods of controllers already seen (upstream's `prioritizePods`), so the
/// checked pods cover as many distinct templates as they can.
fn prioritize(pods: &[Value]) -> Vec<&Value> {
    let mut seen = HashSet::new();
    let (mut first, mut duplicates) = (Vec::new(), Vec::new());
    for pod in pods {
        let controller = pod
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
            .map(|o| o.get("uid").and_then(Value::as_str).unwrap_or(""));
        match controller {
            Some(uid) if !seen.insert(uid) => duplicates.push(pod),
            _ => first.push(pod),
        }
    }
    first.extend(duplicates);
    first
}

/// The labels of namespace `ns`, from the watch cache or, if it has not caught up,
/// from storage; `None` when it does not exist.
async fn namespace_labels(api: &Api, ns: &str) -> Result<Option<BTreeMap<String, String>>> {
    let snap = api.registry.snapshot();
    let ns_res = snap
        .get("", "v1", "namespaces")
        .ok_or(ApiError::NoSuchResource)?;
    let key = ns_res.key(None, ns);
    if let Some(n) = api.cache(ns_res).await?.get(&key) {
        return Ok(Some(labels(&n)));
    }
    let stored = api.storage.get(&key).await?;
    let namespace = stored
        .map(|kv| decode(&kv.value, kv.mod_revision))
        .transpose()?;
    Ok(namespace.as_ref().map(labels))
}

/// The pods of namespace `ns`, from the watch cache.
async fn namespace_pods(api: &Api, ns: &str) -> Result<Vec<Value>> {
    let snap = api.registry.snapshot();
    let pods = snap.get("", "v1", "pods").ok_or(ApiError::NoSuchResource)?;
    let (items, _) = api.cache(pods).await?.list(&pods.prefix_in(Some(ns)));
    Ok(items.iter().map(|p| (**p).clone()).collect())
}

#[cfg(test)]
mod tests;
