//! Child processes the benchmark starts (kybern servers, etcd), their
//! memory and their data directories.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A child process. Dropping it kills the process (SIGKILL, by pid, through
/// tokio's `kill_on_drop`); [`Proc::stop`] asks it to exit first.
pub(crate) struct Proc {
    pub name: String,
    child: Child,
    pid: u32,
}

impl Proc {
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` (by pid) and waits up to `grace` for the process to
    /// exit; kills it after that.
    pub(crate) async fn stop_with(mut self, signal: &str, grace: Duration) {
        let pid = self.pid.to_string();
        let sent = Command::new("kill")
            .args([signal, pid.as_str()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .map(|s| s.success())
            .unwrap_or(false);
        if sent && tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
            return;
        }
        eprintln!(
            "  {} (pid {}) did not exit within {:?}; killing it",
            self.name, self.pid, grace
        );
        let _ = self.child.kill().await;
    }

    /// Graceful stop: SIGINT (what the server handles), 10 s grace.
    pub(crate) async fn stop(self) {
        self.stop_with("-INT", Duration::from_secs(10)).await
    }
}

/// A directory under the system temp dir, removed on drop unless `keep`.
pub(crate) struct TempDir {
    pub path: PathBuf,
    pub keep: bool,
}

impl TempDir {
    pub(crate) fn new(tag: &str, keep: bool) -> Result<TempDir> {
        let path = std::env::temp_dir().join(format!("kybern-bench-{tag}-{}", random_suffix(8)));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir { path, keep })
    }

    pub(crate) fn sub(&self, name: &str) -> Result<PathBuf> {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("keeping {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub(crate) fn random_suffix(n: usize) -> String {
    (0..n).map(|_| fastrand::lowercase()).collect()
}

fn log_file(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// A started kybern server.
pub(crate) struct Server {
    pub proc: Proc,
    pub url: String,
    /// From spawning the process to reading its `ready` line.
    pub startup: Duration,
}

/// Starts `kybern server` and waits for its `ready <url>` line.
pub(crate) async fn start_server(
    data_dir: &Path,
    etcd: Option<&str>,
    log: &Path,
) -> Result<Server> {
    // The reference figures are kube-apiserver + etcd with no controllers running.
    start_server_with(data_dir, etcd, log, "controllers").await
}

/// [`start_server`] with the given `--disable` list (comma-separated).
pub(crate) async fn start_server_with(
    data_dir: &Path,
    etcd: Option<&str>,
    log: &Path,
    disable: &str,
) -> Result<Server> {
    let exe = std::env::current_exe().context("finding the kybern executable")?;
    start_server_from(&exe, data_dir, etcd, log, disable).await
}

/// [`start_server_with`] running the `kybern` binary at `exe` (to measure another
/// build, e.g. main's, with this benchmark).
pub(crate) async fn start_server_from(
    exe: &Path,
    data_dir: &Path,
    etcd: Option<&str>,
    log: &Path,
    disable: &str,
) -> Result<Server> {
    let mut cmd = Command::new(exe);
    cmd.arg("server")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(["--disable", disable]);
    match etcd {
        Some(url) => {
            cmd.args(["--storage", "etcd", "--etcd-endpoints", url]);
        }
        None => {
            cmd.args(["--storage", "embedded"]);
        }
    }
    start_server_cmd(cmd, log).await
}

/// Runs `cmd` (a `kybern server ...` command line, stdout and stderr set here) and waits
/// for its `ready <url>` line.
pub(crate) async fn start_server_cmd(mut cmd: Command, log: &Path) -> Result<Server> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file(log)?)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd.spawn().context("starting kybern server")?;
    let pid = child.id().context("kybern server has no pid")?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let proc = Proc {
        name: "kybern server".into(),
        child,
        pid,
    };
    let mut lines = BufReader::new(stdout).lines();
    let line = match tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await {
        Ok(Ok(Some(line))) => line,
        Ok(Ok(None)) => bail!(
            "kybern server exited before it was ready; see {}",
            log.display()
        ),
        Ok(Err(e)) => return Err(e).context("reading kybern server's stdout"),
        Err(_) => bail!("kybern server not ready within 30 s; see {}", log.display()),
    };
    let startup = started.elapsed();
    let Some(url) = line.strip_prefix("ready ") else {
        bail!("unexpected first line from kybern server: {line:?}");
    };
    let url = url.trim().to_string();
    // Keep draining stdout so the server never writes into a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Server { proc, url, startup })
}

/// Starts `kybern controller <names...> --kubeconfig <kubeconfig>` as its own
/// process (stdout and stderr to `log`). There is no readiness line; the
/// caller decides how long to give it.
pub(crate) async fn start_controller(
    names: &[&str],
    kubeconfig: &Path,
    log: &Path,
) -> Result<Proc> {
    let exe = std::env::current_exe().context("finding the kybern executable")?;
    start_controller_from(&exe, names, kubeconfig, log)
}

/// [`start_controller`] running the `kybern` binary at `exe` with the arguments
/// `args` after `controller` (loop names, `--disable ...`).
pub(crate) fn start_controller_from(
    exe: &Path,
    args: &[&str],
    kubeconfig: &Path,
    log: &Path,
) -> Result<Proc> {
    let mut cmd = Command::new(exe);
    cmd.arg("controller")
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig);
    spawn(cmd, &format!("kybern controller {}", args.join(" ")), log)
}

/// The standalone scheduler binary a user would run: `kybern-scheduler` next to this
/// executable, or in the `release-small` profile's directory beside it (where
/// `cargo build --profile release-small -p kybern-scheduler` puts it when this is
/// `target/release/kybern`).
pub(crate) fn find_scheduler_binary() -> Result<PathBuf> {
    const BUILD: &str = "cargo build --profile release-small -p kybern-scheduler";
    let exe = std::env::current_exe().context("finding the kybern executable")?;
    let dir = exe
        .parent()
        .context("the kybern executable has no directory")?;
    let mut candidates = vec![dir.join("kybern-scheduler")];
    if let Some(target) = dir.parent() {
        candidates.push(target.join("release-small").join("kybern-scheduler"));
    }
    match candidates.iter().find(|c| c.is_file()) {
        Some(found) => Ok(found.clone()),
        None => bail!(
            "no kybern-scheduler binary at {}; build it with `{BUILD}` (or pass --scheduler-binary PATH)",
            candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(" or ")
        ),
    }
}

/// Starts the standalone scheduler `exe --kubeconfig <kubeconfig>` (stdout and stderr
/// to `log`).
pub(crate) async fn start_scheduler(exe: &Path, kubeconfig: &Path, log: &Path) -> Result<Proc> {
    let mut cmd = Command::new(exe);
    cmd.arg("--kubeconfig").arg(kubeconfig);
    spawn(cmd, "kybern-scheduler", log)
}

/// Spawns `cmd` as a [`Proc`] named `name`, stdout and stderr to `log`,
/// killed on drop.
pub(crate) fn spawn(mut cmd: Command, name: &str, log: &Path) -> Result<Proc> {
    cmd.stdin(Stdio::null())
        .stdout(log_file(log)?)
        .stderr(log_file(log)?)
        .kill_on_drop(true);
    let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    let pid = child.id().with_context(|| format!("{name} has no pid"))?;
    Ok(Proc {
        name: name.into(),
        child,
        pid,
    })
}

impl Proc {
    /// Whether the process has exited (and its status, if so).
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

/// A started etcd.
pub(crate) struct Etcd {
    pub proc: Proc,
    pub url: String,
    pub startup: Duration,
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Starts `/usr/bin/etcd` on two free loopback ports with `data_dir`, and
/// waits until `/health` says it is healthy.
pub(crate) async fn start_etcd(data_dir: &Path, log: &Path) -> Result<Etcd> {
    let client = free_port()?;
    let mut peer = free_port()?;
    while peer == client {
        peer = free_port()?;
    }
    let curl = format!("http://127.0.0.1:{client}");
    let purl = format!("http://127.0.0.1:{peer}");
    let mut cmd = Command::new("/usr/bin/etcd");
    cmd.args(["--name", "bench"])
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--listen-client-urls",
            &curl,
            "--advertise-client-urls",
            &curl,
        ])
        .args([
            "--listen-peer-urls",
            &purl,
            "--initial-advertise-peer-urls",
            &purl,
        ])
        .args([
            "--initial-cluster",
            &format!("bench={purl}"),
            "--initial-cluster-state",
            "new",
        ])
        .stdin(Stdio::null())
        .stdout(log_file(log)?)
        .stderr(log_file(log)?)
        .kill_on_drop(true);
    let started = Instant::now();
    let child = cmd.spawn().context("starting /usr/bin/etcd")?;
    let pid = child.id().context("etcd has no pid")?;
    let mut proc = Proc {
        name: "etcd".into(),
        child,
        pid,
    };
    let deadline = started + Duration::from_secs(30);
    loop {
        if etcd_healthy(client).await {
            break;
        }
        if let Ok(Some(status)) = proc.child.try_wait() {
            bail!(
                "etcd exited ({status}) before it was healthy; see {}",
                log.display()
            );
        }
        if Instant::now() > deadline {
            bail!("etcd not healthy within 30 s; see {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Etcd {
        proc,
        url: curl,
        startup: started.elapsed(),
    })
}

async fn etcd_healthy(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).contains("\"health\":\"true\""))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Ok(true))
    )
}

/// Resident set size of a process in bytes, from /proc/<pid>/status.
pub(crate) fn rss_bytes(pid: u32) -> Result<u64> {
    status_bytes(pid, "VmRSS")
}

/// Peak resident set size ("high water mark") of a process in bytes.
pub(crate) fn peak_rss_bytes(pid: u32) -> Result<u64> {
    status_bytes(pid, "VmHWM")
}

/// A `kB` field of /proc/<pid>/status, in bytes.
fn status_bytes(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
            let kb: u64 = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .with_context(|| format!("parsing {field}"))?;
            return Ok(kb * 1024);
        }
    }
    bail!("no {field} in /proc/{pid}/status")
}

/// Disk usage of a directory tree like `du`: allocated blocks, not
/// following symlinks. Returns (allocated, apparent) bytes.
pub(crate) fn disk_usage(path: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut allocated = 0;
    let mut apparent = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta =
            std::fs::symlink_metadata(&p).with_context(|| format!("stat {}", p.display()))?;
        allocated += meta.blocks() * 512;
        if meta.is_file() {
            apparent += meta.len();
        }
        if meta.is_dir() {
            for entry in
                std::fs::read_dir(&p).with_context(|| format!("reading {}", p.display()))?
            {
                stack.push(entry?.path());
            }
        }
    }
    Ok((allocated, apparent))
}

/// Lines of a log file that look like warnings or errors.
pub(crate) fn log_problems(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| {
            let u = l.to_ascii_uppercase();
            u.contains("WARN")
                || u.contains("ERROR")
                || u.contains("PANIC")
                || u.contains("\"LEVEL\":\"ERROR\"")
        })
        .map(str::to_string)
        .collect()
}
