//! Upstream's `MutatingAdmissionWebhook` and `ValidatingAdmissionWebhook` plugins: the
//! webhooks of every Mutating/ValidatingWebhookConfiguration (read from the watch
//! cache, configurations in name order) are asked about each write they match, with an
//! AdmissionReview v1. Mutating webhooks run one after another and may patch the object
//! (JSONPatch); those with `reinvocationPolicy: IfNeeded` are asked once more when a
//! later webhook changed it. Validating webhooks run in parallel. A call that fails
//! follows the webhook's `failurePolicy`; a denial is the client's answer; warnings
//! become `Warning` headers.
//!
//! Deletes (one object or a collection, each object in turn) reach both kinds, as
//! upstream: the object being deleted is `oldObject`, `object` is null, the options are
//! the DeleteOptions, and a mutating webhook that answers with a patch is an error since
//! there is nothing to patch.
//!
//! A webhook's `matchConditions` (CEL, [`crate::cel`]) are evaluated before it is
//! called, as upstream: one false skips it; an error with none false fails closed (403)
//! under `failurePolicy: Fail` and skips it under Ignore.

pub(crate) mod client;
pub(crate) mod hooks;
pub(crate) mod review;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use super::{AdmissionRequest, Authorizer, MutatingAdmission, Operation, ValidatingAdmission};
use crate::api::Api;
use crate::registry::Resource;
use crate::status::{ApiError, Result};
use hooks::Hook;

const GROUP: &str = "admissionregistration.k8s.io";

/// The mutating webhooks' plugin, with the authorizer its matchConditions' CEL
/// `authorizer` asks (none: an expression using it fails).
#[derive(Default)]
pub struct MutatingAdmissionWebhook {
    authorizer: Option<Arc<dyn Authorizer>>,
}

/// The validating webhooks' plugin, as [`MutatingAdmissionWebhook`].
#[derive(Default)]
pub struct ValidatingAdmissionWebhook {
    authorizer: Option<Arc<dyn Authorizer>>,
}

impl MutatingAdmissionWebhook {
    /// Whose matchConditions' `authorizer` asks `system:masters` membership, then
    /// `authorizer` (what `kybern server` runs: RBAC), as ValidatingAdmissionPolicy's.
    pub fn with_authorizer(authorizer: impl Authorizer + 'static) -> Self {
        MutatingAdmissionWebhook {
            authorizer: Some(Arc::new(authorizer)),
        }
    }
}

impl ValidatingAdmissionWebhook {
    /// As [`MutatingAdmissionWebhook::with_authorizer`].
    pub fn with_authorizer(authorizer: impl Authorizer + 'static) -> Self {
        ValidatingAdmissionWebhook {
            authorizer: Some(Arc::new(authorizer)),
        }
    }
}

/// The admissionregistration.k8s.io/v1 objects of `plural` (webhook configurations,
/// policies, bindings) in the watch cache, in name order: what the admission plugins
/// read, as upstream's read their informers.
pub(crate) async fn registered(api: &Api, plural: &str) -> Result<Vec<Arc<Value>>> {
    let snap = api.registry.snapshot();
    let Some(r) = snap.get(GROUP, "v1", plural) else {
        return Ok(Vec::new());
    };
    let (mut objects, _) = api.cache(r).await?.list(&r.key_prefix());
    objects.sort_by(|a, b| crate::object::name(a).cmp(crate::object::name(b)));
    Ok(objects)
}

/// Every webhook of the configurations of `plural`, configurations in name order.
async fn configured(api: &Api, plural: &str) -> Result<Vec<Hook>> {
    let configs = registered(api, plural).await?;
    Ok(configs.iter().flat_map(|c| Hook::all_of(c)).collect())
}

fn operation_name(op: Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
    }
}

/// What the webhooks of one request share: the request as the rules see it and the
/// labels of its namespace.
pub(crate) struct Scene<'a> {
    pub(crate) request: &'a AdmissionRequest<'a>,
    operation: &'static str,
    namespace_labels: Option<Map<String, Value>>,
    /// What matchConditions' `authorizer` asks, when the plugin has an authorizer.
    authorizer: Option<Arc<dyn Authorizer>>,
}

