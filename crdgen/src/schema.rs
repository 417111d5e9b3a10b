//! Turns the schemas that k8s-openapi's `schemars` feature produces into
//! *structural* OpenAPI v3 schemas, the only kind a CustomResourceDefinition
//! may carry: every `$ref` inlined, recursion cut, no type arrays, no
//! `$schema`/`title`/`$defs`.

use serde_json::{Map, Value};

/// Where schemars puts referenceable subschemas (its default settings).
const DEFS_PREFIX: &str = "#/$defs/";

/// The schema used to cut a recursive type and for `RawExtension`: any object,
/// kept as is.
fn any_object() -> Value {
    let mut m = Map::new();
    m.insert("type".into(), "object".into());
    m.insert("x-kubernetes-preserve-unknown-fields".into(), true.into());
    Value::Object(m)
}

/// Any JSON value at all (apiextensions `JSON` and the `JSONSchemaPropsOr*`
/// unions, which may be scalars or arrays too).
fn any_value() -> Value {
    let mut m = Map::new();
    m.insert("x-kubernetes-preserve-unknown-fields".into(), true.into());
    Value::Object(m)
}

/// Definitions (by schemars schema name) replaced wholesale instead of being
/// inlined.
fn special(name: &str) -> Option<Value> {
    match name {
        // RawExtension holds an embedded object; FieldsV1 (managedFields) is a
        // free-form field set.
        "io.k8s.apimachinery.pkg.runtime.RawExtension"
        | "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1" => Some(any_object()),
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON"
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool"
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray"
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray" => {
            Some(any_value())
        }
        _ => None,
    }
}

fn decode_ref_name(s: &str) -> String {
    // JSON pointer token decoding (RFC 6901); schemars percent-encodes nothing
    // that appears in Kubernetes schema names.
    s.replace("~1", "/").replace("~0", "~")
}

/// Inline the definition `root` (a key of `defs`) into a structural schema.
pub fn structural(root: &str, defs: &Map<String, Value>) -> anyhow::Result<Value> {
    let mut stack = Vec::new();
    let mut out = resolve(root, defs, &mut stack)?;
    // The top-level `metadata` is ObjectMeta, validated by the server itself;
    // CRDs carry only `{type: object}` there.
    if let Some(props) = out.get_mut("properties").and_then(Value::as_object_mut) {
        if let Some(meta) = props.get_mut("metadata") {
            let mut m = Map::new();
            m.insert("type".into(), "object".into());
            *meta = Value::Object(m);
        }
    }
    Ok(out)
}

fn resolve(
    name: &str,
    defs: &Map<String, Value>,
    stack: &mut Vec<String>,
) -> anyhow::Result<Value> {
    if let Some(v) = special(name) {
        return Ok(v);
    }
    if stack.iter().any(|s| s == name) {
        return Ok(any_object());
    }
    let def = defs
        .get(name)
        .ok_or_else(|| anyhow::anyhow!("schema definition {name} not found"))?
        .clone();
    stack.push(name.to_owned());
    let out = walk(def, defs, stack);
    stack.pop();
    out
}

/// Rewrite one schema node (recursively).
fn walk(node: Value, defs: &Map<String, Value>, stack: &mut Vec<String>) -> anyhow::Result<Value> {
    let Value::Object(mut obj) = node else {
        // `true`/`false` schemas: `true` means anything.
        return Ok(match node {
            Value::Bool(true) => any_value(),
            other => other,
        });
    };

    if let Some(r) = obj.remove("$ref") {
        let r = r
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("non-string $ref"))?
            .to_owned();
        let name = r
            .strip_prefix(DEFS_PREFIX)
            .map(decode_ref_name)
            .ok_or_else(|| anyhow::anyhow!("unsupported $ref {r}"))?;
        let mut target = resolve(&name, defs, stack)?;
        // Siblings of the `$ref` (the field's own description) win.
        if let Value::Object(t) = &mut target {
            for (k, v) in obj {
                let v = walk_keyword(&k, v, defs, stack)?;
                t.insert(k, v);
            }
        }
        return finish(target);
    }

    let mut out = Map::new();
    for (k, v) in obj.into_iter() {
        let v = walk_keyword(&k, v, defs, stack)?;
        out.insert(k, v);
    }
    finish(Value::Object(out))
}

fn walk_keyword(
    k: &str,
    v: Value,
    defs: &Map<String, Value>,
    stack: &mut Vec<String>,
) -> anyhow::Result<Value> {
    Ok(match k {
        "properties" | "patternProperties" => match v {
            Value::Object(props) => {
                let mut out = Map::new();
                for (name, s) in props {
                    out.insert(name, walk(s, defs, stack)?);
                }
                Value::Object(out)
            }
            other => other,
        },
        "items" | "additionalProperties" | "not" => match v {
            // `additionalProperties: false` stays as it is.
            Value::Bool(_) if k == "additionalProperties" => v,
            other => walk(other, defs, stack)?,
        },
        "allOf" | "anyOf" | "oneOf" => match v {
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(|s| walk(s, defs, stack))
                    .collect::<anyhow::Result<_>>()?,
            ),
            other => other,
        },
        _ => v,
    })
}

fn is_null_schema(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("null")
}

/// Per-node clean-up: drop keywords CRDs forbid and flatten the nullable forms
/// (`type: [T, "null"]`, `anyOf/oneOf: [T, {type: null}]`, `nullable`).
fn finish(node: Value) -> anyhow::Result<Value> {
    let Value::Object(mut obj) = node else {
        return Ok(node);
    };
    for k in [
        "$schema",
        "title",
        "$defs",
        "definitions",
        "nullable",
        "$id",
        "$comment",
    ] {
        obj.remove(k);
    }
    if let Some(Value::Array(types)) = obj.get("type").cloned() {
        let rest: Vec<Value> = types.into_iter().filter(|t| t != "null").collect();
        match rest.len() {
            1 => {
                obj.insert("type".into(), rest.into_iter().next().unwrap_or_default());
            }
            0 => {
                obj.remove("type");
            }
            _ => anyhow::bail!("type array {rest:?} cannot be made structural"),
        }
    }
    for key in ["anyOf", "oneOf"] {
        let Some(Value::Array(alts)) = obj.get(key).cloned() else {
            continue;
        };
        if !alts.iter().any(is_null_schema) {
            continue;
        }
        let rest: Vec<Value> = alts.into_iter().filter(|a| !is_null_schema(a)).collect();
        obj.remove(key);
        if rest.len() == 1 {
            if let Some(Value::Object(inner)) = rest.into_iter().next() {
                for (k, v) in inner {
                    // The outer node's description (the field's) wins.
                    obj.entry(k).or_insert(v);
                }
            }
        } else if !rest.is_empty() {
            obj.insert(key.into(), Value::Array(rest));
        }
    }
    Ok(Value::Object(obj))
}
