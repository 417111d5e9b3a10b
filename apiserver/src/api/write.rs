//! Writes: create, update (PUT), patch (merge and JSON patch), delete with finalizers
//! and propagation policy, deletecollection. Every write is a compare-and-swap on the
//! revision it read, so a rejected write changes nothing.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::guarded::{self, Decision, Outcome};
use super::kinds::{self, Reservation};
use super::negotiate::{decode_object, media_type};
use super::patch::{apply_patch, patch_resource_version};
use super::pipeline::{AdmissionRequest, Operation};
use super::read::{object_response, Filter};
use super::strategy;
use super::{json_response, Api, ApiRequest, Body};
use crate::registry::Resource;
use crate::status::{ApiError, Cause, Result};
use crate::storage::{self, ListOptions};
use crate::watchcache::decode;
use crate::{json, object};

/// The stored form of an object. This is the one door into storage for objects, so it
/// enforces what makes a record readable and storable: upstream's nesting depth and
/// the storage size limit. A write refused here changes nothing.
pub(super) fn encode(obj: &Value) -> Result<Bytes> {
    if json::depth(obj) > json::MAX_STORED_DEPTH {
        return Err(ApiError::Unprocessable(format!(
            "the object cannot be stored: {}",
            json::Error::TooDeep(json::MAX_STORED_DEPTH)
        )));
    }
    let mut stored = obj.clone();
    object::metadata_mut(&mut stored).remove("resourceVersion");
    let bytes = serde_json::to_vec(&stored).map_err(|e| ApiError::Internal(e.to_string()))?;
    if bytes.len() > json::MAX_OBJECT_BYTES {
        return Err(ApiError::TooLarge(format!(
            "the object is {} bytes, over the storage limit of {} bytes",
            bytes.len(),
            json::MAX_OBJECT_BYTES
        )));
    }
    Ok(Bytes::from(bytes))
}

