//! The merge walk: maps, lists by strategy, and the `$patch`, `$retainKeys`, `$setElementOrder` and `$deleteFromPrimitiveList` directives.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::error::{go_value, SmpError};
use super::meta::{FieldMeta, PatchMeta, Strategy};
use super::order::{self, json_eq, Kind};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList";
const LIST_TYPE: &str = "[]interface {}";
const MAP_TYPE: &str = "map[string]interface {}";

type Object = Map<String, Value>;

/// Applies patches using one kind's patch metadata.
pub(crate) struct Merger<'a> {
    pub(crate) meta: &'a PatchMeta,
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The field named by a `$prefix/field` directive key, `None` when the key
/// does not start with `prefix`.
fn directive_field<'k>(key: &'k str, prefix: &str) -> Result<Option<&'k str>, SmpError> {
    if !key.starts_with(prefix) {
        return Ok(None);
    }
    match key.split_once('/') {
        Some((head, field)) if head == prefix => Ok(Some(field)),
        _ if prefix == SET_ORDER => Err(SmpError::set_element_order_format()),
        _ => Err(SmpError::primitive_list_format()),
    }
}

fn as_list(v: &Value) -> Result<&Vec<Value>, SmpError> {
    v.as_array()
        .ok_or_else(|| SmpError::bad_arg_type(LIST_TYPE, v))
}

fn same_scalar_type(a: &Value, b: &Value) -> bool {
    matches!(
        (a, b),
        (Value::Bool(_), Value::Bool(_))
            | (Value::Number(_), Value::Number(_))
            | (Value::String(_), Value::String(_))
    )
}

