//! CRD additionalPrinterColumns: column definitions and cells evaluated with a small JSONPath subset.

use serde_json::{json, Value};

use super::{human_duration, name, name_col, parse_rfc3339, ColumnDef};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Field(String),
    Index(i64),
    Wildcard,
}

/// One additional column: its declared type and parsed path (None when the
/// path is outside the supported subset; such cells are null).
#[derive(Debug, Clone)]
pub(crate) struct Column {
    ty: String,
    path: Option<Vec<Seg>>,
}

/// Parses `.a.b`, `.a[0].b`, `.a[*].b`, `.a['x.y']`, with optional `{...}` braces
/// and `\.` escapes inside names.
fn parse_path(p: &str) -> Option<Vec<Seg>> {
    let p = p.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(p)
        .trim();
    let mut chars = p.chars().peekable();
    let mut segs = Vec::new();
    match chars.peek() {
        Some('.') | Some('[') => {}
        _ => return None,
    }
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut field = String::new();
                while let Some(&n) = chars.peek() {
                    if n == '.' || n == '[' {
                        break;
                    }
                    chars.next();
                    if n == '\\' {
                        field.push(chars.next()?);
                    } else {
                        field.push(n);
                    }
                }
                if field.is_empty() {
                    if segs.is_empty() && chars.peek().is_none() {
                        return Some(segs);
                    }
                    if segs.is_empty() && chars.peek() == Some(&'[') {
                        continue;
                    }
                    return None;
                }
                segs.push(Seg::Field(field));
            }
            '[' => {
                let mut inner = String::new();
                loop {
                    match chars.next()? {
                        ']' => break,
                        ch => inner.push(ch),
                    }
                }
                let inner = inner.trim();
                if inner == "*" {
                    segs.push(Seg::Wildcard);
                } else if let Ok(i) = inner.parse::<i64>() {
                    segs.push(Seg::Index(i));
                } else if inner.len() >= 2
                    && ((inner.starts_with('\'') && inner.ends_with('\''))
                        || (inner.starts_with('"') && inner.ends_with('"')))
                {
                    segs.push(Seg::Field(inner[1..inner.len() - 1].to_string()));
                } else {
                    return None;
                }
            }
            _ => return None,
        }
    }
    Some(segs)
}

fn eval<'a>(segs: &[Seg], root: &'a Value) -> Vec<&'a Value> {
    let mut cur = vec![root];
    for seg in segs {
        let mut next = Vec::new();
        for v in cur {
            match seg {
                Seg::Field(f) => {
                    if let Some(x) = v.get(f.as_str()) {
                        next.push(x);
                    }
                }
                Seg::Index(i) => {
                    if let Some(a) = v.as_array() {
                        let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                        if let Some(x) = usize::try_from(idx).ok().and_then(|i| a.get(i)) {
                            next.push(x);
                        }
                    }
                }
                Seg::Wildcard => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(o) => next.extend(o.values()),
                    _ => {}
                },
            }
        }
        cur = next;
    }
    cur
}

/// Column definitions for a CRD version: NAME, then each declared column
/// (an empty list yields AGE from `.metadata.creationTimestamp`).
pub(crate) fn columns(cols: &Value) -> (Vec<ColumnDef>, Vec<Column>) {
    let mut declared: Vec<Value> = cols.as_array().cloned().unwrap_or_default();
    if declared.is_empty() {
        declared.push(json!({
            "name": "Age",
            "type": "date",
            "jsonPath": ".metadata.creationTimestamp",
            "description": "Time elapsed since the object was created."
        }));
    }
    let mut defs = vec![name_col()];
    let mut out = Vec::new();
    for col in &declared {
        let text = |k: &str| {
            col.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let path_text = text("jsonPath");
        let mut description = text("description");
        if description.is_empty() {
            description = format!("Custom resource column, JSONPath {path_text}");
        }
        defs.push(ColumnDef {
            name: text("name"),
            ty: text("type"),
            format: text("format"),
            description,
            priority: col.get("priority").and_then(Value::as_i64).unwrap_or(0),
        });
        out.push(Column {
            ty: text("type"),
            path: parse_path(&path_text),
        });
    }
    (defs, out)
}

fn print_text(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::String(s) => json!(s),
        Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_) => {
            json!(v.to_string())
        }
    }
}

fn cell(ty: &str, v: &Value, now: i64) -> Value {
    match ty {
        "string" => print_text(v),
        "integer" => match v {
            Value::Number(n) => n.as_i64().map(Value::from).unwrap_or_else(|| {
                #[allow(clippy::cast_possible_truncation)]
                n.as_f64().map_or(Value::Null, |f| json!(f as i64))
            }),
            _ => Value::Null,
        },
        "number" => v.as_f64().map_or(Value::Null, |f| json!(f)),
        "boolean" => v.as_bool().map_or(Value::Null, Value::from),
        "date" => match v.as_str() {
            Some(s) => match parse_rfc3339(s) {
                Some(t) => json!(human_duration(now - t)),
                None => json!("<invalid>"),
            },
            None => Value::Null,
        },
        _ => Value::Null,
    }
}

pub(crate) fn cells(cols: &[Column], obj: &Value, now: i64) -> Vec<Value> {
    let mut out = vec![name(obj)];
    for col in cols {
        let first = col
            .path
            .as_ref()
            .and_then(|p| eval(p, obj).into_iter().next());
        out.push(first.map_or(Value::Null, |v| cell(&col.ty, v, now)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parsing_table() {
        let cases: &[(&str, &str, Option<Vec<Seg>>)] = &[
            (
                "dotted",
                ".spec.replicas",
                Some(vec![
                    Seg::Field("spec".into()),
                    Seg::Field("replicas".into()),
                ]),
            ),
            (
                "braced",
                "{.spec.x}",
                Some(vec![Seg::Field("spec".into()), Seg::Field("x".into())]),
            ),
            (
                "index",
                ".a[0].b",
                Some(vec![
                    Seg::Field("a".into()),
                    Seg::Index(0),
                    Seg::Field("b".into()),
                ]),
            ),
            (
                "wildcard",
                ".a[*].b",
                Some(vec![
                    Seg::Field("a".into()),
                    Seg::Wildcard,
                    Seg::Field("b".into()),
                ]),
            ),
            (
                "quoted_key",
                ".m['x.y']",
                Some(vec![Seg::Field("m".into()), Seg::Field("x.y".into())]),
            ),
            (
                "escaped_dot",
                r".m.x\.y",
                Some(vec![Seg::Field("m".into()), Seg::Field("x.y".into())]),
            ),
            ("no_leading_dot", "spec.x", None),
            ("filter_unsupported", ".a[?(@.x)]", None),
        ];
        for (name, p, want) in cases {
            assert_eq!(&parse_path(p), want, "{name}");
        }
    }
}
