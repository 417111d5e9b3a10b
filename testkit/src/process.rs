//! Child processes of a test: the real `kybern` binary, and any child killed by pid
//! when its guard is dropped (also when the test panics).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::etcd::Etcd;
use crate::kubectl::Kubectl;

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills a child by its pid and reaps it.
pub(crate) fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The `kybern` binary next to this test binary (cargo puts both in target/<profile>).
pub fn kybern_binary() -> PathBuf {
    if let Ok(path) = std::env::var("KYBERN_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("locating the test binary");
    // target/<profile>/deps/<test-binary> -> target/<profile>/kybern
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("kybern"))
        .expect("test binary has a profile dir");
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build --workspace`",
        path.display()
    );
    path
}

/// The real `kybern server` as a child process; SIGKILLed by pid when dropped.
pub struct Binary {
    pub url: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub kubeconfig: PathBuf,
    child: Child,
}

impl Binary {
    /// Starts `kybern server` on `data_dir` and waits for its `ready <url>` line.
    pub fn start(data_dir: &Path, port: u16, etcd: Option<&Etcd>) -> Self {
        let mut cmd = Command::new(kybern_binary());
        cmd.arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"));
        if let Some(etcd) = etcd {
            cmd.args(["--storage", "etcd", "--etcd-endpoints", &etcd.endpoint]);
        }
        Self::spawn(cmd, data_dir)
    }

    /// Runs `cmd` (a `kybern server` or `kybern up` on `data_dir`), its stderr into
    /// `<data_dir>/server.log`, and waits for its `ready <url>` line. Unless `cmd` names
    /// its own `--advertise-address`, the server advertises 127.0.0.1, so a test never
    /// listens on the machine's real interface.
    pub fn spawn(mut cmd: Command, data_dir: &Path) -> Self {
        let serves = cmd
            .get_args()
            .next()
            .is_some_and(|role| role == "server" || role == "up");
        if serves && !cmd.get_args().any(|a| a == "--advertise-address") {
            cmd.args(["--advertise-address", "127.0.0.1"]);
        }
        std::fs::create_dir_all(data_dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("server.log"))
            .unwrap();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("starting kybern");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let url = loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("ready ") {
                        break url.trim().to_string();
                    }
                }
                Err(e) => {
                    kill(&mut child);
                    let log =
                        std::fs::read_to_string(data_dir.join("server.log")).unwrap_or_default();
                    let what = match e {
                        mpsc::RecvTimeoutError::Timeout => "printed no `ready` line within 60s",
                        mpsc::RecvTimeoutError::Disconnected => "exited before printing `ready`",
                    };
                    panic!("kybern {what}; its log:\n{log}");
                }
            }
        };
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("ready URL ends in a port");
        Binary {
            url,
            port,
            data_dir: data_dir.to_path_buf(),
            kubeconfig: data_dir.join("admin.kubeconfig"),
            child,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash or `kill -9` would.
    pub fn kill(mut self) {
        kill(&mut self.child);
    }

    pub fn kubectl(&self) -> Kubectl {
        Kubectl {
            kubeconfig: self.kubeconfig.clone(),
            cache_dir: self.data_dir.join("kubectl-cache"),
            namespace: None,
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A child process (a `kubectl get -w`, a `kubectl wait`) killed by pid when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        kill(&mut self.0);
    }
}
