//! One SPDY connection, server side: the client opens streams, this side replies to each at
//! once (Go's spdystream client waits for the reply before it writes) and hands it out
//! through [`Session::accept`]. A reader task routes data frames to their stream and answers
//! pings; a writer task owns the connection's write half and the header compressor, so
//! frames are written whole and in the order they were queued. Flow control is not
//! enforced in either direction: spdystream neither sends nor honours WINDOW_UPDATE.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{
    data_header, encode, read_frame, Frame, HeaderDecoder, HeaderEncoder, Headers, FLAG_FIN,
    MAX_DATA,
};

/// What the reader takes from the connection at a time.
const READ_BUFFER: usize = 64 * 1024;

enum Out {
    Frame(Frame),
    /// Send GOAWAY after everything queued, flush, shut the connection down.
    Shutdown,
}

/// A connection's streams as the client opens them.
pub(crate) struct Session {
    accept: mpsc::Receiver<Stream>,
    out: mpsc::Sender<Out>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

/// One stream the client opened.
pub(crate) struct Stream {
    id: u32,
    headers: Headers,
    rx: mpsc::Receiver<Bytes>,
    writer: StreamWriter,
}

/// The sending half of a stream; cheap to clone.
#[derive(Clone)]
pub(crate) struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Out>,
}

fn closed() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, "SPDY connection closed")
}

impl StreamWriter {
    /// Sends `data` in frames of at most 64 KiB.
    pub(crate) async fn write(&self, data: &[u8]) -> std::io::Result<()> {
        self.write_bytes(Bytes::copy_from_slice(data)).await
    }

    /// [`StreamWriter::write`] without a copy of `data`.
    pub(crate) async fn write_bytes(&self, mut data: Bytes) -> std::io::Result<()> {
        while !data.is_empty() {
            let chunk = data.split_to(data.len().min(MAX_DATA));
            let frame = Frame::Data {
                id: self.id,
                flags: 0,
                data: chunk,
            };
            self.out
                .send(Out::Frame(frame))
                .await
                .map_err(|_| closed())?;
        }
        Ok(())
    }

    /// Half-closes the stream (an empty data frame with FIN).
    pub(crate) async fn close(&self) {
        let frame = Frame::Data {
            id: self.id,
            flags: FLAG_FIN,
            data: Bytes::new(),
        };
        let _ = self.out.send(Out::Frame(frame)).await;
    }
}

impl Stream {
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// A header's value (names are lowercase on the wire; this compares case-insensitively).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The next data the client sent; `None` once it half-closed or reset the stream.
    pub(crate) async fn read(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }

    pub(crate) fn writer(&self) -> StreamWriter {
        self.writer.clone()
    }

    /// Splits into the receiving channel and the writer.
    pub(crate) fn split(self) -> (mpsc::Receiver<Bytes>, StreamWriter) {
        (self.rx, self.writer)
    }
}

impl Session {
    pub(crate) fn start<T>(io: T) -> Session
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(io);
        let (out, out_rx) = mpsc::channel(128);
        let (accept_tx, accept) = mpsc::channel(16);
        let writer = tokio::spawn(write_frames(write, out_rx));
        // Frame heads are 8 bytes: read from a buffer, not from the connection each.
        let read = BufReader::with_capacity(READ_BUFFER, read);
        let reader = tokio::spawn(read_frames(read, out.clone(), accept_tx));
        Session {
            accept,
            out,
            reader,
            writer,
        }
    }

    /// The next stream the client opens; `None` once the connection is gone.
    pub(crate) async fn accept(&mut self) -> Option<Stream> {
        self.accept.recv().await
    }

    /// Returns once the client closed the connection (or said GOAWAY). Await it at most once.
    pub(crate) async fn closed(&mut self) {
        let _ = (&mut self.reader).await;
    }

    /// Sends GOAWAY after what is queued, closes the connection and waits until it is.
    pub(crate) async fn shutdown(self) {
        let _ = self.out.send(Out::Shutdown).await;
        let _ = self.writer.await;
        self.reader.abort();
    }
}

async fn write_frames<W: AsyncWrite + Unpin>(w: W, mut rx: mpsc::Receiver<Out>) {
    let mut w = BufWriter::with_capacity(128 * 1024, w);
    let mut headers = HeaderEncoder::new();
    let mut last_id = 0;
    while let Some(out) = rx.recv().await {
        let written = match out {
            Out::Frame(Frame::Data { id, flags, data }) => {
                match w.write_all(&data_header(id, flags, data.len())).await {
                    Ok(()) => w.write_all(&data).await,
                    Err(e) => Err(e),
                }
            }
            Out::Frame(frame) => {
                if let Frame::SynReply { id, .. } = frame {
                    last_id = id;
                }
                w.write_all(&encode(&frame, &mut headers)).await
            }
            Out::Shutdown => {
                let goaway = Frame::GoAway { last_id, status: 0 };
                let _ = w.write_all(&encode(&goaway, &mut headers)).await;
                let _ = w.flush().await;
                let _ = w.shutdown().await;
                return;
            }
        };
        let flushed = match written {
            Ok(()) if rx.is_empty() => w.flush().await,
            other => other,
        };
        if let Err(e) = flushed {
            tracing::debug!(error = %e, "SPDY write failed; closing");
            return;
        }
    }
}

async fn read_frames<R: AsyncRead + Unpin>(
    mut r: R,
    out: mpsc::Sender<Out>,
    accept: mpsc::Sender<Stream>,
) {
    let mut decoder = HeaderDecoder::new();
    let mut streams: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    loop {
        let frame = match read_frame(&mut r, &mut decoder).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "SPDY read failed; closing");
                break;
            }
        };
        match &frame {
            Frame::Data { id, flags, data } => {
                tracing::trace!(id, flags, len = data.len(), "SPDY data frame")
            }
            other => tracing::trace!(frame = ?other, "SPDY control frame"),
        }
        match frame {
            Frame::SynStream { id, flags, headers } => {
                let reply = Frame::SynReply {
                    id,
                    flags: 0,
                    headers: Vec::new(),
                };
                if out.send(Out::Frame(reply)).await.is_err() {
                    break;
                }
                let (tx, rx) = mpsc::channel(64);
                if flags & FLAG_FIN == 0 {
                    streams.insert(id, tx);
                }
                let writer = StreamWriter {
                    id,
                    out: out.clone(),
                };
                let stream = Stream {
                    id,
                    headers,
                    rx,
                    writer,
                };
                if accept.send(stream).await.is_err() {
                    let rst = Frame::RstStream { id, status: 7 };
                    let _ = out.send(Out::Frame(rst)).await;
                }
            }
            Frame::Data { id, flags, data } => {
                if !data.is_empty() {
                    if let Some(tx) = streams.get(&id) {
                        if tx.send(data).await.is_err() {
                            streams.remove(&id);
                        }
                    }
                }
                if flags & FLAG_FIN != 0 {
                    streams.remove(&id);
                }
            }
            Frame::RstStream { id, .. } => {
                streams.remove(&id);
            }
            Frame::Ping(id) => {
                let _ = out.send(Out::Frame(Frame::Ping(id))).await;
            }
            Frame::GoAway { .. } => break,
            Frame::SynReply { .. }
            | Frame::Headers { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Other => {}
        }
    }
}
