//! Server-side printing: meta.k8s.io/v1 Table responses with upstream's columns and cell text per kind.

mod apps;
mod batch;
mod core;
mod crd;
mod other;
mod pod;

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

/// What each TableRow carries in its `object` field (`includeObject` query).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object; the `object` field is omitted.
    None,
    /// A PartialObjectMetadata with the object's metadata (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query value; empty means the default.
    /// Returns None for unknown values (upstream rejects them).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "Metadata" => Some(Self::Metadata),
            "None" => Some(Self::None),
            "Object" => Some(Self::Object),
            _ => None,
        }
    }
}

/// One meta.k8s.io/v1 TableColumnDefinition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnDef {
    pub(crate) name: String,
    pub(crate) ty: String,
    pub(crate) format: String,
    pub(crate) description: String,
    pub(crate) priority: i64,
}

impl ColumnDef {
    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.ty,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// Shorthand for a column definition: `c("Ready", "string", "...")`.
pub(crate) fn c(name: &str, ty: &str, description: &str) -> ColumnDef {
    ColumnDef {
        name: name.to_string(),
        ty: ty.to_string(),
        format: String::new(),
        description: description.to_string(),
        priority: 0,
    }
}

/// A priority-1 column, shown by kubectl only with `-o wide`.
pub(crate) fn wide(name: &str, ty: &str, description: &str) -> ColumnDef {
    ColumnDef {
        priority: 1,
        ..c(name, ty, description)
    }
}

pub(crate) fn name_col() -> ColumnDef {
    ColumnDef {
        format: "name".into(),
        ..c(
            "Name",
            "string",
            "Name of the object, unique within its namespace.",
        )
    }
}

pub(crate) fn age_col() -> ColumnDef {
    c(
        "Age",
        "string",
        "Time elapsed since the object was created.",
    )
}

type CellFn = fn(&Value, i64) -> Vec<Value>;

#[derive(Debug, Clone)]
enum Cells {
    Builtin(CellFn),
    Crd(Vec<crd::Column>),
}

/// Renders objects of one resource as Table rows.
#[derive(Debug, Clone)]
pub struct TablePrinter {
    columns: Vec<ColumnDef>,
    cells: Cells,
}

impl TablePrinter {
    /// A printer for `group`/`resource` (plural). `additional_printer_columns`
    /// is a CRD version's `additionalPrinterColumns` array; when given, it
    /// defines the columns after NAME (an empty array yields AGE).
    pub fn new(group: &str, resource: &str, additional_printer_columns: Option<&Value>) -> Self {
        if let Some(cols) = additional_printer_columns {
            let (columns, crd_cols) = crd::columns(cols);
            return Self {
                columns,
                cells: Cells::Crd(crd_cols),
            };
        }
        let builtin = core::printer(group, resource)
            .or_else(|| apps::printer(group, resource))
            .or_else(|| batch::printer(group, resource))
            .or_else(|| other::printer(group, resource));
        match builtin {
            Some((columns, f)) => Self {
                columns,
                cells: Cells::Builtin(f),
            },
            None => {
                // Custom resources without printer columns: NAME and AGE (a date column), as upstream.
                let (columns, crd_cols) = crd::columns(&Value::Array(Vec::new()));
                Self {
                    columns,
                    cells: Cells::Crd(crd_cols),
                }
            }
        }
    }

    /// The TableColumnDefinition array.
    pub fn column_definitions(&self) -> Value {
        Value::Array(self.columns.iter().map(ColumnDef::to_json).collect())
    }

    /// Column names, in order (handy for callers and tests).
    pub fn column_names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }

    /// The cells of one object, without the row wrapper.
    pub fn cells(&self, obj: &Value, now: SystemTime) -> Vec<Value> {
        let now = unix_seconds(now);
        match &self.cells {
            Cells::Builtin(f) => f(obj, now),
            Cells::Crd(cols) => crd::cells(cols, obj, now),
        }
    }

