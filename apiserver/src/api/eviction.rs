//! `pods/eviction`: a POST of a policy/v1 (or v1beta1) Eviction deletes the pod only if
//! its PodDisruptionBudget allows one more disruption, as upstream's `EvictionREST`.
//!
//! In upstream's order: a pod that is not running (Pending, Succeeded, Failed, or
//! already being deleted) is deleted without looking at budgets; more than one budget
//! selecting the pod is a 500; with one budget, an unready pod is deleted without
//! spending the budget when the budget is met anyway (or its
//! `unhealthyPodEvictionPolicy` is `AlwaysAllow`), otherwise the budget's
//! `disruptionsAllowed` is checked and decremented and the pod recorded in
//! `disruptedPods`, in one guarded update of the budget's status (a lost race decides
//! again on the new status); when none is left the answer is 429 TooManyRequests with a
//! `DisruptionBudget` cause, which `kubectl drain` retries. The pod then gets the
//! `DisruptionTarget` condition and is deleted with the Eviction's `deleteOptions`
//! (grace period, preconditions, dry run), preconditioned on the resourceVersion the
//! decision was made on whenever the pod's readiness mattered.
//!
//! Routed from `api.rs` with one line:
//! `("", "pods", Some("eviction"), &Method::POST) => eviction::evict(self, &*pods()?, &req, name)`.

use std::sync::Arc;

use http::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::guarded::{self, Decision, Outcome};
use super::negotiate::decode_object;
use super::{json_response, Api, ApiRequest, Body};
use crate::object;
use crate::registry::Resource;
use crate::selectors::LabelSelector;
use crate::status::{ApiError, Result, Target};
use crate::storage::ListOptions;
use crate::watchcache::decode;

/// Upstream's `MaxDisruptedPodSize`: evictions the budget's controller has not yet seen.
const MAX_DISRUPTED_POD_SIZE: usize = 2000;

/// Attempts when the pod changes under an eviction (upstream's `EvictionsRetry` steps).
const POD_CONFLICT_ATTEMPTS: usize = 5;

const BUDGET_MESSAGE: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

pub(super) async fn evict(
    api: &Arc<Api>,
    pods: &Resource,
    req: &ApiRequest,
    name: &str,
) -> Result<Response<Body>> {
    let eviction = decode_object(&req.content_type, &req.body)?;
    if object::name(&eviction) != name {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Eviction object".into(),
        ));
    }
    let options = delete_options(&eviction, req)?;
    let dry_run = is_dry_run(&options);
    let ns = req.namespace().unwrap_or_default().to_string();

    // Pods that need no budget: deleted as they are, retried when the pod changed under
    // us (unless the client pinned a resourceVersion itself).
    let mut attempt = 0;
    let pod = loop {
        attempt += 1;
        let pod = super::read::get_object(api, pods, Some(&ns), name, false).await?;
        super::pipeline::noderestriction::eviction(&req.user, &pod)?;
        if !can_ignore_budget(&pod) {
            break pod;
        }
        let mut opts = options.clone();
        if enforces_resource_version(&pod) && rv_precondition(&options).is_none() {
            set_rv_precondition(&mut opts, object::meta_str(&pod, "resourceVersion"));
        }
        match condition_and_delete(api, pods, req, name, opts).await {
            Err(ApiError::Conflict(..))
                if attempt < POD_CONFLICT_ATTEMPTS && rv_precondition(&options).is_none() =>
            {
                continue
            }
            Err(e) => return Err(e),
            Ok(()) => return Ok(success()),
        }
    };

    let budgets = budgets_for(api, &ns, &pod).await?;
    let mut pin_resource_version = false;
    let mut budget_name = String::new();
    match budgets.as_slice() {
        [] => {}
        [budget] => {
            budget_name = object::name(budget).to_string();
            let policy = budget
                .pointer("/spec/unhealthyPodEvictionPolicy")
                .and_then(Value::as_str);
            let int = |p: &str| budget.pointer(p).and_then(Value::as_i64).unwrap_or(0);
            let (healthy, desired) = (int("/status/currentHealthy"), int("/status/desiredHealthy"));
            if !is_ready(&pod) && policy == Some("AlwaysAllow") {
                // An unready pod counts for no budget: deleting it disrupts nothing.
                pin_resource_version = true;
            } else if !is_ready(&pod) && healthy >= desired && desired > 0 {
                // IfHealthyBudget (the default): the application is whole without it.
                pin_resource_version = true;
            } else {
                check_and_decrement(api, &ns, &budget_name, name, dry_run).await?;
            }
        }
        _ => {
            // Upstream answers with a Status object (code 500, no reason), not an error.
            return Ok(json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                    "code": 500}),
            ));
        }
    }

    let mut opts = options.clone();
    if pin_resource_version {
        // The pod must still be the unready one the decision was made on.
        set_rv_precondition(&mut opts, object::meta_str(&pod, "resourceVersion"));
    }
    match condition_and_delete(api, pods, req, name, opts).await {
        Err(ApiError::Conflict(..))
            if pin_resource_version && rv_precondition(&options).is_none() =>
        {
            Err(still_processing(&budget_name))
        }
        Err(e) => Err(e),
        Ok(()) => Ok(success()),
    }
}

