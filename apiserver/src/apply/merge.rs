//! The value-level operations of apply: the field set an object sets, merging an applied
//! configuration into a live object, comparing two objects, and removing fields.

use serde_json::{Map, Value};

use super::fieldset::{canonical, FieldSet, Path, PathElement};
use super::schema::{ListType, Schema};

/// Metadata fields upstream never tracks in managedFields (besides apiVersion and kind).
const IGNORED_META: [&str; 9] = [
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
];

fn ignored(path: &[PathElement]) -> bool {
    match path {
        [PathElement::Field(f)] => f == "apiVersion" || f == "kind",
        [PathElement::Field(m), PathElement::Field(f)] => {
            m == "metadata" && IGNORED_META.contains(&f.as_str())
        }
        _ => false,
    }
}

/// The fields an object sets: scalar leaves, atomic lists and maps, empty maps, and the
/// items of set and map lists (each item is itself a member, as upstream records it).
pub fn field_set(obj: &Value, schema: &dyn Schema) -> FieldSet {
    let mut set = FieldSet::new();
    walk(obj, &mut Vec::new(), schema, &mut set);
    set
}

fn walk(v: &Value, path: &mut Path, schema: &dyn Schema, set: &mut FieldSet) {
    match v {
        Value::Object(m) if !path.is_empty() && (m.is_empty() || schema.is_atomic_map(path)) => {
            set.insert(path.clone())
        }
        Value::Object(m) => {
            for (k, child) in m {
                path.push(PathElement::Field(k.clone()));
                if !ignored(path) {
                    walk(child, path, schema, set);
                }
                path.pop();
            }
        }
        Value::Array(items) => match schema.list_type(path) {
            ListType::Atomic => set.insert(path.clone()),
            ListType::Set => {
                for item in items {
                    let mut p = path.clone();
                    p.push(PathElement::Value(canonical(item)));
                    set.insert(p);
                }
            }
            ListType::Map(keys) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(item_key(item, &keys, path, schema).unwrap_or(PathElement::Index(i)));
                    set.insert(path.clone());
                    if item.is_object() {
                        walk(item, path, schema, set);
                    }
                    path.pop();
                }
            }
        },
        _ if !path.is_empty() => set.insert(path.clone()),
        _ => {}
    }
}

/// The key of a list-map item, missing key fields taking the schema's defaults.
fn item_key(
    item: &Value,
    keys: &[String],
    list: &[PathElement],
    schema: &dyn Schema,
) -> Option<PathElement> {
    PathElement::key_of(item, keys, |k| schema.key_default(list, k))
}

/// The first duplicate item of a map or set list in `v`, as upstream rejects them in an
/// applied configuration: `.spec.containers: duplicate entries for key [name="web"]`.
pub(super) fn duplicate(v: &Value, path: &mut Path, schema: &dyn Schema) -> Option<String> {
    match v {
        Value::Object(m) => m.iter().find_map(|(k, child)| {
            path.push(PathElement::Field(k.clone()));
            let found = duplicate(child, path, schema);
            path.pop();
            found
        }),
        Value::Array(items) => {
            let list_type = schema.list_type(path);
            let mut seen = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let pe = match &list_type {
                    ListType::Atomic => return None,
                    ListType::Set => PathElement::Value(canonical(item)),
                    ListType::Map(keys) => {
                        item_key(item, keys, path, schema).unwrap_or(PathElement::Index(i))
                    }
                };
                if seen.contains(&pe) {
                    let what = if matches!(pe, PathElement::Value(_)) {
                        "value"
                    } else {
                        "key"
                    };
                    return Some(format!(
                        "{}: duplicate entries for {what} {pe}",
                        super::path_string(path)
                    ));
                }
                path.push(pe.clone());
                if let Some(found) = duplicate(item, path, schema) {
                    return Some(found);
                }
                path.pop();
                seen.push(pe);
            }
            None
        }
        _ => None,
    }
}