/// Defaulting, schema pruning and validation (with the request's fieldValidation
/// directive for unknown fields), the kind's own rules, then the fields its hooks derive
/// from a valid object.
fn admit(r: &Resource, req: &ApiRequest, obj: &mut Value, old: Option<&Value>) -> Result<()> {
    let hooks = kinds::hooks_for(r);
    let mut causes = Vec::new();
    hooks.default(r, obj);
    if let Some(schema) = r.schema() {
        // CRDs are left as written: their schemas are the user's documents.
        if r.builtin && r.group != "apiextensions.k8s.io" {
            super::omitempty::apply(&schema, obj);
        }
        let out = crate::schema::process(&schema, obj);
        causes = out.causes;
        let mode = req.query.value("fieldValidation").unwrap_or("Warn");
        if !matches!(mode, "Strict" | "Warn" | "Ignore") {
            return Err(ApiError::BadRequest(format!(
                "fieldValidation: Unsupported value: {mode:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            )));
        }
        if mode == "Warn" {
            for f in &out.unknown_fields {
                req.warnings.push(format!("unknown field {f:?}"));
            }
        }
        if !out.unknown_fields.is_empty() && mode == "Strict" {
            let list: Vec<String> = out
                .unknown_fields
                .iter()
                .map(|f| format!("unknown field {:?}", f))
                .collect();
            return Err(ApiError::BadRequest(format!(
                "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
                list.join(", "),
                kind = r.kind,
                version = r.version,
            )));
        }
    }
    causes.extend(hooks.validate(r, obj, old));
    if causes.is_empty() {
        hooks.canonicalize(obj, old);
        Ok(())
    } else {
        Err(strategy::invalid(r, obj, causes))
    }
}

/// The form an object written through a view of another resource's store is stored
/// in (`None`: the object itself), checked against the stored version's schema: what
/// a view carries in annotations (an autoscaling/v1 HPA's other metrics) must make a
/// valid stored object, or every reader of the store would meet one it cannot decode.
async fn stored_form(api: &Api, r: &Resource, obj: &Value) -> Result<Option<Value>> {
    if r.conversion_webhook.is_some() {
        return crate::conversion::webhook::to_storage(api, r, obj).await;
    }
    let Some(mut stored) = crate::conversion::to_storage(r, obj) else {
        return Ok(None);
    };
    let schema = api
        .registry
        .snapshot()
        .get(&r.storage_group, &r.storage_version, &r.plural)
        .and_then(|s| s.schema());
    if let Some(schema) = schema {
        let causes = crate::schema::process(&schema, &mut stored).causes;
        if !causes.is_empty() {
            return Err(strategy::invalid(r, obj, causes));
        }
    }
    Ok(Some(stored))
}

/// Gives back what a write that was not stored had reserved.
async fn release(api: &Api, reserved: Option<Box<dyn Reservation>>) {
    if let Some(r) = reserved {
        r.release(api).await;
    }
}

/// Side effects of a stored write (serving a CRD, releasing a Service's addresses).
async fn after_write(
    api: &Arc<Api>,
    r: &Resource,
    obj: &Value,
    old: Option<&Value>,
    deleted: bool,
) {
    kinds::hooks_for(r)
        .after_write(api, obj, old, deleted)
        .await;
}

/// What admission plugins are told about a write.
fn admission<'a>(
    r: &'a Resource,
    req: &'a ApiRequest,
    operation: Operation,
    name: &'a str,
) -> AdmissionRequest<'a> {
    AdmissionRequest {
        operation,
        resource: r,
        subresource: req.path.subresource.as_deref(),
        namespace: req.namespace(),
        name,
        user: &req.user,
        dry_run: req.dry_run(),
        query: &req.query,
        warnings: &req.warnings,
    }
}

/// Checks apiVersion/kind/namespace of a body against the endpoint it was sent to.
fn check_body(r: &Resource, req: &ApiRequest, obj: &mut Value) -> Result<()> {
    if let Some(kind) = obj.get("kind").and_then(Value::as_str) {
        if kind != r.kind {
            return Err(ApiError::BadRequest(format!(
                "the kind in the request body ({kind}) does not match the resource {} (kind {})",
                r.plural, r.kind
            )));
        }
    }
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
        if av != r.api_version() {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                r.api_version()
            )));
        }
    }
    let meta = object::metadata_mut(obj);
    match (
        req.namespace(),
        meta.get("namespace").and_then(Value::as_str),
    ) {
        (Some(url), Some(body)) if !body.is_empty() && body != url => Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        )),
        (Some(url), _) => {
            meta.insert("namespace".into(), json!(url));
            Ok(())
        }
        (None, _) => {
            meta.remove("namespace");
            Ok(())
        }
    }
}

pub(super) async fn create(
    api: &Arc<Api>,
    r: &Resource,
    req: &ApiRequest,
) -> Result<Response<Body>> {
    // The resourceVersion returned here may be watched from next: start the watch cache
    // first, or its history would begin after this write and the watch be 410 Gone.
    api.cache(r).await?;
    let mut obj = decode_object(&req.content_type, &req.body)?;
    check_body(r, req, &mut obj)?;
    if object::meta_str(&obj, "resourceVersion").is_some_and(|v| !v.is_empty()) {
        return Err(ApiError::BadRequest(
            "resourceVersion should not be set on objects to be created".into(),
        ));
    }
    create_object(api, r, req, obj, false).await
}

