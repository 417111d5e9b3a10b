//! The `/scale` subresource: an autoscaling/v1 Scale view of any object with a scale
//! spec (built-in workloads and CRDs), read and written through the parent object.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::negotiate::{decode_object, media_type};
use super::patch::apply_patch;
use super::read::get_object;
use super::write::{read_modify_write, Change, Derive};
use super::{json_response, Api, ApiRequest, Body};
use crate::object;
use crate::registry::{Resource, ScaleSpec};
use crate::selectors::LabelSelector;
use crate::status::{ApiError, Cause, Result};

/// `.spec.replicas` -> `/spec/replicas`.
fn pointer(path: &str) -> String {
    path.trim_start_matches('.')
        .split('.')
        .fold(String::new(), |acc, p| format!("{acc}/{p}"))
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
        return LabelSelector::from_label_selector(&sel)
            .ok()
            .map(|s| s.to_string());
    }
    obj.pointer(&pointer(spec.label_selector_path.as_deref()?))?
        .as_str()
        .map(str::to_string)
}

fn to_scale(r: &Resource, obj: &Value) -> Value {
    let spec = r
        .scale
        .as_ref()
        .expect("only scalable resources reach here");
    let int = |p: &str| {
        obj.pointer(&pointer(p))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
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

pub(super) async fn get(
    api: &Arc<Api>,
    r: &Resource,
    req: &ApiRequest,
    name: &str,
) -> Result<Response<Body>> {
    let obj = get_object(api, r, req.namespace(), name, false).await?;
    req.accept.require_json()?;
    Ok(json_response(StatusCode::OK, &to_scale(r, &obj)))
}

pub(super) async fn update(
    api: &Arc<Api>,
    r: &Resource,
    req: &ApiRequest,
    name: &str,
) -> Result<Response<Body>> {
    let derive = Derive {
        derive: Box::new(|current: &Value| scaled(r, req, current)),
        tracks_fields: false,
    };
    let (_, obj) = read_modify_write(api, r, req, name, Change::Derive(&derive)).await?;
    Ok(json_response(StatusCode::OK, &to_scale(r, &obj)))
}

/// The object with the replicas the request's Scale asks for (a PUT body, or a patch
/// of the current Scale), and the resourceVersion the client made it conditional on.
fn scaled(r: &Resource, req: &ApiRequest, current: &Value) -> Result<(Value, Option<String>)> {
    let spec = r
        .scale
        .as_ref()
        .expect("only scalable resources reach here");
    let wanted = if req.method == http::Method::PUT {
        decode_object(&req.content_type, &req.body)?
    } else {
        apply_patch(
            &to_scale(r, current),
            &media_type(&req.content_type),
            &req.body,
            Some(&crate::smp::PatchMeta::new()),
        )?
    };
    let name = object::name(current);
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
            causes: vec![Cause::invalid(
                "spec.replicas",
                &replicas.to_string(),
                "must be greater than or equal to 0",
            )],
        });
    }
    let mut next = current.clone();
    set_at(&mut next, &spec.spec_replicas_path, json!(replicas));
    let precondition = object::meta_str(&wanted, "resourceVersion").map(str::to_string);
    Ok((next, precondition))
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
