//! AdmissionReview v1: the request a webhook is sent and the checks upstream makes of
//! its answer (`admission.k8s.io/v1` `AdmissionReview`, the same uid, a response), and
//! a denial turned into the Status the client gets.

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::status::ApiError;

/// What one webhook is asked about.
pub(crate) struct Review<'a> {
    pub(crate) uid: &'a str,
    /// group, version, kind / resource the webhook sees (its matched version).
    pub(crate) kind: (&'a str, &'a str, &'a str),
    pub(crate) resource: (&'a str, &'a str, &'a str),
    /// The same of the request as the client sent it.
    pub(crate) request_kind: (&'a str, &'a str, &'a str),
    pub(crate) request_resource: (&'a str, &'a str, &'a str),
    pub(crate) subresource: &'a str,
    pub(crate) name: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) operation: &'a str,
    pub(crate) user: &'a super::super::UserInfo,
    pub(crate) object: Option<&'a Value>,
    pub(crate) old_object: Option<&'a Value>,
    pub(crate) dry_run: bool,
    pub(crate) options: Value,
}

fn gvk((group, version, kind): (&str, &str, &str)) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

fn gvr((group, version, resource): (&str, &str, &str)) -> Value {
    json!({"group": group, "version": version, "resource": resource})
}

impl Review<'_> {
    /// The AdmissionReview body, fields in upstream's order and omitted as it omits them.
    pub(crate) fn to_json(&self) -> Value {
        let mut r = Map::new();
        r.insert("uid".into(), json!(self.uid));
        r.insert("kind".into(), gvk(self.kind));
        r.insert("resource".into(), gvr(self.resource));
        if !self.subresource.is_empty() {
            r.insert("subResource".into(), json!(self.subresource));
        }
        r.insert("requestKind".into(), gvk(self.request_kind));
        r.insert("requestResource".into(), gvr(self.request_resource));
        if !self.subresource.is_empty() {
            r.insert("requestSubResource".into(), json!(self.subresource));
        }
        if !self.name.is_empty() {
            r.insert("name".into(), json!(self.name));
        }
        if !self.namespace.is_empty() {
            r.insert("namespace".into(), json!(self.namespace));
        }
        r.insert("operation".into(), json!(self.operation));
        let mut user = Map::new();
        user.insert("username".into(), json!(self.user.name));
        if !self.user.uid.is_empty() {
            user.insert("uid".into(), json!(self.user.uid));
        }
        if !self.user.groups.is_empty() {
            user.insert("groups".into(), json!(self.user.groups));
        }
        r.insert("userInfo".into(), Value::Object(user));
        r.insert("object".into(), self.object.cloned().unwrap_or(Value::Null));
        r.insert(
            "oldObject".into(),
            self.old_object.cloned().unwrap_or(Value::Null),
        );
        r.insert("dryRun".into(), json!(self.dry_run));
        r.insert("options".into(), self.options.clone());
        json!({
            "kind": "AdmissionReview",
            "apiVersion": "admission.k8s.io/v1",
            "request": Value::Object(r),
        })
    }
}

/// A webhook's answer, checked.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub(crate) allowed: bool,
    /// `response.status` (a metav1.Status) of a denial.
    pub(crate) status: Option<Value>,
    /// The decoded JSON patch of a mutating webhook.
    pub(crate) patch: Option<json_patch::Patch>,
    pub(crate) warnings: Vec<String>,
}

