//! TLS for the API server: rustls (ring) server/client configurations built from the cluster PKI, and mapping of verified client certificates to Kubernetes identities.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::pki::Pki;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid PEM in {what}: {source}")]
    Pem {
        what: &'static str,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("no certificate found in {0}")]
    NoCertificate(&'static str),
    #[error("TLS configuration error: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("certificate verifier configuration error: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Result type of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// The identity a verified client certificate asserts: CN is the user, each O a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub user: String,
    pub groups: Vec<String>,
}

/// ALPN protocols the API server offers, most preferred first.
pub const ALPN_PROTOCOLS: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The ring provider, explicitly; never the process-wide default. AES-128-GCM comes
/// first, as Go's TLS orders it on processors with AES instructions: ten rounds to
/// AES-256's fourteen, and the cipher is most of the CPU a port-forward or a log stream
/// costs on either side of a connection.
fn provider() -> Arc<CryptoProvider> {
    use rustls::CipherSuite::{
        TLS13_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    };
    let mut provider = rustls::crypto::ring::default_provider();
    // A stable sort: the rest keep ring's order.
    provider.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            TLS13_AES_128_GCM_SHA256
                | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    Arc::new(provider)
}

fn certs_from_pem(what: &'static str, pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|source| Error::Pem { what, source })?;
    if certs.is_empty() {
        return Err(Error::NoCertificate(what));
    }
    Ok(certs)
}

fn key_from_pem(what: &'static str, pem: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|source| Error::Pem { what, source })
}

fn ca_roots(pki: &Pki) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem("CA certificate", &pki.ca_cert_pem)? {
        roots.add(cert)?;
    }
    Ok(Arc::new(roots))
}

