//! `namespaces/NAME/finalize`: the one way to change a Namespace's `spec.finalizers`
//! (the namespace controller removes `kubernetes` there once the namespace is empty).
//! A Terminating namespace with no spec and no metadata finalizers left is deleted.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::guarded::{self, Decision, Outcome};
use super::kinds::{namespace_finalizers, nothing_holds};
use super::negotiate::decode_object;
use super::read::object_response;
use super::write::CONFLICT_MESSAGE;
use super::{Api, ApiRequest, Body};
use crate::object;
use crate::registry::Resource;
use crate::status::{ApiError, Result};

/// Whether a resource is core/v1 namespaces.
pub(super) fn is_namespaces(r: &Resource) -> bool {
    r.group.is_empty() && r.plural == "namespaces"
}

/// PUT namespaces/NAME/finalize: takes only `spec.finalizers` from the body.
pub(super) async fn update(
    api: &Arc<Api>,
    r: &Resource,
    req: &ApiRequest,
    name: &str,
) -> Result<Response<Body>> {
    let body = decode_object(&req.content_type, &req.body)?;
    let body_name = object::name(&body);
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let wanted = namespace_finalizers(&body);
    let precondition = object::meta_str(&body, "resourceVersion")
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let key = r.key(None, name);
    let target = req.target(r, name);
    // What the namespace becomes; also the answer to a dry run or a no-op.
    let mut next = Value::Null;
    let outcome = guarded::update(api, &key, &target, |current| {
        let current = current.ok_or_else(|| ApiError::NotFound(target.clone()))?;
        if precondition
            .as_deref()
            .is_some_and(|p| Some(p) != object::meta_str(current, "resourceVersion"))
        {
            return Err(ApiError::Conflict(target.clone(), CONFLICT_MESSAGE.into()));
        }
        next = current.clone();
        next["spec"]["finalizers"] = json!(wanted);
        Ok(if next == *current || req.dry_run() {
            Decision::Unchanged
        } else if object::is_deleting(&next) && nothing_holds(r, &next) {
            Decision::Delete
        } else {
            Decision::Write(next.clone())
        })
    })
    .await?;
    match outcome {
        Outcome::Written(stored) => object_response(api, r, req, StatusCode::OK, &stored),
        Outcome::Deleted(rev) => {
            object::set_resource_version(&mut next, rev);
            object_response(api, r, req, StatusCode::OK, &next)
        }
        Outcome::Unchanged => object_response(api, r, req, StatusCode::OK, &next),
    }
}
