//! The Swagger 2.0 document in protobuf: gnostic's `openapi.v2.Document` message
//! (github.com/google/gnostic-models, openapiv2/OpenAPIv2.proto), which client-go's
//! `OpenAPISchema` asks for. The mapping is generic over the JSON document: info, paths
//! with their operations, parameters and responses, and definitions with their schemas.
//! Values gnostic keeps as `Any` (vendor extensions, `default`, `enum`, `example`) carry
//! their value as YAML text; JSON text is used, which every YAML parser reads as the same value.

use serde_json::{Map, Value};

use crate::protobuf::wire::Writer;

/// The media type of the response. Clients ask for `...spec.v2@v1.0+protobuf`, but `@` is
/// not valid in a media type and client-go refuses a Content-Type it cannot parse, so
/// upstream answers both spellings with this one.
pub(crate) const MEDIA_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The Document message of a Swagger 2.0 JSON document.
pub(super) fn document(doc: &Value) -> Vec<u8> {
    let mut w = Writer::new();
    w.string(1, str_of(doc, "swagger"));
    if let Some(info) = doc.get("info") {
        let mut i = Writer::new();
        i.string(1, str_of(info, "title"))
            .string(2, str_of(info, "version"))
            .string(3, str_of(info, "description"));
        extensions(&mut i, 7, info);
        w.message(2, &i);
    }
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        let mut p = Writer::new();
        for (name, item) in paths {
            if name.starts_with("x-") {
                p.message(1, &named_any(name, item));
            } else {
                p.message(2, &named(name, &path_item(item)));
            }
        }
        w.message(8, &p);
    }
    if let Some(defs) = doc.get("definitions").and_then(Value::as_object) {
        w.message(9, &named_schemas(defs));
    }
    extensions(&mut w, 16, doc);
    w.into_bytes()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn bool_of(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn strings<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a str> {
    v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// A `Named*` pair: 1 name, 2 value.
fn named(name: &str, value: &Writer) -> Writer {
    let mut w = Writer::new();
    w.bytes(1, name.as_bytes()).message(2, value);
    w
}

/// `Any`: 2 yaml.
fn any(v: &Value) -> Writer {
    let mut w = Writer::new();
    w.bytes(2, serde_json::to_string(v).unwrap_or_default().as_bytes());
    w
}

fn named_any(name: &str, v: &Value) -> Writer {
    named(name, &any(v))
}

/// Every `x-` key of `v` as a repeated NamedAny field `tag`.
fn extensions(w: &mut Writer, tag: u32, v: &Value) {
    for (k, x) in v.as_object().into_iter().flatten() {
        if k.starts_with("x-") {
            w.message(tag, &named_any(k, x));
        }
    }
}

/// `Definitions` / `Properties`: 1 repeated NamedSchema.
fn named_schemas(schemas: &Map<String, Value>) -> Writer {
    let mut w = Writer::new();
    for (name, s) in schemas {
        w.message(1, &named(name, &schema(s)));
    }
    w
}

/// `PathItem`: one Operation per method, shared parameters, extensions.
fn path_item(item: &Value) -> Writer {
    let mut w = Writer::new();
    w.string(1, str_of(item, "$ref"));
    for (tag, method) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (6, "options"),
        (7, "head"),
        (8, "patch"),
    ] {
        if let Some(op) = item.get(method) {
            w.message(tag, &operation(op));
        }
    }
    for p in item
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(9, &parameters_item(p));
    }
    extensions(&mut w, 10, item);
    w
}

