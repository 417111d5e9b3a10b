//! A tiny protobuf encoder for building test bodies.

use super::super::MAGIC;

/// A message under construction.
#[derive(Default, Clone)]
pub(crate) struct Msg(Vec<u8>);

pub(crate) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

impl Msg {
    pub(crate) fn new() -> Msg {
        Msg::default()
    }
    pub(crate) fn key(mut self, tag: u32, wire: u8) -> Msg {
        put_varint(&mut self.0, u64::from(tag) << 3 | u64::from(wire));
        self
    }
    pub(crate) fn int(self, tag: u32, v: i64) -> Msg {
        let mut m = self.key(tag, 0);
        put_varint(&mut m.0, v as u64);
        m
    }
    pub(crate) fn bytes(self, tag: u32, b: &[u8]) -> Msg {
        let mut m = self.key(tag, 2);
        put_varint(&mut m.0, b.len() as u64);
        m.0.extend_from_slice(b);
        m
    }
    pub(crate) fn str(self, tag: u32, s: &str) -> Msg {
        self.bytes(tag, s.as_bytes())
    }
    pub(crate) fn msg(self, tag: u32, m: Msg) -> Msg {
        self.bytes(tag, &m.0)
    }
    /// One `map<string, string|bytes>` entry.
    pub(crate) fn entry(self, tag: u32, k: &str, v: &[u8]) -> Msg {
        self.msg(tag, Msg::new().str(1, k).bytes(2, v))
    }
    /// Raw bytes after a key (a fixed-width value).
    pub(crate) fn fixed(mut self, b: &[u8]) -> Msg {
        self.0.extend_from_slice(b);
        self
    }
    /// A packed run of varints.
    pub(crate) fn packed(self, tag: u32, vs: &[i64]) -> Msg {
        let mut run = Vec::new();
        for &v in vs {
            put_varint(&mut run, v as u64);
        }
        self.bytes(tag, &run)
    }
}

/// A whole body: magic, then runtime.Unknown with empty contentEncoding and contentType, as Go writes it.
pub(crate) fn body(api_version: &str, kind: &str, raw: Msg) -> Vec<u8> {
    let unknown = Msg::new()
        .msg(1, Msg::new().str(1, api_version).str(2, kind))
        .msg(2, raw)
        .str(3, "")
        .str(4, "");
    let mut out = MAGIC.to_vec();
    out.extend(unknown.0);
    out
}