/// Creates an object (already decoded and checked against the endpoint). `applied`
/// means server-side apply already recorded its managed fields.
pub(super) async fn create_object(
    api: &Arc<Api>,
    r: &Resource,
    req: &ApiRequest,
    obj: Value,
    applied: bool,
) -> Result<Response<Body>> {
    if r.terminating {
        return Err(super::crd::terminating_error(r, req, &obj));
    }
    let generate = object::meta_str(&obj, "name")
        .is_none_or(str::is_empty)
        .then(|| object::meta_str(&obj, "generateName").map(str::to_string))
        .flatten()
        .filter(|g| !g.is_empty());
    let body = obj;
    for attempt in 0.. {
        let mut obj = body.clone();
        if let Some(base) = &generate {
            object::metadata_mut(&mut obj).insert(
                "name".into(),
                json!(format!("{base}{}", object::name_suffix())),
            );
        }
        strategy::prepare_create(r, &mut obj);
        kinds::hooks_for(r).record_requester(&mut obj, &req.user);
        let name = object::name(&obj).to_string();
        let admission = admission(r, req, Operation::Create, &name);
        api.pipeline.admit(api, &admission, &mut obj, None).await?;
        admit(r, req, &mut obj, None)?;
        strategy::validate(r, &obj)?;
        if !applied {
            obj = super::fields::track(r, req, None, obj);
        }
        api.pipeline.validate(api, &admission, &obj, None).await?;
        if req.dry_run() {
            return object_response(api, r, req, StatusCode::CREATED, &obj);
        }
        let reserved = kinds::hooks_for(r).reserve(api, &mut obj, None).await?;
        let stored = match stored_form(api, r, &obj).await {
            Ok(stored) => stored,
            Err(e) => {
                release(api, reserved).await;
                return Err(e);
            }
        };
        let created = match encode(stored.as_ref().unwrap_or(&obj)) {
            Ok(bytes) => {
                api.storage
                    .create(&r.key(req.namespace(), &name), bytes)
                    .await
            }
            Err(e) => {
                release(api, reserved).await;
                return Err(e);
            }
        };
        let rev = match created {
            Ok(rev) => rev,
            Err(e) => {
                release(api, reserved).await;
                match e {
                    // A generated name collided: upstream retries with a fresh suffix.
                    storage::Error::AlreadyExists(_) if generate.is_some() && attempt < 8 => {
                        continue
                    }
                    storage::Error::AlreadyExists(_) => {
                        return Err(ApiError::AlreadyExists(req.target(r, &name)))
                    }
                    e => return Err(e.into()),
                }
            }
        };
        object::set_resource_version(&mut obj, rev);
        after_write(api, r, &obj, None, false).await;
        return object_response(api, r, req, StatusCode::CREATED, &obj);
    }
    unreachable!("the loop returns")
}

/// How an update derives the new object from the stored one.
pub(super) enum Change<'a> {
    Replace(Value),
    Patch {
        media: String,
        body: &'a Bytes,
    },
    /// Derived by an endpoint of its own (server-side apply, `/scale`) from the stored
    /// object.
    Derive(&'a Derive<'a>),
}

/// The new object and the client's resourceVersion precondition, from the stored object.
pub(super) type DeriveFn<'a> = dyn Fn(&Value) -> Result<(Value, Option<String>)> + Send + Sync + 'a;

/// An endpoint's derivation: the new object from the stored one (with `apiVersion`
/// set to the endpoint's), and the resourceVersion the client made the write
/// conditional on.
pub(super) struct Derive<'a> {
    pub derive: Box<DeriveFn<'a>>,
    /// Whether the derivation records managed fields itself (server-side apply does).
    pub tracks_fields: bool,
}

pub(super) async fn update(
    api: &Arc<Api>,
    r: &Resource,
    req: &ApiRequest,
    name: &str,
) -> Result<Response<Body>> {
    let mut obj = decode_object(&req.content_type, &req.body)?;
    check_body(r, req, &mut obj)?;
    let body_name = object::name(&obj);
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    object::metadata_mut(&mut obj).insert("name".into(), json!(name));
    let (code, out) = read_modify_write(api, r, req, name, Change::Replace(obj)).await?;
    object_response(api, r, req, code, &out)
}

