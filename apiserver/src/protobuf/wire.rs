//! A minimal protobuf wire format: a reader of varint, 64-bit, length-delimited and 32-bit
//! fields, and a writer of the few field kinds the server encodes (the `/openapi/v2` document).

/// One field's value as it is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl WireValue<'_> {
    /// The wire type's name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            WireValue::Varint(_) => "varint",
            WireValue::Fixed64(_) => "64-bit",
            WireValue::Bytes(_) => "length-delimited",
            WireValue::Fixed32(_) => "32-bit",
        }
    }
}

/// What went wrong, and at which byte offset of the buffer being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub offset: usize,
    pub reason: String,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

/// Reads the fields of one encoded message in order.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn error(&self, reason: impl Into<String>) -> WireError {
        WireError {
            offset: self.pos,
            reason: reason.into(),
        }
    }

    /// A base-128 varint of at most 10 bytes.
    pub fn varint(&mut self) -> Result<u64, WireError> {
        let start = self.pos;
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                self.pos = start;
                return Err(self.error("truncated varint"));
            };
            self.pos += 1;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        self.pos = start;
        Err(self.error("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], WireError> {
        match self.pos.checked_add(n).filter(|&end| end <= self.buf.len()) {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.error(format!(
                "truncated {what}: {n} bytes announced, {} left",
                self.buf.len() - self.pos
            ))),
        }
    }

    /// The next field's number and value, or `None` at the end of the buffer.
    pub fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, WireError> {
        if self.is_empty() {
            return Ok(None);
        }
        let start = self.pos;
        let key = self.varint()?;
        let tag = key >> 3;
        if tag == 0 || tag > u64::from(u32::MAX >> 3) {
            self.pos = start;
            return Err(self.error(format!("invalid field number {tag}")));
        }
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::Fixed64(self.fixed64()?),
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| self.error("length out of range"))?;
                WireValue::Bytes(self.take(len, "length-delimited field")?)
            }
            5 => WireValue::Fixed32(u32::from_le_bytes(self.fixed::<4>()?)),
            3 | 4 => {
                self.pos = start;
                return Err(self.error(format!("field {tag} uses groups, which are not supported")));
            }
            t => {
                self.pos = start;
                return Err(self.error(format!("field {tag} has invalid wire type {t}")));
            }
        };
        Ok(Some((tag as u32, value)))
    }

    /// 8 little-endian bytes (a 64-bit field's value, or one element of a packed double run).
    pub fn fixed64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.fixed::<8>()?))
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let s = self.take(N, "fixed-width field")?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }
}

/// Builds one message, field by field, with proto3's rule that scalars at their default
/// (an empty string, `false`, 0) are left out; nested messages are always written.
#[derive(Debug, Default, Clone)]
pub struct Writer(Vec<u8>);

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, tag: u32, wire_type: u8) {
        self.varint(u64::from(tag) << 3 | u64::from(wire_type));
    }

    /// A length-delimited field, written even when empty.
    pub fn bytes(&mut self, tag: u32, b: &[u8]) -> &mut Writer {
        self.key(tag, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    pub fn string(&mut self, tag: u32, s: &str) -> &mut Writer {
        if !s.is_empty() {
            self.bytes(tag, s.as_bytes());
        }
        self
    }

    pub fn message(&mut self, tag: u32, m: &Writer) -> &mut Writer {
        self.bytes(tag, &m.0)
    }

    pub fn bool(&mut self, tag: u32, b: bool) -> &mut Writer {
        if b {
            self.key(tag, 0);
            self.varint(1);
        }
        self
    }

    /// A bool member of a oneof: written even when false, as its presence is the choice.
    pub fn oneof_bool(&mut self, tag: u32, b: bool) -> &mut Writer {
        self.key(tag, 0);
        self.varint(u64::from(b));
        self
    }

    pub fn int64(&mut self, tag: u32, v: i64) -> &mut Writer {
        if v != 0 {
            self.key(tag, 0);
            self.varint(v as u64);
        }
        self
    }

    pub fn double(&mut self, tag: u32, v: f64) -> &mut Writer {
        if v != 0.0 {
            self.key(tag, 1);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        self
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wire_type_is_read() {
        // 1: varint 300; 2: bytes "hi"; 3: fixed64 1; 4: fixed32 2
        let buf = [
            0x08, 0xac, 0x02, 0x12, 2, b'h', b'i', 0x19, 1, 0, 0, 0, 0, 0, 0, 0, 0x25, 2, 0, 0, 0,
        ];
        let mut r = Reader::new(&buf);
        assert_eq!(r.next_field().unwrap(), Some((1, WireValue::Varint(300))));
        assert_eq!(r.next_field().unwrap(), Some((2, WireValue::Bytes(b"hi"))));
        assert_eq!(r.next_field().unwrap(), Some((3, WireValue::Fixed64(1))));
        assert_eq!(r.next_field().unwrap(), Some((4, WireValue::Fixed32(2))));
        assert_eq!(r.next_field().unwrap(), None);
    }

    #[test]
    fn what_the_writer_writes_the_reader_reads_back() {
        let mut inner = Writer::new();
        inner.string(1, "x");
        let mut w = Writer::new();
        w.string(1, "hi")
            .string(2, "")
            .bool(3, true)
            .bool(4, false)
            .int64(5, 300)
            .double(6, 1.5)
            .message(7, &Writer::new())
            .message(8, &inner);
        let buf = w.into_bytes();
        let mut r = Reader::new(&buf);
        assert_eq!(r.next_field().unwrap(), Some((1, WireValue::Bytes(b"hi"))));
        assert_eq!(r.next_field().unwrap(), Some((3, WireValue::Varint(1))));
        assert_eq!(r.next_field().unwrap(), Some((5, WireValue::Varint(300))));
        assert_eq!(
            r.next_field().unwrap(),
            Some((6, WireValue::Fixed64(1.5f64.to_bits())))
        );
        assert_eq!(r.next_field().unwrap(), Some((7, WireValue::Bytes(b""))));
        assert_eq!(
            r.next_field().unwrap(),
            Some((8, WireValue::Bytes(&[0x0a, 1, b'x'])))
        );
        assert_eq!(r.next_field().unwrap(), None);
    }

    #[test]
    fn truncated_input_is_an_error_with_its_offset() {
        assert_eq!(
            Reader::new(&[0x12, 5, b'a'])
                .next_field()
                .unwrap_err()
                .offset,
            2
        );
        assert!(Reader::new(&[0x08, 0x80]).next_field().is_err());
        assert!(Reader::new(&[0x0b])
            .next_field()
            .unwrap_err()
            .reason
            .contains("groups"));
    }
}
