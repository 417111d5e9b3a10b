//! SPDY/3.1 framing as Go's spdystream (kubectl, client-go, the apiserver) speaks it: control
//! frames SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS and
//! WINDOW_UPDATE, and data frames. Header blocks are zlib streams primed with SPDY's
//! dictionary, one stream per direction for the whole connection, each block ending in a
//! sync flush. [`session`] multiplexes streams over it.

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt};

pub(super) mod session;

/// The `Upgrade` header value of a SPDY request and its 101.
pub(crate) const UPGRADE: &str = "SPDY/3.1";

const VERSION: u16 = 3;
const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;
pub(super) const FLAG_FIN: u8 = 0x01;
/// The largest data frame this side sends (the format allows 16 MiB).
pub(super) const MAX_DATA: usize = 64 * 1024;

/// A header block: lowercase names, values with several parts joined by NUL.
pub(super) type Headers = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Frame {
    SynStream {
        id: u32,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        id: u32,
        status: u32,
    },
    Ping(u32),
    GoAway {
        last_id: u32,
        status: u32,
    },
    Headers {
        id: u32,
        headers: Headers,
    },
    WindowUpdate {
        id: u32,
        delta: u32,
    },
    Data {
        id: u32,
        flags: u8,
        data: Bytes,
    },
    /// SETTINGS and types this side has no use for.
    Other,
}

/// The SPDY/3 header compression dictionary (draft 3, 2.6.10.1): length-prefixed header
/// names and values, then a run of common status codes, dates and values.
pub(super) fn dictionary() -> Vec<u8> {
    const WORDS: [&str; 65] = [
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: [&str; 4] = [
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable",
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    ];
    let mut dict = Vec::with_capacity(1423);
    for word in WORDS {
        dict.extend_from_slice(&(word.len() as u32).to_be_bytes());
        dict.extend_from_slice(word.as_bytes());
    }
    for part in TAIL {
        dict.extend_from_slice(part.as_bytes());
    }
    dict
}

fn invalid(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// Inflates the peer's header blocks (one zlib stream across the connection).
pub(super) struct HeaderDecoder {
    z: Decompress,
}

impl HeaderDecoder {
    pub(super) fn new() -> Self {
        HeaderDecoder {
            z: Decompress::new(true),
        }
    }

    pub(super) fn decode(&mut self, block: &[u8]) -> std::io::Result<Headers> {
        let raw = self.inflate(block)?;
        parse_block(&raw)
    }

    fn inflate(&mut self, block: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(block.len() * 4 + 256);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 256 {
                out.reserve(out.capacity().max(1024));
            }
            let (in_before, out_before) = (self.z.total_in(), self.z.total_out());
            let result = self
                .z
                .decompress_vec(&block[pos..], &mut out, FlushDecompress::Sync);
            pos += (self.z.total_in() - in_before) as usize;
            let progressed = self.z.total_in() != in_before || self.z.total_out() != out_before;
            match result {
                Ok(_) => {
                    let room_left = out.len() < out.capacity();
                    if pos >= block.len() && room_left {
                        return Ok(out);
                    }
                    if !progressed && room_left {
                        return Err(invalid("truncated SPDY header block"));
                    }
                }
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(&dictionary())
                        .map_err(|e| invalid(format!("SPDY header dictionary: {e}")))?;
                }
                Err(e) => return Err(invalid(format!("SPDY header block: {e}"))),
            }
        }
    }
}

/// Deflates this side's header blocks.
pub(super) struct HeaderEncoder {
    z: Compress,
}

impl HeaderEncoder {
    pub(super) fn new() -> Self {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(&dictionary())
            .expect("a fresh deflate stream takes a dictionary");
        HeaderEncoder { z }
    }

    pub(super) fn encode(&mut self, headers: &[(String, String)]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (name, value) in headers {
            for part in [name.to_ascii_lowercase().as_bytes(), value.as_bytes()] {
                raw.extend_from_slice(&(part.len() as u32).to_be_bytes());
                raw.extend_from_slice(part);
            }
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before = self.z.total_in();
            self.z
                .compress_vec(&raw[pos..], &mut out, FlushCompress::Sync)
                .expect("deflating into memory does not fail");
            pos += (self.z.total_in() - before) as usize;
            if pos >= raw.len() && out.len() < out.capacity() {
                return out;
            }
        }
    }
}

