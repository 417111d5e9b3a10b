//! The node API's serving certificate, signed by the cluster CA: the agent makes its own
//! key, asks for a certificate with a CertificateSigningRequest (signer
//! `kubernetes.io/kubelet-serving`, subject `system:node:<name>`/`system:nodes`, the
//! node's name and address as its names), waits for it to be approved and signed, and
//! keeps both under the agent dir. A kept certificate is used again while it is valid for
//! another day, names this node's address and was signed by the cluster's current CA.
//!
//! While the agent runs, [`Serving::rotate`] asks for a new certificate (a new key and
//! CSR) once 70–90 % of the current one's lifetime has passed, as the kubelet's
//! certificate manager does, and swaps it in: connections opened afterwards get the new
//! certificate, open ones keep theirs, nothing restarts. The lifetime counts from the
//! later of notBefore and when the certificate was stored, since kybern's signer backdates
//! notBefore by a day.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

pub const SIGNER: &str = "kubernetes.io/kubelet-serving";
const CERT_FILE: &str = "node-serving.crt";
const KEY_FILE: &str = "node-serving.key";
/// How often the agent says it is still waiting for its certificate.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("making the certificate request: {0}")]
    Request(#[from] rcgen::Error),
    #[error("asking the API server for a certificate: {0}")]
    Kube(#[from] kube::Error),
    #[error("certificate request {name} was {verdict}: {message}")]
    Refused {
        name: String,
        verdict: String,
        message: String,
    },
    #[error("TLS: {0}")]
    Tls(String),
}

/// The cluster CA (DER certificates), from the agent's kubeconfig.
#[derive(Debug, Clone)]
pub struct ClusterCa(pub Vec<Vec<u8>>);

/// The node API's TLS configuration: this node's certificate (fetched when there is no
/// usable one under `dir`), client certificates verified against the cluster CA when
/// presented (a request without one is answered 401 by the handler), HTTP/1.1 only;
/// and what [`Serving::rotate`] needs to renew the certificate.
pub async fn server_config(
    client: &Client,
    node_name: &str,
    ip: Ipv4Addr,
    dir: &Path,
    ca: &ClusterCa,
) -> Result<Serving, Error> {
    let (cert_pem, key_pem) = match kept(dir, ip, ca) {
        Some(pair) => pair,
        None => {
            let pair = request(client, node_name, ip).await?;
            store(dir, &pair)?;
            pair
        }
    };
    let current = Arc::new(Current(std::sync::RwLock::new(certified(
        &cert_pem, &key_pem,
    )?)));
    Ok(Serving {
        tls: build(current.clone(), ca)?,
        current,
        client: client.clone(),
        node_name: node_name.to_string(),
        ip,
        dir: dir.to_path_buf(),
    })
}

/// The node API's TLS configuration and the certificate behind it.
pub struct Serving {
    pub tls: Arc<ServerConfig>,
    current: Arc<Current>,
    client: Client,
    node_name: String,
    ip: Ipv4Addr,
    dir: PathBuf,
}

/// How long to wait before asking again after a renewal failed.
const RETRY_RENEWAL: Duration = Duration::from_secs(10);

impl Serving {
    /// Renews the certificate whenever its rotation deadline passes; never returns.
    pub async fn rotate(self) {
        loop {
            let wait = self.until_deadline();
            tracing::info!(?wait, "node API certificate rotation scheduled");
            tokio::time::sleep(wait).await;
            loop {
                match self.renew().await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?RETRY_RENEWAL, "renewing the node API certificate failed");
                        tokio::time::sleep(RETRY_RENEWAL).await;
                    }
                }
            }
        }
    }

    async fn renew(&self) -> Result<(), Error> {
        let pair = request(&self.client, &self.node_name, self.ip).await?;
        let key = certified(&pair.0, &pair.1)?;
        store(&self.dir, &pair)?;
        *self.current.0.write().expect("certificate lock poisoned") = key;
        tracing::info!("the node API serves its renewed certificate");
        Ok(())
    }

    /// The time left until the stored certificate's rotation deadline (zero if passed).
    fn until_deadline(&self) -> Duration {
        let (cert_path, _) = paths(&self.dir);
        let stored = std::fs::metadata(&cert_path)
            .and_then(|m| m.modified())
            .ok();
        let pem = std::fs::read_to_string(&cert_path).unwrap_or_default();
        let Some((not_before, not_after)) = validity(&pem) else {
            return RETRY_RENEWAL;
        };
        let start = stored.map_or(not_before, |s| s.max(not_before));
        let deadline = rotation_deadline(start, not_after, 0.7 + 0.2 * spread());
        deadline
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
    }
}

/// When to renew: `jitter` (0.7–0.9, the kubelet's range) of the way from `start` to
/// `not_after`. A one-year certificate stored now is renewed after 256–329 days.
pub fn rotation_deadline(
    start: std::time::SystemTime,
    not_after: std::time::SystemTime,
    jitter: f64,
) -> std::time::SystemTime {
    let total = not_after.duration_since(start).unwrap_or_default();
    start + total.mul_f64(jitter)
}

/// A number in [0, 1) that differs between agents (the clock's nanoseconds), so nodes
/// that got their certificates together do not all renew at once.
fn spread() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    f64::from(nanos) / 1e9
}

