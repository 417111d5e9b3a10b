//! Starting the API server: data dir, certificates, storage, bootstrap objects, the
//! HTTPS listener (HTTP/1.1 and HTTP/2, served by `conn`) and periodic compaction.

mod conn;

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::api::{Api, ServiceNet};
use crate::registry::Registry;
use crate::storage::compaction::{self, Clock};
use crate::storage::encryption::{self, EncryptionConfiguration};
use crate::storage::{
    embedded::EmbeddedStore, encrypted::EncryptedStore, etcd::EtcdStore, Storage,
};
use crate::{pki, tls};

pub use conn::{ConnectionTimeouts, MAX_HEADER_BYTES, MAX_URL_BYTES};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageBackend {
    Embedded,
    Etcd,
}

/// Which records are encrypted at rest, and with which keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encryption {
    /// With the embedded store, Secrets, under the data dir's own key
    /// (`<data-dir>/encryption-config.yaml`, made on first start); with etcd nothing,
    /// since every server of one etcd must share the keys.
    Default,
    /// The EncryptionConfiguration in this file (`--encryption-provider-config`).
    File(PathBuf),
    /// Every record stored as it is (`--secrets-encryption=false`).
    Off,
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
    /// How often storage history is compacted (upstream's `--etcd-compaction-interval`).
    pub compaction_interval: Duration,
    /// The wall clock the compaction schedule reads (tests inject their own).
    pub compaction_clock: Arc<dyn Clock>,
    /// Deadlines for connections that do not send requests (upstream's by default).
    pub connections: ConnectionTimeouts,
    /// The address pods and other nodes reach this server at (`--advertise-address`): the
    /// `kubernetes` Service's endpoint and a SAN of the serving certificate. When `listen`
    /// does not cover it, a second listener on it (same port) is opened. Unset, the
    /// listen address is advertised.
    pub advertise: Option<IpAddr>,
    /// The service range, cluster DNS address and domain (`--service-cidr`,
    /// `--cluster-dns`, `--cluster-domain`).
    pub service_net: ServiceNet,
    /// How often the bootstrap objects (`kubernetes` and `kube-dns` Services, default
    /// ServiceCIDR) are checked and re-made.
    pub bootstrap_interval: Duration,
    /// Encryption at rest.
    pub encryption: Encryption,
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
            compaction_interval: compaction::DEFAULT_INTERVAL,
            compaction_clock: Arc::new(compaction::SystemClock),
            connections: ConnectionTimeouts::default(),
            advertise: None,
            service_net: ServiceNet::default(),
            bootstrap_interval: crate::api::bootstrap::INTERVAL,
            encryption: Encryption::Default,
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
            let mut stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .ok()?;
            stream
                .write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.ok()?;
            Some(response.starts_with(b"HTTP/1.1 200"))
        };
        tokio::time::timeout(Duration::from_secs(5), attempt)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    }

    /// Stops accepting connections and ends background work.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}

