//! Server-side apply and managedFields as pure functions over `serde_json::Value`,
//! following sigs.k8s.io/structured-merge-diff and the apiserver's fieldmanager:
//! [`apply`] merges an applied configuration into the live object, prunes what the
//! applier stopped applying, detects conflicts with other managers and records an
//! `Apply` entry; [`track_update`] records an `Update` entry for ordinary writes.

mod fieldset;
mod managed;
mod merge;
mod schema;
#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::fmt;

use serde_json::{json, Value};

pub use fieldset::{canonical, path_string, FieldSet, Path, PathElement};
pub use managed::{ManagedEntry, APPLY, UPDATE};
pub use merge::{compare, field_set, Comparison};
pub use schema::{builtin_list_type, Fallback, ListType, Schema, SchemaFromOpenApi};

/// A field the applier would change that another manager owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager's name.
    pub manager: String,
    /// The other manager's operation (`Apply` or `Update`), apiVersion and subresource.
    pub operation: String,
    pub api_version: String,
    pub subresource: Option<String>,
    /// Upstream's path form, e.g. `.spec.replicas`.
    pub field: String,
    identifier: String,
    description: String,
}

impl Conflict {
    /// The message of this conflict's StatusCause (reason `FieldManagerConflict`),
    /// e.g. `conflict with "mgr" using v1`.
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.description)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyError {
    /// Fields owned by other managers; a 409 whose message is this error's Display.
    Conflict(Vec<Conflict>),
    /// A malformed applied configuration (not an object, or carrying managedFields);
    /// a 400 Bad Request with this message.
    BadRequest(String),
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::BadRequest(msg) => f.write_str(msg),
            ApplyError::Conflict(c) if c.len() == 1 => {
                write!(
                    f,
                    "Apply failed with 1 conflict: {}: {}",
                    c[0].cause_message(),
                    c[0].field
                )
            }
            ApplyError::Conflict(c) => {
                let mut ids: Vec<&str> = c.iter().map(|x| x.identifier.as_str()).collect();
                ids.sort();
                ids.dedup();
                let mut lines = Vec::new();
                for id in ids {
                    let group: Vec<&Conflict> = c.iter().filter(|x| x.identifier == id).collect();
                    lines.push(format!("conflicts with {}:", group[0].description));
                    lines.extend(group.iter().map(|x| format!("- {}", x.field)));
                }
                write!(
                    f,
                    "Apply failed with {} conflicts: {}",
                    c.len(),
                    lines.join("\n")
                )
            }
        }
    }
}

impl std::error::Error for ApplyError {}

/// Applies to the main resource. Everything in `applied` is merged, `status` included;
/// the caller drops `status` from `applied` first when the resource has a status subresource.
pub fn apply(
    live: &Value,
    applied: &Value,
    manager: &str,
    force: bool,
    schema: &dyn Schema,
    now: &str,
) -> Result<Value, ApplyError> {
    apply_to(live, applied, manager, None, force, schema, now)
}

/// Applies to the status subresource (`Some("status")`: only `status` of `applied` is used
/// and only `status` of the live object changes) or to the main resource (`None`). Other
/// subresource names are recorded in the entry but merge like the main resource.
/// `live` may be `null` or `{}` for a create via apply.
pub fn apply_to(
    live: &Value,
    applied: &Value,
    manager: &str,
    subresource: Option<&str>,
    force: bool,
    schema: &dyn Schema,
    now: &str,
) -> Result<Value, ApplyError> {
    if !applied.is_object() {
        return Err(ApplyError::BadRequest(
            "the applied configuration must be a JSON object".into(),
        ));
    }
    if applied
        .pointer("/metadata/managedFields")
        .is_some_and(|m| !m.is_null() && m != &json!([]))
    {
        return Err(ApplyError::BadRequest(
            "metadata.managedFields must be nil".into(),
        ));
    }
    if let Some(dup) = merge::duplicate(applied, &mut Vec::new(), schema) {
        return Err(ApplyError::BadRequest(dup));
    }
    let live = if live.is_null() {
        json!({})
    } else {
        live.clone()
    };
    let mut applied = applied.clone();
    merge::strip_applied_meta(&mut applied);
    if subresource == Some("status") {
        applied = merge::only(&applied, &["apiVersion", "kind", "status"]);
    }
    let api_version = str_field(&applied, "apiVersion")
        .or_else(|| str_field(&live, "apiVersion"))
        .unwrap_or_default();
    let me = ManagedEntry {
        manager: manager.to_string(),
        operation: APPLY.into(),
        api_version,
        time: Some(now.to_string()),
        subresource: subresource.map(str::to_string),
        fields: field_set(&applied, schema),
    };
    let mut entries = managed::read(&live);
    let previous = entries
        .iter()
        .position(|e| e.same_manager(&me))
        .map(|i| entries.remove(i));

    let mut merged = merge::merge(&live, &applied, &mut Vec::new(), schema);
    if let Some(prev) = &previous {
        let owned = entries
            .iter()
            .fold(me.fields.clone(), |acc, e| acc.union(&e.fields));
        merge::prune(&mut merged, &prev.fields.difference(&me.fields), &owned);
    }
    if subresource == Some("status") {
        let mut out = live.clone();
        match (merged.get("status"), out.as_object_mut()) {
            (Some(s), Some(o)) => drop(o.insert("status".into(), s.clone())),
            (None, Some(o)) => drop(o.shift_remove("status")),
            _ => {}
        }
        merged = out;
    }

    let cmp = compare(&live, &merged, schema);
    let changed = cmp.changed();
    let mut conflicts = Vec::new();
    for e in &entries {
        let mut paths: Vec<Path> = e.fields.intersection(&changed).iter().cloned().collect();
        paths.sort_by(|a, b| upstream_order(a, b));
        conflicts.extend(paths.iter().map(|p| conflict(e, p)));
    }
    if !force && !conflicts.is_empty() {
        return Err(ApplyError::Conflict(conflicts));
    }
    for e in &mut entries {
        e.fields = e.fields.difference(&changed).difference(&cmp.removed);
    }
    let mut me = me;
    if cmp.is_empty() {
        // Upstream stamps the applier's entry only when the object changed.
        me.time = previous.and_then(|p| p.time);
    }
    entries.push(me);
    managed::write(&mut merged, entries);
    Ok(merged)
}