impl Merger<'_> {
    /// Merges `patch` into `original`; `path` is the field path of both.
    pub(crate) fn merge_map(
        &self,
        mut original: Object,
        patch: &Object,
        path: &str,
    ) -> Result<Object, SmpError> {
        if let Some(directive) = patch.get(DIRECTIVE) {
            return match directive.as_str() {
                Some("replace") => {
                    let mut content = patch.clone();
                    content.shift_remove(DIRECTIVE);
                    self.merge_map(Object::new(), &content, path)
                }
                Some("delete") => Ok(Object::new()),
                _ => Err(SmpError::bad_patch_type(directive, patch)),
            };
        }
        if let Some(retain) = patch.get(RETAIN_KEYS) {
            let retain = retain.as_array().ok_or_else(SmpError::retain_keys_format)?;
            let listed = |k: &str| retain.iter().any(|v| v.as_str() == Some(k));
            let outside = patch.iter().any(|(k, v)| {
                k != RETAIN_KEYS
                    && !v.is_null()
                    && !k.starts_with(DELETE_PRIMITIVE)
                    && !k.starts_with(SET_ORDER)
                    && !listed(k)
            });
            if outside {
                return Err(SmpError::retain_keys_format());
            }
            original.retain(|k, _| listed(k));
        }
        let mut ordered = HashSet::new();
        for (key, order) in patch.iter().filter(|(k, _)| k.starts_with(SET_ORDER)) {
            let order = as_list(order)?;
            let field = directive_field(key, SET_ORDER)?.unwrap_or_default();
            self.merge_ordered(&mut original, patch, field, order, path)?;
            ordered.insert(field);
        }
        for (key, patch_v) in patch {
            if key == RETAIN_KEYS || key.starts_with(SET_ORDER) || ordered.contains(key.as_str()) {
                continue;
            }
            let (key, delete_list) = match directive_field(key, DELETE_PRIMITIVE)? {
                Some(field) => (field, true),
                None => (key.as_str(), false),
            };
            if patch_v.is_null() {
                original.shift_remove(key);
                continue;
            }
            let field_path = child(path, key);
            let meta = self.meta.get(&field_path);
            let merged = match (original.get_mut(key), patch_v) {
                (Some(Value::Object(o)), Value::Object(p)) => {
                    let o = std::mem::take(o);
                    let base = if meta.strategy == Strategy::Replace {
                        Object::new()
                    } else {
                        o
                    };
                    Value::Object(self.merge_map(base, p, &field_path)?)
                }
                (Some(Value::Array(o)), Value::Array(p)) => {
                    let o = std::mem::take(o);
                    Value::Array(self.merge_list_field(o, p, meta, delete_list, &field_path)?)
                }
                (Some(o), p) if same_scalar_type(o, p) => p.clone(),
                _ if delete_list => continue,
                (_, p) => self.fresh(p, meta, &field_path)?,
            };
            original.insert(key.to_string(), merged);
        }
        Ok(original)
    }

    /// A patch value for a field the original lacks (or holds with another
    /// type): merged into an empty value so that no directive survives.
    fn fresh(&self, patch: &Value, meta: FieldMeta, path: &str) -> Result<Value, SmpError> {
        Ok(match patch {
            Value::Object(p) => Value::Object(self.merge_map(Object::new(), p, path)?),
            Value::Array(p) => {
                Value::Array(self.merge_list_field(Vec::new(), p, meta, false, path)?)
            }
            scalar => scalar.clone(),
        })
    }

    /// A list element taken from the patch: nested directives processed.
    fn fresh_element(&self, element: &Value, path: &str) -> Result<Value, SmpError> {
        match element {
            Value::Array(items) => Ok(Value::Array(self.clean_list(items, path)?)),
            other => self.fresh(other, FieldMeta::default(), path),
        }
    }

    /// A list that replaces the original: elements carrying `$patch` are
    /// dropped (as upstream's directive removal does), the rest cleaned.
    fn clean_list(&self, patch: &[Value], path: &str) -> Result<Vec<Value>, SmpError> {
        patch
            .iter()
            .filter(|v| !v.as_object().is_some_and(|m| m.contains_key(DIRECTIVE)))
            .map(|v| self.fresh_element(v, path))
            .collect()
    }

    fn merge_list_field(
        &self,
        original: Vec<Value>,
        patch: &[Value],
        meta: FieldMeta,
        delete_list: bool,
        path: &str,
    ) -> Result<Vec<Value>, SmpError> {
        if meta.strategy == Strategy::Merge {
            self.merge_list(original, patch, meta.merge_key, delete_list, path)
        } else {
            self.clean_list(patch, path)
        }
    }

    /// Merges two lists of a `merge` field.
    fn merge_list(
        &self,
        original: Vec<Value>,
        patch: &[Value],
        merge_key: Option<&'static str>,
        delete_list: bool,
        path: &str,
    ) -> Result<Vec<Value>, SmpError> {
        if original.is_empty() && patch.is_empty() {
            return Ok(original);
        }
        // `$deleteFromPrimitiveList` names values to remove; objects and lists are no such values.
        if delete_list && patch.iter().any(|v| v.is_object() || v.is_array()) {
            return Err(SmpError::primitive_list_format());
        }
        if order::element_kind(&original, patch)? != Kind::Map {
            if delete_list {
                return Ok(order::delete_from(original, patch));
            }
            let mut merged = original.clone();
            merged.extend(patch.iter().cloned());
            order::dedup_scalars(&mut merged);
            return order::normalize(merged, patch, &original, None);
        }
        let key = merge_key.ok_or_else(|| {
            SmpError::other(format!("cannot merge lists without merge key for {path}"))
        })?;
        let mut base = original;
        let mut plain = Vec::new();
        let mut replace = false;
        for element in patch.iter().filter_map(Value::as_object) {
            let Some(directive) = element.get(DIRECTIVE) else {
                plain.push(element);
                continue;
            };
            match directive.as_str() {
                Some("delete") => {
                    let value = element
                        .get(key)
                        .ok_or_else(|| SmpError::no_merge_key(element, key))?;
                    base.retain(|o| !o.get(key).is_some_and(|v| json_eq(v, value)));
                }
                Some("replace") => replace = true,
                Some("merge") => {
                    return Err(SmpError::other(
                        "merging lists cannot yet be specified in the patch",
                    ))
                }
                _ => return Err(SmpError::bad_patch_type(directive, element)),
            }
        }
        if replace {
            let replaced: Vec<Value> = plain.iter().map(|m| Value::Object((*m).clone())).collect();
            let base = self.clean_list(&replaced, path)?;
            return order::normalize(base.clone(), &[], &base, Some(key));
        }
        let mut merged = base.clone();
        for element in &plain {
            let value = element
                .get(key)
                .ok_or_else(|| SmpError::no_merge_key(element, key))?;
            let found = merged
                .iter()
                .position(|o| o.get(key).is_some_and(|v| json_eq(v, value)));
            match found {
                Some(i) => {
                    let o = std::mem::take(&mut merged[i]);
                    let o = if let Value::Object(o) = o {
                        o
                    } else {
                        Object::new()
                    };
                    merged[i] = Value::Object(self.merge_map(o, element, path)?);
                }
                None => merged.push(Value::Object(self.merge_map(
                    Object::new(),
                    element,
                    path,
                )?)),
            }
        }
        let plain: Vec<Value> = plain
            .into_iter()
            .map(|m| Value::Object(m.clone()))
            .collect();
        order::normalize(merged, &plain, &base, Some(key))
    }

    /// Merges the list `field` and orders it by its `$setElementOrder` list.
    fn merge_ordered(
        &self,
        original: &mut Object,
        patch: &Object,
        field: &str,
        order: &[Value],
        path: &str,
    ) -> Result<(), SmpError> {
        let field_path = child(path, field);
        let meta = self.meta.get(&field_path);
        let original_list = original.get(field).map(as_list).transpose()?.cloned();
        let patch_list = patch.get(field).map(as_list).transpose()?;
        if let Some(patch_list) = patch_list {
            validate_order(patch_list, order, meta.merge_key)?;
        }
        let server = original_list.clone().unwrap_or_default();
        let merged = match patch_list {
            Some(p) => self.merge_list_field(server.clone(), p, meta, false, &field_path)?,
            None if original_list.is_some() => server.clone(),
            None => return Ok(()),
        };
        let kind = order::element_kind(&server, patch_list.map(Vec::as_slice).unwrap_or_default());
        let key = match kind {
            Ok(Kind::Map) => meta.merge_key,
            _ => None,
        };
        let merged = if merged.is_empty() {
            merged
        } else {
            order::normalize(merged, order, &server, key)?
        };
        original.insert(field.to_string(), Value::Array(merged));
        Ok(())
    }
}