impl<'a> Scene<'a> {
    pub(crate) async fn new(api: &Api, request: &'a AdmissionRequest<'a>) -> Result<Scene<'a>> {
        let mut namespace_labels = None;
        if let Some(ns) = request.namespace.filter(|_| request.resource.namespaced) {
            let snap = api.registry.snapshot();
            if let Some(nsr) = snap.get("", "v1", "namespaces") {
                namespace_labels = api
                    .cache(nsr)
                    .await?
                    .get(&nsr.key(None, ns))
                    .and_then(|n| crate::object::labels(&n).cloned());
            }
        }
        Ok(Scene {
            request,
            operation: operation_name(request.operation),
            namespace_labels,
            authorizer: None,
        })
    }

    /// The same scene whose matchConditions' `authorizer` asks `authorizer`.
    fn asking(mut self, authorizer: Option<Arc<dyn Authorizer>>) -> Self {
        self.authorizer = authorizer;
        self
    }

    fn rules_request<'r>(&'r self, r: &'r Resource) -> hooks::Request<'r> {
        hooks::Request {
            operation: self.operation,
            group: &r.group,
            version: &r.version,
            resource: &r.plural,
            subresource: self.request.subresource.unwrap_or(""),
            namespace: self.request.namespace.unwrap_or(""),
        }
    }

    /// The version of the resource the webhook is shown, if it is called at all
    /// (upstream's `ShouldCallHook`): the request's own when a rule matches it, else
    /// (matchPolicy Equivalent) the first version of the same objects a rule matches.
    pub(crate) fn matches(
        &self,
        api: &Api,
        hook: &Hook,
        obj: Option<&Value>,
        old: Option<&Value>,
    ) -> Option<Arc<Resource>> {
        let r = self.request.resource;
        let own = self.rules_request(r);
        let labels = if r.group.is_empty() && r.plural == "namespaces" {
            obj.or(old).and_then(crate::object::labels).cloned()
        } else {
            self.namespace_labels.clone()
        };
        if !hook.namespace_matches(&own, labels.as_ref()) || !hook.object_matches(obj, old) {
            return None;
        }
        if hook.rules_match(&own) {
            return Some(Arc::new(r.clone()));
        }
        if hook.exact {
            return None;
        }
        let snap = api.registry.snapshot();
        let prefix = r.key_prefix();
        let equivalent = snap
            .resources()
            .filter(|e| {
                e.plural == r.plural
                    && e.key_prefix() == prefix
                    && (e.group != r.group || e.version != r.version)
            })
            .find(|e| hook.rules_match(&self.rules_request(e)))
            .cloned();
        equivalent
    }

    /// Upstream's CEL `request` (the AdmissionRequest without the objects) and the
    /// objects in `seen`'s version: what match conditions and policies see.
    pub(crate) fn activation(
        &self,
        seen: &Resource,
        obj: Option<&Value>,
        old: Option<&Value>,
    ) -> crate::cel::Activation {
        let r = self.request.resource;
        let mut request = review::Review {
            uid: "",
            kind: (&seen.group, &seen.version, &seen.kind),
            resource: (&seen.group, &seen.version, &seen.plural),
            request_kind: (&r.group, &r.version, &r.kind),
            request_resource: (&r.group, &r.version, &r.plural),
            subresource: self.request.subresource.unwrap_or(""),
            name: self.request.name,
            namespace: self.request.namespace.unwrap_or(""),
            operation: self.operation,
            user: self.request.user,
            object: None,
            old_object: None,
            dry_run: self.request.dry_run,
            options: self.options(),
        }
        .to_json()["request"]
            .take();
        if let Some(m) = request.as_object_mut() {
            m.remove("uid");
            m.remove("object");
            m.remove("oldObject");
        }
        let mut a = crate::cel::Activation::new();
        a.bind_json("request", &request);
        a.bind_json(
            "object",
            &obj.map(|o| convert(r, seen, o)).unwrap_or(Value::Null),
        );
        a.bind_json(
            "oldObject",
            &old.map(|o| convert(r, seen, o)).unwrap_or(Value::Null),
        );
        a
    }

    fn options(&self) -> Value {
        let q = self.request.query;
        let kind = match self.request.operation {
            Operation::Create => "CreateOptions",
            Operation::Update => "UpdateOptions",
            Operation::Delete => "DeleteOptions",
        };
        let mut o = Map::new();
        o.insert("kind".into(), json!(kind));
        o.insert("apiVersion".into(), json!("meta.k8s.io/v1"));
        if self.request.dry_run {
            o.insert("dryRun".into(), json!(["All"]));
        }
        match self.request.operation {
            Operation::Delete => {
                if let Some(g) = q
                    .value("gracePeriodSeconds")
                    .and_then(|g| g.parse::<i64>().ok())
                {
                    o.insert("gracePeriodSeconds".into(), json!(g));
                }
                if let Some(p) = q.value("propagationPolicy") {
                    o.insert("propagationPolicy".into(), json!(p));
                }
            }
            _ => {
                if let Some(m) = q.value("fieldManager") {
                    o.insert("fieldManager".into(), json!(m));
                }
            }
        }
        Value::Object(o)
    }
}

