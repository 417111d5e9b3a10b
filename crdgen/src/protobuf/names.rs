//! JSON names of proto fields, found by walking each kind's message alongside its CRD schema.
//!
//! prost's snake_case names lose upstream's casing (`pod_ip` is `podIP`), so a field's JSON
//! name is the schema property it matches ignoring case, `_`, `-` and `$`; fields of messages
//! no schema reaches fall back to lowerCamelCase. A message field that matches no property but
//! whose own fields are the parent's properties is Go's `json:",inline"` embedding
//! (`Volume.volumeSource`) and is marked inline.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::prost_src::{Field, Label, Messages, Type};

/// Messages whose JSON form is not an object of their fields; the walk stops at them.
pub const SPECIAL: &[&str] = &[
    "apimachinery.pkg.api.resource.Quantity",
    "apimachinery.pkg.util.intstr.IntOrString",
    "apimachinery.pkg.apis.meta.v1.Time",
    "apimachinery.pkg.apis.meta.v1.MicroTime",
    "apimachinery.pkg.apis.meta.v1.Duration",
    "apimachinery.pkg.apis.meta.v1.FieldsV1",
    "apimachinery.pkg.runtime.RawExtension",
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.Json",
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.JsonSchemaPropsOrArray",
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.JsonSchemaPropsOrBool",
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.JsonSchemaPropsOrStringArray",
];

const JSON_SCHEMA_PROPS: &str = "apiextensions_apiserver.pkg.apis.apiextensions.v1.JsonSchemaProps";

/// What the walk learned: schema property names seen per message, and inline fields.
#[derive(Debug, Default)]
pub struct Names {
    pub properties: BTreeMap<String, BTreeSet<String>>,
    pub inline: BTreeSet<(String, u32)>,
}

/// Lowercase without `_`, `-` and `$`: the key two spellings of one name share.
pub fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '_' | '-' | '$'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// `pod_ip` -> `podIp`.
pub fn lower_camel(s: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in s.chars() {
        if c == '_' {
            upper = !out.is_empty();
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl Names {
    /// Walks message `msg` alongside `schema` (a structural schema with inlined properties).
    pub fn walk(&mut self, messages: &Messages, msg: &str, schema: &Value) {
        if SPECIAL.contains(&msg) {
            return;
        }
        let Some(fields) = messages.get(msg) else {
            return;
        };
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        let seen = self.properties.entry(msg.to_owned()).or_default();
        seen.extend(props.keys().cloned());
        let by_norm: BTreeMap<String, &Value> =
            props.iter().map(|(k, v)| (normalize(k), v)).collect();
        for f in fields {
            let Type::Message(ty) = &f.ty else { continue };
            match by_norm.get(&normalize(&f.rust_name)) {
                Some(sub) => {
                    let sub = match f.label {
                        Label::Single => Some(*sub),
                        Label::Repeated => sub.get("items"),
                        Label::Map => sub.get("additionalProperties"),
                    };
                    if let Some(sub) = sub {
                        self.walk(messages, ty, sub);
                    }
                }
                None if f.label == Label::Single && is_inline(messages, ty, &by_norm) => {
                    self.inline.insert((msg.to_owned(), f.tag));
                    self.walk(messages, ty, schema);
                }
                None => {}
            }
        }
    }

    /// The JSON name of field `f` of message `msg`, and whether a schema property gave it.
    pub fn json_name(&self, msg: &str, f: &Field) -> (String, bool) {
        if msg == JSON_SCHEMA_PROPS {
            match f.rust_name.as_str() {
                "ref" => return ("$ref".into(), true),
                "schema" => return ("$schema".into(), true),
                n if n.starts_with("x_kubernetes_") => return (n.replace('_', "-"), true),
                _ => {}
            }
        }
        let norm = normalize(&f.rust_name);
        if let Some(p) = self
            .properties
            .get(msg)
            .and_then(|ps| ps.iter().find(|p| normalize(p) == norm))
        {
            return (p.clone(), true);
        }
        (lower_camel(&f.rust_name), false)
    }
}

/// Whether most fields of `ty` are properties of the parent schema.
fn is_inline(messages: &Messages, ty: &str, parent: &BTreeMap<String, &Value>) -> bool {
    let Some(fields) = messages.get(ty) else {
        return false;
    };
    let hits = fields
        .iter()
        .filter(|f| parent.contains_key(&normalize(&f.rust_name)))
        .count();
    hits > 0 && hits * 2 >= fields.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_and_camel_cased() {
        assert_eq!(normalize("x-kubernetes-list_type"), "xkuberneteslisttype");
        assert_eq!(normalize("hostIPC"), normalize("host_ipc"));
        assert_eq!(lower_camel("pod_ip"), "podIp");
        assert_eq!(lower_camel("fields_v1"), "fieldsV1");
        assert_eq!(lower_camel("name"), "name");
    }
}
