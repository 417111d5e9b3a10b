//! Structural-schema processing of objects, as upstream does for CustomResources (and
//! kybern for every kind): defaulting, pruning of unknown fields, and validation with
//! upstream's messages.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde_json::{Map, Value};

use crate::status::Cause;

/// What processing an object found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub causes: Vec<Cause>,
    /// Paths of fields the schema does not declare (removed from the object).
    pub unknown_fields: Vec<String>,
}

/// Defaults, prunes and validates `obj` against a CRD version's `openAPIV3Schema`.
/// The root's `apiVersion`, `kind` and `metadata` are left to the metadata rules.
pub fn process(schema: &Value, obj: &mut Value) -> Outcome {
    let mut out = Outcome::default();
    let Some(map) = obj.as_object_mut() else {
        return out;
    };
    let props = schema.get("properties").and_then(Value::as_object);
    for (key, value) in map.iter_mut() {
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match props.and_then(|p| p.get(key)) {
            Some(s) => walk(s, value, key, &mut out),
            None if preserves(schema) => {}
            None => out.unknown_fields.push(key.clone()),
        }
    }
    remove_unknown(map, &out.unknown_fields, "");
    apply_defaults(schema, map, "", &mut out);
    required(schema, map, "", &mut out);
    out
}

fn preserves(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn remove_unknown(map: &mut Map<String, Value>, unknown: &[String], path: &str) {
    for u in unknown {
        let rest = if path.is_empty() {
            Some(u.as_str())
        } else {
            u.strip_prefix(&format!("{path}."))
        };
        if let Some(k) = rest.filter(|r| !r.contains('.') && !r.contains('[')) {
            map.remove(k);
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => serde_json::to_string(type_name(other)).unwrap_or_default(),
    }
}

fn walk(schema: &Value, value: &mut Value, path: &str, out: &mut Outcome) {
    if value.is_null() {
        return; // nulls of non-nullable fields are pruned by the parent
    }
    if schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
    {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            out.causes.push(Cause::invalid(
                path,
                type_name(value),
                &format!(
                    "{path} in body must be of type int-or-string: {}",
                    short(value)
                ),
            ));
        }
        return;
    }
    let ty = schema.get("type").and_then(Value::as_str);
    let ok = match (ty, &*value) {
        (None, _) => true,
        (Some("object"), Value::Object(_)) | (Some("array"), Value::Array(_)) => true,
        (Some("string"), Value::String(_)) | (Some("boolean"), Value::Bool(_)) => true,
        (Some("integer"), Value::Number(n)) => n.is_i64() || n.is_u64(),
        (Some("number"), Value::Number(_)) => true,
        _ => false,
    };
    if !ok {
        let msg = format!(
            "{path} in body must be of type {}: {}",
            ty.unwrap_or(""),
            serde_json::to_string(type_name(value)).unwrap_or_default()
        );
        out.causes.push(Cause {
            reason: "FieldValueTypeInvalid",
            field: path.to_string(),
            message: format!(
                "Invalid value: {}: {msg}",
                serde_json::to_string(type_name(value)).unwrap_or_default()
            ),
        });
        return;
    }
    check_enum_and_bounds(schema, value, path, out);
    match value {
        Value::Object(map) => walk_object(schema, map, path, out),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn walk_object(schema: &Value, map: &mut Map<String, Value>, path: &str, out: &mut Outcome) {
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let keep_unknown = preserves(schema) || additional.and_then(Value::as_bool) == Some(true);
    let embedded = schema
        .get("x-kubernetes-embedded-resource")
        .and_then(Value::as_bool)
        == Some(true);
    let mut unknown = Vec::new();
    let mut nulls = Vec::new();
    for (key, value) in map.iter_mut() {
        let child = join(path, key);
        let s = props
            .and_then(|p| p.get(key))
            .or_else(|| additional.filter(|a| a.is_object()));
        match s {
            Some(s) => {
                if value.is_null() && s.get("nullable").and_then(Value::as_bool) != Some(true) {
                    nulls.push(key.clone());
                } else {
                    walk(s, value, &child, out);
                }
            }
            None if keep_unknown
                || (embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata")) => {}
            None => unknown.push(key.clone()),
        }
    }
    for k in nulls {
        map.remove(&k);
    }
    for k in &unknown {
        map.remove(k);
        out.unknown_fields.push(join(path, k));
    }
    apply_defaults(schema, map, path, out);
    required(schema, map, path, out);
}

fn apply_defaults(schema: &Value, map: &mut Map<String, Value>, path: &str, out: &mut Outcome) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (key, s) in props {
        if let Some(default) = s.get("default") {
            if !map.contains_key(key) {
                let mut v = default.clone();
                walk(s, &mut v, &join(path, key), out);
                map.insert(key.clone(), v);
            }
        }
    }
}

fn required(schema: &Value, map: &Map<String, Value>, path: &str, out: &mut Outcome) {
    for r in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(k) = r.as_str() {
            if !map.contains_key(k) {
                out.causes.push(Cause::required(join(path, k), ""));
            }
        }
    }
}

fn pattern_matches(pattern: &str, s: &str) -> bool {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<regex::Regex>>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .expect("regex cache poisoned");
    let re = cache
        .entry(pattern.to_string())
        .or_insert_with(|| regex::Regex::new(pattern).ok());
    re.as_ref().is_none_or(|re| re.is_match(s))
}

fn check_enum_and_bounds(schema: &Value, value: &Value, path: &str, out: &mut Outcome) {
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            let list: Vec<String> = options.iter().map(short).collect();
            out.causes.push(Cause {
                reason: "FieldValueNotSupported",
                field: path.to_string(),
                message: format!(
                    "Unsupported value: {}: supported values: {}",
                    short(value),
                    list.join(", ")
                ),
            });
        }
    }
    let num = |k: &str| schema.get(k).and_then(Value::as_f64);
    let int = |k: &str| schema.get(k).and_then(Value::as_u64);
    let mut problems: Vec<Cause> = Vec::new();
    let mut invalid_too_long: Option<Cause> = None;
    let mut too_many: Option<Cause> = None;
    let mut invalid =
        |msg: String| problems.push(Cause::invalid(path, "", "").with_message(value, msg));
    match value {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(max) = num("maximum") {
                let excl = schema.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
                if x > max || (excl && x >= max) {
                    invalid(format!(
                        "{path} in body should be less than {}{max}",
                        if excl { "" } else { "or equal to " }
                    ));
                }
            }
            if let Some(min) = num("minimum") {
                let excl = schema.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
                if x < min || (excl && x <= min) {
                    invalid(format!(
                        "{path} in body should be greater than {}{min}",
                        if excl { "" } else { "or equal to " }
                    ));
                }
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(max) = int("maxLength").filter(|m| len > *m) {
                invalid_too_long = Some(Cause::too_long(
                    path,
                    &format!("may not be more than {max} bytes"),
                ));
            }
            if let Some(min) = int("minLength").filter(|m| len < *m) {
                invalid(format!(
                    "{path} in body should be at least {min} chars long"
                ));
            }
            if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
                if !pattern_matches(p, s) {
                    invalid(format!("{path} in body should match '{p}'"));
                }
            }
        }
        Value::Array(items) => {
            let len = items.len() as u64;
            if let Some(max) = int("maxItems").filter(|m| len > *m) {
                too_many = Some(Cause {
                    reason: "FieldValueTooMany",
                    field: path.to_string(),
                    message: format!("Too many: {len}: must have at most {max} items"),
                });
            }
            if let Some(min) = int("minItems").filter(|m| len < *m) {
                invalid(format!("{path} in body should have at least {min} items"));
            }
        }
        _ => {}
    }
    out.causes.extend(problems);
    out.causes.extend(invalid_too_long);
    out.causes.extend(too_many);
}

