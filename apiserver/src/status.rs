//! API errors and their `metav1.Status` bodies, with upstream's reasons, codes and messages.

use serde_json::{json, Value};

/// A field-level problem reported inside an `Invalid` Status.
#[derive(Clone, Debug, PartialEq)]
pub struct Cause {
    /// Upstream's cause type, e.g. `FieldValueInvalid`, `FieldValueRequired`.
    pub reason: &'static str,
    /// The JSON path of the field, e.g. `metadata.name`.
    pub field: String,
    /// The message as upstream phrases it (`Invalid value: "x": ...`).
    pub message: String,
}

impl Cause {
    pub fn invalid(field: impl Into<String>, value: &str, detail: &str) -> Self {
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {}: {detail}", json!(value)),
        }
    }

    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        Cause {
            reason: "FieldValueRequired",
            field: field.into(),
            message,
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Cause {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {detail}"),
        }
    }

    pub fn too_long(field: impl Into<String>, detail: &str) -> Self {
        Cause {
            reason: "FieldValueTooLong",
            field: field.into(),
            message: format!("Too long: {detail}"),
        }
    }
}

/// The resource an error is about, as upstream's `details` names it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Target {
    pub group: String,
    /// The plural resource name (`configmaps`), which upstream puts in `details.kind`.
    pub resource: String,
    pub name: String,
}

impl Target {
    pub fn new(group: &str, resource: &str, name: &str) -> Self {
        Target {
            group: group.into(),
            resource: resource.into(),
            name: name.into(),
        }
    }

    /// `deployments.apps` or `configmaps`: how upstream names a resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// `pods "web"`, or `pods` when the request names no object: what upstream's
    /// messages start with.
    pub fn subject(&self) -> String {
        if self.name.is_empty() {
            self.qualified()
        } else {
            format!("{} \"{}\"", self.qualified(), self.name)
        }
    }
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{} \"{}\" not found", .0.qualified(), .0.name)]
    NotFound(Target),
    #[error("the server could not find the requested resource")]
    NoSuchResource,
    #[error("{} \"{}\" already exists", .0.qualified(), .0.name)]
    AlreadyExists(Target),
    #[error("Operation cannot be fulfilled on {} \"{}\": {}", .0.qualified(), .0.name, .1)]
    Conflict(Target, String),
    /// `kind` is the object's Kind (`ConfigMap`), as upstream uses in Invalid messages.
    #[error("{}", invalid_message(.kind, .target, .causes))]
    Invalid {
        target: Target,
        kind: String,
        causes: Vec<Cause>,
    },
    /// Server-side apply found fields owned by other managers.
    #[error("{message}")]
    ApplyConflict { message: String, causes: Vec<Cause> },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Gone(String),
    /// A patch that cannot be applied (a failed JSON-patch `test`, a missing path).
    #[error("{0}")]
    Unprocessable(String),
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf")]
    UnsupportedMediaType,
    /// A patch type the resource does not take (strategic merge patch on a custom resource).
    #[error("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")]
    UnsupportedPatch,
    #[error("only the following media types are accepted: application/json, application/yaml, application/json;as=Table;v=v1;g=meta.k8s.io")]
    NotAcceptable,
    /// What is over which limit, e.g. `limit is 3145728`.
    #[error("Request entity too large: {0}")]
    TooLarge(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{} is forbidden: {}", .0.subject(), .1)]
    Forbidden(Target, String, Option<Cause>),
    /// A non-resource request (`/apis`, `/healthz`) the user may not make.
    #[error("{0}")]
    ForbiddenPath(String),
    #[error("Internal error occurred: {0}")]
    Internal(String),
    #[error("{0}")]
    ServiceUnavailable(String),
    /// A read or watch asked for a resourceVersion the store has not reached, even
    /// after waiting briefly (upstream's `NewTooLargeResourceVersionError`).
    #[error(
        "Timeout: Too large resource version: {requested}, current resource version: {current}"
    )]
    TooLargeResourceVersion { requested: i64, current: i64 },
    /// Try again later (upstream's `NewTooManyRequests`): an eviction a disruption budget
    /// forbids now. `causes` are (type, message) pairs; a `retry_after` of 0 sends no
    /// `Retry-After`.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after: u64,
        causes: Vec<(&'static str, String)>,
    },
    /// A `metav1.Status` another party decided (an admission webhook's denial), sent as
    /// it came: its code, reason (one upstream knows, else empty) and details.
    #[error("{message}")]
    Status {
        code: u16,
        reason: &'static str,
        message: String,
        details: Option<Value>,
    },
}

/// How long a client is told to wait before retrying a too-large resourceVersion.
const TOO_LARGE_RV_RETRY_SECONDS: u64 = 1;

/// `Kind.group "name" is invalid: ...`: upstream names the kind qualified by its group.
fn invalid_message(kind: &str, target: &Target, causes: &[Cause]) -> String {
    let name = &target.name;
    let kind = if target.group.is_empty() || kind.contains('.') {
        kind.to_string()
    } else {
        format!("{kind}.{}", target.group)
    };
    let details: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    match details.len() {
        0 => format!("{kind} \"{name}\" is invalid"),
        1 => format!("{kind} \"{name}\" is invalid: {}", details[0]),
        _ => format!("{kind} \"{name}\" is invalid: [{}]", details.join(", ")),
    }
}

pub type Result<T> = std::result::Result<T, ApiError>;

