//! Upstream's `ValidatingAdmissionPolicy` plugin: every ValidatingAdmissionPolicy
//! (admissionregistration.k8s.io/v1, from the watch cache, in name order) whose
//! `matchConstraints` match a write is evaluated for each of its bindings whose
//! `matchResources` match too, once per param object (`paramKind` + the binding's
//! `paramRef`: name or selector, namespace, parameterNotFoundAction). CEL sees
//! `object`, `oldObject`, `request`, `params`, `namespaceObject` and `variables`
//! (evaluated in order, each may read the earlier ones); `matchConditions` skip the
//! policy when one is false. A false validation is a decision for the binding's
//! actions: Deny refuses the write (upstream's message and the reason's code, 422 by
//! default), Warn adds a `Warning`, Audit publishes upstream's
//! `validation.policy.admission.k8s.io/validation_failure` audit annotation. Runtime
//! errors under failurePolicy Fail are decisions for the actions too; configuration
//! errors follow the failurePolicy alone. `auditAnnotations` publish
//! `<policy>/<key>: <value>`. kybern has no audit log: audit annotations go to the
//! server's log on tracing target `audit`, as PodSecurity's do.
//!
//! Compiled policies are cached per resourceVersion; no request compiles.
//! `authorizer` asks `system:masters` membership, then RBAC, for the request's user.
//! `status.typeChecking` is [`typecheck`]'s, written after each spec change.

mod evaluate;
pub(crate) mod policy;
pub(crate) mod typecheck;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{json, Value};

use super::webhook::hooks::Hook;
use super::webhook::Scene;
use super::{
    AdmissionRequest, Attributes, Authorizer, Operation, ResourceAttributes, UserInfo,
    ValidatingAdmission, Verdict,
};
use crate::api::Api;
use crate::registry::Resource;
use crate::status::{ApiError, Result, Target};
use evaluate::evaluate;
use policy::{Binding, Matcher, Policy};

/// Compiled policies by name, each with the resourceVersion it was compiled from.
type Compiled = HashMap<String, (String, Arc<Policy>)>;

/// The plugin, with its compiled policies and the authorizer CEL's `authorizer` asks.
#[derive(Clone, Default)]
pub struct ValidatingAdmissionPolicy {
    compiled: Arc<Mutex<Compiled>>,
    authorizer: Option<Arc<dyn Authorizer>>,
}

/// What one evaluation decided against the request.
struct Denial {
    message: String,
    reason: String,
}

impl ValidatingAdmissionPolicy {
    /// The plugin whose policies' `authorizer` asks `system:masters` membership, then
    /// `authorizer` (what `kybern server` runs: RBAC).
    pub fn with_authorizer(authorizer: impl Authorizer + 'static) -> Self {
        ValidatingAdmissionPolicy {
            compiled: Default::default(),
            authorizer: Some(Arc::new(authorizer)),
        }
    }

    /// CEL's `authorizer` for `user`, if this plugin has an authorizer.
    fn check(&self, user: &UserInfo) -> Option<crate::cel::Check> {
        Some(cel_check(self.authorizer.as_ref()?, user))
    }

    fn policy(&self, obj: &Value) -> Arc<Policy> {
        let name = crate::object::name(obj);
        let rv = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let mut cache = self.compiled.lock().expect("policy cache poisoned");
        if let Some((cached_rv, p)) = cache.get(name) {
            if cached_rv == rv {
                return Arc::clone(p);
            }
        }
        let p = Arc::new(Policy::compile(obj));
        cache.insert(name.to_string(), (rv.to_string(), Arc::clone(&p)));
        p
    }
}

