//! The API server in the test's own process, and kube clients for it.

use std::path::Path;

use apiserver::server::{self, Config, Server, StorageBackend};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use tempfile::TempDir;

use crate::etcd::Etcd;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Etcd,
}

/// The apiserver running in this process on a free port, with an admin client.
pub struct InProcess {
    pub server: Server,
    pub client: Client,
    /// The service-account loop, which every server runs: the ServiceAccount admission
    /// plugin refuses pods until their namespace's `default` account exists.
    accounts: tokio::task::JoinHandle<()>,
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
        let ctx = std::sync::Arc::new(controllers::Context::new(client.clone(), "test".into()));
        let accounts = tokio::spawn(async move {
            if let Err(e) = controllers::serviceaccount::run(ctx).await {
                eprintln!("loop serviceaccount ended: {e:#}");
            }
        });
        InProcess {
            server,
            client,
            accounts,
            _etcd: etcd,
            _dir: dir,
        }
    }
}

impl InProcess {
    /// The server's data directory (its `pki/` among others).
    pub fn data_dir(&self) -> &Path {
        self._dir.path()
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.accounts.abort();
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
