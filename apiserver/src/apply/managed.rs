//! `metadata.managedFields` entries: reading them from an object, writing them back in
//! upstream's order, and the identity and printed form of a manager.

use serde_json::{json, Map, Value};

use super::fieldset::FieldSet;

pub const APPLY: &str = "Apply";
pub const UPDATE: &str = "Update";

/// One `metadata.managedFields` entry with its fields decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedEntry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl ManagedEntry {
    /// Whether two entries are the same manager as upstream keys them: appliers by name,
    /// operation and subresource; updaters also by apiVersion.
    pub fn same_manager(&self, other: &ManagedEntry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == APPLY || self.api_version == other.api_version)
    }

    /// Upstream's manager identifier: the entry's JSON without time and fields (and without
    /// apiVersion for appliers). Conflicts are grouped and sorted by it.
    pub fn identifier(&self) -> String {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation));
        if self.operation != APPLY && !self.api_version.is_empty() {
            m.insert("apiVersion".into(), json!(self.api_version));
        }
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), json!(s));
        }
        Value::Object(m).to_string()
    }

    /// How upstream prints a manager in conflict messages: `"name"`, plus
    /// ` with subresource "status"`, plus ` using apps/v1` for updaters.
    pub fn describe(&self) -> String {
        let mut s = Value::String(self.manager.clone()).to_string();
        if let Some(sub) = &self.subresource {
            s = format!("{s} with subresource {}", Value::String(sub.clone()));
        }
        if self.operation == UPDATE {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), json!(s));
        }
        Value::Object(m)
    }

    pub fn from_json(v: &Value) -> Result<ManagedEntry, String> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        if let Some(t) = s("fieldsType").filter(|t| t != "FieldsV1") {
            return Err(format!("unsupported fieldsType {t:?}"));
        }
        let fields = match v.get("fieldsV1") {
            Some(f) => FieldSet::from_fields_v1(f)?,
            None => FieldSet::new(),
        };
        Ok(ManagedEntry {
            manager: s("manager").unwrap_or_default(),
            operation: s("operation").ok_or("managedFields entry without operation")?,
            api_version: s("apiVersion").unwrap_or_default(),
            time: s("time"),
            subresource: s("subresource").filter(|s| !s.is_empty()),
            fields,
        })
    }
}

fn decode(obj: &Value) -> Result<Vec<ManagedEntry>, String> {
    match obj.pointer("/metadata/managedFields") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => list.iter().map(ManagedEntry::from_json).collect(),
        Some(_) => Err("metadata.managedFields is not a list".into()),
    }
}

/// The object's entries. Upstream resets managedFields it cannot decode; likewise an
/// undecodable list yields no entries.
pub(super) fn read(obj: &Value) -> Vec<ManagedEntry> {
    decode(obj).unwrap_or_default()
}

/// Upstream's choice for non-apply writes: the live entries on subresources; none when the
/// request sends `[]` or `[{}]` (a reset); the request's entries when they decode to at
/// least one; otherwise the live entries.
pub(super) fn decode_live_or_new(
    live: &Value,
    new: &Value,
    subresource: bool,
) -> Vec<ManagedEntry> {
    if subresource {
        return read(live);
    }
    match new.pointer("/metadata/managedFields") {
        Some(Value::Array(list))
            if list.is_empty()
                || (list.len() == 1 && list[0] == Value::Object(Default::default())) =>
        {
            Vec::new()
        }
        _ => match decode(new) {
            Ok(entries) if !entries.is_empty() => entries,
            _ => read(live),
        },
    }
}

/// Stores entries (empty ones dropped) in upstream's order: by operation, time, manager,
/// apiVersion, subresource. No entries removes the key.
pub(super) fn write(obj: &mut Value, mut entries: Vec<ManagedEntry>) {
    entries.retain(|e| !e.fields.is_empty());
    entries.sort_by(|p, q| {
        (
            &p.operation,
            &p.time,
            &p.manager,
            &p.api_version,
            &p.subresource,
        )
            .cmp(&(
                &q.operation,
                &q.time,
                &q.manager,
                &q.api_version,
                &q.subresource,
            ))
    });
    let Some(obj) = obj.as_object_mut() else {
        return;
    };
    let meta = obj.entry("metadata").or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    if entries.is_empty() {
        meta.shift_remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            Value::Array(entries.iter().map(ManagedEntry::to_json).collect()),
        );
    }
}
