//! List element order after a merge: patch order first, live order for the rest, as upstream interleaves them.

use serde_json::Value;

use super::error::{go_type, go_value, SmpError};

const DIRECTIVE: &str = "$patch";

/// What a list holds, as far as merging cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Map,
    Scalar,
}

/// Equality of decoded JSON values: numbers compare as the float64 upstream
/// decodes them to.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// The common element type of the lists: an error for lists of lists, mixed
/// element types, or no elements at all.
pub(crate) fn element_kind(original: &[Value], patch: &[Value]) -> Result<Kind, SmpError> {
    let mut first: Option<&Value> = None;
    for v in original.iter().chain(patch) {
        match first {
            None if v.is_array() => return Err(SmpError::no_list_of_lists()),
            None => first = Some(v),
            Some(f) if go_type(f) != go_type(v) => {
                let lists = Value::Array(vec![
                    Value::Array(original.to_vec()),
                    Value::Array(patch.to_vec()),
                ]);
                return Err(SmpError::other(format!(
                    "list element types are not identical: {}",
                    go_value(&lists)
                )));
            }
            Some(_) => {}
        }
    }
    match first {
        Some(Value::Object(_)) => Ok(Kind::Map),
        Some(_) => Ok(Kind::Scalar),
        None => Err(SmpError::other("no elements in any of the given slices")),
    }
}

/// Removes duplicates the way upstream does: a later duplicate is replaced
/// by the list's last element.
pub(crate) fn dedup_scalars(s: &mut Vec<Value>) {
    let mut i = 0;
    while i + 1 < s.len() {
        let mut j = i + 1;
        while j < s.len() {
            if json_eq(&s[i], &s[j]) {
                s.swap_remove(j);
            } else {
                j += 1;
            }
        }
        i += 1;
    }
}

/// `current` without the values listed in `to_delete`.
pub(crate) fn delete_from(current: Vec<Value>, to_delete: &[Value]) -> Vec<Value> {
    current
        .into_iter()
        .filter(|v| !to_delete.iter().any(|d| json_eq(v, d)))
        .collect()
}

fn key_of<'v>(v: &'v Value, key: Option<&str>) -> Option<&'v Value> {
    match key {
        Some(key) => v.as_object().and_then(|m| m.get(key)),
        None => Some(v),
    }
}

/// Position of `item` in `list`, comparing merge-key values for maps.
fn index(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    let wanted = key_of(item, key);
    list.iter().position(|v| match (key_of(v, key), wanted) {
        (Some(a), Some(b)) => json_eq(a, b),
        (None, None) => true,
        _ => false,
    })
}

fn check_merge_keys(key: &str, lists: &[&[Value]]) -> Result<(), SmpError> {
    for item in lists.iter().flat_map(|l| l.iter()) {
        let m = item
            .as_object()
            .ok_or_else(|| SmpError::bad_arg_type("map[string]interface {}", item))?;
        if !m.contains_key(key) {
            return Err(SmpError::no_merge_key(m, key));
        }
    }
    Ok(())
}

/// Sorts `items` by their position in `order` (stable; items not in `order`
/// go last), with `$patch: delete` elements moved to the end.
fn sort_by(
    mut items: Vec<Value>,
    order: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>, SmpError> {
    let mut deletes = Vec::new();
    if let Some(k) = key {
        check_merge_keys(k, &[&items, order])?;
        let (keep, del): (Vec<Value>, Vec<Value>) = items
            .into_iter()
            .partition(|v| v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"));
        items = keep;
        deletes = del;
    }
    items.sort_by_key(|v| index(order, v, key).unwrap_or(usize::MAX));
    items.extend(deletes);
    Ok(items)
}

/// Orders a merged list: the elements named in `order` (the patch list or a
/// `$setElementOrder` list) sorted by it, the others by the live list
/// `server`, the two interleaved where both positions are known in `server`
/// and otherwise with the `order` elements first.
pub(crate) fn normalize(
    merged: Vec<Value>,
    order: &[Value],
    server: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>, SmpError> {
    let mut in_order = Vec::new();
    let mut server_only = Vec::new();
    for item in merged {
        if let Some(k) = key {
            let m = item
                .as_object()
                .ok_or_else(|| SmpError::bad_arg_type("map[string]interface {}", &item))?;
            if !m.contains_key(k) {
                return Err(SmpError::no_merge_key(m, k));
            }
            if let Some(i) = order.iter().position(|o| !o.is_object()) {
                return Err(SmpError::other(format!("value for key {i} is not a map.")));
            }
        }
        if index(order, &item, key).is_some() {
            in_order.push(item);
        } else {
            server_only.push(item);
        }
    }
    let right = sort_by(in_order, order, key)?;
    let left = sort_by(server_only, server, key)?;
    Ok(interleave(left, right, server, key))
}

/// Merges two sorted lists, taking from `left` first only when both heads
/// are found in `server` and the left one comes earlier there.
fn interleave(
    left: Vec<Value>,
    right: Vec<Value>,
    server: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => match (index(server, l, key), index(server, r, key)) {
                (Some(li), Some(ri)) => li < ri,
                _ => false,
            },
        };
        out.extend(if take_left { left.next() } else { right.next() });
    }
    out
}