/// Merges `applied` into `live`: maps merge field by field, map lists by key, set lists
/// by value (live order kept, new items appended), everything else is replaced.
pub(super) fn merge(live: &Value, applied: &Value, path: &mut Path, schema: &dyn Schema) -> Value {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) if path.is_empty() || !schema.is_atomic_map(path) => {
            let mut out = l.clone();
            for (k, av) in a {
                path.push(PathElement::Field(k.clone()));
                let merged = match l.get(k) {
                    Some(lv) => merge(lv, av, path, schema),
                    None => av.clone(),
                };
                path.pop();
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(a)) => match schema.list_type(path) {
            ListType::Atomic => applied.clone(),
            ListType::Set => {
                let key = |x: &Value| Some(PathElement::Value(canonical(x)));
                let (lk, ak) = (l.iter().map(key).collect(), a.iter().map(key).collect());
                merge_list(l, a, lk, ak, path, schema)
            }
            ListType::Map(keys) => {
                let key = |x: &Value| item_key(x, &keys, path, schema);
                let (lk, ak) = (l.iter().map(key).collect(), a.iter().map(key).collect());
                merge_list(l, a, lk, ak, path, schema)
            }
        },
        _ => applied.clone(),
    }
}

/// Merges the items of an associative list as upstream orders them: the applied items in
/// their order, each merged with its live counterpart, and live-only items kept where
/// they stand relative to them. `lk`/`ak` are the items' keys; `None` matches nothing.
fn merge_list(
    live: &[Value],
    applied: &[Value],
    lk: Vec<Option<PathElement>>,
    ak: Vec<Option<PathElement>>,
    path: &mut Path,
    schema: &dyn Schema,
) -> Value {
    let in_applied = |k: &Option<PathElement>| k.is_some() && ak.contains(k);
    // Applied keys also in live, in applied order: the order shared items come out in.
    let shared: Vec<&PathElement> = ak
        .iter()
        .flatten()
        .filter(|k| lk.iter().flatten().any(|l| l == *k))
        .collect();
    let mut next_shared = 0;
    let mut emitted: Vec<&PathElement> = Vec::new();
    let mut out = Vec::with_capacity(live.len().max(applied.len()));
    let (mut li, mut ai) = (0, 0);
    let merged =
        |l: Option<&Value>, a: &Value, k: &Option<PathElement>, path: &mut Path| match (l, k) {
            (Some(l), Some(k)) => {
                path.push(k.clone());
                let m = merge(l, a, path, schema);
                path.pop();
                m
            }
            _ => a.clone(),
        };
    while li < live.len() || ai < applied.len() {
        if li < live.len() && ai < applied.len() {
            if lk[li].is_some() && lk[li] == ak[ai] {
                out.push(merged(Some(&live[li]), &applied[ai], &ak[ai], path));
                emitted.extend(ak[ai].as_ref());
                if shared.get(next_shared).copied() == ak[ai].as_ref() {
                    next_shared += 1;
                }
                li += 1;
                ai += 1;
                continue;
            }
            // A shared item that comes later in the applied order waits for its turn.
            if in_applied(&lk[li])
                && shared
                    .get(next_shared)
                    .is_some_and(|s| Some(*s) != lk[li].as_ref())
            {
                li += 1;
                continue;
            }
        }
        if li < live.len() {
            if !in_applied(&lk[li]) {
                out.push(live[li].clone());
                li += 1;
                continue;
            }
            if lk[li].as_ref().is_some_and(|k| emitted.contains(&k)) {
                li += 1;
                continue;
            }
        }
        if ai < applied.len() {
            let l = ak[ai]
                .as_ref()
                .and_then(|k| lk.iter().position(|x| x.as_ref() == Some(k)))
                .map(|i| &live[i]);
            out.push(merged(l, &applied[ai], &ak[ai], path));
            emitted.extend(ak[ai].as_ref());
            if shared.get(next_shared).copied() == ak[ai].as_ref() && ak[ai].is_some() {
                next_shared += 1;
            }
            ai += 1;
        } else {
            li += 1;
        }
    }
    Value::Array(out)
}