    /// One TableRow: `cells` and, depending on `include_object`, `object`.
    pub fn row(&self, obj: &Value, include_object: IncludeObject, now: SystemTime) -> Value {
        let mut row = Map::new();
        row.insert("cells".into(), Value::Array(self.cells(obj, now)));
        match include_object {
            IncludeObject::None => {}
            IncludeObject::Metadata => {
                row.insert("object".into(), partial_object_metadata(obj));
            }
            IncludeObject::Object => {
                row.insert("object".into(), obj.clone());
            }
        }
        Value::Object(row)
    }
}

fn partial_object_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A whole meta.k8s.io/v1 Table for a list (or a single object).
#[allow(clippy::too_many_arguments)]
pub fn table(
    printer: &TablePrinter,
    objs: &[&Value],
    include: IncludeObject,
    with_column_definitions: bool,
    resource_version: &str,
    continue_token: Option<&str>,
    remaining: Option<i64>,
    now: SystemTime,
) -> Value {
    let mut metadata = Map::new();
    if !resource_version.is_empty() {
        metadata.insert("resourceVersion".into(), json!(resource_version));
    }
    if let Some(token) = continue_token.filter(|t| !t.is_empty()) {
        metadata.insert("continue".into(), json!(token));
    }
    if let Some(n) = remaining {
        metadata.insert("remainingItemCount".into(), json!(n));
    }
    let columns = if with_column_definitions {
        printer.column_definitions()
    } else {
        json!([])
    };
    let rows: Vec<Value> = objs.iter().map(|o| printer.row(o, include, now)).collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

// ---- shared helpers for the kind printers ----

pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

pub(crate) fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .filter(|v| !v.is_null())
}

pub(crate) fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    get(v, path).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn int(v: &Value, path: &[&str]) -> i64 {
    get(v, path).and_then(Value::as_i64).unwrap_or(0)
}

pub(crate) fn arr<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub(crate) fn name(obj: &Value) -> Value {
    json!(s(obj, &["metadata", "name"]))
}

/// Upstream's duration.HumanDuration over whole seconds.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let sec = seconds % 60;
        return if sec == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{sec}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

pub use crate::object::{parse_rfc3339, rfc3339 as format_rfc3339};

/// `status.loadBalancer.ingress` addresses (IP, else hostname), sorted and unique, as
/// the Service and Ingress printers show them.
fn load_balancer_addresses(obj: &Value) -> Vec<String> {
    let mut out: Vec<String> = arr(obj, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|i| {
            [s(i, &["ip"]), s(i, &["hostname"])]
                .into_iter()
                .find(|v| !v.is_empty())
                .map(str::to_string)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Upstream's translateTimestampSince: `<unknown>` for a missing time.
pub(crate) fn since(ts: Option<&Value>, now: i64) -> String {
    match ts.and_then(Value::as_str).and_then(parse_rfc3339) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

pub(crate) fn age(obj: &Value, now: i64) -> Value {
    json!(since(get(obj, &["metadata", "creationTimestamp"]), now))
}

/// Upstream's labels.FormatLabels: sorted `k=v` pairs or `<none>`.
pub(crate) fn format_labels(map: Option<&Value>) -> String {
    let Some(m) = map.and_then(Value::as_object) else {
        return "<none>".into();
    };
    let mut pairs: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    if pairs.is_empty() {
        return "<none>".into();
    }
    pairs.sort();
    pairs.join(",")
}

/// Upstream's metav1.FormatLabelSelector: `<none>` when empty or absent.
pub(crate) fn format_label_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return "<none>".into();
    };
    match crate::selectors::LabelSelector::from_label_selector(sel) {
        Ok(s) => {
            let text = s.to_string();
            if text.is_empty() {
                "<none>".into()
            } else {
                text
            }
        }
        Err(_) => "<error>".into(),
    }
}

/// Container names and images joined by commas (upstream's layoutContainerCells).
pub(crate) fn container_cells(containers: &[Value]) -> (Value, Value) {
    let names: Vec<&str> = containers.iter().map(|c| s(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, &["image"])).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

#[cfg(test)]
mod tests;
