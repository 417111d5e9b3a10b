//! A private containerd: started by `kybern up` when none is running and by tests, with its
//! own config, root and state directories under a data dir and its own socket, so it never
//! touches a system containerd. Stopped by its pid (SIGTERM, then SIGKILL).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::containerd::Containerd;
use super::{Error, Result};

/// How long containerd gets to answer on its socket after starting.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it gets to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ContainerdDaemon {
    child: Option<Child>,
    data_dir: PathBuf,
    socket: PathBuf,
}

/// containerd's config: everything under `data_dir`, the CRI plugin off (the agent is the
/// kubelet here), no debug or metrics listeners.
pub fn config_toml(data_dir: &Path) -> String {
    let d = data_dir.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#
    )
}

impl ContainerdDaemon {
    /// Writes the config into `data_dir`, starts `containerd` (from PATH) and waits until its
    /// socket answers. Its log goes to `data_dir/containerd.log`.
    pub async fn start(data_dir: &Path) -> Result<Self> {
        let io = |context: String| move |source| Error::Io { context, source };
        std::fs::create_dir_all(data_dir)
            .map_err(io(format!("creating {}", data_dir.display())))?;
        let config = data_dir.join("config.toml");
        std::fs::write(&config, config_toml(data_dir))
            .map_err(io(format!("writing {}", config.display())))?;
        let log_path = data_dir.join("containerd.log");
        let log = std::fs::File::create(&log_path)
            .map_err(io(format!("creating {}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(io("duplicating the log file".into()))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(io("starting containerd".into()))?;
        if let Some(pid) = child.id() {
            // For `kybern agent reset`, which stops a containerd an earlier agent left running.
            let _ = std::fs::write(data_dir.join("containerd.pid"), pid.to_string());
        }
        let mut daemon = ContainerdDaemon {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            socket: data_dir.join("containerd.sock"),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(client) = Containerd::connect(&daemon.socket, "default").await {
                if client.version().await.is_ok() {
                    return Ok(daemon);
                }
            }
            if let Some(Ok(Some(status))) = daemon.child.as_mut().map(Child::try_wait) {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(Error::Daemon(format!(
                    "containerd exited with {status}: {log}"
                )));
            }
            if Instant::now() > deadline {
                daemon.stop().await?;
                return Err(Error::Daemon(format!(
                    "no answer on {} after {START_TIMEOUT:?}",
                    daemon.socket.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The containerd for `kybern up`: the one already answering on `data_dir`'s socket (left
    /// running by an earlier agent, its containers intact), or a new one started there. The
    /// daemon is returned only when this call started it.
    pub async fn connect_or_start(
        data_dir: &Path,
        namespace: &str,
    ) -> Result<(Containerd, Option<Self>)> {
        let socket = data_dir.join("containerd.sock");
        if let Ok(client) = Containerd::connect(&socket, namespace).await {
            if client.version().await.is_ok() {
                return Ok((client, None));
            }
        }
        let daemon = Self::start(data_dir).await?;
        let client = Containerd::connect(daemon.socket(), namespace).await?;
        Ok((client, Some(daemon)))
    }

    /// Lets the daemon outlive this handle (and the agent process): containers keep their
    /// containerd across agent restarts, and the next agent finds it on its socket.
    pub fn detach(mut self) {
        if let Some(child) = self.child.take() {
            std::mem::forget(child);
        }
    }

    /// Stops the containerd an earlier agent left running on `data_dir`, by the pid it
    /// recorded there: SIGTERM, then SIGKILL. Returns whether there was one.
    pub async fn stop_recorded(data_dir: &Path) -> Result<bool> {
        let pid_file = data_dir.join("containerd.pid");
        let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        else {
            return Ok(false);
        };
        let alive = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with("containerd\0"))
        };
        if !alive(pid) {
            let _ = std::fs::remove_file(&pid_file);
            return Ok(false);
        }
        for signal in ["-TERM", "-KILL"] {
            let _ = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status()
                .await;
            let deadline = Instant::now() + STOP_TIMEOUT;
            while alive(pid) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !alive(pid) {
                break;
            }
        }
        let _ = std::fs::remove_file(&pid_file);
        Ok(true)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]. Containers keep running in their shims,
    /// as with any containerd restart.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            // `kill` by pid: unsafe code is kept out of this crate, and this is our own child.
            let sent = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            if sent.is_ok_and(|s| s.success())
                && tokio::time::timeout(STOP_TIMEOUT, child.wait())
                    .await
                    .is_ok()
            {
                return Ok(());
            }
        }
        child.kill().await.map_err(|source| Error::Io {
            context: "killing containerd".into(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn config_keeps_every_path_under_the_data_dir() {
        let config = super::config_toml(std::path::Path::new("/var/lib/kybern/containerd"));
        for line in config.lines().filter(|l| {
            l.contains("path") || l.contains("address") || l.contains("root") || l.contains("state")
        }) {
            let Some((_, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            assert!(
                value.is_empty() || value.starts_with("/var/lib/kybern/containerd/"),
                "{line}"
            );
        }
        assert!(config.contains(r#"address = "/var/lib/kybern/containerd/containerd.sock""#));
        assert!(config.contains(r#"disabled_plugins = ["io.containerd.grpc.v1.cri"]"#));
    }
}
