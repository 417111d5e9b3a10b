//! `serviceaccounts/token` (authentication.k8s.io/v1 TokenRequest): issues a bound
//! service-account JWT, signed ES256 with the cluster's service-account key, with
//! upstream's claims (iss, sub, aud, exp, iat, nbf, jti and the `kubernetes.io` object
//! binding). The key is made on first start next to the CA (`pki/service-account.key`,
//! its public half in `pki/service-account.pub` for verifiers).

mod proto;
mod signer;

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{json, Value};

pub use signer::{ServiceAccountUser, TokenError, TokenSigner};

use super::negotiate::decode_object;
use super::pipeline::noderestriction::{self as node_restriction, BoundObject as NodeBound};
use super::read::get_object;
use super::{json_response, Api, ApiRequest, Body};
use crate::object;
use crate::status::{ApiError, Cause, Result, Target};

/// The issuer (and default audience) of our tokens, k3s's default.
pub(super) const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Upstream's default token lifetime (TokenRequestSpec defaulting).
pub(super) const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Upstream refuses shorter tokens (authentication validation MinTokenAgeSec).
pub(super) const MIN_EXPIRATION_SECONDS: i64 = 600;
/// ... and longer than 2^32 seconds.
pub(super) const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// What a TokenRequest asks for, defaulted as upstream defaults it.
#[derive(Debug, PartialEq)]
pub(super) struct TokenSpec {
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    pub bound: Option<BoundRef>,
}