/// The version of the resource a matcher shows the objects in, if it matches.
fn matched(
    api: &Api,
    scene: &Scene<'_>,
    m: &Matcher,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Option<Arc<Resource>> {
    let name = scene.request.name;
    let hit = |rules: &[(Hook, Vec<String>)]| {
        rules.iter().find_map(|(hook, names)| {
            if !names.is_empty() && !names.iter().any(|n| n == name) {
                return None;
            }
            scene.matches(api, hook, obj, old)
        })
    };
    let seen = hit(&m.rules)?;
    if hit(&m.excluded).is_some() {
        return None;
    }
    Some(seen)
}

/// The param objects a binding selects, `None` when none is found.
async fn params(
    api: &Api,
    request: &AdmissionRequest<'_>,
    kind: &(String, String),
    binding: &Binding,
) -> std::result::Result<Option<Vec<Value>>, String> {
    let Some(param_ref) = &binding.param_ref else {
        return Err(format!(
            "failed to configure binding: binding '{}' has no paramRef but the policy has a paramKind",
            binding.name
        ));
    };
    let (api_version, kind_name) = kind;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let snap = api.registry.snapshot();
    let Some(r) = snap
        .resources()
        .find(|r| r.group == group && r.version == version && r.kind == *kind_name)
        .cloned()
    else {
        return Err(format!(
            "failed to find resource referenced by paramKind: '{api_version}, Kind={kind_name}'"
        ));
    };
    let namespace = if !r.namespaced {
        None
    } else if !param_ref.namespace.is_empty() {
        Some(param_ref.namespace.as_str())
    } else if let Some(ns) = request.namespace.filter(|_| request.resource.namespaced) {
        Some(ns)
    } else {
        return Err("cannot use namespaced paramRef in policy binding that matches cluster-scoped resources".into());
    };
    let cache = api.cache(&r).await.map_err(|e| e.to_string())?;
    let found: Vec<Value> = if !param_ref.name.is_empty() {
        cache
            .get(&r.key(namespace, &param_ref.name))
            .map(|o| vec![(*o).clone()])
            .unwrap_or_default()
    } else {
        let selector = param_ref
            .selector
            .clone()
            .unwrap_or_else(crate::selectors::LabelSelector::everything);
        let (objects, _) = cache.list(&r.prefix_in(namespace));
        objects
            .iter()
            .filter(|o| selector.matches(crate::object::labels(o)))
            .map(|o| (**o).clone())
            .collect()
    };
    Ok(if found.is_empty() { None } else { Some(found) })
}

/// Upstream's code for a validation's reason.
fn reason_and_code(reason: &str) -> (&'static str, u16) {
    match reason {
        "Unauthorized" => ("Unauthorized", 401),
        "Forbidden" => ("Forbidden", 403),
        "RequestEntityTooLarge" => ("RequestEntityTooLarge", 413),
        _ => ("Invalid", 422),
    }
}

fn denied(request: &AdmissionRequest<'_>, policy: &str, binding: &str, d: &Denial) -> ApiError {
    let r = request.resource;
    let target = Target::new(&r.group, &r.plural, request.name);
    let message = format!(
        "ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {}",
        d.message
    );
    let (reason, code) = reason_and_code(&d.reason);
    let mut details = serde_json::Map::new();
    details.insert("name".into(), json!(request.name));
    if !r.group.is_empty() {
        details.insert("group".into(), json!(r.group));
    }
    details.insert("kind".into(), json!(r.plural));
    details.insert("causes".into(), json!([{"message": message}]));
    ApiError::Status {
        code,
        reason,
        message: format!("{} is forbidden: {message}", target.subject()),
        details: Some(Value::Object(details)),
    }
}

#[async_trait]
impl ValidatingAdmission for ValidatingAdmissionPolicy {
    async fn validate(
        &self,
        api: &Api,
        request: &AdmissionRequest<'_>,
        obj: &Value,
        old: Option<&Value>,
    ) -> Result<()> {
        if super::webhook::is_policy(request) {
            return Ok(());
        }
        let policies = super::webhook::registered(api, "validatingadmissionpolicies").await?;
        if policies.is_empty() {
            return Ok(());
        }
        let bindings = super::webhook::registered(api, "validatingadmissionpolicybindings").await?;
        if bindings.is_empty() {
            return Ok(());
        }
        let bindings: Vec<Binding> = bindings.iter().map(|b| Binding::parse(b)).collect();
        let (obj, old) = match request.operation {
            Operation::Delete => (None, Some(obj)),
            _ => (Some(obj), old),
        };
        let scene = Scene::new(api, request).await?;
        let mut namespace_object: Option<Value> = None;
        // As upstream, every matching policy is evaluated (its warnings and audit
        // annotations published) and the first denial is the answer.
        let mut denial: Option<ApiError> = None;
        for policy_obj in &policies {
            let name = crate::object::name(policy_obj);
            let mine: Vec<&Binding> = bindings.iter().filter(|b| b.policy_name == name).collect();
            if mine.is_empty() {
                continue;
            }
            let p = self.policy(policy_obj);
            let Some(seen) = matched(api, &scene, &p.constraints, obj, old) else {
                continue;
            };
            let mut annotations = Annotations::default();
            for binding in mine {
                if let Some(m) = &binding.matcher {
                    if matched(api, &scene, m, obj, old).is_none() {
                        continue;
                    }
                }
                let mut deny = |message: String, reason: &str| {
                    denial.get_or_insert_with(|| {
                        denied(
                            request,
                            &p.name,
                            &binding.name,
                            &Denial {
                                message,
                                reason: reason.to_string(),
                            },
                        )
                    });
                };
                // A configuration error: the failurePolicy decides, whatever the actions.
                let mut misconfigured = |why: String| {
                    if p.ignore_failures {
                        tracing::warn!(policy = %p.name, binding = %binding.name, %why, "policy failed, failing open");
                    } else {
                        deny(why, "");
                    }
                };
                if let Some(e) = &p.error {
                    misconfigured(e.clone());
                    continue;
                }
                let params = match &p.param_kind {
                    None => vec![Value::Null],
                    Some(kind) => match params(api, request, kind, binding).await {
                        Ok(Some(found)) => found,
                        Ok(None)
                            if binding
                                .param_ref
                                .as_ref()
                                .is_some_and(|r| r.deny_if_missing) =>
                        {
                            misconfigured("failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction".into());
                            continue;
                        }
                        Ok(None) => continue,
                        Err(e) => {
                            misconfigured(e);
                            continue;
                        }
                    },
                };
                if namespace_object.is_none() {
                    namespace_object = Some(namespace_of(api, request).await?);
                }
                let mut base = scene.activation(&seen, obj, old);
                if let Some(check) = self.check(request.user) {
                    base.with_authorizer(check, request_resource(request));
                }
                base.bind_json(
                    "namespaceObject",
                    namespace_object.as_ref().unwrap_or(&Value::Null),
                );
                for param in &params {
                    let outcome = evaluate(&p, &base, param);
                    for d in &outcome.decisions {
                        if binding.deny {
                            deny(d.message.clone(), &d.reason);
                        }
                        if binding.warn {
                            request.warnings.push(format!(
                                "Validation failed for ValidatingAdmissionPolicy '{}' with binding '{}': {}",
                                p.name, binding.name, d.message
                            ));
                        }
                        if binding.audit {
                            let value = [ValidationFailure {
                                message: &d.message,
                                policy: &p.name,
                                binding: &binding.name,
                                expression_index: d.index,
                                validation_actions: &binding.actions,
                            }];
                            let value = serde_json::to_string(&value).unwrap_or_default();
                            audit(request, VALIDATION_FAILURE, &value);
                        }
                    }
                    for (key, value) in outcome.annotations {
                        annotations.add(key, value);
                    }
                    for e in outcome.errors {
                        deny(e, "");
                    }
                }
            }
            annotations.publish(request, &p.name);
        }
        match denial {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Upstream's audit annotation for a validation that failed under an Audit action.
const VALIDATION_FAILURE: &str = "validation.policy.admission.k8s.io/validation_failure";

/// The value of [`VALIDATION_FAILURE`], its fields in upstream's order.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ValidationFailure<'a> {
    message: &'a str,
    policy: &'a str,
    binding: &'a str,
    expression_index: usize,
    validation_actions: &'a [String],
}

/// An audit annotation: kybern has no audit log, so, as PodSecurity's, it goes to the
/// server's log (tracing target `audit`) as `<key>: <value>`.
fn audit(request: &AdmissionRequest<'_>, key: &str, value: &str) {
    tracing::info!(
        target: "audit",
        namespace = request.namespace.unwrap_or(""),
        name = request.name,
        "{key}: {value}"
    );
}

/// One policy's audit annotations across its bindings and params: distinct values of
/// a key are joined with ", ", as upstream's collector does.
#[derive(Default)]
struct Annotations(Vec<(String, Vec<String>)>);

impl Annotations {
    fn add(&mut self, key: String, value: String) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, values)) if values.contains(&value) => {}
            Some((_, values)) => values.push(value),
            None => self.0.push((key, vec![value])),
        }
    }

    fn publish(self, request: &AdmissionRequest<'_>, policy: &str) {
        for (key, values) in self.0 {
            audit(request, &format!("{policy}/{key}"), &values.join(", "));
        }
    }
}