/// A certificate's notBefore and notAfter.
fn validity(cert_pem: &str) -> Option<(std::time::SystemTime, std::time::SystemTime)> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let at = |t: x509_parser::time::ASN1Time| {
        Some(std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).ok()?))
    };
    Some((
        at(cert.validity().not_before)?,
        at(cert.validity().not_after)?,
    ))
}

/// The certificate the node API presents now; swapped by [`Serving::rotate`].
#[derive(Debug)]
struct Current(std::sync::RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().expect("certificate lock poisoned").clone())
    }
}

fn certified(cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, Error> {
    let tls = |e: &dyn std::fmt::Display| Error::Tls(e.to_string());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| tls(&e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| tls(&e))?;
    let provider = rustls::crypto::ring::default_provider();
    let key = CertifiedKey::from_der(chain, key, &provider).map_err(|e| tls(&e))?;
    Ok(Arc::new(key))
}

fn build(current: Arc<Current>, ca: &ClusterCa) -> Result<Arc<ServerConfig>, Error> {
    let tls = |e: &dyn std::fmt::Display| Error::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for der in &ca.0 {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| tls(&e))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| tls(&e))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(current);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(CERT_FILE), dir.join(KEY_FILE))
}

/// The kept certificate and key, if still good for this node.
fn kept(dir: &Path, ip: Ipv4Addr, ca: &ClusterCa) -> Option<(String, String)> {
    let (cert_path, key_path) = paths(dir);
    let cert_pem = std::fs::read_to_string(cert_path).ok()?;
    let key_pem = std::fs::read_to_string(key_path).ok()?;
    usable(&cert_pem, ip, ca).then_some((cert_pem, key_pem))
}

/// Whether a certificate is valid for at least another day, names `ip` and was signed by
/// one of the CA's certificates.
pub fn usable(cert_pem: &str, ip: Ipv4Addr, ca: &ClusterCa) -> bool {
    let Ok(der) = CertificateDer::from_pem_slice(cert_pem.as_bytes()) else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return false;
    };
    let day_later = x509_parser::time::ASN1Time::from_timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64 + 24 * 3600)
            .unwrap_or_default(),
    );
    if day_later.is_ok_and(|t| cert.validity().not_after < t) {
        return false;
    }
    let names_ip = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .is_some_and(|san| {
            san.value.general_names.iter().any(|n| {
            matches!(n, x509_parser::extensions::GeneralName::IPAddress(b) if *b == ip.octets())
        })
        });
    let signed = ca.0.iter().any(|ca_der| {
        x509_parser::parse_x509_certificate(ca_der)
            .is_ok_and(|(_, ca)| cert.verify_signature(Some(ca.public_key())).is_ok())
    });
    names_ip && signed
}

fn store(dir: &Path, (cert, key): &(String, String)) -> Result<(), Error> {
    let io = |what: &Path| {
        let context = format!("writing {}", what.display());
        move |source| Error::Io { context, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (cert_path, key_path) = paths(dir);
    for (path, text) in [(&key_path, key), (&cert_path, cert)] {
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io(&tmp))?;
            f.write_all(text.as_bytes()).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, path).map_err(io(path))?;
    }
    Ok(())
}

/// A PKCS#10 request for the identity every certificate of a node carries
/// (`system:node:<name>` in `system:nodes`, what the Node authorizer knows it by) with
/// these subject alternative names, and its new key: the node's serving certificate here,
/// its client certificate when it joins.
pub fn node_request(node_name: &str, sans: Vec<SanType>) -> Result<(String, KeyPair), Error> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("system:node:{node_name}"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:nodes");
    params.subject_alt_names = sans;
    let csr = params.serialize_request(&key)?;
    Ok((csr.pem()?, key))
}

/// The request for this node's serving certificate (its address and name), and its key.
fn make_request(node_name: &str, ip: Ipv4Addr) -> Result<(String, KeyPair), Error> {
    let mut sans = vec![SanType::IpAddress(IpAddr::V4(ip))];
    if let Ok(dns) = node_name.try_into() {
        sans.push(SanType::DnsName(dns));
    }
    node_request(node_name, sans)
}

async fn request(
    client: &Client,
    node_name: &str,
    ip: Ipv4Addr,
) -> Result<(String, String), Error> {
    let (csr_pem, key) = make_request(node_name, ip)?;
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some(format!("node-serving-{node_name}-")),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.into_bytes()),
            signer_name: SIGNER.into(),
            usages: Some(vec!["digital signature".into(), "server auth".into()]),
            ..Default::default()
        },
        status: None,
    };
    let created = api.create(&PostParams::default(), &csr).await?;
    let name = created.metadata.name.clone().unwrap_or_default();
    tracing::info!(csr = %name, "asked for the node API's serving certificate");
    let started = Instant::now();
    let mut said = Instant::now();
    loop {
        let csr = api.get(&name).await?;
        let status = csr.status.unwrap_or_default();
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            let cert = String::from_utf8_lossy(&cert.0).into_owned();
            return Ok((cert, key.serialize_pem()));
        }
        if let Some(c) = status
            .conditions
            .iter()
            .flatten()
            .find(|c| (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True")
        {
            return Err(Error::Refused {
                name,
                verdict: c.type_.to_lowercase(),
                message: c.message.clone().unwrap_or_default(),
            });
        }
        if said.elapsed() >= PROGRESS_EVERY {
            said = Instant::now();
            tracing::warn!(
                csr = %name,
                waited = ?started.elapsed(),
                "still waiting for the node API's certificate; is the csrsigning loop running? `kubectl certificate approve {name}` approves it by hand"
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