#[derive(Debug, PartialEq)]
pub(super) struct BoundRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// The request's spec with defaults (audiences: the issuer; lifetime: an hour), or
/// upstream's validation errors.
pub(super) fn token_spec(body: &Value) -> Result<TokenSpec> {
    let spec = body.get("spec").cloned().unwrap_or(json!({}));
    let mut audiences: Vec<String> = spec["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect();
    if audiences.is_empty() {
        audiences.push(ISSUER.into());
    }
    let expiration_seconds = spec["expirationSeconds"]
        .as_i64()
        .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    let invalid = |detail: &str| Cause {
        reason: "FieldValueInvalid",
        field: "spec.expirationSeconds".into(),
        message: format!("Invalid value: {expiration_seconds}: {detail}"),
    };
    let mut causes = Vec::new();
    if expiration_seconds < MIN_EXPIRATION_SECONDS {
        causes.push(invalid("may not specify a duration less than 10 minutes"));
    }
    if expiration_seconds > MAX_EXPIRATION_SECONDS {
        causes.push(invalid(
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    if !causes.is_empty() {
        let target = Target::new("authentication.k8s.io", "tokenrequests", "");
        return Err(ApiError::Invalid {
            target,
            kind: "TokenRequest.authentication.k8s.io".into(),
            causes,
        });
    }
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let bound = spec
        .get("boundObjectRef")
        .filter(|r| r.is_object())
        .map(|r| BoundRef {
            api_version: text(r, "apiVersion"),
            kind: text(r, "kind"),
            name: text(r, "name"),
            uid: text(r, "uid"),
        });
    Ok(TokenSpec {
        audiences,
        expiration_seconds,
        bound,
    })
}

/// A `{name, uid}` reference claim (uid left out when unknown, as for a pod's node
/// that has no Node object).
fn reference(o: &Value) -> Value {
    let mut r = json!({"name": object::name(o)});
    if let Some(uid) = object::meta_str(o, "uid").filter(|u| !u.is_empty()) {
        r["uid"] = json!(uid);
    }
    r
}

/// The JWT claims upstream's service-account token generator writes; `bound` are the
/// objects the token is bound to, by claim name (`pod`, `secret`, `node`).
pub(super) fn claims(
    ns: &str,
    sa: &Value,
    bound: &[(&str, Value)],
    spec: &TokenSpec,
    issuer: &str,
    now: i64,
) -> Value {
    let sa_name = object::name(sa);
    let mut k8s = json!({"namespace": ns, "serviceaccount": reference(sa)});
    for (field, obj) in bound {
        k8s[*field] = reference(obj);
    }
    json!({
        "iss": issuer,
        "sub": format!("system:serviceaccount:{ns}:{sa_name}"),
        "aud": spec.audiences,
        "exp": now + spec.expiration_seconds,
        "iat": now,
        "nbf": now,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": k8s,
    })
}

/// `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`.
pub(super) async fn create(api: &Arc<Api>, req: &ApiRequest, name: &str) -> Result<Response<Body>> {
    let ns = req.namespace().unwrap_or_default().to_string();
    let body = if crate::protobuf::is_protobuf(&req.content_type) {
        proto::decode(&req.body).map_err(ApiError::BadRequest)?
    } else {
        decode_object(&req.content_type, &req.body)?
    };
    if object::namespace(&body).is_some_and(|n| !n.is_empty() && n != ns) {
        return Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        ));
    }
    let spec = token_spec(&body)?;
    let snapshot = api.registry.snapshot();
    let resource = |plural: &str| {
        snapshot
            .get("", "v1", plural)
            .cloned()
            .ok_or(ApiError::NoSuchResource)
    };
    let reference = spec.bound.as_ref().map(|r| {
        (
            r.api_version.as_str(),
            r.kind.as_str(),
            r.name.as_str(),
            r.uid.as_str(),
        )
    });
    let bound_to = |pod| NodeBound { reference, pod };
    node_restriction::token_request(&req.user, name, bound_to(None))?;
    let sa = get_object(api, &*resource("serviceaccounts")?, Some(&ns), name, false).await?;
    let mut bound = Vec::new();
    if let Some(r) = &spec.bound {
        let group = r.api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let (plural, field) = match (group, r.kind.as_str()) {
            ("", "Pod") => ("pods", "pod"),
            ("", "Secret") => ("secrets", "secret"),
            ("", "Node") => ("nodes", "node"),
            _ => {
                let version = r.api_version.rsplit('/').next().unwrap_or_default();
                return Err(ApiError::BadRequest(format!(
                    "cannot bind token to object of type {group}/{version}, Kind={}",
                    r.kind
                )));
            }
        };
        let in_ns = (field != "node").then_some(ns.as_str());
        let obj = get_object(api, &*resource(plural)?, in_ns, &r.name, false).await?;
        let uid = object::meta_str(&obj, "uid").unwrap_or_default();
        if field == "pod" {
            node_restriction::token_request(&req.user, name, bound_to(Some(&obj)))?;
            let account = obj
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            if account.unwrap_or("default") != name {
                return Err(ApiError::BadRequest(format!(
                    "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
                )));
            }
        }
        if !r.uid.is_empty() && r.uid != uid {
            return Err(ApiError::Conflict(
                Target::new(group, &r.kind, &r.name),
                format!("the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated", r.uid),
            ));
        }
        // A pod-bound token also names the pod's node (upstream's ServiceAccountTokenPodNodeInfo,
        // on by default): its uid when the Node exists, else the name alone.
        let node_name = (field == "pod")
            .then(|| obj.pointer("/spec/nodeName").and_then(Value::as_str))
            .flatten();
        let node_name = node_name.filter(|n| !n.is_empty()).map(String::from);
        bound.push((field, obj));
        if let Some(node_name) = node_name {
            let node = match get_object(api, &*resource("nodes")?, None, &node_name, true).await {
                Ok(node) => node,
                Err(ApiError::NotFound(_)) => json!({"metadata": {"name": node_name}}),
                Err(e) => return Err(e),
            };
            bound.push(("node", node));
        }
    }
    let signer = api.token_signer.get().ok_or_else(|| {
        ApiError::ServiceUnavailable("the service-account token signing key is not loaded".into())
    })?;
    let now = object::unix_now();
    let claims = claims(&ns, &sa, &bound, &spec, signer.issuer(), now);
    let token = signer.sign(&claims)?;
    let mut out_spec = json!({"audiences": spec.audiences, "expirationSeconds": spec.expiration_seconds, "boundObjectRef": null});
    if let Some(r) = body
        .pointer("/spec/boundObjectRef")
        .filter(|r| r.is_object())
    {
        out_spec["boundObjectRef"] = r.clone();
    }
    let response = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": object::rfc3339(now + spec.expiration_seconds)},
    });
    Ok(json_response(StatusCode::CREATED, &response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_requests_are_defaulted_and_validated_as_upstream() {
        let cases = [
            ("empty spec", json!({}), Ok((vec![ISSUER], 3600))),
            (
                "own audiences",
                json!({"spec": {"audiences": ["vault"], "expirationSeconds": 600}}),
                Ok((vec!["vault"], 600)),
            ),
            (
                "too short",
                json!({"spec": {"expirationSeconds": 599}}),
                Err("Invalid value: 599: may not specify a duration less than 10 minutes"),
            ),
            (
                "too long",
                json!({"spec": {"expirationSeconds": 1i64 << 33}}),
                Err("may not specify a duration larger than 2^32 seconds"),
            ),
        ];
        for (name, body, want) in cases {
            match (token_spec(&body), want) {
                (Ok(spec), Ok((auds, exp))) => {
                    assert_eq!(spec.audiences, auds, "{name}");
                    assert_eq!(spec.expiration_seconds, exp, "{name}");
                }
                (Err(e), Err(msg)) => {
                    assert_eq!(e.code(), 422, "{name}");
                    assert!(e.to_string().starts_with("TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds"), "{name}: {e}");
                    assert!(e.to_string().contains(msg), "{name}: {e}");
                }
                (got, _) => panic!("{name}: unexpected {got:?}"),
            }
        }
    }

    #[test]
    fn claims_name_the_account_and_the_bound_pod() {
        let sa = json!({"metadata": {"name": "robot", "uid": "sa-uid"}});
        let pod = json!({"metadata": {"name": "web-0", "uid": "pod-uid"}});
        let spec =
            token_spec(&json!({"spec": {"audiences": ["a", "b"], "expirationSeconds": 700}}))
                .unwrap();
        let c = claims("prod", &sa, &[("pod", pod)], &spec, ISSUER, 1000);
        assert_eq!(c["iss"], ISSUER);
        assert_eq!(c["sub"], "system:serviceaccount:prod:robot");
        assert_eq!(c["aud"], json!(["a", "b"]));
        assert_eq!(
            (c["iat"].as_i64(), c["nbf"].as_i64(), c["exp"].as_i64()),
            (Some(1000), Some(1000), Some(1700))
        );
        assert_eq!(
            c["kubernetes.io"],
            json!({"namespace": "prod", "serviceaccount": {"name": "robot", "uid": "sa-uid"}, "pod": {"name": "web-0", "uid": "pod-uid"}})
        );
        assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()));
    }
}