/// CEL's `authorizer` for `user` (what policies and webhooks' matchConditions ask):
/// `system:masters` membership, then `authorizer`; `serviceAccount(..)` asks as that
/// account instead.
pub(super) fn cel_check(authorizer: &Arc<dyn Authorizer>, user: &UserInfo) -> crate::cel::Check {
    let authorizer = Arc::clone(authorizer);
    let user = user.clone();
    Arc::new(move |r: &crate::cel::AuthzRequest, verb: &str| {
        let user = match &r.service_account {
            Some((ns, name)) => UserInfo {
                name: format!("system:serviceaccount:{ns}:{name}"),
                groups: vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{ns}"),
                ],
                ..Default::default()
            },
            None => user.clone(),
        };
        let attributes = Attributes {
            user,
            verb: verb.to_string(),
            resource: r.path.is_none().then(|| ResourceAttributes {
                group: r.group.clone().unwrap_or_default(),
                version: "*".into(),
                resource: r.resource.clone().unwrap_or_default(),
                subresource: r.subresource.clone(),
                namespace: r.namespace.clone().filter(|n| !n.is_empty()),
                name: r.name.clone().filter(|n| !n.is_empty()),
                selectors: Default::default(),
            }),
            path: r.path.clone().unwrap_or_default(),
        };
        let verdict = match super::rbac::PrivilegedGroups.authorize(&attributes) {
            Verdict::NoOpinion => authorizer.authorize(&attributes),
            v => v,
        };
        match verdict {
            Verdict::Allow => (true, String::new()),
            Verdict::Deny(why) => (false, why),
            Verdict::NoOpinion => (false, String::new()),
        }
    })
}

/// What `authorizer.requestResource` asks about: the request's own resource.
pub(super) fn request_resource(request: &AdmissionRequest<'_>) -> crate::cel::AuthzRequest {
    let r = request.resource;
    crate::cel::AuthzRequest {
        group: Some(r.group.clone()),
        resource: Some(r.plural.clone()),
        subresource: request.subresource.map(str::to_string),
        namespace: request.namespace.map(str::to_string),
        name: Some(request.name.to_string()),
        ..Default::default()
    }
}

/// The request's Namespace object (upstream's `namespaceObject`), null for a
/// cluster-scoped request.
async fn namespace_of(api: &Api, request: &AdmissionRequest<'_>) -> Result<Value> {
    let Some(ns) = request.namespace.filter(|_| request.resource.namespaced) else {
        return Ok(Value::Null);
    };
    let snap = api.registry.snapshot();
    let Some(nsr) = snap.get("", "v1", "namespaces") else {
        return Ok(Value::Null);
    };
    Ok(api
        .cache(nsr)
        .await?
        .get(&nsr.key(None, ns))
        .map(|n| (*n).clone())
        .unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests;
