//! Decoding of one typed protobuf message into the JSON object its JSON encoding would be,
//! driven by the generated descriptors.

use std::cell::Cell;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::descriptors::{Descriptors, Field, Scalar, Type};
use super::special::{self, Special};
use super::wire::{Reader, WireValue};
use super::ProtobufError;

/// How deep messages may nest (a body is attacker-controlled; recursion must not exhaust the stack).
pub(super) const MAX_DEPTH: usize = 256;

/// The descriptors, and how deep the decoder currently is.
pub(super) struct Ctx<'d> {
    d: &'d Descriptors,
    depth: Cell<usize>,
}

impl<'d> Ctx<'d> {
    pub(super) fn new(d: &'d Descriptors, depth: usize) -> Ctx<'d> {
        Ctx {
            d,
            depth: Cell::new(depth),
        }
    }

    pub(super) fn depth(&self) -> usize {
        self.depth.get()
    }

    fn enter(&self, path: &str) -> Result<Depth<'_>, ProtobufError> {
        let depth = self.depth.get() + 1;
        if depth > MAX_DEPTH {
            return Err(malformed(
                path,
                format!("messages nest deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.depth.set(depth);
        Ok(Depth(&self.depth))
    }
}

impl std::ops::Deref for Ctx<'_> {
    type Target = Descriptors;
    fn deref(&self) -> &Descriptors {
        self.d
    }
}

/// Leaves one nesting level when dropped.
struct Depth<'a>(&'a Cell<usize>);

impl Drop for Depth<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

const JSON_SCHEMA_PROPS: &str = "apiextensions_apiserver.pkg.apis.apiextensions.v1.JsonSchemaProps";

fn malformed(path: &str, reason: impl std::fmt::Display) -> ProtobufError {
    let at = if path.is_empty() {
        "the top level".to_owned()
    } else {
        path.to_owned()
    };
    ProtobufError::Malformed {
        at,
        reason: reason.to_string(),
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn next<'a>(r: &mut Reader<'a>, path: &str) -> Result<Option<(u32, WireValue<'a>)>, ProtobufError> {
    r.next_field().map_err(|e| malformed(path, e))
}

fn bytes<'a>(v: WireValue<'a>, path: &str, what: &str) -> Result<&'a [u8], ProtobufError> {
    match v {
        WireValue::Bytes(b) => Ok(b),
        other => Err(malformed(
            path,
            format!(
                "expected {what} (length-delimited), found a {} field",
                other.type_name()
            ),
        )),
    }
}

/// Decodes message `msg`; `None` when its JSON form is absent (a zero Time, an empty RawExtension).
pub(super) fn message(
    d: &Ctx<'_>,
    msg: &str,
    buf: &[u8],
    path: &str,
) -> Result<Option<Value>, ProtobufError> {
    match Special::of(msg) {
        Some(s) => special(d, s, buf, path),
        None => Ok(Some(Value::Object(object(d, msg, buf, path)?))),
    }
}

/// Decodes a plain message into a JSON object.
pub(super) fn object(
    d: &Ctx<'_>,
    msg: &str,
    buf: &[u8],
    path: &str,
) -> Result<Map<String, Value>, ProtobufError> {
    let _level = d.enter(path)?;
    let fields = d
        .messages
        .get(msg)
        .ok_or_else(|| malformed(path, format!("no descriptor for message {msg}")))?;
    let mut out = Map::new();
    let mut r = Reader::new(buf);
    while let Some((tag, v)) = next(&mut r, path)? {
        // Fields this table does not know (newer than it) are skipped, as protobuf readers do.
        let Some(f) = fields.get(&tag) else { continue };
        let fpath = join(path, &f.name);
        if f.map {
            let (k, val) = map_entry(d, f, bytes(v, &fpath, "a map entry")?, &fpath)?;
            let slot = out
                .entry(f.name.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = slot {
                m.insert(k, val);
            }
        } else if f.repeated {
            let slot = out
                .entry(f.name.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = slot {
                repeated(d, &f.ty, v, &fpath, items)?;
            }
        } else if f.inline {
            let Type::Message(m) = &f.ty else {
                return Err(malformed(&fpath, "inline scalar"));
            };
            out.extend(object(d, m, bytes(v, &fpath, "a message")?, path)?);
        } else {
            let val = value(d, &f.ty, v, &fpath)?.filter(|val| !unset_string(msg, f, val));
            match (val, out.get_mut(&f.name)) {
                // A message field seen twice is merged, as protobuf does.
                (Some(Value::Object(new)), Some(Value::Object(old))) => old.extend(new),
                (Some(val), _) => {
                    out.insert(f.name.clone(), val);
                }
                (None, _) => {
                    out.remove(&f.name);
                }
            }
        }
    }
    Ok(out)
}

/// `*string` fields where `""` differs from unset (a PVC's `storageClassName: ""` means no class).
const EMPTY_IS_SET: &[(&str, &str)] = &[
    ("api.core.v1.PersistentVolumeClaimSpec", "storageClassName"),
    (
        "api.core.v1.PersistentVolumeClaimSpec",
        "volumeAttributesClassName",
    ),
];

/// Whether `val` is an empty string that Go clients send for an unset field.
///
/// Go's generated marshallers write every non-pointer string field, set or not, so
/// `imagePullPolicy: ""` on the wire means the client left it unset; its JSON form omits it.
fn unset_string(msg: &str, f: &Field, val: &Value) -> bool {
    f.ty == Type::Scalar(Scalar::String)
        && val.as_str() == Some("")
        && !EMPTY_IS_SET.contains(&(msg, f.name.as_str()))
}

/// One value of type `ty`.
fn value(
    d: &Ctx<'_>,
    ty: &Type,
    v: WireValue<'_>,
    path: &str,
) -> Result<Option<Value>, ProtobufError> {
    match ty {
        Type::Scalar(s) => scalar(*s, v, path).map(Some),
        Type::Message(m) => message(d, m, bytes(v, path, "a message")?, path),
    }
}

fn string(v: WireValue<'_>, path: &str) -> Result<String, ProtobufError> {
    String::from_utf8(bytes(v, path, "a string")?.to_vec())
        .map_err(|_| malformed(path, "string is not valid UTF-8"))
}

fn scalar(s: Scalar, v: WireValue<'_>, path: &str) -> Result<Value, ProtobufError> {
    Ok(match (s, v) {
        (Scalar::String, v @ WireValue::Bytes(_)) => Value::String(string(v, path)?),
        (Scalar::Bytes, WireValue::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Scalar::Bool, WireValue::Varint(x)) => Value::Bool(x != 0),
        (Scalar::Int32, WireValue::Varint(x)) => Value::from(x as i32),
        (Scalar::Int64, WireValue::Varint(x)) => Value::from(x as i64),
        (Scalar::Double, WireValue::Fixed64(x)) => special::double(f64::from_bits(x))
            .ok_or_else(|| malformed(path, "double is not a finite number"))?,
        (s, v) => {
            return Err(malformed(
                path,
                format!("expected {s:?}, found a {} field", v.type_name()),
            ))
        }
    })
}

/// Appends one occurrence of a repeated field: one element, or a packed run of numbers.
fn repeated(
    d: &Ctx<'_>,
    ty: &Type,
    v: WireValue<'_>,
    path: &str,
    items: &mut Vec<Value>,
) -> Result<(), ProtobufError> {
    let packable = matches!(
        ty,
        Type::Scalar(Scalar::Bool | Scalar::Int32 | Scalar::Int64 | Scalar::Double)
    );
    match (ty, v) {
        (Type::Scalar(s), WireValue::Bytes(run)) if packable => {
            let mut r = Reader::new(run);
            while !r.is_empty() {
                let ipath = format!("{path}[{}]", items.len());
                let item = if *s == Scalar::Double {
                    WireValue::Fixed64(r.fixed64().map_err(|e| malformed(&ipath, e))?)
                } else {
                    WireValue::Varint(r.varint().map_err(|e| malformed(&ipath, e))?)
                };
                items.push(scalar(*s, item, &ipath)?);
            }
        }
        _ => {
            let ipath = format!("{path}[{}]", items.len());
            // An element whose JSON form is absent (a zero Time) is kept as null to keep positions.
            items.push(value(d, ty, v, &ipath)?.unwrap_or(Value::Null));
        }
    }
    Ok(())
}

/// One `map<string, V>` entry: key 1, value 2 (absent parts take their zero values).
fn map_entry(
    d: &Ctx<'_>,
    f: &Field,
    buf: &[u8],
    path: &str,
) -> Result<(String, Value), ProtobufError> {
    let mut key = String::new();
    let mut val = None;
    let mut r = Reader::new(buf);
    while let Some((tag, v)) = next(&mut r, path)? {
        match tag {
            1 => key = string(v, path)?,
            2 => val = Some(v),
            _ => {}
        }
    }
    let vpath = format!("{path}[{key:?}]");
    let val = match (val, &f.ty) {
        (Some(v), ty) => value(d, ty, v, &vpath)?,
        (None, Type::Scalar(_)) => Some(Value::String(String::new())),
        (None, Type::Message(m)) => message(d, m, &[], &vpath)?,
    };
    Ok((key, val.unwrap_or(Value::Null)))
}

/// The JSON forms of [`Special`] messages.
fn special(
    d: &Ctx<'_>,
    s: Special,
    buf: &[u8],
    path: &str,
) -> Result<Option<Value>, ProtobufError> {
    let mut ints = [0i64; 3];
    let mut strs: [Option<Value>; 4] = Default::default();
    let mut list = Vec::new();
    let mut r = Reader::new(buf);
    while let Some((tag, v)) = next(&mut r, path)? {
        let i = tag as usize;
        match (s, tag, v) {
            (Special::Quantity, 1, v) | (Special::IntOrString, 3, v) => {
                strs[i] = Some(scalar(Scalar::String, v, path)?)
            }
            (
                Special::IntOrString | Special::Time | Special::MicroTime | Special::Duration,
                1 | 2,
                WireValue::Varint(x),
            ) => ints[i] = x as i64,
            (Special::SchemaOrBool, 1, WireValue::Varint(x)) => ints[1] = x as i64,
            (Special::RawJson, 1, v) => {
                strs[1] = Some(raw_json(d, bytes(v, path, "raw JSON")?, path)?)
            }
            (Special::SchemaOrArray | Special::SchemaOrStringArray, 1, v)
            | (Special::SchemaOrBool, 2, v) => {
                strs[2] = Some(Value::Object(object(
                    d,
                    JSON_SCHEMA_PROPS,
                    bytes(v, path, "a schema")?,
                    path,
                )?));
            }
            (Special::SchemaOrArray, 2, v) => {
                let ipath = format!("{path}[{}]", list.len());
                list.push(Value::Object(object(
                    d,
                    JSON_SCHEMA_PROPS,
                    bytes(v, &ipath, "a schema")?,
                    &ipath,
                )?));
            }
            (Special::SchemaOrStringArray, 2, v) | (Special::StringList, 1, v) => {
                list.push(scalar(Scalar::String, v, path)?)
            }
            (s, t, v) if s.has_field(t) => {
                return Err(malformed(
                    path,
                    format!("field {t} of {s:?} cannot be a {} field", v.type_name()),
                ))
            }
            _ => {}
        }
    }
    Ok(match s {
        // Go's resource.Quantity prints its zero value as "0".
        Special::Quantity => Some(strs[1].take().unwrap_or_else(|| Value::String("0".into()))),
        Special::IntOrString if ints[1] == 1 => Some(
            strs[3]
                .take()
                .unwrap_or_else(|| Value::String(String::new())),
        ),
        Special::IntOrString => Some(Value::from(ints[2] as i32)),
        // The zero time is Go's unset time: its JSON form is null, so the field is left out.
        Special::Time | Special::MicroTime if ints[1] == 0 && ints[2] == 0 => None,
        Special::Time => Some(Value::String(special::rfc3339(
            ints[1],
            ints[2] as i32,
            false,
        ))),
        Special::MicroTime => Some(Value::String(special::rfc3339(
            ints[1],
            ints[2] as i32,
            true,
        ))),
        Special::Duration => Some(Value::String(special::go_duration(ints[1]))),
        Special::RawJson => strs[1].take().filter(|v| !v.is_null()),
        Special::SchemaOrArray | Special::SchemaOrStringArray if !list.is_empty() => {
            Some(Value::Array(list))
        }
        Special::SchemaOrArray | Special::SchemaOrStringArray => strs[2].take(),
        Special::SchemaOrBool => Some(strs[2].take().unwrap_or(Value::Bool(ints[1] != 0))),
        Special::StringList => Some(Value::Array(list)),
    })
}

/// The JSON of a RawExtension / FieldsV1 / JSON: raw JSON bytes, or a nested protobuf object.
fn raw_json(d: &Ctx<'_>, raw: &[u8], path: &str) -> Result<Value, ProtobufError> {
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    if raw.starts_with(&super::MAGIC) {
        return super::decode_body_at(raw, d.depth())
            .map_err(|e| malformed(path, format!("embedded object: {e}")));
    }
    crate::json::from_slice(raw)
        .map_err(|e| malformed(path, format!("raw bytes are not JSON: {e}")))
}
