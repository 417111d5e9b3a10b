//! A byte stream carried in WebSocket binary messages, as kubectl 1.31+ tunnels SPDY for
//! port-forward (subprotocol `SPDY/3.1+portforward.k8s.io`): what the client sends arrives
//! on the returned stream, and what is written to it goes back in binary messages.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};

use super::ws::{Message, Reader, Sink};

/// How much the bridge buffers in each direction.
const BUFFER: usize = 256 * 1024;

/// Bridges `io` (an upgraded WebSocket connection) to the returned byte stream; the
/// connection closes when the stream's write side is shut down or dropped.
pub(super) fn bridge<T>(io: T) -> DuplexStream
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let (sink, writer) = Sink::spawn(write);
    let (ours, theirs) = tokio::io::duplex(BUFFER);
    let (mut from_session, mut to_session) = tokio::io::split(ours);
    let pongs = sink.clone();
    let inbound = tokio::spawn(async move {
        let mut reader = Reader::new(read);
        loop {
            match reader.next().await {
                Ok(Some(Message::Binary(data) | Message::Text(data))) => {
                    if to_session.write_all(&data).await.is_err() {
                        break;
                    }
                }
                Ok(Some(Message::Ping(data))) => {
                    let _ = pongs.pong(data).await;
                }
                Ok(Some(Message::Close) | None) | Err(_) => break,
            }
        }
        let _ = to_session.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = BytesMut::new();
        loop {
            buf.reserve(64 * 1024);
            match from_session.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if sink.binary(buf.split().freeze()).await.is_err() {
                        break;
                    }
                }
            }
        }
        sink.close().await;
        let _ = writer.await;
        inbound.abort();
    });
    theirs
}
