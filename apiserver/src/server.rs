//! Starting the API server: data dir, certificates, storage, bootstrap objects, the
//! HTTPS listener (HTTP/1.1 and HTTP/2, served by `conn`) and periodic compaction.

mod conn;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::api::Api;
use crate::registry::Registry;
use crate::storage::{embedded::EmbeddedStore, etcd::EtcdStore, Storage};
use crate::{pki, tls};

pub use conn::{ConnectionTimeouts, MAX_HEADER_BYTES, MAX_URL_BYTES};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageBackend {
    Embedded,
    Etcd,
}

/// Everything `kybern server` is configured with.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub storage: StorageBackend,
    pub etcd_endpoints: Vec<String>,
    /// Key prefix in etcd, so several clusters can share one etcd.
    pub etcd_prefix: String,
    /// Parts switched off (`controllers`, `scheduler`, or one loop's name).
    pub disable: Vec<String>,
    /// Deadlines for connections that do not send requests (upstream's by default).
    pub connections: ConnectionTimeouts,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            listen: "127.0.0.1:6443".parse().expect("valid default address"),
            storage: StorageBackend::Embedded,
            etcd_endpoints: vec!["http://127.0.0.1:2379".into()],
            etcd_prefix: String::new(),
            disable: Vec::new(),
            connections: ConnectionTimeouts::default(),
        }
    }
}

/// A running server.
pub struct Server {
    pub url: String,
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    pub api: Arc<Api>,
    data_dir: PathBuf,
    tasks: JoinSet<()>,
}

impl Server {
    /// Runs until the listener fails.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        while let Some(r) = self.tasks.join_next().await {
            r.context("server task failed")?;
        }
        Ok(())
    }

    /// Asks the server's own `/readyz` over HTTPS, as a client would.
    pub async fn probe_ready(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let attempt = async {
            let pki = pki::ensure(&self.data_dir, &[]).ok()?;
            let config = tls::anonymous_client_config(&pki).ok()?;
            let tcp = tokio::net::TcpStream::connect(self.addr).await.ok()?;
            let name = rustls::pki_types::ServerName::try_from("localhost").ok()?;
            let mut stream = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.ok()?;
            stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.ok()?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.ok()?;
            Some(response.starts_with(b"HTTP/1.1 200"))
        };
        tokio::time::timeout(Duration::from_secs(5), attempt).await.ok().flatten().unwrap_or(false)
    }

    /// Stops accepting connections and ends background work.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}

async fn open_storage(config: &Config) -> anyhow::Result<Arc<dyn Storage>> {
    Ok(match config.storage {
        StorageBackend::Embedded => {
            let path = config.data_dir.join("kybern.db");
            EmbeddedStore::open(&path).with_context(|| format!("opening embedded storage {}", path.display()))?
        }
        StorageBackend::Etcd => EtcdStore::connect(&config.etcd_endpoints, &config.etcd_prefix)
            .await
            .with_context(|| {
                format!("connecting to etcd at {} (is it running? check --etcd-endpoints)", config.etcd_endpoints.join(","))
            })?,
    })
}

/// Starts serving. Returns once the listener is bound and storage answers.
pub async fn start(config: Config) -> anyhow::Result<Server> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {} (is another server using it? pick another with --listen)", config.listen))?;
    let addr = listener.local_addr()?;
    let host = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
    let url = if host.contains(':') { format!("https://[{host}]:{}", addr.port()) } else { format!("https://{host}:{}", addr.port()) };

    let pki = pki::ensure(&config.data_dir, std::slice::from_ref(&host)).context("preparing certificates")?;
    let tls_config = tls::server_config(&pki).context("configuring TLS")?;
    let storage = open_storage(&config).await?;
    let registry = Arc::new(Registry::with_builtins().context("loading built-in CRDs")?);
    let api = Api::new(storage.clone(), registry, format!("{host}:{}", addr.port()));
    let signer = crate::api::TokenSigner::ensure(&config.data_dir).context("preparing the service-account signing key")?;
    api.token_signer.set(signer).expect("a new Api has no signer yet");
    crate::api::bootstrap(&api).await.context("creating the default namespaces and serving stored CRDs")?;

    let kubeconfig = config.data_dir.join("admin.kubeconfig");
    pki::write_kubeconfig(&kubeconfig, &url, &pki, &pki.admin_cert_pem, &pki.admin_key_pem)
        .context("writing admin.kubeconfig")?;

    let mut tasks = JoinSet::new();
    tasks.spawn(conn::accept_loop(listener, TlsAcceptor::from(tls_config), api.clone(), config.connections));
    tasks.spawn(compact_loop(storage));
    Ok(Server { url, addr, kubeconfig, api, data_dir: config.data_dir.clone(), tasks })
}

/// Like upstream, compact history every five minutes up to the revision current five
/// minutes earlier, so watches can resume across short disconnects.
async fn compact_loop(storage: Arc<dyn Storage>) {
    const INTERVAL: Duration = Duration::from_secs(300);
    let mut previous: Option<i64> = None;
    loop {
        tokio::time::sleep(INTERVAL).await;
        if let Some(rev) = previous {
            if let Err(e) = storage.compact(rev).await {
                tracing::warn!(revision = rev, error = %e, "compaction failed");
            }
        }
        previous = storage.current_revision().await.ok();
    }
}