/// The encryption configuration `config` asks for; the default one is made in the data
/// dir on first start and read from there afterwards.
pub fn encryption_config(config: &Config) -> anyhow::Result<Option<EncryptionConfiguration>> {
    let path = match (&config.encryption, config.storage) {
        (Encryption::Off, _) | (Encryption::Default, StorageBackend::Etcd) => return Ok(None),
        (Encryption::File(path), _) => path.clone(),
        (Encryption::Default, StorageBackend::Embedded) => {
            let path = config.data_dir.join(encryption::DEFAULT_FILE);
            if !path.exists() {
                let name = format!("aesgcm-{}", unix_seconds());
                EncryptionConfiguration::generated(&name).save(&path)?;
                tracing::info!(path = %path.display(), key = name, "generated the key that encrypts Secrets at rest");
            }
            path
        }
    };
    Ok(Some(EncryptionConfiguration::load(&path)?))
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

async fn open_storage(config: &Config) -> anyhow::Result<Arc<dyn Storage>> {
    let encryption = encryption_config(config)?;
    let store = open_backend(config).await?;
    Ok(match encryption {
        Some(c) => EncryptedStore::new(store, c.transformer().map_err(anyhow::Error::msg)?),
        None => store,
    })
}

async fn open_backend(config: &Config) -> anyhow::Result<Arc<dyn Storage>> {
    Ok(match config.storage {
        StorageBackend::Embedded => {
            let path = config.data_dir.join("kybern.db");
            EmbeddedStore::open(&path)
                .with_context(|| format!("opening embedded storage {}", path.display()))?
        }
        StorageBackend::Etcd => EtcdStore::connect(&config.etcd_endpoints, &config.etcd_prefix)
            .await
            .with_context(|| {
                format!(
                    "connecting to etcd at {} (is it running? check --etcd-endpoints)",
                    config.etcd_endpoints.join(",")
                )
            })?,
    })
}

/// Starts serving. Returns once the listener is bound and storage answers.
pub async fn start(config: Config) -> anyhow::Result<Server> {
    create_private_dir(&config.data_dir)?;
    let listener = TcpListener::bind(config.listen).await.with_context(|| {
        format!(
            "binding {} (is another server using it? pick another with --listen)",
            config.listen
        )
    })?;
    let addr = listener.local_addr()?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let url = if host.contains(':') {
        format!("https://[{host}]:{}", addr.port())
    } else {
        format!("https://{host}:{}", addr.port())
    };

    // The advertised address gets a listener of its own unless the first one takes its
    // connections already (the same address, or the unspecified one of its family).
    let advertise = config.advertise.map(|ip| SocketAddr::new(ip, addr.port()));
    let second = match advertise {
        Some(a) if a.ip() != addr.ip() && !(addr.ip().is_unspecified() && a.is_ipv4() == addr.is_ipv4()) => {
            Some(TcpListener::bind(a).await.with_context(|| {
                format!("binding the advertised address {a} (is it an address of this host? pick another with --advertise-address)")
            })?)
        }
        _ => None,
    };

    let pki = pki::ensure(&config.data_dir, &server_hosts(&host, &config))
        .context("preparing certificates")?;
    let tls_config = tls::server_config(&pki).context("configuring TLS")?;
    let storage = open_storage(&config).await?;
    let registry = Arc::new(Registry::with_builtins().context("loading built-in CRDs")?);
    let api = Api::new(storage.clone(), registry, format!("{host}:{}", addr.port()));
    api.service_net
        .set(config.service_net.clone())
        .expect("a new Api has no service range yet");
    if let Some(a) = advertise {
        api.advertise
            .set(a)
            .expect("a new Api has no advertised address yet");
    }
    let signer = crate::api::TokenSigner::ensure(&config.data_dir)
        .context("preparing the service-account signing key")?;
    api.token_signer
        .set(signer)
        .expect("a new Api has no signer yet");
    let node_tls = tls::node_client_config(&pki).context("configuring the node client")?;
    api.node_tls
        .set(node_tls)
        .expect("a new Api has no node client yet");
    crate::api::bootstrap(&api)
        .await
        .context("creating the default namespaces and serving stored CRDs")?;

    let kubeconfig = config.data_dir.join("admin.kubeconfig");
    pki::write_kubeconfig(
        &kubeconfig,
        &url,
        &pki,
        &pki.admin_cert_pem,
        &pki.admin_key_pem,
    )
    .context("writing admin.kubeconfig")?;
    // Last, so that files written above with looser modes (certificates) are covered too.
    restrict_data_dir(&config.data_dir)?;

    let mut tasks = JoinSet::new();
    let acceptor = TlsAcceptor::from(tls_config);
    for listener in std::iter::once(listener).chain(second) {
        tasks.spawn(conn::accept_loop(
            listener,
            acceptor.clone(),
            api.clone(),
            config.connections,
        ));
    }
    tasks.spawn(crate::api::bootstrap::run(
        Arc::downgrade(&api),
        config.bootstrap_interval,
    ));
    let schedule = compaction::Schedule {
        interval: config.compaction_interval,
        clock: config.compaction_clock.clone(),
    };
    tasks.spawn(compaction::run(storage, schedule));
    // metrics.k8s.io's samples: every node's resource metrics, over the node API.
    tasks.spawn(crate::api::metrics::scrape_loop(
        Arc::downgrade(&api),
        Arc::new(crate::api::NodeApiScraper::of(&api).expect("the node client is set above")),
        crate::api::metrics::RESOLUTION,
    ));
    Ok(Server {
        url,
        addr,
        kubeconfig,
        api,
        data_dir: config.data_dir.clone(),
        tasks,
    })
}

/// The names and addresses the serving certificate must hold besides the defaults: the
/// listen host, the advertised address, the `kubernetes` Service's ClusterIP and its
/// name in the cluster domain.
fn server_hosts(listen_host: &str, config: &Config) -> Vec<String> {
    let net = &config.service_net;
    let mut hosts = vec![listen_host.to_string()];
    hosts.extend(config.advertise.map(|ip| ip.to_string()));
    hosts.push(net.kubernetes_ip().to_string());
    hosts.push(format!("kubernetes.default.svc.{}", net.domain()));
    hosts
}

/// Creates the data dir (and its parents) readable by its owner only, and makes an
/// existing one so before anything is written into it.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating data dir {}", dir.display()))?;
    set_mode(dir, 0o700)
}

/// The data dir holds private keys, the admin kubeconfig and every stored Secret: the
/// dir and `pki/` are 0700 and every file the server writes there 0600, also in a data
/// dir an older version left readable by everyone. Other subdirs (the agent's, with pod
/// volumes) keep their own modes.
fn restrict_data_dir(dir: &Path) -> anyhow::Result<()> {
    for d in [dir.to_path_buf(), dir.join("pki")] {
        let entries = match std::fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("listing {}", d.display())),
        };
        set_mode(&d, 0o700)?;
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", d.display()))?;
            let file_type = entry
                .file_type()
                .with_context(|| format!("reading {}", entry.path().display()))?;
            if file_type.is_file() {
                set_mode(&entry.path(), 0o600)?;
            }
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    let current = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode()
        & 0o777;
    if current != mode {
        tracing::info!(path = %path.display(), from = format!("{current:o}"), to = format!("{mode:o}"), "restricting file mode");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("restricting {} to mode {mode:o}", path.display()))?;
    }
    Ok(())
}
