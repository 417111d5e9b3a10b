//! An interactive exec (`kubectl exec -i -t`): the process gets a stdin FIFO this side
//! writes what the client types into, optionally a terminal (containerd's shim then copies
//! the pty to the stdout FIFO and opens no stderr), and terminal size changes through
//! `ResizePty`. stdout and stderr are streamed to the client as they come, not collected.
//! When the client closes stdin, the FIFO is closed and `CloseIO` tells the shim, as the CRI
//! plugin does, so the process reads end-of-file. The shim opens the FIFOs when the process
//! starts, so this side's openers wait on blocking threads from before the exec is created.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use containerd_client::services::v1::{
    CloseIoRequest, ExecProcessRequest, ResizePtyRequest, StartRequest,
};
use containerd_client::tonic::Code;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;

use super::{
    grpc, process_spec, unique_suffix, CleanupOnDrop, Containerd, ExecProcess, CLEANUP_TIMEOUT,
    PROCESS_TYPE_URL,
};
use crate::runtime::{Error, Result};
use crate::stream::ExecIo;

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

fn mkfifo(path: &Path) -> Result<()> {
    nix::unistd::mkfifo(
        path,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .map_err(|e| io_error(format!("creating the exec FIFO {}", path.display()))(e.into()))
}

/// Opens a FIFO's read end; blocks (on a blocking thread) until the shim opens its write end.
async fn open_reader(path: PathBuf) -> Result<pipe::Receiver> {
    let context = format!("opening the exec FIFO {}", path.display());
    let file = tokio::task::spawn_blocking(move || std::fs::File::open(&path))
        .await
        .map_err(|e| io_error(context.clone())(std::io::Error::other(e.to_string())))?
        .map_err(io_error(context.clone()))?;
    pipe::Receiver::from_file(file).map_err(io_error(context))
}

/// Opens a FIFO's write end; blocks until the shim opens its read end.
async fn open_writer(path: PathBuf) -> Result<pipe::Sender> {
    let context = format!("opening the exec FIFO {}", path.display());
    let file =
        tokio::task::spawn_blocking(move || std::fs::OpenOptions::new().write(true).open(&path))
            .await
            .map_err(|e| io_error(context.clone())(std::io::Error::other(e.to_string())))?
            .map_err(io_error(context.clone()))?;
    pipe::Sender::from_file(file).map_err(io_error(context))
}

/// Ends an [`open_writer`] still waiting for a reader, then removes the FIFO.
async fn remove_stdin(path: &Path) {
    let _ = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path);
    let _ = tokio::fs::remove_file(path).await;
}

/// Copies a FIFO to the client until the shim closes it; once the client is gone the rest is
/// read and dropped, so the process never blocks on a full pipe.
async fn copy_out<W: AsyncWrite + Unpin>(mut fifo: pipe::Receiver, mut to: Option<W>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match fifo.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(w) = to.as_mut() {
            if w.write_all(&buf[..n]).await.is_err() {
                to = None;
            }
        }
    }
    if let Some(mut w) = to {
        let _ = w.shutdown().await;
    }
}

/// Runs `args` in container `id` with the client's streams; returns the exit code.
pub(crate) async fn exec_interactive(
    rt: &Containerd,
    id: &str,
    args: &[String],
    io: ExecIo,
) -> Result<u32> {
    let ExecIo {
        stdin,
        stdout,
        stderr,
        resize,
        tty,
        ..
    } = io;
    let process = process_spec(rt, id, args, tty).await?;
    let tmp = std::env::temp_dir();
    let exec = ExecProcess {
        rt: rt.clone(),
        container_id: id.to_string(),
        exec_id: format!("exec-{}", unique_suffix()),
        stdout: tmp.join(format!("kybern-exec-{}.out", unique_suffix())),
        stderr: tmp.join(format!("kybern-exec-{}.err", unique_suffix())),
    };
    let stdin_path = stdin
        .is_some()
        .then(|| tmp.join(format!("kybern-exec-{}.in", unique_suffix())));
    let mut fifos = vec![exec.stdout.clone()];
    if !tty {
        fifos.push(exec.stderr.clone());
    }
    fifos.extend(stdin_path.clone());
    if let Err(e) = fifos.iter().try_for_each(|p| mkfifo(p)) {
        exec.remove_output().await;
        if let Some(p) = &stdin_path {
            remove_stdin(p).await;
        }
        return Err(e);
    }
    let open_out = tokio::spawn(open_reader(exec.stdout.clone()));
    let open_err = (!tty).then(|| tokio::spawn(open_reader(exec.stderr.clone())));
    let open_in = stdin_path.clone().map(|p| tokio::spawn(open_writer(p)));
    let path_of = |p: Option<&PathBuf>| p.map(|p| p.display().to_string()).unwrap_or_default();
    let req = ExecProcessRequest {
        container_id: id.to_string(),
        stdin: path_of(stdin_path.as_ref()),
        stdout: path_of(Some(&exec.stdout)),
        stderr: path_of((!tty).then_some(&exec.stderr)),
        terminal: tty,
        spec: Some(prost_types::Any {
            type_url: PROCESS_TYPE_URL.into(),
            value: process,
        }),
        exec_id: exec.exec_id.clone(),
    };
    let created = exec.tasks().exec(rt.req(req, None)).await;
    if let Err(status) = created {
        exec.remove_output().await;
        if let Some(p) = &stdin_path {
            remove_stdin(p).await;
        }
        return Err(match status.code() {
            Code::NotFound => Error::ContainerNotFound(id.to_string()),
            _ => grpc("exec process")(status),
        });
    }
    // The process exists in containerd from here on: killed and deleted if this future is
    // dropped (the client went away mid-session).
    let guard = CleanupOnDrop(Some(exec));
    let exec = guard.0.as_ref().expect("set above");
    let result = run(
        exec, open_out, open_err, open_in, stdin, stdout, stderr, resize,
    )
    .await;
    match &result {
        Ok(_) => {
            if let Err(e) = exec.delete().await {
                tracing::warn!(exec = %exec.exec_id, "deleting exec process: {e}");
            }
        }
        Err(_) => exec.kill_and_delete().await,
    }
    exec.remove_output().await;
    if let Some(p) = &stdin_path {
        remove_stdin(p).await;
    }
    guard.disarm();
    result
}

