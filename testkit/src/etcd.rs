//! A throwaway etcd for tests of the etcd backend.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apiserver::storage::etcd::EtcdStore;
use apiserver::storage::Storage;
use tempfile::TempDir;

use crate::process::{free_port, kill};

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
