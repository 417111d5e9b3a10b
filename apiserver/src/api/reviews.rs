//! The review endpoints of `authentication.k8s.io/v1` (TokenReview, SelfSubjectReview)
//! and `authorization.k8s.io/v1` (SubjectAccessReview, SelfSubjectAccessReview,
//! LocalSubjectAccessReview, SelfSubjectRulesReview): create-only, never stored,
//! answered at once with the posted object and its status filled, as upstream's. The
//! access reviews ask the server's own authorizers ([`super::pipeline::Pipeline`]), so
//! they answer as the identity is really authorized.

use std::sync::Arc;

use http::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::negotiate::decode_object;
use super::pipeline::{Attributes, ResourceAttributes, Selectors, UserInfo, Verdict};
use super::{json_response, token, Api, ApiRequest, Body};
use crate::registry::Resource;
use crate::status::{ApiError, Cause, Result, Target};

/// `POST` of a review kind (every other verb is upstream's 405).
pub(super) async fn serve(
    api: &Arc<Api>,
    r: &Resource,
    req: &ApiRequest,
) -> Result<Response<Body>> {
    if req.method != Method::POST || req.path.name.is_some() || req.path.subresource.is_some() {
        return Err(ApiError::MethodNotAllowed);
    }
    req.accept.require_json()?;
    let mut obj = decode_object(&req.content_type, &req.body)?;
    let expected = r.api_version();
    match (obj.get("apiVersion"), obj.get("kind")) {
        (Some(v), Some(k)) if v == expected.as_str() && k == r.kind.as_str() => {}
        (None, None) => {}
        (v, k) => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({}) does not match the expected API version ({expected}) or kind ({}) of {}",
                v.and_then(Value::as_str).unwrap_or(""),
                k.and_then(Value::as_str).unwrap_or(""),
                r.kind
            )))
        }
    }
    obj["apiVersion"] = json!(expected);
    obj["kind"] = json!(r.kind);
    let meta = obj
        .as_object_mut()
        .expect("decode_object returns objects")
        .entry("metadata")
        .or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    // Nothing is stored: the answer has no creation time, as upstream's (Go's zero time).
    meta.as_object_mut()
        .expect("metadata is an object")
        .entry("creationTimestamp")
        .or_insert(Value::Null);
    let status = match r.kind.as_str() {
        "SelfSubjectReview" => json!({"userInfo": user_info(&req.user)}),
        "TokenReview" => token_review(api, &obj).await?,
        "SubjectAccessReview" => {
            let spec = spec_of(r, &obj)?;
            access(api, r, &spec, subject(r, &spec)?)?
        }
        "SelfSubjectAccessReview" => access(api, r, &spec_of(r, &obj)?, req.user.clone())?,
        "LocalSubjectAccessReview" => {
            local_namespace(r, req, &mut obj)?;
            let spec = spec_of(r, &obj)?;
            access(api, r, &spec, subject(r, &spec)?)?
        }
        "SelfSubjectRulesReview" => rules(api, r, &obj, &req.user)?,
        _ => return Err(ApiError::MethodNotAllowed),
    };
    obj["status"] = status;
    Ok(json_response(StatusCode::CREATED, &obj))
}

/// upstream's `user.Info` in JSON (UserInfo of authentication.k8s.io).
fn user_info(user: &UserInfo) -> Value {
    let mut v = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        v["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        v["extra"] = json!(user.extra);
    }
    v
}

fn invalid(r: &Resource, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid {
        target: Target::new(&r.group, &r.plural, ""),
        kind: format!("{}.{}", r.kind, r.group),
        causes,
    }
}

/// TokenReview: the token checked as the server checks service-account tokens (our
/// signature and issuer, an audience asked for or ours, within its lifetime, and the
/// objects it is bound to still there with the same uid).
async fn token_review(api: &Arc<Api>, obj: &Value) -> Result<Value> {
    let r_token = obj
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or("");
    if r_token.is_empty() {
        return Err(ApiError::Invalid {
            target: Target::new("authentication.k8s.io", "tokenreviews", ""),
            kind: "TokenReview.authentication.k8s.io".into(),
            causes: vec![Cause::required("spec.token", "")],
        });
    }
    let asked: Vec<String> = obj
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect();
    let audiences: Vec<&str> = if asked.is_empty() {
        vec![token::ISSUER]
    } else {
        asked.iter().map(String::as_str).collect()
    };
    if api.token_signer.get().is_none() {
        return Ok(
            json!({"user": {}, "error": "service account tokens are not enabled on this server"}),
        );
    }
    match super::pipeline::service_account_user(api, r_token, &audiences).await {
        Ok((user, matched)) => {
            let mut info = user_info(&user);
            info["uid"] = json!(user.uid);
            Ok(json!({"authenticated": true, "user": info, "audiences": matched}))
        }
        Err(e) => Ok(json!({"user": {}, "error": format!("[invalid bearer token, {e}]")})),
    }
}