fn operation(op: &Value) -> Writer {
    let mut w = Writer::new();
    for t in strings(op, "tags") {
        w.bytes(1, t.as_bytes());
    }
    w.string(2, str_of(op, "summary"))
        .string(3, str_of(op, "description"))
        .string(5, str_of(op, "operationId"));
    for m in strings(op, "produces") {
        w.bytes(6, m.as_bytes());
    }
    for m in strings(op, "consumes") {
        w.bytes(7, m.as_bytes());
    }
    for p in op
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(8, &parameters_item(p));
    }
    if let Some(responses) = op.get("responses").and_then(Value::as_object) {
        let mut r = Writer::new();
        for (code, resp) in responses {
            if code.starts_with("x-") {
                r.message(2, &named_any(code, resp));
            } else {
                r.message(1, &named(code, &response_value(resp)));
            }
        }
        w.message(9, &r);
    }
    for s in strings(op, "schemes") {
        w.bytes(10, s.as_bytes());
    }
    w.bool(11, bool_of(op, "deprecated"));
    extensions(&mut w, 13, op);
    w
}

/// `JsonReference`: 1 _ref, 2 description.
fn json_reference(v: &Value) -> Writer {
    let mut w = Writer::new();
    w.string(1, str_of(v, "$ref"))
        .string(2, str_of(v, "description"));
    w
}

/// `ResponseValue`: 1 Response {1 description, 2 SchemaItem {1 schema}, 5 extensions},
/// or 2 JsonReference.
fn response_value(resp: &Value) -> Writer {
    let mut w = Writer::new();
    if resp.get("$ref").is_some() {
        w.message(2, &json_reference(resp));
        return w;
    }
    let mut r = Writer::new();
    r.string(1, str_of(resp, "description"));
    if let Some(s) = resp.get("schema") {
        let mut item = Writer::new();
        item.message(1, &schema(s));
        r.message(2, &item);
    }
    extensions(&mut r, 5, resp);
    w.message(1, &r);
    w
}

/// `ParametersItem`: 1 Parameter (1 BodyParameter, or 2 NonBodyParameter holding the
/// sub-schema of its location), or 2 JsonReference.
fn parameters_item(p: &Value) -> Writer {
    let mut w = Writer::new();
    if p.get("$ref").is_some() {
        w.message(2, &json_reference(p));
        return w;
    }
    let location = str_of(p, "in");
    let mut param = Writer::new();
    if location == "body" {
        let mut b = Writer::new();
        b.string(1, str_of(p, "description"))
            .string(2, str_of(p, "name"))
            .string(3, location)
            .bool(4, bool_of(p, "required"));
        if let Some(s) = p.get("schema") {
            b.message(5, &schema(s));
        }
        extensions(&mut b, 6, p);
        param.message(1, &b);
    } else {
        // Query and formData sub-schemas have allowEmptyValue at 5, which shifts the rest by one.
        let (which, shift) = match location {
            "header" => (1, 0),
            "formData" => (2, 1),
            "path" => (4, 0),
            _ => (3, 1),
        };
        let mut s = Writer::new();
        s.bool(1, bool_of(p, "required"))
            .string(2, location)
            .string(3, str_of(p, "description"))
            .string(4, str_of(p, "name"));
        if shift == 1 {
            s.bool(5, bool_of(p, "allowEmptyValue"));
        }
        s.string(5 + shift, str_of(p, "type"))
            .string(6 + shift, str_of(p, "format"))
            .bool(19 + shift, bool_of(p, "uniqueItems"));
        extensions(&mut s, 22 + shift, p);
        let mut non_body = Writer::new();
        non_body.message(which, &s);
        param.message(2, &non_body);
    }
    w.message(1, &param);
    w
}