/// What a successful eviction answers (a create: 201).
fn success() -> Response<Body> {
    json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

/// The Eviction's deleteOptions with the request's `dryRun` folded in (upstream's
/// `propagateDryRun`).
fn delete_options(eviction: &Value, req: &ApiRequest) -> Result<Value> {
    let mut options = eviction
        .get("deleteOptions")
        .filter(|o| o.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    let query: Vec<String> = req
        .query
        .get("dryRun")
        .map(str::to_string)
        .into_iter()
        .collect();
    let body: Vec<String> = options
        .get("dryRun")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if body.is_empty() {
        if !query.is_empty() {
            options["dryRun"] = json!(query);
        }
    } else if !query.is_empty() && query != body {
        return Err(ApiError::BadRequest(format!(
            "Non-matching dry-run options in request and content: {query:?} and {body:?}"
        )));
    }
    Ok(options)
}

fn is_dry_run(options: &Value) -> bool {
    options
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|d| d.iter().any(|v| v == "All"))
}

fn rv_precondition(options: &Value) -> Option<&str> {
    options
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        .filter(|rv| !rv.is_empty())
}

fn set_rv_precondition(options: &mut Value, rv: Option<&str>) {
    if let Some(rv) = rv {
        if !options.get("preconditions").is_some_and(Value::is_object) {
            options["preconditions"] = json!({});
        }
        options["preconditions"]["resourceVersion"] = json!(rv);
    }
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Upstream's `canIgnorePDB`: a pod that is not running disrupts nothing by going.
fn can_ignore_budget(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending") || object::is_deleting(pod)
}

/// Upstream's `shouldEnforceResourceVersion`: a Pending pod may become ready meanwhile.
fn enforces_resource_version(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && !object::is_deleting(pod)
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

fn budgets_resource(api: &Api) -> Result<Arc<Resource>> {
    api.registry
        .snapshot()
        .get("policy", "v1", "poddisruptionbudgets")
        .cloned()
        .ok_or(ApiError::NoSuchResource)
}

/// The budgets of the pod's namespace whose selector selects it. As upstream's
/// eviction, a budget with an empty (or nil) selector selects nothing here.
async fn budgets_for(api: &Api, ns: &str, pod: &Value) -> Result<Vec<Value>> {
    let r = budgets_resource(api)?;
    let page = api
        .storage
        .list(&r.prefix_in(Some(ns)), ListOptions::default())
        .await?;
    let mut found = Vec::new();
    for kv in page.kvs {
        let budget = decode(&kv.value, kv.mod_revision)?;
        let Some(selector) = budget.pointer("/spec/selector") else {
            continue;
        };
        let Ok(selector) = LabelSelector::from_label_selector(selector) else {
            continue;
        };
        if !selector.is_empty() && selector.matches(object::labels(pod)) {
            found.push(budget);
        }
    }
    Ok(found)
}

/// 429 for a budget whose controller has not caught up (or a pod that changed while
/// being judged): try again in 10 s.
fn still_processing(budget: &str) -> ApiError {
    ApiError::TooManyRequests {
        message: BUDGET_MESSAGE.into(),
        retry_after: 10,
        causes: vec![(
            "DisruptionBudget",
            format!("The disruption budget {budget} is still being processed by the server."),
        )],
    }
}

/// Upstream's `checkAndDecrement`, as one guarded update of the budget's status: a
/// concurrent eviction or controller write makes it decide again on the new status.
async fn check_and_decrement(
    api: &Api,
    ns: &str,
    budget: &str,
    pod: &str,
    dry_run: bool,
) -> Result<()> {
    let r = budgets_resource(api)?;
    let key = r.key(Some(ns), budget);
    let target = Target::new("policy", "poddisruptionbudgets", budget);
    guarded::update(api, &key, &target, |current| {
        let mut pdb = current
            .cloned()
            .ok_or_else(|| ApiError::NotFound(target.clone()))?;
        let int = |p: &str| pdb.pointer(p).and_then(Value::as_i64).unwrap_or(0);
        if int("/status/observedGeneration") < int("/metadata/generation") {
            return Err(still_processing(budget));
        }
        let allowed = int("/status/disruptionsAllowed");
        let forbidden = |why: &str| {
            ApiError::Forbidden(
                Target::new("policy", "poddisruptionbudget", budget),
                why.into(),
                None,
            )
        };
        if allowed < 0 {
            return Err(forbidden("pdb disruptions allowed is negative"));
        }
        let disrupted = pdb
            .pointer("/status/disruptedPods")
            .and_then(Value::as_object)
            .map_or(0, |m| m.len());
        if disrupted > MAX_DISRUPTED_POD_SIZE {
            return Err(forbidden(
                "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
            ));
        }
        if allowed == 0 {
            return Err(ApiError::TooManyRequests {
                message: BUDGET_MESSAGE.into(),
                retry_after: 0,
                causes: vec![(
                    "DisruptionBudget",
                    format!(
                        "The disruption budget {budget} needs {} healthy pods and has {} currently",
                        int("/status/desiredHealthy"),
                        int("/status/currentHealthy")
                    ),
                )],
            });
        }
        if dry_run {
            return Ok(Decision::Unchanged);
        }
        let status = object_field(&mut pdb, "status");
        status["disruptionsAllowed"] = json!(allowed - 1);
        object_field(status, "disruptedPods")[pod] = json!(object::now_rfc3339());
        if allowed - 1 == 0 {
            set_disruption_allowed_false(status);
        }
        Ok(Decision::Write(pdb))
    })
    .await
    .map(drop)
}

/// `obj[field]`, made an object first if it is missing or not one.
fn object_field<'a>(obj: &'a mut Value, field: &str) -> &'a mut Value {
    if !obj.get(field).is_some_and(Value::is_object) {
        obj[field] = json!({});
    }
    &mut obj[field]
}

/// Upstream's `UpdateDisruptionAllowedCondition` once no disruption is left.
fn set_disruption_allowed_false(status: &mut Value) {
    let generation = status
        .get("observedGeneration")
        .cloned()
        .unwrap_or(json!(0));
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    let conditions = status["conditions"]
        .as_array_mut()
        .expect("made an array above");
    let new = json!({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods",
        "message": "", "observedGeneration": generation, "lastTransitionTime": object::now_rfc3339()});
    match conditions
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("DisruptionAllowed"))
    {
        Some(c) if c.get("status").and_then(Value::as_str) == Some("False") => {
            c["reason"] = new["reason"].clone();
            c["message"] = new["message"].clone();
            c["observedGeneration"] = new["observedGeneration"].clone();
        }
        Some(c) => *c = new,
        None => conditions.push(new),
    }
}