pub(super) async fn patch(
    api: &Arc<Api>,
    r: &Resource,
    req: &ApiRequest,
    name: &str,
) -> Result<Response<Body>> {
    let media = media_type(&req.content_type);
    let (code, out) = read_modify_write(
        api,
        r,
        req,
        name,
        Change::Patch {
            media,
            body: &req.body,
        },
    )
    .await?;
    object_response(api, r, req, code, &out)
}

/// Refuses a write whose object names another object than the URL: a patch of
/// `metadata.name` or `metadata.namespace` would otherwise store the object under its
/// old key with a new name. Upstream's `checkName`; an empty namespace is the URL's.
fn check_identity(r: &Resource, req: &ApiRequest, name: &str, obj: &mut Value) -> Result<()> {
    let obj_name = object::name(obj);
    if obj_name != name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({obj_name}) does not match the name on the URL ({name})"
        )));
    }
    let meta = object::metadata_mut(obj);
    match (
        r.namespaced,
        req.namespace(),
        meta.get("namespace").and_then(Value::as_str),
    ) {
        (true, Some(url), Some(ns)) if !ns.is_empty() && ns != url => {
            Err(ApiError::BadRequest(format!(
            "the namespace of the object ({ns}) does not match the namespace on the URL ({url})"
        )))
        }
        (true, Some(url), _) => {
            meta.insert("namespace".into(), json!(url));
            Ok(())
        }
        _ => {
            meta.remove("namespace");
            Ok(())
        }
    }
}

