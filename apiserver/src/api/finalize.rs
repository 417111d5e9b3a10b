//! `namespaces/NAME/finalize`: the one way to change a Namespace's `spec.finalizers`
//! (the namespace controller removes `kubernetes` there once the namespace is empty).
//! A Terminating namespace with no spec and no metadata finalizers left is deleted.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::negotiate::decode_object;
use super::read::{get_object, object_response};
use super::write::{encode, CONFLICT_MESSAGE};
use super::{Api, ApiRequest, Body};
use crate::object;
use crate::registry::Resource;
use crate::status::{ApiError, Result};
use crate::storage;

/// Whether a resource is core/v1 namespaces.
pub fn is_namespaces(r: &Resource) -> bool {
    r.group.is_empty() && r.plural == "namespaces"
}

/// A namespace's `spec.finalizers`.
pub fn spec_finalizers(ns: &Value) -> Vec<String> {
    ns.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a write leaves nothing holding the object: no metadata finalizers and,
/// for a namespace, no spec finalizers either.
pub fn nothing_holds(r: &Resource, obj: &Value) -> bool {
    object::finalizers(obj).is_empty() && (!is_namespaces(r) || spec_finalizers(obj).is_empty())
}

/// PUT namespaces/NAME/finalize: takes only `spec.finalizers` from the body.
pub async fn update(
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
    let wanted = spec_finalizers(&body);
    let precondition = object::meta_str(&body, "resourceVersion")
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let key = r.key(None, name);
    for _ in 0..16 {
        let current = get_object(api, r, None, name, false).await?;
        let current_rv = object::meta_str(&current, "resourceVersion")
            .unwrap_or("")
            .to_string();
        if precondition.as_ref().is_some_and(|p| *p != current_rv) {
            return Err(ApiError::Conflict(
                req.target(r, name),
                CONFLICT_MESSAGE.into(),
            ));
        }
        let mut next = current.clone();
        next["spec"]["finalizers"] = json!(wanted);
        if next == current || req.dry_run() {
            return object_response(r, req, StatusCode::OK, &next);
        }
        let rev: i64 = current_rv.parse().unwrap_or(0);
        let deleted = object::is_deleting(&next) && nothing_holds(r, &next);
        let result = if deleted {
            api.storage.delete(&key, Some(rev)).await.map(|(_, r)| r)
        } else {
            api.storage.update(&key, encode(&next)?, rev).await
        };
        match result {
            Ok(new_rev) => {
                object::set_resource_version(&mut next, new_rev);
                return object_response(r, req, StatusCode::OK, &next);
            }
            Err(storage::Error::Conflict { .. }) if precondition.is_none() => continue,
            Err(storage::Error::Conflict { .. }) => {
                return Err(ApiError::Conflict(
                    req.target(r, name),
                    CONFLICT_MESSAGE.into(),
                ))
            }
            Err(storage::Error::NotFound(_)) => {
                return Err(ApiError::NotFound(req.target(r, name)))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(
        req.target(r, name),
        CONFLICT_MESSAGE.into(),
    ))
}