/// The value at `path`, if present.
pub(super) fn get<'a>(v: &'a Value, path: &[PathElement]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, pe| match (pe, v) {
        (PathElement::Field(f), Value::Object(m)) => m.get(f),
        (_, Value::Array(items)) => items
            .iter()
            .enumerate()
            .find(|(i, x)| pe.selects(*i, x))
            .map(|(_, x)| x),
        _ => None,
    })
}

fn get_mut<'a>(v: &'a mut Value, path: &[PathElement]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, pe| match (pe, v) {
        (PathElement::Field(f), Value::Object(m)) => m.get_mut(f),
        (_, Value::Array(items)) => items
            .iter_mut()
            .enumerate()
            .find(|(i, x)| pe.selects(*i, x))
            .map(|(_, x)| x),
        _ => None,
    })
}

/// Removes the field or item at `path`; returns whether it was there.
pub(super) fn remove(v: &mut Value, path: &[PathElement]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    match (last, get_mut(v, parent)) {
        (PathElement::Field(f), Some(Value::Object(m))) => m.shift_remove(f).is_some(),
        (_, Some(Value::Array(items))) => {
            let before = items.len();
            let mut i = 0;
            items.retain(|x| {
                i += 1;
                !last.selects(i - 1, x)
            });
            items.len() != before
        }
        _ => false,
    }
}

/// What changed between two objects, as field sets.
#[derive(Debug, Default)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    /// Added or modified fields.
    pub fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

/// Compares two objects: fields only in `new` are added, only in `old` removed, and
/// leaves in both with different values modified.
pub fn compare(old: &Value, new: &Value, schema: &dyn Schema) -> Comparison {
    let (before, after) = (field_set(old, schema), field_set(new, schema));
    let modified = before
        .intersection(&after)
        .iter()
        .filter(|p| !after.has_descendant(p) && get(old, p) != get(new, p))
        .cloned()
        .collect();
    Comparison {
        added: after.difference(&before),
        modified,
        removed: before.difference(&after),
    }
}

/// Removes the fields of `to_remove` from `obj` unless `owned` (everyone's fields after the
/// apply) holds them or something below them; key fields of a kept item stay, and maps or
/// lists left empty by a removal go too unless owned.
pub(super) fn prune(obj: &mut Value, to_remove: &FieldSet, owned: &FieldSet) {
    for path in to_remove.iter() {
        if owned.contains(path) || owned.has_descendant(path) || is_key_field(path) {
            continue;
        }
        if !remove(obj, path) {
            continue;
        }
        for end in (1..path.len()).rev() {
            let ancestor = &path[..end];
            let empty = match get(obj, ancestor) {
                Some(Value::Object(m)) => m.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                _ => false,
            };
            if !empty || owned.contains(ancestor) || !remove(obj, ancestor) {
                break;
            }
        }
    }
}

fn is_key_field(path: &[PathElement]) -> bool {
    match path {
        [.., PathElement::Key(fields), PathElement::Field(f)] => fields.iter().any(|(k, _)| k == f),
        _ => false,
    }
}

/// Drops the metadata an applied configuration must not carry into the live object.
pub(super) fn strip_applied_meta(applied: &mut Value) {
    if let Some(Value::Object(meta)) = applied.get_mut("metadata") {
        for f in [
            "managedFields",
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "selfLink",
        ] {
            meta.shift_remove(f);
        }
    }
}

/// An object with only the given top-level fields of `v` (used for subresources).
pub(super) fn only(v: &Value, fields: &[&str]) -> Value {
    let mut out = Map::new();
    for f in fields {
        if let Some(x) = v.get(*f) {
            out.insert((*f).to_string(), x.clone());
        }
    }
    Value::Object(out)
}
