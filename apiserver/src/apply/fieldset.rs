//! Field paths and sets of field paths, with upstream's FieldsV1 JSON encoding
//! (`f:<name>`, `k:<key json>`, `v:<value json>`, `i:<index>`, `.` for the node itself)
//! and the human-readable path form used in conflict messages (`.spec.containers[name="web"].image`).

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A field of a map (or struct).
    Field(String),
    /// An element of a list of type map, by its key fields: (name, JSON text of the value), sorted by name.
    Key(Vec<(String, String)>),
    /// An element of a list of type set, by the JSON text of its value.
    Value(String),
    /// An element of a list by position (only appears when decoding such a FieldsV1).
    Index(usize),
}

/// A path from the root of an object.
pub type Path = Vec<PathElement>;

impl PathElement {
    /// The key element for a list-map item, or `None` when the item is not an object.
    /// A key field the item lacks takes `default(field)`, or is left out of the key.
    pub fn key_of(
        item: &Value,
        keys: &[String],
        default: impl Fn(&str) -> Option<Value>,
    ) -> Option<PathElement> {
        let obj = item.as_object()?;
        let mut fields: Vec<(String, String)> = keys
            .iter()
            .filter_map(|k| {
                obj.get(k)
                    .cloned()
                    .or_else(|| default(k))
                    .map(|v| (k.clone(), canonical(&v)))
            })
            .collect();
        fields.sort();
        Some(PathElement::Key(fields))
    }

    /// The FieldsV1 object key for this element.
    pub fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => format!("k:{}", key_json(fields)),
            PathElement::Value(json) => format!("v:{json}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a FieldsV1 object key (other than `.`).
    pub fn decode(s: &str) -> Result<PathElement, String> {
        let (kind, rest) = s
            .split_at_checked(2)
            .ok_or_else(|| format!("invalid path element {s:?}"))?;
        match kind {
            "f:" => Ok(PathElement::Field(rest.to_string())),
            "v:" => {
                let v: Value = serde_json::from_str(rest)
                    .map_err(|e| format!("invalid value in {s:?}: {e}"))?;
                Ok(PathElement::Value(canonical(&v)))
            }
            "k:" => {
                let v: Value =
                    serde_json::from_str(rest).map_err(|e| format!("invalid key in {s:?}: {e}"))?;
                let obj = v
                    .as_object()
                    .ok_or_else(|| format!("key {s:?} is not a JSON object"))?;
                let mut fields: Vec<(String, String)> =
                    obj.iter().map(|(k, v)| (k.clone(), canonical(v))).collect();
                fields.sort();
                Ok(PathElement::Key(fields))
            }
            "i:" => rest
                .parse()
                .map(PathElement::Index)
                .map_err(|_| format!("invalid index in {s:?}")),
            _ => Err(format!("invalid path element {s:?}")),
        }
    }

    /// Whether the list item at `index` is the one this element selects.
    pub fn selects(&self, index: usize, item: &Value) -> bool {
        match self {
            // An item lacking a key field matches: it was keyed by that field's default.
            PathElement::Key(fields) => item.as_object().is_some_and(|o| {
                fields
                    .iter()
                    .all(|(k, v)| o.get(k).is_none_or(|x| canonical(x) == *v))
            }),
            PathElement::Value(json) => canonical(item) == *json,
            PathElement::Index(i) => *i == index,
            PathElement::Field(_) => false,
        }
    }
}

impl fmt::Display for PathElement {
    /// Upstream's human-readable form: `.name`, `[k1=v1,k2=v2]`, `[=value]`, `[3]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(json) => write!(f, "[={json}]"),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// JSON text of a value with object keys sorted, so equal values compare equal.
pub fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut fields: Vec<(&String, &Value)> = m.iter().collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            let parts: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{}:{}", Value::String((*k).clone()), canonical(v)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

fn key_json(fields: &[(String, String)]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// Upstream's path string, e.g. `.spec.containers[name="web"].image`.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// A set of field paths. A path in the set means "this field (or list item) itself";
/// its ancestors are implied containers, not members.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet(BTreeSet<Path>);

impl FieldSet {
    pub fn new() -> FieldSet {
        FieldSet::default()
    }
    pub fn insert(&mut self, path: Path) {
        self.0.insert(path);
    }
    pub fn remove(&mut self, path: &[PathElement]) {
        self.0.remove(path);
    }
    pub fn contains(&self, path: &[PathElement]) -> bool {
        self.0.contains(path)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Path> {
        self.0.iter()
    }
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.union(&other.0).cloned().collect())
    }
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.intersection(&other.0).cloned().collect())
    }
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.difference(&other.0).cloned().collect())
    }
    /// Whether some member lies strictly below `prefix`.
    pub fn has_descendant(&self, prefix: &[PathElement]) -> bool {
        self.0
            .range(prefix.to_vec()..)
            .find(|p| p.as_slice() != prefix)
            .is_some_and(|p| p.starts_with(prefix))
    }

    /// Encodes the set as a FieldsV1 object.
    pub fn to_fields_v1(&self) -> Value {
        let paths: Vec<&[PathElement]> = self.0.iter().map(Vec::as_slice).collect();
        Value::Object(encode_level(&paths))
    }

    /// Decodes a FieldsV1 object.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, String> {
        let mut set = FieldSet::new();
        decode_level(v, &mut Vec::new(), &mut set)?;
        Ok(set)
    }
}

impl FromIterator<Path> for FieldSet {
    fn from_iter<I: IntoIterator<Item = Path>>(iter: I) -> FieldSet {
        FieldSet(iter.into_iter().collect())
    }
}

/// Encodes paths relative to one node; `paths` is sorted and never contains the empty path.
fn encode_level(paths: &[&[PathElement]]) -> Map<String, Value> {
    let mut out = Map::new();
    let mut i = 0;
    while i < paths.len() {
        let head = &paths[i][0];
        let mut j = i;
        while j < paths.len() && &paths[j][0] == head {
            j += 1;
        }
        let rest: Vec<&[PathElement]> = paths[i..j].iter().map(|p| &p[1..]).collect();
        let member = rest.first().is_some_and(|p| p.is_empty());
        let below: Vec<&[PathElement]> = rest.into_iter().filter(|p| !p.is_empty()).collect();
        let mut child = Map::new();
        if member && !below.is_empty() {
            child.insert(".".into(), Value::Object(Map::new()));
        }
        child.extend(encode_level(&below));
        out.insert(head.encode(), Value::Object(child));
        i = j;
    }
    out
}

fn decode_level(v: &Value, prefix: &mut Path, set: &mut FieldSet) -> Result<(), String> {
    let obj = v.as_object().ok_or_else(|| {
        format!(
            "FieldsV1 node at {:?} is not an object",
            path_string(prefix)
        )
    })?;
    if obj.is_empty() && !prefix.is_empty() {
        set.insert(prefix.clone());
    }
    for (k, child) in obj {
        if k == "." {
            if !prefix.is_empty() {
                set.insert(prefix.clone());
            }
            continue;
        }
        prefix.push(PathElement::decode(k)?);
        decode_level(child, prefix, set)?;
        prefix.pop();
    }
    Ok(())
}
