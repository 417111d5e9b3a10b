//! A pod's namespaces as files: new network, IPC and UTS namespaces bind-mounted onto
//! `<dir>/{net,ipc,uts}`, as `ip netns add` and containerd's netns package do, so they live on
//! with no process in them and runc can join them by path. Also the way into a network
//! namespace for code that has to act inside one.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::statfs::{statfs, NSFS_MAGIC};

use super::{io_err, Error, Result};

/// The namespace kinds of a sandbox: file name (also the name under /proc/<tid>/ns) and flag.
pub(super) const KINDS: [(&str, CloneFlags); 3] = [
    ("net", CloneFlags::CLONE_NEWNET),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
];

fn errno_err(context: String) -> impl FnOnce(nix::errno::Errno) -> Error {
    move |errno| Error::Io {
        context,
        source: errno.into(),
    }
}

/// Whether `path` is a namespace bind mount (and not just the empty file under it, as after
/// a reboot).
pub(super) fn is_mounted(path: &Path) -> bool {
    statfs(path).is_ok_and(|fs| fs.filesystem_type() == NSFS_MAGIC)
}

/// Whether all three namespaces of the sandbox in `dir` are there.
pub(super) fn all_mounted(dir: &Path) -> bool {
    KINDS.iter().all(|(kind, _)| is_mounted(&dir.join(kind)))
}

/// Creates the sandbox's namespaces under `dir` with `hostname` set in its UTS namespace.
/// Blocks briefly; call it from a blocking context.
pub(super) fn create(dir: &Path, hostname: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    let targets: Vec<PathBuf> = KINDS.iter().map(|(kind, _)| dir.join(kind)).collect();
    for target in &targets {
        File::create(target).map_err(io_err(format!("create {}", target.display())))?;
    }
    let hostname = hostname.to_string();
    // unshare moves only the calling thread into the new namespaces, so a thread of its own
    // does it and ends, leaving the agent's threads where they were.
    let made = std::thread::spawn(move || -> Result<()> {
        let flags = KINDS
            .iter()
            .fold(CloneFlags::empty(), |all, (_, flag)| all | *flag);
        unshare(flags).map_err(errno_err("unshare the pod's namespaces".into()))?;
        nix::unistd::sethostname(&hostname)
            .map_err(errno_err(format!("set hostname {hostname:?}")))?;
        for ((kind, _), target) in KINDS.iter().zip(&targets) {
            let source = format!("/proc/thread-self/ns/{kind}");
            mount(
                Some(source.as_str()),
                target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(errno_err(format!("bind {source} to {}", target.display())))?;
        }
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| {
        Err(Error::Io {
            context: "create the pod's namespaces".into(),
            source: std::io::Error::other("the namespace thread panicked"),
        })
    });
    if made.is_err() {
        if let Err(e) = remove(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cleaning up half-made namespaces");
        }
    }
    made
}

/// Unmounts and removes the namespace files under `dir` and `dir` itself; what is already
/// gone is skipped.
pub(super) fn remove(dir: &Path) -> Result<()> {
    for (kind, _) in KINDS {
        let path = dir.join(kind);
        // MNT_DETACH: a process still inside keeps the namespace; the file goes anyway.
        match umount2(&path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(errno_err(format!("unmount {}", path.display()))(e)),
        }
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_err(format!("remove {}", path.display()))(e));
            }
            _ => {}
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io_err(format!("remove {}", dir.display()))(e))
        }
        _ => Ok(()),
    }
}

/// Runs `f` on a thread of its own that has joined the network namespace at `netns`; what
/// `f` creates there (sockets) stays in that namespace after the thread ends.
pub(super) fn in_netns<T, F>(netns: &Path, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let file = File::open(netns).map_err(io_err(format!("open {}", netns.display())))?;
    let context = format!("enter {}", netns.display());
    std::thread::spawn(move || {
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(errno_err(context))?;
        f()
    })
    .join()
    .unwrap_or_else(|_| {
        Err(Error::Io {
            context: "work in a pod's network namespace".into(),
            source: std::io::Error::other("the thread panicked"),
        })
    })
}

/// Connects to 127.0.0.1:`port` inside the network namespace at `netns`. The socket is made
/// by a thread that joined the namespace, so it stays bound there and is usable from any
/// thread afterwards (non-blocking, ready for tokio).
pub(super) fn connect_loopback(
    netns: &Path,
    port: u16,
    timeout: std::time::Duration,
) -> Result<std::net::TcpStream> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    in_netns(netns, move || {
        let conn = std::net::TcpStream::connect_timeout(&addr, timeout)
            .map_err(io_err(format!("connect to {addr}")))?;
        conn.set_nonblocking(true)
            .map_err(io_err("make the socket non-blocking".into()))?;
        Ok(conn)
    })
}