/// An object of resource `from` in the form resource `to` (another version of the same
/// objects) serves it.
pub(crate) fn convert(from: &Resource, to: &Resource, obj: &Value) -> Value {
    if from.group == to.group && from.version == to.version {
        return obj.clone();
    }
    let stored = crate::conversion::to_storage(from, obj).unwrap_or_else(|| obj.clone());
    crate::conversion::from_storage(to, &stored).unwrap_or_else(|| {
        let mut o = stored;
        o["apiVersion"] = json!(to.api_version());
        o
    })
}

/// Whether `hook`'s matchConditions let it be called (upstream's matcher): any false
/// skips it; otherwise an error fails the request under `failurePolicy: Fail`
/// (403 naming the object) and skips the webhook under Ignore.
fn conditions_hold(
    scene: &Scene<'_>,
    hook: &Hook,
    seen: &Resource,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Result<bool> {
    if hook.match_conditions.is_empty() {
        return Ok(true);
    }
    let mut activation = scene.activation(seen, obj, old);
    if let Some(authorizer) = &scene.authorizer {
        let check = super::vap::cel_check(authorizer, scene.request.user);
        activation.with_authorizer(check, super::vap::request_resource(scene.request));
    }
    let mut errors = Vec::new();
    for (_name, source) in &hook.match_conditions {
        let compiled = crate::cel::cached(source);
        let verdict = match compiled.as_ref() {
            Ok(e) => e.eval_bool(&activation),
            Err(e) => Err(e.clone()),
        };
        match verdict {
            Ok(false) => return Ok(false),
            Ok(true) => {}
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        return Ok(true);
    }
    if hook.ignore_failures {
        tracing::warn!(webhook = %hook.name, errors = ?errors, "match conditions failed, skipping the webhook");
        return Ok(false);
    }
    let r = scene.request.resource;
    let message = if errors.len() == 1 {
        errors.remove(0)
    } else {
        format!("[{}]", errors.join(", "))
    };
    Err(ApiError::Forbidden(
        crate::status::Target::new(&r.group, &r.plural, scene.request.name),
        message,
        None,
    ))
}

/// Why a call did not give an answer.
enum Failure {
    /// The call failed or the answer was unusable: the webhook's failurePolicy decides.
    Calling(String),
    /// An error for the client whatever the policy (dry run refused).
    Client(ApiError),
}

/// Asks `hook` about the request, showing `obj`/`old` (in the request's version) in
/// `seen`'s version. The answer's patch applies to the object in `seen`'s version.
async fn ask(
    api: &Api,
    scene: &Scene<'_>,
    hook: &Hook,
    seen: &Resource,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> std::result::Result<review::Answer, Failure> {
    let request = scene.request;
    if request.dry_run && !hook.dry_run_safe() {
        return Err(Failure::Client(ApiError::BadRequest(format!(
            "admission webhook \"{}\" does not support dry run",
            hook.name
        ))));
    }
    let r = request.resource;
    let obj = obj.map(|o| convert(r, seen, o));
    let old = old.map(|o| convert(r, seen, o));
    let uid = crate::object::new_uid();
    let body = review::Review {
        uid: &uid,
        kind: (&seen.group, &seen.version, &seen.kind),
        resource: (&seen.group, &seen.version, &seen.plural),
        request_kind: (&r.group, &r.version, &r.kind),
        request_resource: (&r.group, &r.version, &r.plural),
        subresource: request.subresource.unwrap_or(""),
        name: request.name,
        namespace: request.namespace.unwrap_or(""),
        operation: scene.operation,
        user: request.user,
        object: obj.as_ref(),
        old_object: old.as_ref(),
        dry_run: request.dry_run,
        options: scene.options(),
    }
    .to_json();
    let answer = client::post(
        Some(api),
        &hook.client,
        crate::json::to_vec(&body),
        hook.timeout,
    )
    .await
    .map_err(|e| Failure::Calling(format!("failed to call webhook: {e}")))?;
    review::parse_answer(&answer, &uid)
        .map_err(|e| Failure::Calling(format!("received invalid webhook response: {e}")))
}

/// What a failure becomes: nothing under `failurePolicy: Ignore`, else upstream's
/// `Internal error occurred: failed calling webhook "name": ...`.
fn failed(hook: &Hook, failure: Failure) -> Result<()> {
    match failure {
        Failure::Client(e) => Err(e),
        Failure::Calling(why) if hook.ignore_failures => {
            tracing::warn!(webhook = %hook.name, configuration = %hook.configuration, %why, "failed calling webhook, failing open");
            Ok(())
        }
        Failure::Calling(why) => Err(ApiError::Internal(format!(
            "failed calling webhook \"{}\": {why}",
            hook.name
        ))),
    }
}

fn record_warnings(request: &AdmissionRequest<'_>, answer: &review::Answer) {
    for w in &answer.warnings {
        request.warnings.push(w.clone());
    }
}

/// Calls one mutating webhook and applies its patch; whether the object changed.
async fn mutate(
    api: &Api,
    scene: &Scene<'_>,
    hook: &Hook,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<bool> {
    let Some(seen) = scene.matches(api, hook, Some(obj), old) else {
        return Ok(false);
    };
    if !conditions_hold(scene, hook, &seen, Some(obj), old)? {
        return Ok(false);
    }
    let answer = match ask(api, scene, hook, &seen, Some(obj), old).await {
        Ok(a) => a,
        Err(f) => return failed(hook, f).map(|()| false),
    };
    record_warnings(scene.request, &answer);
    if !answer.allowed {
        return Err(review::denial(&hook.name, answer.status.as_ref()));
    }
    let Some(patch) = answer.patch else {
        return Ok(false);
    };
    let r = scene.request.resource;
    let mut patched = convert(r, &seen, obj);
    json_patch::patch(&mut patched, &patch).map_err(|e| ApiError::Internal(e.to_string()))?;
    let patched = convert(&seen, r, &patched);
    if patched == *obj {
        return Ok(false);
    }
    *obj = patched;
    Ok(true)
}

/// Calls one mutating webhook about a delete, which has no object to patch: a
/// non-empty patch is upstream's internal error whatever the failurePolicy.
async fn admit_delete(api: &Api, scene: &Scene<'_>, hook: &Hook, old: &Value) -> Result<()> {
    let Some(seen) = scene.matches(api, hook, None, Some(old)) else {
        return Ok(());
    };
    let answer = match ask(api, scene, hook, &seen, None, Some(old)).await {
        Ok(a) => a,
        Err(f) => return failed(hook, f),
    };
    record_warnings(scene.request, &answer);
    if !answer.allowed {
        return Err(review::denial(&hook.name, answer.status.as_ref()));
    }
    if answer.patch.is_some_and(|p| !p.0.is_empty()) {
        return Err(ApiError::Internal(format!(
            "admission webhook \"{}\" attempted to modify the object, which is not supported for this operation",
            hook.name
        )));
    }
    Ok(())
}

/// Whether `request` is about an admission policy or its binding (upstream's
/// `isPolicyResource`): policies never judge those, so one that refuses everything can
/// still be changed or deleted.
pub(super) fn is_policy(request: &AdmissionRequest<'_>) -> bool {
    request.resource.group == GROUP
        && matches!(
            request.resource.plural.as_str(),
            "validatingadmissionpolicies"
                | "validatingadmissionpolicybindings"
                | "mutatingadmissionpolicies"
                | "mutatingadmissionpolicybindings"
        )
}

/// Whether `request` is about the objects that configure admission: webhook
/// configurations and admission policies and their bindings are never sent to
/// webhooks (upstream's `IsExemptAdmissionConfigurationResource`), so a webhook that
/// refuses everything can still be changed or deleted.
fn exempt(request: &AdmissionRequest<'_>) -> bool {
    is_policy(request)
        || (request.resource.group == GROUP
            && matches!(
                request.resource.plural.as_str(),
                "validatingwebhookconfigurations" | "mutatingwebhookconfigurations"
            ))
}

#[async_trait]
impl MutatingAdmission for MutatingAdmissionWebhook {
    /// Webhooks may be registered for deletes too; they are called with the object
    /// being deleted and may not change anything.
    fn handles(&self, _operation: Operation) -> bool {
        true
    }

    async fn admit(
        &self,
        api: &Api,
        request: &AdmissionRequest<'_>,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<()> {
        if exempt(request) {
            return Ok(());
        }
        let hooks = configured(api, "mutatingwebhookconfigurations").await?;
        if hooks.is_empty() {
            return Ok(());
        }
        let scene = Scene::new(api, request)
            .await?
            .asking(self.authorizer.clone());
        if request.operation == Operation::Delete {
            // Nothing changes, so there is nothing to reinvoke for.
            let Some(old) = old else {
                return Ok(());
            };
            for hook in &hooks {
                admit_delete(api, &scene, hook, old).await?;
            }
            return Ok(());
        }
        // For each IfNeeded webhook called: how many changes had been made right after it.
        let mut changes = 0usize;
        let mut called: Vec<(&Hook, usize)> = Vec::new();
        for hook in &hooks {
            if mutate(api, &scene, hook, obj, old).await? {
                changes += 1;
            }
            if hook.reinvoke {
                called.push((hook, changes));
            }
        }
        // Upstream calls them once more when a later webhook changed the object.
        for (hook, seen_changes) in called {
            if seen_changes < changes {
                mutate(api, &scene, hook, obj, old).await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ValidatingAdmission for ValidatingAdmissionWebhook {
    async fn validate(
        &self,
        api: &Api,
        request: &AdmissionRequest<'_>,
        obj: &Value,
        old: Option<&Value>,
    ) -> Result<()> {
        if exempt(request) {
            return Ok(());
        }
        let hooks = configured(api, "validatingwebhookconfigurations").await?;
        if hooks.is_empty() {
            return Ok(());
        }
        // A delete shows the webhook the object being deleted as the old one.
        let (obj, old) = match request.operation {
            Operation::Delete => (None, Some(obj)),
            _ => (Some(obj), old),
        };
        let scene = Scene::new(api, request)
            .await?
            .asking(self.authorizer.clone());
        let calls = hooks.iter().filter_map(|hook| {
            let seen = scene.matches(api, hook, obj, old)?;
            let scene = &scene;
            Some(async move {
                if !conditions_hold(scene, hook, &seen, obj, old)? {
                    return Ok(());
                }
                match ask(api, scene, hook, &seen, obj, old).await {
                    Ok(answer) => {
                        record_warnings(scene.request, &answer);
                        if answer.allowed {
                            Ok(())
                        } else {
                            Err(review::denial(&hook.name, answer.status.as_ref()))
                        }
                    }
                    Err(f) => failed(hook, f),
                }
            })
        });
        futures::future::join_all(calls)
            .await
            .into_iter()
            .collect::<Result<Vec<()>>>()
            .map(|_| ())
    }
}
