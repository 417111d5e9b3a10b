//! Upstream's `ValidatingAdmissionPolicy` plugin: every ValidatingAdmissionPolicy
//! (admissionregistration.k8s.io/v1, from the watch cache, in name order) whose
//! `matchConstraints` match a write is evaluated for each of its bindings whose
//! `matchResources` match too, once per param object (`paramKind` + the binding's
//! `paramRef`: name or selector, namespace, parameterNotFoundAction). CEL sees
//! `object`, `oldObject`, `request`, `params`, `namespaceObject` and `variables`
//! (evaluated in order, each may read the earlier ones); `matchConditions` skip the
//! policy when one is false. A false validation is a decision for the binding's
//! actions: Deny refuses the write (upstream's message and the reason's code, 422 by
//! default), Warn adds a `Warning`, Audit is logged (tracing target `audit`: kybern has
//! no audit log). Runtime and configuration errors follow the policy's failurePolicy.
//!
//! Compiled policies are cached per resourceVersion; no request compiles.
//! `authorizer` asks `system:masters` membership, then RBAC, for the request's user.
//! Not done: `auditAnnotations`, type checking (`status.typeChecking`).

pub(crate) mod policy;

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
use crate::cel::Activation;
use crate::registry::Resource;
use crate::status::{ApiError, Result, Target};
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
        let authorizer = Arc::clone(self.authorizer.as_ref()?);
        let user = user.clone();
        Some(Arc::new(move |r: &crate::cel::AuthzRequest, verb: &str| {
            let attributes = Attributes {
                user: user.clone(),
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
        }))
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

/// Evaluates one policy for one param: `Ok(None)` admits, `Ok(Some)` is a failed
/// validation, `Err` a runtime error (the failurePolicy decides).
fn evaluate(
    p: &Policy,
    base: &Activation,
    param: &Value,
) -> std::result::Result<Vec<Denial>, String> {
    let mut a = base.clone();
    a.bind_json("params", param);
    let mut errors = Vec::new();
    for c in &p.match_conditions {
        match c.expression.eval_bool(&a) {
            Ok(false) => return Ok(Vec::new()),
            Ok(true) => {}
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join(", "));
    }
    let mut variables = Vec::new();
    for v in &p.variables {
        a.bind("variables", crate::cel::map_of(variables.clone()));
        let value = v.expression.eval(&a)?;
        variables.push((v.name.clone(), value));
    }
    a.bind("variables", crate::cel::map_of(variables));
    let mut denials = Vec::new();
    for v in &p.validations {
        if v.expression.eval_bool(&a)? {
            continue;
        }
        let from_expression = v
            .message_expression
            .as_ref()
            .and_then(|m| match m.eval(&a) {
                Ok(crate::cel::Value::String(s)) if !s.trim().is_empty() && !s.contains('\n') => {
                    Some(s.to_string())
                }
                _ => None,
            });
        let message = from_expression.unwrap_or_else(|| {
            if v.message.is_empty() {
                format!("failed expression: {}", v.expression.source())
            } else {
                v.message.clone()
            }
        });
        denials.push(Denial {
            message,
            reason: v.reason.clone(),
        });
    }
    Ok(denials)
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
            for binding in mine {
                if let Some(m) = &binding.matcher {
                    if matched(api, &scene, m, obj, old).is_none() {
                        continue;
                    }
                }
                let fail = |why: String| -> Result<()> {
                    if p.ignore_failures {
                        tracing::warn!(policy = %p.name, binding = %binding.name, %why, "policy failed, failing open");
                        Ok(())
                    } else {
                        Err(denied(
                            request,
                            &p.name,
                            &binding.name,
                            &Denial {
                                message: why,
                                reason: String::new(),
                            },
                        ))
                    }
                };
                if let Some(e) = &p.error {
                    fail(e.clone())?;
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
                            fail("failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction".into())?;
                            continue;
                        }
                        Ok(None) => continue,
                        Err(e) => {
                            fail(e)?;
                            continue;
                        }
                    },
                };
                if namespace_object.is_none() {
                    namespace_object = Some(namespace_of(api, request).await?);
                }
                let mut base = scene.activation(&seen, obj, old);
                if let Some(check) = self.check(request.user) {
                    base.with_authorizer(check);
                }
                base.bind_json(
                    "namespaceObject",
                    namespace_object.as_ref().unwrap_or(&Value::Null),
                );
                for param in &params {
                    let denials = match evaluate(&p, &base, param) {
                        Ok(d) => d,
                        Err(e) => {
                            fail(e)?;
                            continue;
                        }
                    };
                    for d in &denials {
                        if binding.warn {
                            request.warnings.push(format!(
                                "Validation failed for ValidatingAdmissionPolicy '{}' with binding '{}': {}",
                                p.name, binding.name, d.message
                            ));
                        }
                        if binding.audit {
                            tracing::info!(target: "audit", policy = %p.name, binding = %binding.name, message = %d.message, "validation failure");
                        }
                    }
                    if binding.deny {
                        if let Some(d) = denials.first() {
                            return Err(denied(request, &p.name, &binding.name, d));
                        }
                    }
                }
            }
        }
        Ok(())
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