/// Upstream's `addConditionAndDeletePod`: marks the pod `DisruptionTarget` (reason
/// `EvictionByEvictionAPI`), then deletes it through the ordinary delete path with
/// `options` (a resourceVersion precondition moves to the marked pod's).
async fn condition_and_delete(
    api: &Arc<Api>,
    pods: &Resource,
    req: &ApiRequest,
    name: &str,
    mut options: Value,
) -> Result<()> {
    if !is_dry_run(&options) {
        let key = pods.key(req.namespace(), name);
        let target = Target::new("", "pods", name);
        let uid = options
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .map(str::to_string);
        let rv = rv_precondition(&options).map(str::to_string);
        let outcome = guarded::update(api, &key, &target, |current| {
            let mut pod = current
                .cloned()
                .ok_or_else(|| ApiError::NotFound(target.clone()))?;
            let actual_uid = object::meta_str(&pod, "uid").unwrap_or("");
            if let Some(uid) = uid.as_deref().filter(|u| *u != actual_uid) {
                return Err(ApiError::Conflict(
                    target.clone(),
                    format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual_uid}"),
                ));
            }
            let actual_rv = object::meta_str(&pod, "resourceVersion").unwrap_or("");
            if let Some(rv) = rv.as_deref().filter(|rv| *rv != actual_rv) {
                return Err(ApiError::Conflict(
                    target.clone(),
                    format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual_rv}"),
                ));
            }
            Ok(if mark_disruption_target(&mut pod) {
                Decision::Write(pod)
            } else {
                Decision::Unchanged
            })
        })
        .await?;
        if let (Outcome::Written(pod), Some(_)) = (&outcome, &rv) {
            set_rv_precondition(&mut options, object::meta_str(pod, "resourceVersion"));
        }
    }
    let mut delete = req.clone();
    delete.method = Method::DELETE;
    delete.path.subresource = None;
    delete.content_type = "application/json".into();
    delete.body = crate::json::to_vec(&options).into();
    super::write::delete(api, pods, &delete, name)
        .await
        .map(drop)
}

