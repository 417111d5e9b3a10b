//! Server-side apply (`PATCH` with `application/apply-patch+yaml`): creates the object
//! when missing, otherwise merges the configuration under its field manager, with 409
//! conflicts unless `force=true`.

use std::sync::Arc;

use http::Response;
use serde_json::{json, Value};

use super::read::object_response;
use super::write::{create_object, read_modify_write, Change, Derive};
use super::{Api, ApiRequest, Body};
use crate::object;
use crate::registry::Resource;
use crate::status::{ApiError, Result};

pub(super) async fn serve(
    api: &Arc<Api>,
    r: &Resource,
    req: &ApiRequest,
    name: &str,
) -> Result<Response<Body>> {
    let manager = req.query.value("fieldManager").map(str::to_string).ok_or_else(|| {
        ApiError::BadRequest("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into())
    })?;
    let force = req.query.flag("force");
    let mut applied: Value = crate::yaml::from_slice(&req.body)
        .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?;
    if !applied.is_object() {
        return Err(ApiError::BadRequest(
            "the apply configuration must be an object".into(),
        ));
    }
    let av = applied
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if av != r.api_version() {
        return Err(ApiError::BadRequest(format!(
            "Incorrect version specified in apply patch. Specified patch version: {av}, expected: {}",
            r.api_version()
        )));
    }
    let kind = applied.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != r.kind {
        return Err(ApiError::BadRequest(format!(
            "Incorrect kind specified in apply patch. Specified patch kind: {kind}, expected: {}",
            r.kind
        )));
    }
    let body_name = object::name(&applied);
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let status_only = req.path.subresource.as_deref() == Some("status");
    if r.status && !status_only {
        // Status is owned through the status subresource; upstream resets it here.
        applied.as_object_mut().map(|m| m.remove("status"));
    }
    let meta = object::metadata_mut(&mut applied);
    meta.insert("name".into(), json!(name));
    if let Some(ns) = req.namespace() {
        meta.insert("namespace".into(), json!(ns));
    }
    let exists = super::read::get_object(api, r, req.namespace(), name, false).await;
    match exists {
        Err(ApiError::NotFound(_)) if !status_only => {
            let obj = super::fields::apply(r, req, &json!({}), &applied, &manager, force)?;
            create_object(api, r, req, obj, true).await
        }
        Err(e) => Err(e),
        Ok(_) => {
            let precondition = object::meta_str(&applied, "resourceVersion").map(str::to_string);
            let derive = Derive {
                derive: Box::new(|base: &Value| {
                    let obj = super::fields::apply(r, req, base, &applied, &manager, force)?;
                    Ok((obj, precondition.clone()))
                }),
                tracks_fields: true,
            };
            let (code, out) = read_modify_write(api, r, req, name, Change::Derive(&derive)).await?;
            object_response(api, r, req, code, &out)
        }
    }
}