impl Cause {
    /// Replaces the message with upstream's `Invalid value: <v>: <detail>` form.
    fn with_message(mut self, value: &Value, detail: String) -> Cause {
        self.message = format!("Invalid value: {}: {detail}", short(value));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "mode": {"type": "string", "enum": ["fast", "slow"], "default": "fast"},
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                "port": {"x-kubernetes-int-or-string": true},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}
            }},
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
        }})
    }

    fn messages(o: &Outcome) -> Vec<String> {
        o.causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn defaults_missing_fields_and_prunes_unknown_ones() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"},
            "spec": {"size": 3, "extra": 1, "free": {"any": {"thing": true}}}, "bogus": 1});
        let out = process(&schema(), &mut obj);
        assert!(out.causes.is_empty(), "{:?}", messages(&out));
        assert_eq!(obj["spec"]["mode"], "fast");
        assert!(obj["spec"].get("extra").is_none() && obj.get("bogus").is_none());
        assert_eq!(obj["spec"]["free"]["any"]["thing"], true);
        assert_eq!(obj["metadata"]["name"], "a");
        let mut unknown = out.unknown_fields.clone();
        unknown.sort();
        assert_eq!(unknown, vec!["bogus", "spec.extra"]);
    }

    #[test]
    fn reports_violations_with_upstreams_messages() {
        let cases = [
            ("wrong_type", json!({"size": "3"}), "spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\""),
            ("above_maximum", json!({"size": 11}), "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"),
            ("missing_required", json!({}), "spec.size: Required value"),
            ("not_in_enum", json!({"size": 1, "mode": "odd"}), "spec.mode: Unsupported value: \"odd\": supported values: \"fast\", \"slow\""),
            ("pattern_mismatch", json!({"size": 1, "name": "A1"}), "spec.name: Invalid value: \"A1\": spec.name in body should match '^[a-z]+$'"),
            ("too_many_items", json!({"size": 1, "tags": ["a", "b", "c"]}), "spec.tags: Too many: 3: must have at most 2 items"),
            ("int_or_string_rejects_bool", json!({"size": 1, "port": true}), "spec.port: Invalid value: \"boolean\": spec.port in body must be of type int-or-string: true"),
            ("map_values_typed", json!({"size": 1, "labels": {"a": 1}}), "spec.labels.a: Invalid value: \"integer\": spec.labels.a in body must be of type string: \"integer\""),
        ];
        for (name, spec, want) in cases {
            let mut obj = json!({"spec": spec});
            let out = process(&schema(), &mut obj);
            assert!(
                messages(&out).contains(&want.to_string()),
                "{name}: got {:?}",
                messages(&out)
            );
        }
    }

    #[test]
    fn nulls_of_non_nullable_fields_are_dropped() {
        let mut obj = json!({"spec": {"size": 1, "name": null}});
        let out = process(&schema(), &mut obj);
        assert!(out.causes.is_empty(), "{:?}", messages(&out));
        assert!(obj["spec"].get("name").is_none());
    }
}
