//! WebSocket (RFC 6455), server side: the opening handshake with subprotocol negotiation as
//! upstream's `wsstream` does it, and the framing. A reader yields whole messages (fragments
//! joined, client masks removed); all writes go through one writer task ([`Sink`]), so the
//! streams of a session can send concurrently without interleaving frames.

use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{header_list, status_error, Body};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The largest message accepted from a client; kubectl sends at most 32 KiB at a time.
const MAX_MESSAGE: usize = 16 << 20;
/// What the reader takes from the connection at a time: a frame's 2 to 14 header bytes
/// and a small payload come out of one read, not one (TLS) read each.
const READ_BUFFER: usize = 64 * 1024;
/// What the writer gathers before it writes: a 64 KiB message and its header go out in one
/// write (one run of TLS records), not in two.
const WRITE_BUFFER: usize = 128 * 1024;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub(crate) fn accept_key(key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{GUID}").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// The subprotocol to speak: the first the client offers that `supported` holds (`""` when
/// the client offers none, as upstream), or the 403 upstream answers.
pub(crate) fn negotiate(
    headers: &HeaderMap,
    supported: &[&str],
) -> Result<String, Box<Response<Body>>> {
    let offered = header_list(headers, header::SEC_WEBSOCKET_PROTOCOL.as_str());
    let candidates = if offered.is_empty() {
        vec![String::new()]
    } else {
        offered.clone()
    };
    candidates
        .into_iter()
        .find(|p| supported.contains(&p.as_str()))
        .ok_or_else(|| {
            Box::new(status_error(
                StatusCode::FORBIDDEN,
                &format!(
                    "requested protocol(s) are not supported: [{}]; supports [{}]",
                    offered.join(" "),
                    supported.join(" ")
                ),
            ))
        })
}

/// The `101 Switching Protocols` for a WebSocket request speaking `protocol`, or a 400 when
/// the request is not a valid WebSocket opening.
pub(crate) fn accept(
    headers: &HeaderMap,
    protocol: &str,
) -> Result<Response<Body>, Box<Response<Body>>> {
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok());
    let (Some(key), true) = (key, version_ok) else {
        return Err(Box::new(status_error(
            StatusCode::BAD_REQUEST,
            "not a WebSocket handshake: Sec-WebSocket-Key and Sec-WebSocket-Version 13 are required",
        )));
    };
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept_key(key)).expect("base64 is a valid header value"),
    );
    if !protocol.is_empty() {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(protocol).expect("negotiated from a header value"),
        );
    }
    Ok(resp)
}

/// One message from the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message {
    Binary(Bytes),
    Text(Bytes),
    Ping(Bytes),
    /// The client closed (a close frame); nothing follows.
    Close,
}

/// Reads a client's messages.
pub(crate) struct Reader<R> {
    r: BufReader<R>,
    /// A fragmented message so far (a ping may arrive between its fragments).
    partial: Option<(u8, Vec<u8>)>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub(crate) fn new(r: R) -> Self {
        Reader {
            r: BufReader::with_capacity(READ_BUFFER, r),
            partial: None,
        }
    }

    /// The next message; `None` when the connection ended without a close frame.
    pub(crate) async fn next(&mut self) -> std::io::Result<Option<Message>> {
        loop {
            let mut head = [0u8; 2];
            match self.r.read_exact(&mut head).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e),
            }
            let fin = head[0] & 0x80 != 0;
            let opcode = head[0] & 0x0F;
            let masked = head[1] & 0x80 != 0;
            let len = match head[1] & 0x7F {
                126 => u64::from(self.r.read_u16().await?),
                127 => self.r.read_u64().await?,
                n => u64::from(n),
            };
            if len > MAX_MESSAGE as u64 {
                return Err(invalid(format!("a frame of {len} bytes is too large")));
            }
            let mut mask = [0u8; 4];
            if masked {
                self.r.read_exact(&mut mask).await?;
            }
            let mut payload = vec![0u8; len as usize];
            self.r.read_exact(&mut payload).await?;
            if masked {
                unmask(&mut payload, mask);
            }
            match opcode {
                OP_CLOSE => return Ok(Some(Message::Close)),
                OP_PING => return Ok(Some(Message::Ping(payload.into()))),
                OP_PONG => continue,
                OP_TEXT | OP_BINARY if self.partial.is_none() => {
                    self.partial = Some((opcode, payload))
                }
                OP_CONTINUATION if self.partial.is_some() => {
                    let (_, buf) = self.partial.as_mut().expect("checked");
                    if buf.len() + payload.len() > MAX_MESSAGE {
                        return Err(invalid("a message is too large".into()));
                    }
                    buf.extend_from_slice(&payload);
                }
                op => return Err(invalid(format!("unexpected WebSocket opcode {op}"))),
            }
            if fin {
                let (op, data) = self.partial.take().expect("a data frame was read");
                return Ok(Some(if op == OP_TEXT {
                    Message::Text(data.into())
                } else {
                    Message::Binary(data.into())
                }));
            }
        }
    }
}