/// Records a non-apply write (create, update, patch; `subresource` as in the request):
/// the fields added or modified from `old` to `new` leave every other manager's set and
/// join `manager`'s `Update` entry (stamped `now`); removed fields leave every set.
/// `old` is `null` (or `{}`) on create. As upstream, managedFields sent in `new` replace
/// the stored ones when they decode to something (`[]` or `[{}]` resets them), except on
/// subresources.
pub fn track_update(
    old: &Value,
    new: &Value,
    manager: &str,
    subresource: Option<&str>,
    schema: &dyn Schema,
    now: &str,
) -> Value {
    let old = if old.is_null() {
        json!({})
    } else {
        old.clone()
    };
    let mut out = new.clone();
    let mut entries = managed::decode_live_or_new(&old, new, subresource.is_some());
    let cmp = compare(&old, new, schema);
    let changed = cmp.changed();
    let me = ManagedEntry {
        manager: manager.to_string(),
        operation: UPDATE.into(),
        api_version: str_field(new, "apiVersion")
            .or_else(|| str_field(&old, "apiVersion"))
            .unwrap_or_default(),
        time: Some(now.to_string()),
        subresource: subresource.map(str::to_string),
        fields: changed.clone(),
    };
    for e in &mut entries {
        e.fields = e.fields.difference(&changed).difference(&cmp.removed);
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| e.same_manager(&me)) {
            Some(e) => {
                e.fields = e.fields.union(&changed);
                e.time = me.time;
            }
            None => entries.push(me),
        }
    }
    managed::write(&mut out, entries);
    out
}

/// The manager name upstream uses when a request names none: the User-Agent up to its
/// first `/`, printable characters only (e.g. `kubectl-edit` from `kubectl-edit/v1.30.0 (linux/amd64)`).
/// Non-printable characters are dropped and the result is cut to 128 bytes (upstream's
/// FieldManagerMaxLength).
pub fn default_manager(user_agent: &str) -> String {
    let mut out = String::new();
    let printable = |c: &char| *c == ' ' || !(c.is_control() || c.is_whitespace());
    for c in user_agent
        .split('/')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(printable)
    {
        if out.len() + c.len_utf8() > 128 {
            break;
        }
        out.push(c);
    }
    out
}

fn str_field(v: &Value, f: &str) -> Option<String> {
    v.get(f).and_then(Value::as_str).map(str::to_string)
}

fn conflict(e: &ManagedEntry, path: &Path) -> Conflict {
    Conflict {
        manager: e.manager.clone(),
        operation: e.operation.clone(),
        api_version: e.api_version.clone(),
        subresource: e.subresource.clone(),
        field: path_string(path),
        identifier: e.identifier(),
        description: e.describe(),
    }
}

/// Upstream iterates a set level by level, the members of a level before its children.
fn upstream_order(a: &[PathElement], b: &[PathElement]) -> Ordering {
    for i in 0..a.len().min(b.len()) {
        let (a_member, b_member) = (a.len() == i + 1, b.len() == i + 1);
        if a[i] != b[i] || a_member != b_member {
            return match (a_member, b_member) {
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                _ => a[i].cmp(&b[i]),
            };
        }
    }
    a.len().cmp(&b.len())
}