/// The spec, with upstream's validation: exactly one of resourceAttributes and
/// nonResourceAttributes, and well-formed selectors in the resourceAttributes.
fn spec_of(r: &Resource, obj: &Value) -> Result<Value> {
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    let present = |k: &str| spec.get(k).is_some_and(|v| !v.is_null());
    match (
        present("resourceAttributes"),
        present("nonResourceAttributes"),
    ) {
        (true, false) | (false, true) => {
            let causes = selector_causes(&spec["resourceAttributes"]);
            if causes.is_empty() {
                Ok(spec)
            } else {
                Err(invalid(r, causes))
            }
        }
        (both, _) => {
            let detail = if both {
                "cannot be specified in combination with resourceAttributes"
            } else {
                "exactly one of nonResourceAttributes or resourceAttributes must be specified"
            };
            let field = if both {
                "spec.nonResourceAttributes"
            } else {
                "spec.resourceAttributes"
            };
            Err(invalid(
                r,
                vec![Cause {
                    reason: "FieldValueInvalid",
                    field: field.into(),
                    message: format!("Invalid value: \"null\": {detail}"),
                }],
            ))
        }
    }
}

/// Upstream's checks of a review's `fieldSelector` and `labelSelector`: `rawSelector`
/// or `requirements`, never both and never neither, and each requirement well formed.
/// An operator this server does not know passes, as upstream lets newer clients'
/// operators through (the review then ignores that requirement).
fn selector_causes(attributes: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    for which in ["fieldSelector", "labelSelector"] {
        let Some(selector) = attributes.get(which).filter(|v| !v.is_null()) else {
            continue;
        };
        let path = format!("spec.resourceAttributes.{which}");
        let raw = selector["rawSelector"].as_str().unwrap_or("");
        let requirements = selector["requirements"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if !raw.is_empty() && !requirements.is_empty() {
            causes.push(Cause::invalid(
                format!("{path}.rawSelector"),
                raw,
                "may not specified at the same time as requirements",
            ));
        }
        if raw.is_empty() && requirements.is_empty() {
            causes.push(Cause::required(
                format!("{path}.requirements"),
                &format!("when {path} is specified, requirements or rawSelector is required"),
            ));
        }
        let label = which == "labelSelector";
        for (i, requirement) in requirements.iter().enumerate() {
            requirement_causes(
                requirement,
                &format!("{path}.requirements[{i}]"),
                label,
                &mut causes,
            );
        }
    }
    causes
}

/// One selector requirement: a field's key must be given, a label's key and values
/// must be a valid label name and values; In and NotIn need values, Exists and
/// DoesNotExist take none (upstream's order of checks, so its first message comes
/// first).
fn requirement_causes(requirement: &Value, at: &str, label: bool, causes: &mut Vec<Cause>) {
    use crate::selectors::validation::{label_key_errors, label_value_errors};
    let key = requirement["key"].as_str().unwrap_or("");
    let values = requirement["values"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !label && key.is_empty() {
        causes.push(Cause::required(format!("{at}.key"), "must be specified"));
    }
    match requirement["operator"].as_str().unwrap_or("") {
        "In" | "NotIn" if values.is_empty() => causes.push(Cause::required(
            format!("{at}.values"),
            "must be specified when `operator` is 'In' or 'NotIn'",
        )),
        "Exists" | "DoesNotExist" if !values.is_empty() => causes.push(Cause::forbidden(
            format!("{at}.values"),
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        )),
        _ => {}
    }
    if label {
        for message in label_key_errors(key) {
            causes.push(Cause::invalid(format!("{at}.key"), key, &message));
        }
        for (j, value) in values.iter().enumerate() {
            let value = value.as_str().unwrap_or("");
            for message in label_value_errors(value) {
                causes.push(Cause::invalid(format!("{at}.values[{j}]"), value, &message));
            }
        }
    }
}

/// The user a (Local)SubjectAccessReview asks about: at least a user or a group.
fn subject(r: &Resource, spec: &Value) -> Result<UserInfo> {
    let strings = |k: &str| -> Vec<String> {
        spec[k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect()
    };
    let name = spec["user"].as_str().unwrap_or("").to_string();
    let groups = strings("groups");
    if name.is_empty() && groups.is_empty() {
        return Err(invalid(
            r,
            vec![Cause::invalid(
                "spec.user",
                "",
                "at least one of user or group must be specified",
            )],
        ));
    }
    Ok(UserInfo {
        name,
        uid: spec["uid"].as_str().unwrap_or("").to_string(),
        groups,
        extra: Default::default(),
    })
}

/// LocalSubjectAccessReview: the object's namespace defaults to the path's and must
/// equal it, and the attributes' namespace must be the object's (upstream's errors).
fn local_namespace(r: &Resource, req: &ApiRequest, obj: &mut Value) -> Result<()> {
    let path_ns = req.namespace().unwrap_or("");
    if path_ns.is_empty() {
        return Err(ApiError::BadRequest(
            "namespace is required on this type: ".into(),
        ));
    }
    let meta = obj["metadata"]
        .as_object_mut()
        .expect("metadata was made an object");
    match meta.get("namespace").and_then(Value::as_str) {
        None | Some("") => {
            meta.insert("namespace".into(), json!(path_ns));
        }
        Some(ns) if ns == path_ns => {}
        Some(_) => return Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        )),
    }
    if let Some(attrs) = obj.pointer("/spec/resourceAttributes") {
        let ns = attrs["namespace"].as_str().unwrap_or("");
        if ns != path_ns {
            return Err(invalid(
                r,
                vec![Cause::invalid(
                    "spec.resourceAttributes.namespace",
                    ns,
                    "must match metadata.namespace",
                )],
            ));
        }
    }
    if obj.pointer("/spec/nonResourceAttributes").is_some() {
        return Err(invalid(
            r,
            vec![Cause {
                reason: "FieldValueInvalid",
                field: "spec.nonResourceAttributes".into(),
                message: "Invalid value: \"null\": disallowed on this kind of request".into(),
            }],
        ));
    }
    Ok(())
}

/// The attributes a review spec describes (selectors included), asked of the server's
/// authorizers in order (the first with an opinion decides, as for requests), answered
/// with the deciding authorizer's reason, or every authorizer's when none decides.
fn access(api: &Arc<Api>, _r: &Resource, spec: &Value, user: UserInfo) -> Result<Value> {
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    let opt = |v: &Value, k: &str| Some(s(v, k)).filter(|x| !x.is_empty());
    let selectors = spec
        .get("resourceAttributes")
        .map(Selectors::of_review)
        .unwrap_or_default();
    let errors = selectors.review_errors();
    let attributes = match spec.get("resourceAttributes").filter(|v| v.is_object()) {
        Some(ra) => Attributes {
            user,
            verb: s(ra, "verb"),
            resource: Some(ResourceAttributes {
                group: s(ra, "group"),
                version: s(ra, "version"),
                resource: s(ra, "resource"),
                subresource: opt(ra, "subresource"),
                namespace: opt(ra, "namespace"),
                name: opt(ra, "name"),
                selectors,
            }),
            path: String::new(),
        },
        None => {
            let nra = &spec["nonResourceAttributes"];
            Attributes {
                user,
                verb: s(nra, "verb"),
                resource: None,
                path: s(nra, "path"),
            }
        }
    };
    let (verdict, reason) = api.pipeline.review(&attributes);
    let mut status = match verdict {
        Verdict::Allow => json!({"allowed": true}),
        Verdict::Deny(_) => json!({"allowed": false, "denied": true}),
        Verdict::NoOpinion => json!({"allowed": false}),
    };
    if !reason.is_empty() {
        status["reason"] = json!(reason);
    }
    // Upstream's evaluationError: what could not be evaluated (here, selectors that
    // did not parse and so restricted nothing).
    if !errors.is_empty() {
        status["evaluationError"] = json!(errors.join("; "));
    }
    Ok(status)
}

/// SelfSubjectRulesReview: what the authorizers say the caller may do in
/// `spec.namespace`; `incomplete` when one of them cannot list its rules.
fn rules(api: &Arc<Api>, r: &Resource, obj: &Value, user: &UserInfo) -> Result<Value> {
    let namespace = obj.pointer("/spec/namespace").and_then(Value::as_str);
    if namespace.is_none_or(str::is_empty) {
        return Err(invalid(r, vec![Cause::required("spec.namespace", "")]));
    }
    let rules = api.pipeline.rules(user, namespace.unwrap_or(""));
    Ok(json!({
        "resourceRules": rules.resource_rules,
        "nonResourceRules": rules.non_resource_rules,
        "incomplete": rules.incomplete,
    }))
}