/// Reads the object, derives the new one, and writes it back if nothing changed in
/// between (deriving it again from the newer object when the caller gave no
/// resourceVersion precondition). Returns the status code and the object as stored.
pub(super) async fn read_modify_write(
    api: &Arc<Api>,
    r: &Resource,
    req: &ApiRequest,
    name: &str,
    change: Change<'_>,
) -> Result<(StatusCode, Value)> {
    let key = r.key(req.namespace(), name);
    let target = req.target(r, name);
    let status_only = req.path.subresource.as_deref() == Some("status");
    let hooks = kinds::hooks_for(r);
    let admission = admission(r, req, Operation::Update, name);
    // The answer when nothing is written (a no-op, a dry run) or the object is deleted.
    let mut answer = Value::Null;
    // The object the last decision replaced, for the hooks run after the write.
    let mut old = Value::Null;
    // What the last decision reserved; given back if its write was not stored.
    let mut reserved: Option<Box<dyn Reservation>> = None;
    let mut attempts = guarded::Attempts::new(api, &key, &target);
    let outcome = loop {
        release(api, reserved.take()).await;
        let current = attempts.read().await?;
        // A view of another resource's store decides on the object in its own form.
        let current = current.map(|c| crate::conversion::from_storage(r, &c).unwrap_or(c));
        let current = current
            .as_ref()
            .ok_or_else(|| ApiError::NotFound(target.clone()))?;
        let decision = 'decide: {
            let current_rv = object::meta_str(current, "resourceVersion")
                .unwrap_or("")
                .to_string();
            // Only a resourceVersion the client sent is a precondition: a patch applied to
            // the stored object always carries the stored one, and is simply re-applied to
            // the newer object when it loses a race.
            let (mut new, precondition) = match &change {
                Change::Replace(obj) => (
                    obj.clone(),
                    object::meta_str(obj, "resourceVersion").map(str::to_string),
                ),
                Change::Patch { media, body } => {
                    let mut base = current.clone();
                    base["apiVersion"] = json!(r.api_version());
                    let meta = r
                        .builtin
                        .then(|| crate::smp::patch_meta_for(&r.group, &r.kind));
                    (
                        apply_patch(&base, media, body, meta.as_ref())?,
                        patch_resource_version(media, body),
                    )
                }
                Change::Derive(d) => {
                    let mut base = current.clone();
                    base["apiVersion"] = json!(r.api_version());
                    (d.derive)(&base)?
                }
            };
            check_identity(r, req, name, &mut new)?;
            if req.path.subresource.as_deref() == Some("ephemeralcontainers") {
                new = kinds::with_ephemeral_containers(current, &new)
                    .map_err(|causes| strategy::invalid(r, current, causes))?;
            }
            match precondition.filter(|v| !v.is_empty()) {
                Some(rv) if rv != current_rv => {
                    return Err(ApiError::Conflict(target.clone(), CONFLICT_MESSAGE.into()));
                }
                None if !r.builtin && matches!(change, Change::Replace(_)) => {
                    return Err(strategy::invalid(
                        r,
                        current,
                        vec![Cause::invalid(
                            "metadata.resourceVersion",
                            "",
                            "must be specified for an update",
                        )],
                    ));
                }
                _ => {}
            }
            let mut next = strategy::prepare_update(r, current, new, status_only)?;
            api.pipeline
                .admit(api, &admission, &mut next, Some(current))
                .await?;
            admit(r, req, &mut next, Some(current))?;
            strategy::bump_generation(r, current, &mut next, status_only);
            strategy::validate(r, &next)?;
            let tracked = matches!(&change, Change::Derive(d) if d.tracks_fields);
            if !tracked {
                next = super::fields::track(r, req, Some(current), next);
            }
            api.pipeline
                .validate(api, &admission, &next, Some(current))
                .await?;
            if strategy::same_object(current, &next) {
                answer = current.clone();
                break 'decide Decision::Unchanged;
            }
            if req.dry_run() {
                answer = next;
                break 'decide Decision::Unchanged;
            }
            old = current.clone();
            if object::is_deleting(&next) && kinds::nothing_holds(r, &next) {
                // The last finalizer is gone from an object being deleted: delete it now.
                answer = next;
                break 'decide Decision::Delete;
            }
            if !status_only {
                reserved = hooks.reserve(api, &mut next, Some(current)).await?;
            }
            match stored_form(api, r, &next).await {
                Ok(stored) => Decision::Write(stored.unwrap_or(next)),
                Err(e) => {
                    release(api, reserved.take()).await;
                    return Err(e);
                }
            }
        };
        match attempts.store(decision).await {
            Ok(Some(outcome)) => break outcome,
            Ok(None) => continue,
            Err(e) => {
                release(api, reserved.take()).await;
                return Err(e);
            }
        }
    };
    match outcome {
        Outcome::Written(stored) => {
            after_write(api, r, &stored, Some(&old), false).await;
            Ok((StatusCode::OK, stored))
        }
        Outcome::Deleted(rev) => {
            object::set_resource_version(&mut answer, rev);
            after_write(api, r, &answer, Some(&old), true).await;
            Ok((StatusCode::OK, answer))
        }
        Outcome::Unchanged => Ok((StatusCode::OK, answer)),
    }
}

#[cfg(test)]
mod tests;

pub(super) const CONFLICT_MESSAGE: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// DeleteOptions from the body or the query.
struct DeleteOptions {
    propagation: Option<String>,
    grace_seconds: Option<i64>,
    precondition_uid: Option<String>,
    precondition_rv: Option<String>,
    /// `dryRun: ["All"]` in the body (kubectl delete --dry-run=server) or the query.
    dry_run: bool,
}

fn delete_options(req: &ApiRequest) -> Result<DeleteOptions> {
    let body: Value = if req.body.is_empty() {
        json!({})
    } else if crate::protobuf::is_protobuf(&req.content_type) {
        crate::protobuf::decode_delete_options(&req.body)
            .map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))?
    } else {
        serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))?
    };
    let s = |p: &str| body.pointer(p).and_then(Value::as_str).map(str::to_string);
    let propagation = s("/propagationPolicy")
        .or_else(|| req.query.value("propagationPolicy").map(str::to_string));
    if let Some(p) = &propagation {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::BadRequest(format!(
                "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
    }
    let grace_seconds = body
        .get("gracePeriodSeconds")
        .and_then(Value::as_i64)
        .or_else(|| {
            req.query
                .value("gracePeriodSeconds")
                .and_then(|g| g.parse().ok())
        });
    Ok(DeleteOptions {
        propagation,
        grace_seconds,
        precondition_uid: s("/preconditions/uid"),
        precondition_rv: s("/preconditions/resourceVersion"),
        dry_run: req.dry_run()
            || body
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|v| v == "All")),
    })
}