type Opening<T> = tokio::task::JoinHandle<Result<T>>;

async fn opened<T>(opening: Opening<T>) -> Result<T> {
    match tokio::time::timeout(CLEANUP_TIMEOUT, opening).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(io_error("opening an exec FIFO".into())(
            std::io::Error::other(e.to_string()),
        )),
        Err(_) => Err(Error::Timeout(CLEANUP_TIMEOUT)),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run<I, O, E>(
    exec: &ExecProcess,
    open_out: Opening<pipe::Receiver>,
    open_err: Option<Opening<pipe::Receiver>>,
    open_in: Option<Opening<pipe::Sender>>,
    stdin: Option<I>,
    stdout: Option<O>,
    stderr: Option<E>,
    resize: Option<tokio::sync::mpsc::Receiver<crate::stream::TerminalSize>>,
) -> Result<u32>
where
    I: AsyncRead + Send + Unpin + 'static,
    O: AsyncWrite + Send + Unpin + 'static,
    E: AsyncWrite + Send + Unpin + 'static,
{
    // The shim opens the FIFOs when the process starts; the openers are already waiting.
    let start = StartRequest {
        container_id: exec.container_id.clone(),
        exec_id: exec.exec_id.clone(),
    };
    exec.tasks()
        .start(exec.rt.req(start, None))
        .await
        .map_err(grpc("start exec process"))?;
    let mut copies = vec![tokio::spawn(copy_out(opened(open_out).await?, stdout))];
    if let Some(open_err) = open_err {
        copies.push(tokio::spawn(copy_out(opened(open_err).await?, stderr)));
    }
    let mut helpers = Vec::new();
    if let (Some(open_in), Some(mut from_client)) = (open_in, stdin) {
        let mut fifo = opened(open_in).await?;
        let (tasks, req) = (
            exec.tasks(),
            CloseIoRequest {
                container_id: exec.container_id.clone(),
                exec_id: exec.exec_id.clone(),
                stdin: true,
            },
        );
        let req = exec.rt.req(req, None);
        helpers.push(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from_client, &mut fifo).await;
            drop(fifo);
            let mut tasks = tasks;
            if let Err(s) = tasks.close_io(req).await {
                tracing::debug!("closing exec stdin: {s}");
            }
        }));
    }
    if let Some(mut sizes) = resize {
        let (mut tasks, rt) = (exec.tasks(), exec.rt.clone());
        let (container_id, exec_id) = (exec.container_id.clone(), exec.exec_id.clone());
        helpers.push(tokio::spawn(async move {
            while let Some(size) = sizes.recv().await {
                let req = ResizePtyRequest {
                    container_id: container_id.clone(),
                    exec_id: exec_id.clone(),
                    width: u32::from(size.width),
                    height: u32::from(size.height),
                };
                if let Err(s) = tasks.resize_pty(rt.req(req, None)).await {
                    tracing::debug!("resizing exec terminal: {s}");
                }
            }
        }));
    }
    let code = exec.wait().await;
    // The output is complete when the shim closes the FIFOs; a process the command left in
    // the background may hold them open, so this waits a bounded time.
    for copy in copies {
        if tokio::time::timeout(CLEANUP_TIMEOUT, copy).await.is_err() {
            tracing::debug!(exec = %exec.exec_id, "exec output still open after exit");
        }
    }
    for helper in helpers {
        helper.abort();
    }
    code
}
