//! `pods/binding` (and the legacy `bindings` resource): assigns a pod to a node, once.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::guarded::{self, Decision};
use super::negotiate::decode_object;
use super::{json_response, Api, ApiRequest, Body};
use crate::object;
use crate::registry::Resource;
use crate::status::{ApiError, Cause, Result, Target};

pub(super) async fn bind(
    api: &Arc<Api>,
    pods: &Resource,
    req: &ApiRequest,
    name: Option<&str>,
) -> Result<Response<Body>> {
    let binding = decode_object(&req.content_type, &req.body)?;
    let body_name = object::name(&binding);
    if name.is_some_and(|n| !body_name.is_empty() && n != body_name) {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Binding object".into(),
        ));
    }
    let name = name.unwrap_or(body_name).to_string();
    let target = Target::new("", "pods/binding", &name);
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if node.is_empty() {
        return Err(ApiError::Invalid {
            target,
            kind: "Binding".into(),
            causes: vec![Cause::required("target.name", "")],
        });
    }
    let key = pods.key(req.namespace(), &name);
    let pod_target = Target::new("", "pods", &name);
    guarded::update(api, &key, &target, |pod| {
        let mut pod = pod.cloned().ok_or_else(|| ApiError::NotFound(pod_target.clone()))?;
        if object::is_deleting(&pod) {
            return Err(ApiError::Conflict(
                target.clone(),
                format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        if let Some(current) = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::Conflict(
                target.clone(),
                format!("pod {name} is already assigned to node {current:?}"),
            ));
        }
        pod["spec"]["nodeName"] = json!(node);
        let condition = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": object::now_rfc3339()});
        let status = pod
            .as_object_mut()
            .expect("pods are objects")
            .entry("status")
            .or_insert_with(|| json!({}));
        let conditions = status
            .as_object_mut()
            .map(|s| s.entry("conditions").or_insert_with(|| json!([])));
        if let Some(list) = conditions.and_then(Value::as_array_mut) {
            list.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
            list.push(condition);
        }
        Ok(if req.dry_run() { Decision::Unchanged } else { Decision::Write(pod) })
    })
    .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}
