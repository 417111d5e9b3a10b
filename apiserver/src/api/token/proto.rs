//! The protobuf form of a TokenRequest body (kubectl and client-go send one). The kind
//! is not among the generated descriptors (authentication.k8s.io has no stored kinds),
//! and its few fields are fixed by authentication/v1's generated.proto, so they are
//! read here: TokenRequest {1 metadata, 2 spec}; ObjectMeta {1 name, 3 namespace};
//! TokenRequestSpec {1 audiences (repeated), 3 boundObjectRef, 4 expirationSeconds};
//! BoundObjectReference {1 kind, 2 apiVersion, 3 name, 4 uid}.

use serde_json::{json, Map, Value};

use crate::protobuf::wire::{Reader, WireValue};
use crate::protobuf::MAGIC;

/// Why a body was refused (for a 400).
pub(super) type Error = String;

fn text(v: WireValue<'_>, at: &str) -> Result<String, Error> {
    match v {
        WireValue::Bytes(b) => {
            String::from_utf8(b.to_vec()).map_err(|_| format!("{at} is not valid UTF-8"))
        }
        other => Err(format!(
            "{at} is a {} field, expected a string",
            other.type_name()
        )),
    }
}

fn bytes<'a>(v: WireValue<'a>, at: &str) -> Result<&'a [u8], Error> {
    match v {
        WireValue::Bytes(b) => Ok(b),
        other => Err(format!(
            "{at} is a {} field, expected a message",
            other.type_name()
        )),
    }
}

/// Reads every field of `buf`, handing each to `f`.
fn fields<'a>(
    buf: &'a [u8],
    at: &str,
    mut f: impl FnMut(u32, WireValue<'a>) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut r = Reader::new(buf);
    while let Some((tag, v)) = r
        .next_field()
        .map_err(|e| format!("malformed protobuf body in {at}: {e}"))?
    {
        f(tag, v)?;
    }
    Ok(())
}

/// The JSON form of a protobuf TokenRequest body (magic + runtime.Unknown envelope).
pub(super) fn decode(body: &[u8]) -> Result<Value, Error> {
    let rest = body
        .strip_prefix(&MAGIC)
        .ok_or("protobuf body does not start with the k8s\\0 magic bytes")?;
    let (mut kind, mut raw) = (String::new(), &[][..]);
    fields(rest, "the runtime.Unknown envelope", |tag, v| {
        match tag {
            1 => fields(bytes(v, "typeMeta")?, "typeMeta", |t, v| {
                if t == 2 {
                    kind = text(v, "typeMeta.kind")?;
                }
                Ok(())
            })?,
            2 => raw = bytes(v, "raw")?,
            3 if !text(v, "contentEncoding")?.is_empty() => {
                return Err("a protobuf body with a contentEncoding is not supported".into())
            }
            _ => {}
        }
        Ok(())
    })?;
    if kind != "TokenRequest" {
        return Err(format!("expected a TokenRequest body, got kind {kind:?}"));
    }
    let mut out = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "metadata": {}, "spec": {}});
    fields(raw, "TokenRequest", |tag, v| {
        match tag {
            1 => fields(bytes(v, "metadata")?, "metadata", |t, v| {
                match t {
                    1 => out["metadata"]["name"] = json!(text(v, "metadata.name")?),
                    3 => out["metadata"]["namespace"] = json!(text(v, "metadata.namespace")?),
                    _ => {}
                }
                Ok(())
            })?,
            2 => out["spec"] = spec(bytes(v, "spec")?)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn spec(buf: &[u8]) -> Result<Value, Error> {
    let mut spec = Map::new();
    let mut audiences = Vec::new();
    fields(buf, "spec", |tag, v| {
        match (tag, v) {
            (1, v) => audiences.push(Value::String(text(v, "spec.audiences")?)),
            (3, v) => {
                let mut r = Map::new();
                fields(
                    bytes(v, "spec.boundObjectRef")?,
                    "spec.boundObjectRef",
                    |t, v| {
                        let name = match t {
                            1 => "kind",
                            2 => "apiVersion",
                            3 => "name",
                            4 => "uid",
                            _ => return Ok(()),
                        };
                        r.insert(name.into(), Value::String(text(v, "spec.boundObjectRef")?));
                        Ok(())
                    },
                )?;
                spec.insert("boundObjectRef".into(), Value::Object(r));
            }
            (4, WireValue::Varint(n)) => {
                spec.insert("expirationSeconds".into(), json!(n as i64));
            }
            (4, other) => {
                return Err(format!(
                    "spec.expirationSeconds is a {} field, expected a varint",
                    other.type_name()
                ))
            }
            _ => {}
        }
        Ok(())
    })?;
    spec.insert("audiences".into(), Value::Array(audiences));
    Ok(Value::Object(spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Protobuf encoding of the few shapes these tests need.
    fn field(tag: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(tag << 3 | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    fn varint_field(tag: u32, mut n: u64) -> Vec<u8> {
        let mut out = vec![(tag << 3) as u8];
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    fn envelope(kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [
            field(1, b"authentication.k8s.io/v1"),
            field(2, kind.as_bytes()),
        ]
        .concat();
        [MAGIC.to_vec(), field(1, &type_meta), field(2, raw)].concat()
    }

    #[test]
    fn a_token_request_decodes_to_its_json_form() {
        let bound = [
            field(1, b"Pod"),
            field(2, b"v1"),
            field(3, b"web"),
            field(4, b"u1"),
        ]
        .concat();
        let spec = [
            field(1, b"vault"),
            field(1, b"api"),
            field(3, &bound),
            varint_field(4, 1200),
        ]
        .concat();
        let raw = [field(1, &field(3, b"prod")), field(2, &spec)].concat();
        let got = decode(&envelope("TokenRequest", &raw)).unwrap();
        assert_eq!(got["metadata"], json!({"namespace": "prod"}));
        assert_eq!(
            got["spec"],
            json!({"audiences": ["vault", "api"], "expirationSeconds": 1200,
                   "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "u1"}})
        );
    }

    #[test]
    fn other_bodies_are_refused() {
        assert!(decode(b"{}").unwrap_err().contains("magic"));
        assert!(decode(&envelope("Pod", &[]))
            .unwrap_err()
            .contains("expected a TokenRequest"));
    }
}