/// Sets the pod's `DisruptionTarget` condition; false when it was already so.
fn mark_disruption_target(pod: &mut Value) -> bool {
    let status = object_field(pod, "status");
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    let conditions = status["conditions"]
        .as_array_mut()
        .expect("made an array above");
    let (reason, message) = ("EvictionByEvictionAPI", "Eviction API: evicting");
    let existing = conditions
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("DisruptionTarget"));
    match existing {
        Some(c)
            if c.get("status").and_then(Value::as_str) == Some("True")
                && c.get("reason").and_then(Value::as_str) == Some(reason)
                && c.get("message").and_then(Value::as_str) == Some(message) =>
        {
            false
        }
        Some(c) if c.get("status").and_then(Value::as_str) == Some("True") => {
            c["reason"] = json!(reason);
            c["message"] = json!(message);
            true
        }
        other => {
            let new = json!({"type": "DisruptionTarget", "status": "True", "lastProbeTime": null,
                "lastTransitionTime": object::now_rfc3339(), "reason": reason, "message": message});
            match other {
                Some(c) => *c = new,
                None => conditions.push(new),
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(phase: &str, ready: bool, deleting: bool) -> Value {
        let mut p = json!({"metadata": {"name": "p"}, "status": {"phase": phase,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        if deleting {
            p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        p
    }

    #[test]
    fn only_a_running_pod_that_is_not_being_deleted_needs_its_budget() {
        let cases = [
            ("pending", pod("Pending", false, false), true),
            ("succeeded", pod("Succeeded", false, false), true),
            ("failed", pod("Failed", false, false), true),
            ("running and deleting", pod("Running", true, true), true),
            ("running ready", pod("Running", true, false), false),
            ("running unready", pod("Running", false, false), false),
        ];
        for (name, p, want) in cases {
            assert_eq!(can_ignore_budget(&p), want, "{name}");
        }
    }

    #[test]
    fn marking_a_pod_disruption_target_twice_writes_once() {
        let mut p = pod("Running", true, false);
        assert!(mark_disruption_target(&mut p), "first mark");
        assert!(
            !mark_disruption_target(&mut p),
            "second mark changes nothing"
        );
        let c = &p["status"]["conditions"][1];
        assert_eq!(c["reason"], "EvictionByEvictionAPI");
        assert_eq!(c["message"], "Eviction API: evicting");
    }
}
