//! exec and attach over WebSocket: each message starts with its channel (0 stdin, 1 stdout,
//! 2 stderr, 3 error, 4 resize; 255 close in v5, naming the channel to close). The base64
//! variants send text messages: the channel as an ASCII digit, then base64.

use base64::Engine;
use bytes::Bytes;
use std::future::Future;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

use super::exec::{exit_status, Version};
use super::ws::{Message, Reader, Sink};
use super::{ExecIo, ExecOptions, HandlerError, TerminalSize, PIPE_CAPACITY};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// Writes channel messages in the negotiated encoding.
#[derive(Clone)]
pub(super) struct Channels {
    pub(super) sink: Sink,
    pub(super) base64: bool,
}

impl Channels {
    pub(super) async fn send(&self, channel: u8, data: &[u8]) -> std::io::Result<()> {
        self.send_bytes(channel, Bytes::copy_from_slice(data)).await
    }

    /// [`Channels::send`] for data already in a `Bytes`: a binary message takes it as it
    /// is (the channel byte goes in front as the frame is written).
    pub(super) async fn send_bytes(&self, channel: u8, data: Bytes) -> std::io::Result<()> {
        if self.base64 {
            let mut text = vec![b'0' + channel];
            text.extend(
                base64::engine::general_purpose::STANDARD
                    .encode(&data)
                    .into_bytes(),
            );
            self.sink.text(text.into()).await
        } else {
            self.sink.channel(channel, data).await
        }
    }
}

/// A client message as (channel, data), base64 decoded where the protocol says so; `None`
/// for an empty or undecodable message.
pub(super) fn decode(message: Message, base64: bool) -> Option<(u8, Bytes)> {
    match message {
        // Either frame type, as upstream's wsstream reads them: the Python client sends a
        // `str` written to stdin as a text message.
        Message::Binary(data) | Message::Text(data) if !base64 && !data.is_empty() => {
            Some((data[0], data.slice(1..)))
        }
        Message::Text(data) | Message::Binary(data) if base64 && !data.is_empty() => {
            let channel = data[0].wrapping_sub(b'0');
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(&data[1..])
                .ok()?;
            Some((channel, decoded.into()))
        }
        _ => None,
    }
}