/// The request's query with the DeleteOptions of its body in it, as admission shows them.
fn delete_query(req: &ApiRequest, opts: &DeleteOptions) -> crate::request::Query {
    let mut query = req.query.clone();
    if let Some(p) = &opts.propagation {
        query.0.insert("propagationPolicy".into(), p.clone());
    }
    if let Some(g) = opts.grace_seconds {
        query.0.insert("gracePeriodSeconds".into(), g.to_string());
    }
    if opts.dry_run {
        query.0.insert("dryRun".into(), "All".into());
    }
    query
}

pub(super) async fn delete(
    api: &Arc<Api>,
    r: &Resource,
    req: &ApiRequest,
    name: &str,
) -> Result<Response<Body>> {
    let opts = delete_options(req)?;
    let (code, body) = delete_one(api, r, req, name, &opts).await?;
    let body = crate::conversion::from_storage(r, &body).unwrap_or(body);
    Ok(json_response(code, &body))
}

/// Deletes one object, or only marks it (deletionTimestamp) while finalizers remain or
/// a node must first stop a pod. Returns the response body upstream sends.
async fn delete_one(
    api: &Arc<Api>,
    r: &Resource,
    req: &ApiRequest,
    name: &str,
    opts: &DeleteOptions,
) -> Result<(StatusCode, Value)> {
    let key = r.key(req.namespace(), name);
    let target = req.target(r, name);
    let hooks = kinds::hooks_for(r);
    // Admission sees the DeleteOptions as sent, in the body or the query.
    let query = delete_query(req, opts);
    let admission = AdmissionRequest {
        dry_run: opts.dry_run,
        query: &query,
        ..admission(r, req, Operation::Delete, name)
    };
    // The object as it was before this delete, and the answer when nothing is written.
    let mut old: Value;
    let mut answer = Value::Null;
    let mut attempts = guarded::Attempts::new(api, &key, &target);
    let outcome = loop {
        let current = attempts.read().await?;
        let current = current
            .as_ref()
            .ok_or_else(|| ApiError::NotFound(target.clone()))?;
        let decision = 'decide: {
            let rv = object::meta_str(current, "resourceVersion").unwrap_or("0");
            if let Some(uid) = &opts.precondition_uid {
                if object::meta_str(current, "uid") != Some(uid.as_str()) {
                    return Err(ApiError::Conflict(
                        target.clone(),
                        format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        object::meta_str(current, "uid").unwrap_or("")
                    ),
                    ));
                }
            }
            if let Some(want) = &opts.precondition_rv {
                if want != rv {
                    return Err(ApiError::Conflict(target.clone(), format!(
                    "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"
                )));
                }
            }
            // As upstream, mutating admission runs on a delete too, with no object (the
            // one being deleted is the old one) and nothing it may change.
            api.pipeline
                .admit(api, &admission, &mut Value::Null, Some(current))
                .await?;
            api.pipeline
                .validate(api, &admission, current, None)
                .await?;
            old = current.clone();
            let mut finalizers = object::finalizers(current);
            // The garbage collector reads the propagation policy from these finalizers.
            match opts.propagation.as_deref() {
                Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => {
                    finalizers.push("orphan".into())
                }
                Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                    finalizers.push("foregroundDeletion".into())
                }
                _ => {}
            }
            let held = hooks.held(current);
            let grace = hooks.graceful_delete(current, opts.grace_seconds);
            if finalizers.is_empty() && !held && grace.is_none() {
                if opts.dry_run {
                    answer = deleted_answer(r, current.clone());
                    break 'decide Decision::Unchanged;
                }
                break 'decide Decision::Delete;
            }
            if object::is_deleting(current)
                && finalizers == object::finalizers(current)
                && grace.is_none()
            {
                answer = current.clone();
                break 'decide Decision::Unchanged;
            }
            let mut marked = current.clone();
            let meta = object::metadata_mut(&mut marked);
            if !meta.contains_key("deletionTimestamp") {
                let grace = grace.unwrap_or(0);
                meta.insert(
                    "deletionTimestamp".into(),
                    json!(object::rfc3339(object::unix_now() + grace)),
                );
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            meta.insert("finalizers".into(), json!(finalizers));
            if finalizers.is_empty() {
                meta.remove("finalizers");
            }
            if held {
                hooks.mark_deleting(&mut marked);
            }
            if opts.dry_run {
                answer = marked;
                break 'decide Decision::Unchanged;
            }
            Decision::Write(marked)
        };
        if let Some(outcome) = attempts.store(decision).await? {
            break outcome;
        }
    };
    match outcome {
        Outcome::Deleted(rev) => {
            after_write(api, r, &old, None, true).await;
            object::set_resource_version(&mut old, rev);
            Ok((StatusCode::OK, deleted_answer(r, old)))
        }
        Outcome::Written(marked) => {
            after_write(api, r, &marked, Some(&old), false).await;
            Ok((StatusCode::OK, marked))
        }
        Outcome::Unchanged => Ok((StatusCode::OK, answer)),
    }
}