impl ApiError {
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound(_) | ApiError::NoSuchResource => 404,
            ApiError::AlreadyExists(_)
            | ApiError::Conflict(..)
            | ApiError::ApplyConflict { .. } => 409,
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::Gone(_) => 410,
            ApiError::MethodNotAllowed => 405,
            ApiError::UnsupportedMediaType | ApiError::UnsupportedPatch => 415,
            ApiError::NotAcceptable => 406,
            ApiError::TooLarge(_) => 413,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden(..) | ApiError::ForbiddenPath(_) => 403,
            ApiError::Internal(_) => 500,
            ApiError::ServiceUnavailable(_) => 503,
            ApiError::TooLargeResourceVersion { .. } => 504,
            ApiError::TooManyRequests { .. } => 429,
            ApiError::Status { code, .. } => *code,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) | ApiError::NoSuchResource => "NotFound",
            ApiError::AlreadyExists(_) => "AlreadyExists",
            ApiError::Conflict(..) | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Gone(_) => "Expired",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::UnsupportedMediaType | ApiError::UnsupportedPatch => "UnsupportedMediaType",
            ApiError::NotAcceptable => "NotAcceptable",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(..) | ApiError::ForbiddenPath(_) => "Forbidden",
            ApiError::Internal(_) => "InternalError",
            ApiError::ServiceUnavailable(_) => "ServiceUnavailable",
            ApiError::TooLargeResourceVersion { .. } => "Timeout",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
            ApiError::Status { reason, .. } => reason,
        }
    }

    /// Seconds the client should wait before retrying (the `Retry-After` header).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::TooLargeResourceVersion { .. } => Some(TOO_LARGE_RV_RETRY_SECONDS),
            ApiError::TooManyRequests { retry_after, .. } if *retry_after > 0 => Some(*retry_after),
            _ => None,
        }
    }

    /// The `metav1.Status` body upstream sends for this error.
    pub fn to_status(&self) -> Value {
        // Upstream's field order: kind, apiVersion, metadata, status, message, reason,
        // details, code (clients compare these bodies as strings).
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
        });
        let details = match self {
            ApiError::NotFound(t) | ApiError::AlreadyExists(t) | ApiError::Conflict(t, _) => {
                Some(target_details(t))
            }
            ApiError::Forbidden(t, _, cause) => {
                let mut d = target_details(t);
                if let Some(c) = cause {
                    d["causes"] =
                        json!([{"reason": c.reason, "message": c.message, "field": c.field}]);
                }
                Some(d)
            }
            ApiError::Invalid {
                target,
                kind,
                causes,
            } => {
                let mut d = target_details(target);
                d["kind"] = json!(kind);
                d["causes"] = causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
                Some(d)
            }
            ApiError::ApplyConflict { causes, .. } => Some(json!({"causes": causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect::<Vec<_>>()})),
            ApiError::Internal(msg) => Some(json!({"causes": [{"message": msg}]})),
            ApiError::Status { details, .. } => details.clone(),
            ApiError::TooLargeResourceVersion { .. } => Some(json!({
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": TOO_LARGE_RV_RETRY_SECONDS,
            })),
            ApiError::TooManyRequests {
                causes,
                retry_after,
                ..
            } => {
                let mut d = serde_json::Map::new();
                if !causes.is_empty() {
                    d.insert(
                        "causes".into(),
                        causes
                            .iter()
                            .map(|(reason, message)| json!({"reason": reason, "message": message}))
                            .collect(),
                    );
                }
                if *retry_after > 0 {
                    d.insert("retryAfterSeconds".into(), json!(retry_after));
                }
                Some(Value::Object(d))
            }
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        status["code"] = json!(self.code());
        status
    }
}

/// `details` in upstream's field order: name, group, kind.
fn target_details(t: &Target) -> Value {
    let mut d = serde_json::Map::new();
    d.insert("name".into(), json!(t.name));
    if !t.group.is_empty() {
        d.insert("group".into(), json!(t.group));
    }
    d.insert("kind".into(), json!(t.resource));
    Value::Object(d)
}

impl From<crate::storage::Error> for ApiError {
    fn from(e: crate::storage::Error) -> Self {
        use crate::storage::Error as E;
        match e {
            E::Compacted {
                requested,
                compacted,
            } => ApiError::Gone(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            E::FutureRevision { requested, current } => {
                ApiError::TooLargeResourceVersion { requested, current }
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_the_qualified_resource() {
        let e = ApiError::NotFound(Target::new("apps", "deployments", "web"));
        let s = e.to_status();
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["group"], "apps");
        assert_eq!(s["details"]["kind"], "deployments");
    }

    #[test]
    fn invalid_lists_every_cause_like_upstream() {
        let e = ApiError::Invalid {
            target: Target::new("", "configmaps", "Bad"),
            kind: "ConfigMap".into(),
            causes: vec![
                Cause::invalid("metadata.name", "Bad", "must be lowercase"),
                Cause::required("data", ""),
            ],
        };
        let s = e.to_status();
        assert_eq!(
            s["message"],
            "ConfigMap \"Bad\" is invalid: [metadata.name: Invalid value: \"Bad\": must be lowercase, data: Required value]"
        );
        assert_eq!(s["reason"], "Invalid");
        assert_eq!(s["code"], 422);
        assert_eq!(s["details"]["kind"], "ConfigMap");
        assert_eq!(s["details"]["causes"][1]["reason"], "FieldValueRequired");
    }

    #[test]
    fn compacted_storage_error_is_410_expired() {
        let e: ApiError = crate::storage::Error::Compacted {
            requested: 3,
            compacted: 10,
        }
        .into();
        assert_eq!(e.code(), 410);
        assert_eq!(e.reason(), "Expired");
        assert_eq!(e.to_string(), "too old resource version: 3 (10)");
    }
}