/// Copies what the handler writes to `pipe` onto `channel` until the handler closes it.
pub(super) async fn pump_out<R: AsyncRead + Unpin>(mut pipe: R, channel: u8, out: Channels) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out.send(channel, &buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs one session on an upgraded connection.
pub(super) async fn run<T, H, Fut>(io: T, version: Version, opts: ExecOptions, handler: H)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
    H: FnOnce(ExecIo) -> Fut,
    Fut: Future<Output = Result<u32, HandlerError>>,
{
    let (read, write) = tokio::io::split(io);
    let (sink, writer) = Sink::spawn(write);
    let out = Channels {
        sink: sink.clone(),
        base64: version.base64,
    };
    let pipe = |on: bool| on.then(|| tokio::io::duplex(PIPE_CAPACITY));
    let (stdin_ours, stdin_theirs) = pipe(opts.stdin).unzip();
    let (stdout_ours, stdout_theirs) = pipe(opts.stdout).unzip();
    let (stderr_ours, stderr_theirs) = pipe(opts.stderr).unzip();
    let (resize_tx, resize_rx) = opts.tty.then(|| mpsc::channel(16)).unzip();

    // The lowest writable channel gets an empty message at once: clients take it as the
    // sign the session is set up.
    let first = if opts.stdout {
        STDOUT
    } else if opts.stderr {
        STDERR
    } else {
        ERROR
    };
    let _ = out.send(first, &[]).await;

    let mut reader = tokio::spawn(read_client(
        Reader::new(read),
        version,
        sink.clone(),
        stdin_ours,
        resize_tx,
    ));
    let pumps: Vec<_> = [(stdout_ours, STDOUT), (stderr_ours, STDERR)]
        .into_iter()
        .filter_map(|(pipe, ch)| pipe.map(|p| tokio::spawn(pump_out(p, ch, out.clone()))))
        .collect();

    let command = opts.command.clone();
    let mut running = Box::pin(handler(ExecIo {
        stdin: stdin_theirs,
        stdout: stdout_theirs,
        stderr: stderr_theirs,
        resize: resize_rx,
        tty: opts.tty,
        command: opts.command,
    }));
    // A client that closes the connection (not one that only sent a close frame) is gone:
    // the command is dropped, which ends it, as containerd ends an exec whose stream closed.
    let result = tokio::select! {
        biased;
        result = &mut running => Some(result),
        gone = &mut reader => match gone {
            Ok(false) => Some((&mut running).await),
            Ok(true) | Err(_) => None,
        },
    };
    let Some(result) = result else {
        tracing::debug!("exec: the client went away; ending the command");
        drop(running);
        for pump in pumps {
            pump.abort();
        }
        sink.close().await;
        let _ = writer.await;
        return;
    };
    for pump in pumps {
        let _ = pump.await;
    }
    if let Err(e) = &result {
        tracing::warn!(error = %e, "exec failed");
    }
    if let Some(status) = exit_status(version, &command, &result) {
        let _ = out.send(ERROR, &status).await;
    }
    sink.close().await;
    let _ = writer.await;
    reader.abort();
}

/// Dispatches the client's messages: stdin into the handler's pipe, resize events, the v5
/// close signal, pings. Returns whether the client is gone (the connection ended without a
/// close frame).
async fn read_client<R: AsyncRead + Unpin>(
    mut reader: Reader<R>,
    version: Version,
    sink: Sink,
    mut stdin: Option<DuplexStream>,
    resize: Option<mpsc::Sender<TerminalSize>>,
) -> bool {
    let gone = loop {
        let message = match reader.next().await {
            Ok(Some(Message::Ping(data))) => {
                let _ = sink.pong(data).await;
                continue;
            }
            Ok(Some(Message::Close)) => break false,
            Ok(None) | Err(_) => break true,
            Ok(Some(m)) => m,
        };
        let Some((channel, data)) = decode(message, version.base64) else {
            continue;
        };
        match channel {
            STDIN => {
                if let Some(pipe) = stdin.as_mut() {
                    if pipe.write_all(&data).await.is_err() {
                        stdin = None;
                    }
                }
            }
            RESIZE => {
                if let Some(tx) = &resize {
                    for size in parse_sizes(&data) {
                        let _ = tx.send(size).await;
                    }
                }
            }
            CLOSE if version.number >= 5 && data.first() == Some(&STDIN) => {
                if let Some(mut pipe) = stdin.take() {
                    let _ = pipe.shutdown().await;
                }
            }
            _ => {}
        }
    };
    // The client is done: the handler sees the end of stdin.
    if let Some(mut pipe) = stdin.take() {
        let _ = pipe.shutdown().await;
    }
    gone
}

/// The terminal sizes in a resize message (one or more JSON objects back to back).
pub(super) fn parse_sizes(data: &[u8]) -> Vec<TerminalSize> {
    serde_json::Deserializer::from_slice(data)
        .into_iter::<TerminalSize>()
        .map_while(Result::ok)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_base64_messages_decode_to_channel_and_data() {
        assert_eq!(
            decode(Message::Binary(Bytes::from_static(b"\x00hi")), false),
            Some((0, Bytes::from_static(b"hi")))
        );
        assert_eq!(
            decode(Message::Text(Bytes::from_static(b"0aGk=")), true),
            Some((0, Bytes::from_static(b"hi")))
        );
        assert_eq!(
            decode(Message::Text(Bytes::from_static(b"\x00hi")), false),
            Some((0, Bytes::from_static(b"hi"))),
            "a text message of the binary protocols (the Python client's stdin)"
        );
        assert_eq!(decode(Message::Binary(Bytes::new()), false), None);
    }

    #[test]
    fn resize_messages_may_hold_several_sizes() {
        let sizes = parse_sizes(br#"{"Width":80,"Height":24}{"Width":100,"Height":40}"#);
        assert_eq!(
            sizes,
            [
                TerminalSize {
                    width: 80,
                    height: 24
                },
                TerminalSize {
                    width: 100,
                    height: 40
                }
            ]
        );
    }
}