/// `Schema`, field by field as gnostic numbers them.
fn schema(s: &Value) -> Writer {
    let mut w = Writer::new();
    let num = |k: &str| s.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let int = |k: &str| s.get(k).and_then(Value::as_i64).unwrap_or(0);
    w.string(1, str_of(s, "$ref"))
        .string(2, str_of(s, "format"))
        .string(3, str_of(s, "title"))
        .string(4, str_of(s, "description"));
    if let Some(d) = s.get("default") {
        w.message(5, &any(d));
    }
    w.double(6, num("multipleOf"))
        .double(7, num("maximum"))
        .bool(8, bool_of(s, "exclusiveMaximum"))
        .double(9, num("minimum"))
        .bool(10, bool_of(s, "exclusiveMinimum"))
        .int64(11, int("maxLength"))
        .int64(12, int("minLength"))
        .string(13, str_of(s, "pattern"))
        .int64(14, int("maxItems"))
        .int64(15, int("minItems"))
        .bool(16, bool_of(s, "uniqueItems"))
        .int64(17, int("maxProperties"))
        .int64(18, int("minProperties"));
    for r in strings(s, "required") {
        w.bytes(19, r.as_bytes());
    }
    for e in s
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(20, &any(e));
    }
    match s.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            // A oneof member: written even when false, so the choice is kept.
            let mut a = Writer::new();
            a.oneof_bool(2, *b);
            w.message(21, &a);
        }
        Some(sub @ Value::Object(_)) => {
            let mut a = Writer::new();
            a.message(1, &schema(sub));
            w.message(21, &a);
        }
        _ => {}
    }
    match s.get("type") {
        Some(Value::String(t)) => {
            let mut t_item = Writer::new();
            t_item.bytes(1, t.as_bytes());
            w.message(22, &t_item);
        }
        Some(Value::Array(ts)) => {
            let mut t_item = Writer::new();
            for t in ts.iter().filter_map(Value::as_str) {
                t_item.bytes(1, t.as_bytes());
            }
            w.message(22, &t_item);
        }
        _ => {}
    }
    match s.get("items") {
        Some(item @ Value::Object(_)) => {
            let mut i = Writer::new();
            i.message(1, &schema(item));
            w.message(23, &i);
        }
        Some(Value::Array(items)) => {
            let mut i = Writer::new();
            for item in items {
                i.message(1, &schema(item));
            }
            w.message(23, &i);
        }
        _ => {}
    }
    for a in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(24, &schema(a));
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        w.message(25, &named_schemas(props));
    }
    w.string(26, str_of(s, "discriminator"))
        .bool(27, bool_of(s, "readOnly"));
    if let Some(e) = s.get("example") {
        w.message(30, &any(e));
    }
    extensions(&mut w, 31, s);
    w
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::protobuf::wire::{Reader, WireValue};

    /// The fields of one message, in order.
    fn fields(buf: &[u8]) -> Vec<(u32, WireValue<'_>)> {
        let mut r = Reader::new(buf);
        let mut out = Vec::new();
        while let Some(f) = r.next_field().expect("well-formed protobuf") {
            out.push(f);
        }
        out
    }

    fn bytes_at(buf: &[u8], tag: u32) -> Vec<&[u8]> {
        fields(buf)
            .into_iter()
            .filter_map(|(t, v)| match v {
                WireValue::Bytes(b) if t == tag => Some(b),
                _ => None,
            })
            .collect()
    }

    fn one(buf: &[u8], tag: u32) -> &[u8] {
        bytes_at(buf, tag)
            .first()
            .copied()
            .unwrap_or_else(|| panic!("no field {tag}"))
    }

    fn text(b: &[u8]) -> &str {
        std::str::from_utf8(b).expect("UTF-8")
    }

    /// The `Named*` entries of a map message field `tag`: name -> value bytes.
    fn named(buf: &[u8], tag: u32) -> Vec<(&str, &[u8])> {
        bytes_at(buf, tag)
            .into_iter()
            .map(|e| (text(one(e, 1)), one(e, 2)))
            .collect()
    }

    fn sample() -> Value {
        json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "paths": {
                "/apis/example.com/v1/namespaces/{namespace}/widgets/{name}": {
                    "patch": {
                        "operationId": "patchWidget",
                        "parameters": [{"name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": true}],
                        "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/com.example.v1.Widget"}}},
                        "x-kubernetes-action": "patch",
                        "x-kubernetes-group-version-kind": {"group": "example.com", "version": "v1", "kind": "Widget"},
                    }
                }
            },
            "definitions": {
                "com.example.v1.Widget": {
                    "type": "object",
                    "description": "A widget.",
                    "required": ["spec"],
                    "properties": {
                        "spec": {"type": "object", "properties": {
                            "size": {"type": "integer", "format": "int32", "minimum": 1},
                            "tags": {"type": "array", "items": {"type": "string"}},
                            "mode": {"type": "string", "enum": ["fast", "slow"]},
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        }},
                    },
                    "x-kubernetes-group-version-kind": [{"group": "example.com", "version": "v1", "kind": "Widget"}],
                }
            }
        })
    }

    #[test]
    fn the_document_decodes_back_to_its_info_paths_and_operations() {
        let doc = document(&sample());
        assert_eq!(text(one(&doc, 1)), "2.0");
        assert_eq!(text(one(one(&doc, 2), 2)), "v1.33.0");
        let paths = named(one(&doc, 8), 2);
        assert_eq!(
            paths.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            ["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]
        );
        let patch = one(paths[0].1, 8);
        assert_eq!(text(one(patch, 5)), "patchWidget");
        // ParametersItem -> Parameter -> NonBodyParameter -> QueryParameterSubSchema.
        let query = one(one(one(one(patch, 8), 1), 2), 3);
        assert_eq!(text(one(query, 4)), "fieldValidation");
        assert_eq!(text(one(query, 2)), "query");
        assert_eq!(text(one(query, 6)), "string");
        let response = one(one(named(one(patch, 9), 1)[0].1, 1), 2);
        assert_eq!(
            text(one(one(response, 1), 1)),
            "#/definitions/com.example.v1.Widget"
        );
        let ext: Vec<(&str, Value)> = named(patch, 13)
            .into_iter()
            .map(|(n, any)| (n, serde_json::from_slice(one(any, 2)).unwrap()))
            .collect();
        assert_eq!(
            ext,
            [
                ("x-kubernetes-action", json!("patch")),
                (
                    "x-kubernetes-group-version-kind",
                    json!({"group": "example.com", "version": "v1", "kind": "Widget"})
                ),
            ]
        );
    }

    #[test]
    fn definitions_decode_back_to_their_schemas() {
        let doc = document(&sample());
        let defs = named(one(&doc, 9), 1);
        assert_eq!(defs.len(), 1);
        let (name, widget) = defs[0];
        assert_eq!(name, "com.example.v1.Widget");
        assert_eq!(text(one(one(widget, 22), 1)), "object");
        assert_eq!(text(one(widget, 4)), "A widget.");
        assert_eq!(text(one(widget, 19)), "spec");
        let gvk = named(widget, 31);
        assert_eq!(gvk[0].0, "x-kubernetes-group-version-kind");
        assert_eq!(
            serde_json::from_slice::<Value>(one(gvk[0].1, 2)).unwrap(),
            json!([{"group": "example.com", "version": "v1", "kind": "Widget"}])
        );
        let spec = named(one(widget, 25), 1)[0].1;
        let props: std::collections::BTreeMap<&str, &[u8]> =
            named(one(spec, 25), 1).into_iter().collect();
        let size = props["size"];
        assert_eq!(text(one(size, 2)), "int32");
        assert!(fields(size).contains(&(9, WireValue::Fixed64(1f64.to_bits()))));
        let item = one(one(props["tags"], 23), 1);
        assert_eq!(text(one(one(item, 22), 1)), "string");
        let enums: Vec<Value> = bytes_at(props["mode"], 20)
            .into_iter()
            .map(|any| serde_json::from_slice(one(any, 2)).unwrap())
            .collect();
        assert_eq!(enums, [json!("fast"), json!("slow")]);
        let additional = one(one(props["labels"], 21), 1);
        assert_eq!(text(one(one(additional, 22), 1)), "string");
    }
}