/// Server configuration for the API server: serves `pki`'s serving certificate, offers ALPN
/// `h2` and `http/1.1`, and requests (but does not require) a client certificate, which is
/// verified against the cluster CA when presented. Anonymous clients are let through so that
/// other authentication (bearer tokens) can be applied at the HTTP layer.
pub fn server_config(pki: &Pki) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(ca_roots(pki)?, provider.clone())
        .allow_unauthenticated()
        .build()?;
    let chain = certs_from_pem("server certificate", &pki.server_cert_pem)?;
    let key = key_from_pem("server key", &pki.server_key_pem)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    // The server's order (AES-128-GCM first) decides, as Go's server does.
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// Client configuration (for tests, benchmarks and in-process clients) that trusts only the
/// cluster CA and presents the given client certificate. No ALPN protocols are set.
pub fn client_config(pki: &Pki, cert_pem: &str, key_pem: &str) -> Result<Arc<ClientConfig>> {
    let chain = certs_from_pem("client certificate", cert_pem)?;
    let key = key_from_pem("client key", key_pem)?;
    let config = client_builder(pki)?.with_client_auth_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// How the API server reaches nodes' agents: the cluster CA verifies the agent's serving
/// certificate, the kubelet-client certificate identifies the server; HTTP/1.1 only
/// (exec, attach and port-forward upgrade the connection).
pub fn node_client_config(pki: &Pki) -> Result<Arc<ClientConfig>> {
    let chain = certs_from_pem("kubelet client certificate", &pki.kubelet_client_cert_pem)?;
    let key = key_from_pem("kubelet client key", &pki.kubelet_client_key_pem)?;
    let mut config = client_builder(pki)?.with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Like [`client_config`] but without a client certificate (anonymous TLS client).
pub fn anonymous_client_config(pki: &Pki) -> Result<Arc<ClientConfig>> {
    Ok(Arc::new(client_builder(pki)?.with_no_client_auth()))
}

fn client_builder(
    pki: &Pki,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>> {
    let provider = provider();
    let verifier =
        WebPkiServerVerifier::builder_with_provider(ca_roots(pki)?, provider.clone()).build()?;
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_webpki_verifier(verifier))
}

/// Maps a peer's verified certificate chain (leaf first, as returned by rustls'
/// `peer_certificates()`) to its identity: the leaf's subject CN becomes the user and every O
/// a group. Returns `None` for an empty chain, an unparsable leaf or a leaf without a CN.
///
/// This does not verify anything; only pass chains rustls has already verified.
pub fn identity_from_certs(certs: &[CertificateDer<'_>]) -> Option<ClientIdentity> {
    let leaf = certs.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    if user.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    Some(ClientIdentity { user, groups })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    /// Handshakes once with `client` against a server built from `pki`, as `server_name`;
    /// returns the identity the server derived from the client's certificates.
    async fn handshake(
        pki: &Pki,
        client: Arc<ClientConfig>,
        server_name: &str,
    ) -> Option<ClientIdentity> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(server_config(pki).unwrap());
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let conn = tls.get_ref().1;
            assert_eq!(conn.alpn_protocol(), None, "client offered no ALPN");
            let identity = conn.peer_certificates().and_then(identity_from_certs);
            tls.write_all(b"ok").await.unwrap();
            tls.shutdown().await.unwrap();
            identity
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from(server_name.to_string()).unwrap();
        let mut tls = TlsConnector::from(client).connect(name, tcp).await.unwrap();
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.unwrap();
        assert_eq!(buf, b"ok");
        server.await.unwrap()
    }

    #[tokio::test]
    async fn mutual_and_anonymous_handshakes() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::ensure(dir.path(), &[]).unwrap();
        let admin = client_config(&pki, &pki.admin_cert_pem, &pki.admin_key_pem).unwrap();
        let anonymous = anonymous_client_config(&pki).unwrap();
        let expected = ClientIdentity {
            user: "kybern-admin".into(),
            groups: vec!["system:masters".into()],
        };
        for host in ["localhost", "127.0.0.1", "kubernetes.default.svc"] {
            assert_eq!(
                handshake(&pki, admin.clone(), host).await,
                Some(expected.clone()),
                "{host}"
            );
            assert_eq!(
                handshake(&pki, anonymous.clone(), host).await,
                None,
                "{host}"
            );
        }
    }

    #[tokio::test]
    async fn issued_client_cert_identity() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::ensure(dir.path(), &[]).unwrap();
        let (cert, key) = pki
            .issue_client_cert("system:node:n1", &["system:nodes"])
            .unwrap();
        let client = client_config(&pki, &cert, &key).unwrap();
        let identity = handshake(&pki, client, "127.0.0.1").await.unwrap();
        assert_eq!(identity.user, "system:node:n1");
        assert_eq!(identity.groups, ["system:nodes"]);
        let (cert, key) = pki.issue_client_cert("controller", &[]).unwrap();
        let identity =
            handshake(&pki, client_config(&pki, &cert, &key).unwrap(), "localhost").await;
        assert_eq!(identity.map(|i| i.groups), Some(vec![]));
    }

    #[tokio::test]
    async fn foreign_ca_client_cert_is_rejected() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (pki_a, pki_b) = (
            crate::pki::ensure(a.path(), &[]).unwrap(),
            crate::pki::ensure(b.path(), &[]).unwrap(),
        );
        // Client trusts A's server but presents a certificate from CA B.
        let client = client_config(&pki_a, &pki_b.admin_cert_pem, &pki_b.admin_key_pem).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(server_config(&pki_a).unwrap());
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            acceptor.accept(tcp).await.is_ok()
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        // TLS 1.3: the client may finish before the server rejects; read to observe the alert.
        if let Ok(mut tls) = TlsConnector::from(client).connect(name, tcp).await {
            let mut buf = Vec::new();
            let _ = tls.read_to_end(&mut buf).await;
        }
        assert!(
            !server.await.unwrap(),
            "server accepted a certificate from a foreign CA"
        );
    }

    #[tokio::test]
    async fn the_server_picks_aes_128_gcm_whatever_the_client_prefers() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::ensure(dir.path(), &[]).unwrap();
        // A client with rustls' own order (AES-256 first), as kube-rs connects.
        let default = Arc::new(rustls::crypto::ring::default_provider());
        assert_eq!(
            default.cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
        );
        let client = Arc::new(
            ClientConfig::builder_with_provider(default)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(ca_roots(&pki).unwrap())
                .with_no_client_auth(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(server_config(&pki).unwrap());
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let suite = tls.get_ref().1.negotiated_cipher_suite().map(|s| s.suite());
            tls.write_all(b"ok").await.unwrap();
            tls.shutdown().await.unwrap();
            suite
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = TlsConnector::from(client).connect(name, tcp).await.unwrap();
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.unwrap();
        assert_eq!(
            server.await.unwrap(),
            Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
        // And the API server's own client (to nodes' agents) asks for it first.
        let ours = node_client_config(&pki).unwrap();
        assert_eq!(
            ours.crypto_provider().cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
    }

    #[test]
    fn server_offers_h2_and_http11() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::ensure(dir.path(), &[]).unwrap();
        let config = server_config(&pki).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn identity_edge_cases() {
        assert_eq!(identity_from_certs(&[]), None);
        assert_eq!(
            identity_from_certs(&[CertificateDer::from(vec![1, 2, 3])]),
            None
        );
    }
}
