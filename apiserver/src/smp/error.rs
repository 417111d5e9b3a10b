//! Errors of strategic merge patch, worded as upstream's mergepatch/strategicpatch errors.

use serde_json::Value;

/// How the API layer should report an [`SmpError`], following upstream's
/// `interpretStrategicMergePatchError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmpErrorKind {
    /// 400 BadRequest: a malformed document or directive list.
    BadRequest,
    /// 422 Unprocessable: lists of lists, or content outside `$retainKeys`.
    Unprocessable,
    /// Any other failure (bad `$patch` value, missing merge key, ...), which
    /// upstream returns as a plain error (a 500 InternalError Status).
    Other,
}

/// A patch that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SmpError {
    kind: SmpErrorKind,
    message: String,
}

impl SmpError {
    fn new(kind: SmpErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn other(message: impl Into<String>) -> Self {
        Self::new(SmpErrorKind::Other, message)
    }

    /// The upstream-compatible error text.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// How the API layer should report the error.
    pub fn kind(&self) -> SmpErrorKind {
        self.kind
    }

    pub(crate) fn bad_json_doc() -> Self {
        Self::new(SmpErrorKind::BadRequest, "invalid JSON document")
    }

    pub(crate) fn no_list_of_lists() -> Self {
        Self::new(
            SmpErrorKind::Unprocessable,
            "lists of lists are not supported",
        )
    }

    pub(crate) fn primitive_list_format() -> Self {
        Self::new(
            SmpErrorKind::BadRequest,
            "invalid patch format of primitive list",
        )
    }

    pub(crate) fn retain_keys_format() -> Self {
        Self::new(
            SmpErrorKind::BadRequest,
            "invalid patch format of retainKeys",
        )
    }

    pub(crate) fn set_element_order_format() -> Self {
        Self::new(
            SmpErrorKind::BadRequest,
            "invalid patch format of setElementOrder list",
        )
    }

    pub(crate) fn no_merge_key(map: &serde_json::Map<String, Value>, key: &str) -> Self {
        let map = go_value(&Value::Object(map.clone()));
        Self::other(format!(
            "map: {map} does not contain declared merge key: {key}"
        ))
    }

    pub(crate) fn bad_patch_type(directive: &Value, map: &serde_json::Map<String, Value>) -> Self {
        let map = go_value(&Value::Object(map.clone()));
        Self::other(format!(
            "unknown patch type: {} in map: {map}",
            go_string_verb(directive)
        ))
    }

    pub(crate) fn bad_arg_type(expected: &str, actual: &Value) -> Self {
        Self::other(format!(
            "expected a {expected}, but received a {}",
            go_type(actual)
        ))
    }
}

/// The Go type name a decoded JSON value has in upstream's code.
pub(crate) fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "%!s(<nil>)",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// A value as Go's `%s` verb prints it.
fn go_string_verb(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "%!s(<nil>)".to_string(),
        Value::Bool(_) | Value::Number(_) => format!("%!s({}={})", go_type(v), go_value(v)),
        _ => go_value(v),
    }
}

/// A value as Go's `%v` verb prints its decoded form (maps with sorted keys).
pub(crate) fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.fract() == 0.0 && f.abs() < 1e21 {
                format!("{f:.0}")
            } else {
                format!("{f}")
            }
        }
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(go_value).collect();
            format!("[{}]", items.join(" "))
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let entries: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{k}:{}", go_value(v)))
                .collect();
            format!("map[{}]", entries.join(" "))
        }
    }
}
