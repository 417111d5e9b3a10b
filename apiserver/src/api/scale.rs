//! The `/scale` subresource: an autoscaling/v1 Scale view of any object with a scale
//! spec (built-in workloads and CRDs), read and written through the parent object.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::negotiate::{decode_object, media_type};
use super::read::get_object;
use super::strategy;
use super::write::{apply_patch, CONFLICT_MESSAGE};
use super::{json_response, Api, ApiRequest, Body};
use crate::object;
use crate::registry::{Resource, ScaleSpec};
use crate::selectors::LabelSelector;
use crate::status::{ApiError, Cause, Result};

/// `.spec.replicas` -> `/spec/replicas`.
fn pointer(path: &str) -> String {
    path.trim_start_matches('.').split('.').fold(String::new(), |acc, p| format!("{acc}/{p}"))
}

fn set_at(obj: &mut Value, path: &str, value: Value) {
    let mut cur = obj;
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let map = cur.as_object_mut().expect("made an object");
        if i == parts.len() - 1 {
            map.insert(p.to_string(), value);
            return;
        }
        cur = map.entry(p.to_string()).or_insert_with(|| json!({}));
    }
}

/// The label selector string of a scalable object.
fn selector(r: &Resource, spec: &ScaleSpec, obj: &Value) -> Option<String> {
    if r.builtin {
        // Built-in workloads keep a metav1.LabelSelector (a plain map for RCs) in spec.selector.
        let sel = obj.pointer("/spec/selector")?;
        let sel = if sel.get("matchLabels").is_some() || sel.get("matchExpressions").is_some() {
            sel.clone()
        } else {
            json!({"matchLabels": sel})
        };
        return LabelSelector::from_label_selector(&sel).ok().map(|s| s.to_string());
    }
    obj.pointer(&pointer(spec.label_selector_path.as_deref()?))?.as_str().map(str::to_string)
}

fn to_scale(r: &Resource, obj: &Value) -> Value {
    let spec = r.scale.as_ref().expect("only scalable resources reach here");
    let int = |p: &str| obj.pointer(&pointer(p)).and_then(Value::as_i64).unwrap_or(0);
    let meta = obj.get("metadata").cloned().unwrap_or_default();
    let mut status = json!({"replicas": int(&spec.status_replicas_path)});
    if let Some(sel) = selector(r, spec, obj) {
        status["selector"] = json!(sel);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": int(&spec.spec_replicas_path)},
        "status": status,
    })
}

pub async fn get(api: &Arc<Api>, r: &Resource, req: &ApiRequest, name: &str) -> Result<Response<Body>> {
    let obj = get_object(api, r, req.namespace(), name, false).await?;
    req.accept.require_json()?;
    Ok(json_response(StatusCode::OK, &to_scale(r, &obj)))
}

pub async fn update(api: &Arc<Api>, r: &Resource, req: &ApiRequest, name: &str) -> Result<Response<Body>> {
    let spec = r.scale.clone().expect("only scalable resources reach here");
    let key = r.key(req.namespace(), name);
    for _ in 0..16 {
        let current = get_object(api, r, req.namespace(), name, false).await?;
        let scale = to_scale(r, &current);
        let wanted = if req.method == http::Method::PUT {
            decode_object(&req.content_type, &req.body)?
        } else {
            apply_patch(&scale, &media_type(&req.content_type), &req.body, Some(&crate::smp::PatchMeta::new()))?
        };
        let precondition = object::meta_str(&wanted, "resourceVersion").filter(|v| !v.is_empty());
        let current_rv = object::meta_str(&current, "resourceVersion").unwrap_or("");
        if precondition.is_some_and(|p| p != current_rv) {
            return Err(ApiError::Conflict(req.target(r, name), CONFLICT_MESSAGE.into()));
        }
        let replicas = match wanted.pointer("/spec/replicas") {
            None | Some(Value::Null) => 0,
            Some(v) => v.as_i64().ok_or_else(|| {
                ApiError::BadRequest(format!("spec.replicas must be an integer, got {v}"))
            })?,
        };
        if replicas < 0 {
            return Err(ApiError::Invalid {
                target: req.target(r, name),
                kind: "Scale".into(),
                causes: vec![Cause::invalid("spec.replicas", &replicas.to_string(), "must be greater than or equal to 0")],
            });
        }
        let mut next = current.clone();
        set_at(&mut next, &spec.spec_replicas_path, json!(replicas));
        let next = strategy::prepare_update(r, &current, next, false)?;
        if strategy::same_object(&current, &next) || req.dry_run() {
            return Ok(json_response(StatusCode::OK, &to_scale(r, &next)));
        }
        // The replicas a scaler set are its own: a later apply of another value conflicts.
        let mut next = super::fields::track(r, req, Some(&current), next);
        let mut stored = next.clone();
        object::metadata_mut(&mut stored).remove("resourceVersion");
        let bytes = serde_json::to_vec(&stored).map_err(|e| ApiError::Internal(e.to_string()))?;
        match api.storage.update(&key, bytes.into(), current_rv.parse().unwrap_or(0)).await {
            Ok(rev) => {
                object::set_resource_version(&mut next, rev);
                return Ok(json_response(StatusCode::OK, &to_scale(r, &next)));
            }
            Err(crate::storage::Error::Conflict { .. }) if precondition.is_none() => continue,
            Err(crate::storage::Error::Conflict { .. }) => {
                return Err(ApiError::Conflict(req.target(r, name), CONFLICT_MESSAGE.into()))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(req.target(r, name), CONFLICT_MESSAGE.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths_become_pointers_and_set_nested_values() {
        assert_eq!(pointer(".spec.replicas"), "/spec/replicas");
        let mut obj = json!({"spec": {}});
        set_at(&mut obj, ".spec.replicas", json!(3));
        assert_eq!(obj, json!({"spec": {"replicas": 3}}));
    }
}