/// Removes a client's mask (RFC 6455 5.3), eight bytes at a time.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let [a, b, c, d] = mask;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut words = payload.chunks_exact_mut(8);
    for word in &mut words {
        let w = u64::from_ne_bytes(word.try_into().expect("8 bytes")) ^ wide;
        word.copy_from_slice(&w.to_ne_bytes());
    }
    // The rest starts at a multiple of 8, so at the mask's first byte.
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

enum Out {
    /// A frame: opcode, an optional first byte (a channel), then the data.
    Frame(u8, Option<u8>, Bytes),
    /// Send a close frame, flush and shut the connection down.
    Close(u16),
}

/// Sends frames through the writer task; cheap to clone.
#[derive(Clone)]
pub(crate) struct Sink {
    tx: mpsc::Sender<Out>,
}

/// Frame header for an unmasked server frame of `len` bytes.
pub(crate) fn frame_header(opcode: u8, len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(10);
    h.push(0x80 | opcode);
    if len < 126 {
        h.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        h.push(126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(127);
        h.extend_from_slice(&(len as u64).to_be_bytes());
    }
    h
}

impl Sink {
    /// Starts the writer task on `w`; it ends after [`Sink::close`] or when every sink is
    /// dropped.
    pub(crate) fn spawn<W: AsyncWrite + Send + Unpin + 'static>(w: W) -> (Sink, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Out>(64);
        let task = tokio::spawn(async move {
            let mut w = BufWriter::with_capacity(WRITE_BUFFER, w);
            while let Some(out) = rx.recv().await {
                let result = match out {
                    Out::Frame(op, first, data) => write_frame(&mut w, op, first, &data).await,
                    Out::Close(code) => {
                        let _ = write_frame(&mut w, OP_CLOSE, None, &code.to_be_bytes()).await;
                        let _ = w.flush().await;
                        let _ = w.shutdown().await;
                        return;
                    }
                };
                let flushed = match result {
                    Ok(()) if rx.is_empty() => w.flush().await,
                    other => other,
                };
                if let Err(e) = flushed {
                    tracing::debug!(error = %e, "WebSocket write failed; closing");
                    return;
                }
            }
            let _ = w.flush().await;
            let _ = w.shutdown().await;
        });
        (Sink { tx }, task)
    }

    /// Sends a binary message; fails once the connection is gone.
    pub(crate) async fn binary(&self, data: Bytes) -> std::io::Result<()> {
        self.send(Out::Frame(OP_BINARY, None, data)).await
    }

    /// Sends a binary message of `channel` then `data`, without copying `data`.
    pub(crate) async fn channel(&self, channel: u8, data: Bytes) -> std::io::Result<()> {
        self.send(Out::Frame(OP_BINARY, Some(channel), data)).await
    }

    pub(crate) async fn text(&self, data: Bytes) -> std::io::Result<()> {
        self.send(Out::Frame(OP_TEXT, None, data)).await
    }

    pub(crate) async fn pong(&self, data: Bytes) -> std::io::Result<()> {
        self.send(Out::Frame(OP_PONG, None, data)).await
    }

    /// Sends a close frame (1000, normal closure) after everything queued, then ends the
    /// writer.
    pub(crate) async fn close(&self) {
        let _ = self.send(Out::Close(1000)).await;
    }

    async fn send(&self, out: Out) -> std::io::Result<()> {
        self.tx
            .send(out)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "WebSocket closed"))
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    opcode: u8,
    first: Option<u8>,
    data: &[u8],
) -> std::io::Result<()> {
    let first = first.as_slice();
    w.write_all(&frame_header(opcode, first.len() + data.len()))
        .await?;
    w.write_all(first).await?;
    w.write_all(data).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_is_the_rfc_6455_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn negotiation_picks_the_clients_first_supported_protocol() {
        let cases = [
            (
                "v5 preferred",
                Some("v5.channel.k8s.io, v4.channel.k8s.io"),
                Ok("v5.channel.k8s.io"),
            ),
            (
                "v4 when v5 is unknown",
                Some("v6.channel.k8s.io,v4.channel.k8s.io"),
                Ok("v4.channel.k8s.io"),
            ),
            ("none offered means the unnamed protocol", None, Ok("")),
            ("nothing supported", Some("foo"), Err(StatusCode::FORBIDDEN)),
        ];
        for (name, offered, want) in cases {
            let mut h = HeaderMap::new();
            if let Some(o) = offered {
                h.insert(header::SEC_WEBSOCKET_PROTOCOL, o.parse().unwrap());
            }
            let got = negotiate(&h, &["", "v4.channel.k8s.io", "v5.channel.k8s.io"]);
            match (got, want) {
                (Ok(p), Ok(w)) => assert_eq!(p, w, "{name}"),
                (Err(resp), Err(code)) => assert_eq!(resp.status(), code, "{name}"),
                (got, want) => panic!(
                    "{name}: got {:?}, want {want:?}",
                    got.map_err(|r| r.status())
                ),
            }
        }
    }

    #[tokio::test]
    async fn reader_unmasks_and_joins_fragments_and_reports_pings_and_close() {
        let mask = [1u8, 2, 3, 4];
        let masked = |op: u8, fin: bool, data: &[u8]| {
            let mut f = vec![if fin { 0x80 } else { 0 } | op, 0x80 | data.len() as u8];
            f.extend_from_slice(&mask);
            f.extend(data.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            f
        };
        let mut wire = Vec::new();
        wire.extend(masked(OP_BINARY, false, b"\x00hel"));
        wire.extend(masked(OP_PING, true, b"p"));
        wire.extend(masked(OP_CONTINUATION, true, b"lo"));
        wire.extend(masked(OP_CLOSE, true, b"\x03\xe8"));
        let mut r = Reader::new(&wire[..]);
        assert_eq!(
            r.next().await.unwrap(),
            Some(Message::Ping(Bytes::from_static(b"p")))
        );
        assert_eq!(
            r.next().await.unwrap(),
            Some(Message::Binary(Bytes::from_static(b"\x00hello")))
        );
        assert_eq!(r.next().await.unwrap(), Some(Message::Close));
        assert_eq!(r.next().await.unwrap(), None);
    }

    #[test]
    fn unmasking_by_words_matches_the_rfc_byte_by_byte_rule() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut fast = data.clone();
            unmask(&mut fast, mask);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(fast, slow, "{len} bytes");
        }
    }

    #[tokio::test]
    async fn a_channel_message_is_its_channel_byte_then_the_data() {
        let (client, server) = tokio::io::duplex(1024);
        let (sink, writer) = Sink::spawn(server);
        sink.channel(1, Bytes::from_static(b"out")).await.unwrap();
        sink.close().await;
        writer.await.unwrap();
        let mut wire = Vec::new();
        let mut client = client;
        client.read_to_end(&mut wire).await.unwrap();
        assert_eq!(&wire[..6], [0x82, 4, 1, b'o', b'u', b't']);
        assert_eq!(&wire[6..], [0x88, 2, 0x03, 0xe8]);
    }

    #[test]
    fn frame_headers_use_the_shortest_length_form() {
        assert_eq!(frame_header(OP_BINARY, 5), [0x82, 5]);
        assert_eq!(frame_header(OP_BINARY, 300), [0x82, 126, 1, 44]);
        assert_eq!(frame_header(OP_TEXT, 70_000)[..2], [0x81, 127]);
    }
}