/// The answer in `body` to the review with `uid`, or why it is not a valid one (upstream
/// prefixes these with `received invalid webhook response: `).
pub(crate) fn parse_answer(body: &[u8], uid: &str) -> Result<Answer, String> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| format!("couldn't decode the response: {e}"))?;
    let api_version = review
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = review.get("kind").and_then(Value::as_str).unwrap_or("");
    if (api_version, kind) != ("admission.k8s.io/v1", "AdmissionReview") {
        return Err(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {api_version}, Kind={kind}"
        ));
    }
    let Some(response) = review.get("response").filter(|r| r.is_object()) else {
        return Err("webhook response was absent".into());
    };
    let got = response.get("uid").and_then(Value::as_str).unwrap_or("");
    if got != uid {
        return Err(format!("expected response.uid={uid:?}, got {got:?}"));
    }
    let patch = match response.get("patch").and_then(Value::as_str) {
        Some(p) if !p.is_empty() => {
            let patch_type = response
                .get("patchType")
                .and_then(Value::as_str)
                .unwrap_or("");
            if patch_type != "JSONPatch" {
                return Err(format!("unsupported patch type {patch_type:?}"));
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(p)
                .map_err(|e| format!("patch is not base64: {e}"))?;
            Some(
                serde_json::from_slice(&raw)
                    .map_err(|e| format!("patch is not a JSON patch: {e}"))?,
            )
        }
        _ => None,
    };
    Ok(Answer {
        allowed: response.get("allowed").and_then(Value::as_bool) == Some(true),
        status: response.get("status").cloned(),
        patch,
        warnings: response
            .get("warnings")
            .and_then(Value::as_array)
            .map(|w| {
                w.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// The reasons upstream's clients know; a webhook's other reasons are dropped.
const REASONS: &[&str] = &[
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "AlreadyExists",
    "Conflict",
    "Gone",
    "Invalid",
    "ServerTimeout",
    "Timeout",
    "TooManyRequests",
    "BadRequest",
    "MethodNotAllowed",
    "NotAcceptable",
    "RequestEntityTooLarge",
    "UnsupportedMediaType",
    "InternalError",
    "Expired",
    "ServiceUnavailable",
];

/// The error a denial by webhook `name` gives the client (upstream's `ToStatusErr`): the
/// webhook's code (at least 400), reason and details, its message after
/// `admission webhook "name" denied the request`.
pub(crate) fn denial(name: &str, status: Option<&Value>) -> ApiError {
    let empty = Value::Null;
    let status = status.unwrap_or(&empty);
    let text = |f: &str| status.get(f).and_then(Value::as_str).unwrap_or("");
    let denied = format!("admission webhook \"{name}\" denied the request");
    let message = match (text("message"), text("reason")) {
        (m, _) if !m.is_empty() => format!("{denied}: {m}"),
        (_, r) if !r.is_empty() => format!("{denied}: {r}"),
        _ => format!("{denied} without explanation"),
    };
    let code = status
        .get("code")
        .and_then(Value::as_u64)
        .filter(|c| (400..600).contains(c))
        .unwrap_or(400) as u16;
    ApiError::Status {
        code,
        reason: REASONS
            .iter()
            .find(|r| **r == text("reason"))
            .copied()
            .unwrap_or(""),
        message,
        details: status.get("details").cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_that_are_not_upstreams_are_refused_with_its_words() {
        let cases = [
            (
                "wrong kind",
                r#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","response":{"uid":"u"}}"#,
                "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got admission.k8s.io/v1beta1, Kind=AdmissionReview",
            ),
            (
                "no response",
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
                "webhook response was absent",
            ),
            (
                "another uid",
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"x"}}"#,
                "expected response.uid=\"u\", got \"x\"",
            ),
            (
                "merge patch",
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":true,"patch":"W10=","patchType":"Merge"}}"#,
                "unsupported patch type \"Merge\"",
            ),
        ];
        for (name, body, want) in cases {
            assert_eq!(
                parse_answer(body.as_bytes(), "u").unwrap_err(),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn a_denial_keeps_the_webhooks_code_and_prefixes_its_message() {
        let cases = [
            (
                "message and code",
                json!({"code": 403, "message": "no"}),
                403,
                "admission webhook \"h\" denied the request: no",
            ),
            (
                "reason only",
                json!({"reason": "Forbidden"}),
                400,
                "admission webhook \"h\" denied the request: Forbidden",
            ),
            (
                "nothing",
                json!({}),
                400,
                "admission webhook \"h\" denied the request without explanation",
            ),
            (
                "a success code",
                json!({"code": 200, "message": "m"}),
                400,
                "admission webhook \"h\" denied the request: m",
            ),
        ];
        for (name, status, code, message) in cases {
            let e = denial("h", Some(&status));
            assert_eq!(e.code(), code, "{name}");
            assert_eq!(e.to_string(), message, "{name}");
        }
    }
}