/// The answer to a delete that removed the object: the object as it was (at the
/// delete's revision) where upstream's store sets `ReturnDeletedObject`, otherwise a
/// `Success` Status naming it.
fn deleted_answer(r: &Resource, obj: Value) -> Value {
    if kinds::returns_deleted_object(r) {
        obj
    } else {
        success_status(r, &obj)
    }
}

fn success_status(r: &Resource, obj: &Value) -> Value {
    // Upstream's field order: name, group, kind, uid.
    let mut details = serde_json::Map::new();
    details.insert("name".into(), json!(object::name(obj)));
    if !r.group.is_empty() {
        details.insert("group".into(), json!(r.group));
    }
    details.insert("kind".into(), json!(r.plural));
    details.insert("uid".into(), json!(object::meta_str(obj, "uid")));
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

pub(super) async fn delete_collection(
    api: &Arc<Api>,
    r: &Resource,
    req: &ApiRequest,
) -> Result<Response<Body>> {
    use futures::StreamExt;
    let opts = delete_options(req)?;
    let filter = Filter::from_request(r, req)?;
    let page = api
        .storage
        .list(&r.prefix_in(req.namespace()), ListOptions::default())
        .await?;
    let mut targets = Vec::new();
    for kv in page.kvs {
        let obj = decode(&kv.value, kv.mod_revision)?;
        if filter.matches(&obj) {
            targets.push(obj);
        }
    }
    // Deleting many at once lets storage commit them in batches instead of one by one.
    let results: Vec<Result<Option<Value>>> = futures::stream::iter(targets)
        .map(|obj| {
            let mut one = req.clone();
            one.path.namespace = object::namespace(&obj).map(str::to_string);
            let opts = &opts;
            async move {
                let name = object::name(&obj).to_string();
                match delete_one(api, r, &one, &name, opts).await {
                    Ok(_) => Ok(Some(obj)),
                    Err(ApiError::NotFound(_)) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let resource = r;
    let mut deleted = Vec::new();
    for r in results {
        if let Some(obj) = r? {
            deleted.push(crate::conversion::from_storage(resource, &obj).unwrap_or(obj));
        }
    }
    let list = json!({
        "kind": r.list_kind,
        "apiVersion": r.api_version(),
        "metadata": {"resourceVersion": page.revision.to_string()},
        "items": deleted,
    });
    Ok(json_response(StatusCode::OK, &list))
}