fn parse_block(raw: &[u8]) -> std::io::Result<Headers> {
    let mut rest = raw;
    let mut take = |n: usize| -> std::io::Result<&[u8]> {
        if rest.len() < n {
            return Err(invalid("short SPDY header block"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let count = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes"));
    let mut headers = Vec::new();
    for _ in 0..count {
        let mut pair = [String::new(), String::new()];
        for item in &mut pair {
            let len = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
            *item = String::from_utf8_lossy(take(len)?).into_owned();
        }
        let [name, value] = pair;
        headers.push((name.to_ascii_lowercase(), value));
    }
    Ok(headers)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads the next frame; `None` at the end of the connection.
pub(super) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    headers: &mut HeaderDecoder,
) -> std::io::Result<Option<Frame>> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let flags = head[4];
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    if head[0] & 0x80 == 0 {
        let id = be32(&head[..4]) & 0x7FFF_FFFF;
        let data = Bytes::from(payload);
        return Ok(Some(Frame::Data { id, flags, data }));
    }
    let kind = u16::from_be_bytes([head[2], head[3]]);
    let need = |n: usize| {
        if payload.len() < n {
            Err(invalid(format!("SPDY control frame {kind} is too short")))
        } else {
            Ok(())
        }
    };
    let frame = match kind {
        TYPE_SYN_STREAM => {
            need(10)?;
            Frame::SynStream {
                id: be32(&payload) & 0x7FFF_FFFF,
                flags,
                headers: headers.decode(&payload[10..])?,
            }
        }
        TYPE_SYN_REPLY => {
            need(4)?;
            Frame::SynReply {
                id: be32(&payload) & 0x7FFF_FFFF,
                flags,
                headers: headers.decode(&payload[4..])?,
            }
        }
        TYPE_HEADERS => {
            need(4)?;
            Frame::Headers {
                id: be32(&payload) & 0x7FFF_FFFF,
                headers: headers.decode(&payload[4..])?,
            }
        }
        TYPE_RST_STREAM => {
            need(8)?;
            Frame::RstStream {
                id: be32(&payload) & 0x7FFF_FFFF,
                status: be32(&payload[4..]),
            }
        }
        TYPE_PING => {
            need(4)?;
            Frame::Ping(be32(&payload))
        }
        TYPE_GOAWAY => {
            need(8)?;
            Frame::GoAway {
                last_id: be32(&payload) & 0x7FFF_FFFF,
                status: be32(&payload[4..]),
            }
        }
        TYPE_WINDOW_UPDATE => {
            need(8)?;
            Frame::WindowUpdate {
                id: be32(&payload) & 0x7FFF_FFFF,
                delta: be32(&payload[4..]) & 0x7FFF_FFFF,
            }
        }
        _ => Frame::Other,
    };
    Ok(Some(frame))
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

/// Encodes a frame; header blocks go through `headers`, so frames must be written in the
/// order they are encoded.
pub(super) fn encode(frame: &Frame, headers: &mut HeaderEncoder) -> Vec<u8> {
    match frame {
        Frame::SynStream {
            id,
            flags,
            headers: h,
        } => {
            let mut p = id.to_be_bytes().to_vec();
            p.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            p.extend(headers.encode(h));
            control(TYPE_SYN_STREAM, *flags, &p)
        }
        Frame::SynReply {
            id,
            flags,
            headers: h,
        } => {
            let mut p = id.to_be_bytes().to_vec();
            p.extend(headers.encode(h));
            control(TYPE_SYN_REPLY, *flags, &p)
        }
        Frame::Headers { id, headers: h } => {
            let mut p = id.to_be_bytes().to_vec();
            p.extend(headers.encode(h));
            control(TYPE_HEADERS, 0, &p)
        }
        Frame::RstStream { id, status } => control(TYPE_RST_STREAM, 0, &pair(*id, *status)),
        Frame::Ping(id) => control(TYPE_PING, 0, &id.to_be_bytes()),
        Frame::GoAway { last_id, status } => control(TYPE_GOAWAY, 0, &pair(*last_id, *status)),
        Frame::WindowUpdate { id, delta } => control(TYPE_WINDOW_UPDATE, 0, &pair(*id, *delta)),
        Frame::Data { id, flags, data } => {
            let mut f = data_header(*id, *flags, data.len()).to_vec();
            f.extend_from_slice(data);
            f
        }
        Frame::Other => Vec::new(),
    }
}

/// The 8 bytes before a data frame's payload.
pub(super) fn data_header(id: u32, flags: u8, len: usize) -> [u8; 8] {
    let id = id.to_be_bytes();
    let len = (len as u32).to_be_bytes();
    [
        id[0] & 0x7F,
        id[1],
        id[2],
        id[3],
        flags,
        len[1],
        len[2],
        len[3],
    ]
}

fn pair(a: u32, b: u32) -> Vec<u8> {
    let mut p = a.to_be_bytes().to_vec();
    p.extend_from_slice(&b.to_be_bytes());
    p
}

#[cfg(test)]
#[path = "spdy_tests.rs"]
mod tests;
