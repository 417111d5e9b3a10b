//! exec and attach over SPDY: the client opens one stream per `streamType` (error, stdin,
//! stdout, stderr, resize); the session starts once all it asked for are there, as the
//! kubelet's `waitForStreams` does (30 s at most).

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::exec::{exit_status, Version};
use super::spdy::session::{Session, Stream, StreamWriter};
use super::{ExecIo, ExecOptions, HandlerError, PIPE_CAPACITY};

/// How long the client has to open its streams (upstream's `DefaultStreamCreationTimeout`).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Streams {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
}

async fn wait_for_streams(session: &mut Session, expected: usize) -> Option<Streams> {
    let mut streams = Streams::default();
    let mut received = 0;
    let wait = async {
        while received < expected {
            let stream = session.accept().await?;
            let slot = match stream.header("streamtype") {
                Some("error") => &mut streams.error,
                Some("stdin") => &mut streams.stdin,
                Some("stdout") => &mut streams.stdout,
                Some("stderr") => &mut streams.stderr,
                Some("resize") => &mut streams.resize,
                other => {
                    tracing::debug!(stream_type = ?other, "exec: unexpected stream type");
                    continue;
                }
            };
            *slot = Some(stream);
            received += 1;
        }
        Some(())
    };
    match tokio::time::timeout(STREAM_CREATION_TIMEOUT, wait).await {
        Ok(Some(())) => Some(streams),
        Ok(None) => None,
        Err(_) => {
            tracing::warn!("exec: timed out waiting for client to create streams");
            None
        }
    }
}

/// Copies the handler's output onto a stream, then half-closes it.
async fn pump_out<R: AsyncRead + Unpin>(mut pipe: R, stream: StreamWriter) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    stream.close().await;
}

/// Runs one session on an upgraded connection.
pub(super) async fn run<T, H, Fut>(io: T, version: Version, opts: ExecOptions, handler: H)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
    H: FnOnce(ExecIo) -> Fut,
    Fut: Future<Output = Result<u32, HandlerError>>,
{
    let mut session = Session::start(io);
    let resizes = opts.tty && version.resizes();
    let expected = 1 + [opts.stdin, opts.stdout, opts.stderr, resizes]
        .iter()
        .filter(|on| **on)
        .count();
    let Some(streams) = wait_for_streams(&mut session, expected).await else {
        session.shutdown().await;
        return;
    };
    let mut tasks = Vec::new();
    let mut stdin_theirs = None;
    if let Some(mut stream) = streams.stdin {
        let (mut ours, theirs) = tokio::io::duplex(PIPE_CAPACITY);
        stdin_theirs = Some(theirs);
        tasks.push(tokio::spawn(async move {
            while let Some(data) = stream.read().await {
                if ours.write_all(&data).await.is_err() {
                    return;
                }
            }
            let _ = ours.shutdown().await;
        }));
    }
    let mut outputs = Vec::new();
    let mut output = |stream: Option<Stream>| {
        stream.map(|s| {
            let (ours, theirs) = tokio::io::duplex(PIPE_CAPACITY);
            outputs.push(tokio::spawn(pump_out(ours, s.writer())));
            theirs
        })
    };
    let stdout_theirs = output(streams.stdout);
    let stderr_theirs = output(streams.stderr);
    let mut resize_rx = None;
    if let (Some(mut stream), true) = (streams.resize, opts.tty) {
        let (tx, rx) = mpsc::channel(16);
        resize_rx = Some(rx);
        tasks.push(tokio::spawn(async move {
            let mut pending = Vec::new();
            while let Some(data) = stream.read().await {
                pending.extend_from_slice(&data);
                // Sizes are JSON objects back to back; keep a partial one for the next read.
                let mut de = serde_json::Deserializer::from_slice(&pending).into_iter();
                let mut used = 0;
                while let Some(Ok(size)) = de.next() {
                    used = de.byte_offset();
                    if tx.send(size).await.is_err() {
                        return;
                    }
                }
                pending.drain(..used);
            }
        }));
    }

    let command = opts.command.clone();
    let mut running = Box::pin(handler(ExecIo {
        stdin: stdin_theirs,
        stdout: stdout_theirs,
        stderr: stderr_theirs,
        resize: resize_rx,
        tty: opts.tty,
        command: opts.command,
    }));
    // A client that closes the connection is gone: the command is dropped, which ends it.
    let result = tokio::select! {
        biased;
        result = &mut running => Some(result),
        () = session.closed() => None,
    };
    let Some(result) = result else {
        tracing::debug!("exec: the client went away; ending the command");
        drop(running);
        for task in tasks.into_iter().chain(outputs) {
            task.abort();
        }
        session.shutdown().await;
        return;
    };
    for pump in outputs {
        let _ = pump.await;
    }
    if let Err(e) = &result {
        tracing::warn!(error = %e, "exec failed");
    }
    if let Some(error) = streams.error {
        let writer = error.writer();
        if let Some(status) = exit_status(version, &command, &result) {
            let _ = writer.write(&status).await;
        }
        writer.close().await;
    }
    for task in tasks {
        task.abort();
    }
    session.shutdown().await;
}