/// Checks that the patch list's elements appear in the `$setElementOrder`
/// list in the same relative order (deletions aside).
fn validate_order(patch: &[Value], order: &[Value], key: Option<&str>) -> Result<(), SmpError> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let mut kept = Vec::new();
    for item in patch {
        if key.is_some() {
            let m = item
                .as_object()
                .ok_or_else(|| SmpError::bad_arg_type(MAP_TYPE, item))?;
            if m.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                continue;
            }
        }
        kept.push(item);
    }
    let (mut p, mut o) = (0, 0);
    while p < kept.len() && o < order.len() {
        if kept[p]
            .as_object()
            .is_some_and(|m| m.contains_key(DIRECTIVE))
        {
            p += 1;
            continue;
        }
        if key_equal(kept[p], &order[o], key)? {
            p += 1;
        }
        o += 1;
    }
    if p < kept.len() {
        let patch = go_value(&Value::Array(patch.to_vec()));
        let order = go_value(&Value::Array(order.to_vec()));
        return Err(SmpError::other(format!(
            "The order in patch list:\n{patch}\n doesn't match {SET_ORDER} list:\n{order}\n"
        )));
    }
    Ok(())
}

fn key_equal(left: &Value, right: &Value, key: Option<&str>) -> Result<bool, SmpError> {
    let Some(key) = key else {
        return Ok(json_eq(left, right));
    };
    let value = |v: &Value| -> Result<Value, SmpError> {
        let m = v
            .as_object()
            .ok_or_else(|| SmpError::bad_arg_type(MAP_TYPE, v))?;
        m.get(key)
            .cloned()
            .ok_or_else(|| SmpError::no_merge_key(m, key))
    };
    Ok(json_eq(&value(left)?, &value(right)?))
}
