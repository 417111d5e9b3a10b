//! Harnesses shared by the test binaries: the apiserver in-process with a kube client,
//! the real `kybern` binary as a child process, a throwaway etcd, and kubectl. Every
//! process is killed by pid and every temp dir removed on drop, also when a test panics.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use apiserver::server::{self, Config, Server, StorageBackend};
use apiserver::storage::etcd::EtcdStore;
use apiserver::storage::Storage;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use tempfile::TempDir;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Etcd,
}

/// The apiserver running in this process on a free port, with an admin client.
pub struct InProcess {
    pub server: Server,
    pub client: Client,
    // Dropped after the server: the etcd it talks to and the data dir it writes.
    _etcd: Option<Etcd>,
    _dir: TempDir,
}

impl InProcess {
    pub async fn start() -> Self {
        Self::start_on(Backend::Embedded).await
    }

    pub async fn start_on(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("creating a temp data dir");
        let etcd = match backend {
            Backend::Embedded => None,
            Backend::Etcd => Some(Etcd::start().await),
        };
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::new(dir.path())
        };
        if let Some(etcd) = &etcd {
            config.storage = StorageBackend::Etcd;
            config.etcd_endpoints = vec![etcd.endpoint.clone()];
        }
        let server = server::start(config)
            .await
            .expect("starting the apiserver in-process");
        let client = client_from_kubeconfig(&server.kubeconfig).await;
        InProcess {
            server,
            client,
            _etcd: etcd,
            _dir: dir,
        }
    }
}

/// A kube client exactly as a user gets one from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Client {
    Client::try_from(config_from_kubeconfig(path).await)
        .expect("building a client from admin.kubeconfig")
}

/// The same client without kube-rs's own retries of 429/503/504 (fifteen of them, with
/// back-off), for tests that assert the first answer the server gives.
pub async fn client_without_retries(path: &Path) -> Client {
    let mut config = config_from_kubeconfig(path).await;
    config.default_retry = false;
    Client::try_from(config).expect("building a client from admin.kubeconfig")
}

async fn config_from_kubeconfig(path: &Path) -> kube::Config {
    let kubeconfig = Kubeconfig::read_from(path).expect("reading admin.kubeconfig");
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("admin.kubeconfig is a usable kubeconfig")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills a child by its pid and reaps it.
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A throwaway etcd on loopback ports, killed when dropped.
pub struct Etcd {
    pub endpoint: String,
    child: Child,
    _dir: TempDir,
}

impl Etcd {
    pub fn binary() -> PathBuf {
        let candidates = [
            std::env::var("ETCD_BIN").ok(),
            Some("/usr/bin/etcd".into()),
            Some("/usr/local/bin/etcd".into()),
        ];
        candidates.into_iter().flatten().map(PathBuf::from).find(|p| p.exists()).unwrap_or_else(|| {
            panic!("etcd is missing (looked at $ETCD_BIN, /usr/bin/etcd, /usr/local/bin/etcd): apt-get install etcd-server")
        })
    }

    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (client_port, peer_port) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let child = Command::new(Self::binary())
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("etcd.log")).unwrap())
            .spawn()
            .expect("starting etcd");
        let etcd = Etcd {
            endpoint,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(store) =
                EtcdStore::connect(std::slice::from_ref(&etcd.endpoint), "/probe").await
            {
                if store.current_revision().await.is_ok() {
                    return etcd;
                }
            }
            assert!(
                Instant::now() < deadline,
                "etcd at {} did not answer within 30s",
                etcd.endpoint
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
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
    /// `<data_dir>/server.log`, and waits for its `ready <url>` line.
    pub fn spawn(mut cmd: Command, data_dir: &Path) -> Self {
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

/// The real kubectl pointed at one server, with its own discovery cache.
pub struct Kubectl {
    pub kubeconfig: PathBuf,
    cache_dir: PathBuf,
}

impl Kubectl {
    pub fn binary() -> PathBuf {
        let preferred = Path::new("/usr/bin/kubectl");
        if preferred.exists() {
            preferred.to_path_buf()
        } else {
            "kubectl".into()
        }
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(Self::binary());
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache_dir);
        cmd
    }

    pub fn output(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .expect("running kubectl (is it installed?)")
    }

    /// Runs kubectl, asserts it succeeded and returns its stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "kubectl {} failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("kubectl prints UTF-8")
    }
}
