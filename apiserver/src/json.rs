//! JSON within upstream's limits: how deep a document may nest and how large a stored
//! object may be. Everything the server stores passes [`check_object`], and everything
//! it reads goes through [`from_slice`], so no stored record is ever unreadable.
//!
//! serde_json on its own stops at 128 levels; upstream's decoder reads up to 10,000
//! (`k8s.io/apimachinery/pkg/util/json`, "exceeded max depth of 10000"). Documents under
//! 128 levels take serde_json's ordinary path; deeper ones are measured first, in linear
//! time and without recursion, and read without serde_json's limit only when they are
//! within ours. The threads that handle them have stacks sized for that depth (see
//! `STACK_BYTES`).

use serde::de::DeserializeOwned;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

/// The deepest nesting of objects and arrays accepted in a request, as upstream's decoder.
pub const MAX_DEPTH: usize = 10_000;

/// The deepest nesting stored: an accepted object plus what the server adds to it
/// (`metadata.managedFields[i].fieldsV1` mirrors the object's fields five levels down,
/// with `{}` for each leaf).
pub const MAX_STORED_DEPTH: usize = MAX_DEPTH + 8;

/// The largest object storage takes: etcd's default request limit (`--max-request-bytes`,
/// 1.5 MiB), which upstream's apiserver inherits.
pub const MAX_OBJECT_BYTES: usize = 3 * 512 * 1024;

/// Stack for every thread that may handle a document [`MAX_DEPTH`] deep: parsing,
/// cloning, serializing and dropping such a `Value` each recurse once per level (about
/// 1.5 KiB a level in a release build, three times that in a debug build). Only the
/// pages a deep document really touches are ever committed.
pub const STACK_BYTES: usize = 256 * 1024 * 1024;

/// Depth at which serde_json's own recursion limit may stop a document.
const SERDE_LIMIT: usize = 127;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("exceeded max depth of {0}")]
    TooDeep(usize),
    #[error("{0}")]
    Syntax(#[from] serde_json::Error),
}

/// The bytes of a JSON text outside its string literals, with their index: what gives
/// the text its structure. The opening quote of each string is included; the string's
/// content and closing quote are not.
pub fn structural(text: &[u8]) -> impl Iterator<Item = (usize, u8)> + '_ {
    let (mut in_string, mut escaped) = (false, false);
    text.iter().enumerate().filter_map(move |(i, &b)| {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            return None;
        }
        in_string = b == b'"';
        Some((i, b))
    })
}

/// How deeply objects and arrays nest in a JSON text (0 for a scalar), counted in one
/// pass that skips strings. Malformed text gets a count too; the parser rejects it later.
pub fn nesting(text: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for (_, b) in structural(text) {
        match b {
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Parses a request's JSON, nested at most [`MAX_DEPTH`] levels.
pub fn from_slice<T: DeserializeOwned>(text: &[u8]) -> Result<T, Error> {
    parse(text, MAX_DEPTH)
}

/// Parses a stored object, nested at most [`MAX_STORED_DEPTH`] levels.
pub fn from_stored<T: DeserializeOwned>(text: &[u8]) -> Result<T, Error> {
    parse(text, MAX_STORED_DEPTH)
}

fn parse<T: DeserializeOwned>(text: &[u8], limit: usize) -> Result<T, Error> {
    match serde_json::from_slice(text) {
        Ok(v) => Ok(v),
        Err(e) => {
            let depth = nesting(text);
            if depth > limit {
                return Err(Error::TooDeep(limit));
            }
            if depth < SERDE_LIMIT {
                return Err(e.into());
            }
            let mut de = serde_json::Deserializer::from_slice(text);
            de.disable_recursion_limit();
            let value = T::deserialize(&mut de)?;
            de.end()?;
            Ok(value)
        }
    }
}

/// How deeply objects and arrays nest in a value (0 for a scalar), without recursion.
pub fn depth(value: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Object(m) => stack.extend(m.values().map(|c| (c, d + 1))),
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, d + 1))),
            _ => continue,
        }
        max = max.max(d + 1);
    }
    max
}

/// How many bytes `value` takes as compact JSON, without building the text.
pub fn encoded_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter(0);
    // Writing into a counter cannot fail, and a `Value` always serializes.
    let _ = serde_json::to_writer(&mut c, value);
    c.0
}

/// The JSON upstream's encoder writes for a value: every object (one with `metadata`)
/// starts with `kind` then `apiVersion`, as Go's `TypeMeta` comes first; other fields
/// keep their order.
pub fn to_vec(value: &Value) -> Vec<u8> {
    serde_json::to_vec(&Upstream(value)).unwrap_or_default()
}

/// A value serialized in upstream's field order.
struct Upstream<'a>(&'a Value);

const TYPE_FIELDS: [&str; 2] = ["kind", "apiVersion"];

impl Serialize for Upstream<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(m) => {
                let typed = m.contains_key("metadata");
                let mut map = s.serialize_map(Some(m.len()))?;
                if typed {
                    for k in TYPE_FIELDS {
                        if let Some(v) = m.get(k) {
                            map.serialize_entry(k, &Upstream(v))?;
                        }
                    }
                }
                for (k, v) in m {
                    if !(typed && TYPE_FIELDS.contains(&k.as_str())) {
                        map.serialize_entry(k, &Upstream(v))?;
                    }
                }
                map.end()
            }
            Value::Array(a) => s.collect_seq(a.iter().map(Upstream)),
            other => other.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}1{}", "{\"a\":".repeat(levels), "}".repeat(levels))
    }

    #[test]
    fn nesting_counts_objects_and_arrays_but_not_brackets_in_strings() {
        for (name, text, want) in [
            ("scalar", r#""x""#, 0),
            ("flat", r#"{"a":1,"b":[1,2]}"#, 2),
            ("brackets_in_strings", r#"{"a":"{{[[\"{"}"#, 1),
            ("deep", &nested(300), 300),
        ] {
            assert_eq!(nesting(text.as_bytes()), want, "{name}");
        }
    }

    #[test]
    fn documents_deeper_than_serde_json_reads_are_read_up_to_the_limit() {
        // Run where the stack is what the server's threads get.
        std::thread::Builder::new()
            .stack_size(STACK_BYTES)
            .spawn(|| {
                let v: Value =
                    from_slice(nested(MAX_DEPTH).as_bytes()).expect("10,000 levels are read");
                assert_eq!(depth(&v), MAX_DEPTH);
                assert!(matches!(
                    from_slice::<Value>(nested(MAX_DEPTH + 1).as_bytes()),
                    Err(Error::TooDeep(MAX_DEPTH))
                ));
                let stored = nested(MAX_STORED_DEPTH);
                assert!(
                    from_stored::<Value>(stored.as_bytes()).is_ok(),
                    "what is stored is read"
                );
                assert!(
                    from_slice::<Value>(stored.as_bytes()).is_err(),
                    "but not taken in a request"
                );
                // A syntax error in a shallow document is reported as such.
                let err = from_slice::<Value>(b"{\"a\":}").unwrap_err();
                assert!(matches!(err, Error::Syntax(_)), "{err}");
                assert_eq!(
                    from_slice::<Value>(nested(200).as_bytes())
                        .map(|v| depth(&v))
                        .ok(),
                    Some(200)
                );
                let text = serde_json::to_vec(&v).expect("serializes");
                assert_eq!(text.len(), encoded_len(&v));
            })
            .expect("spawning a thread")
            .join()
            .expect("the deep document is handled without overflowing the stack");
    }
}
