//! An HTTP client for the OCI distribution API v2 (hyper, rustls). HTTPS by default with
//! the system's CA bundle (`SSL_CERT_FILE`, else Debian's `/etc/ssl/certs/ca-certificates.crt`)
//! plus configured CA files; plain HTTP for hosts configured as insecure (containerd's and
//! k3s's registry configuration), and for a loopback registry whose answer to the TLS
//! handshake shows it speaks plain HTTP (containerd's localhost fallback). A [`Session`]
//! talks to one repository and answers a 401 challenge once (see [`super::auth`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::reference::Reference;
use super::{Error, Result};
use crate::runtime::RegistryAuth;

/// Debian's bundle of the system's trusted CAs (package ca-certificates).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// How long one request may wait for the registry's response headers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long reading one body may take (layers can be large).
const BODY_TIMEOUT: Duration = Duration::from_secs(600);
const MAX_REDIRECTS: usize = 5;

/// How the agent reaches registries (the `registries` part of its configuration).
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// Registries (`host` or `host:port`) spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// PEM files of extra CAs trusted for registry TLS.
    pub ca_files: Vec<PathBuf>,
    /// Trust only `ca_files`, not the system bundle.
    pub no_system_roots: bool,
    /// Node-wide credentials by registry (`host` or `host:port`, Docker Hub as `docker.io`),
    /// used when a pull brings none of its own (k3s's `configs.<host>.auth`).
    pub auths: std::collections::BTreeMap<String, RegistryAuth>,
}

type HyperClient = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Shared by all pulls: connection pool and TLS configuration.
#[derive(Clone)]
pub struct Client {
    http: HyperClient,
    insecure: Arc<Vec<String>>,
    auths: Arc<std::collections::BTreeMap<String, RegistryAuth>>,
}

impl Client {
    pub fn new(config: &RegistryConfig) -> Result<Client> {
        let mut roots = rustls::RootCertStore::empty();
        if !config.no_system_roots {
            let bundle = std::env::var_os("SSL_CERT_FILE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE));
            // A machine without a bundle still reaches registries with configured CAs.
            if bundle.is_file() {
                add_pem_file(&mut roots, &bundle)?;
            }
        }
        for file in &config.ca_files {
            add_pem_file(&mut roots, file)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let http =
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
        Ok(Client {
            http,
            insecure: Arc::new(config.insecure.clone()),
            auths: Arc::new(config.auths.clone()),
        })
    }

    /// `http` or `https` for a registry host, and whether a loopback registry that turns out
    /// to speak plain HTTP may be retried over HTTP (containerd's fallback for localhost).
    fn scheme(&self, host: &str) -> (&'static str, bool) {
        let bare = host_without_port(host);
        if self.insecure.iter().any(|h| h == host || h == bare) {
            return ("http", false);
        }
        let loopback = matches!(bare, "localhost" | "127.0.0.1" | "::1");
        ("https", loopback)
    }

    /// A session for one repository; `push` asks tokens for push access too. Without
    /// `auth`, the node-wide credentials for the registry (if configured) are used.
    pub fn session(
        &self,
        reference: &Reference,
        auth: Option<&RegistryAuth>,
        push: bool,
    ) -> Session {
        let auth = auth.or_else(|| self.auths.get(&reference.registry));
        let host = reference.api_host();
        let (scheme, http_fallback) = self.scheme(host);
        Session {
            client: self.clone(),
            base: format!("{scheme}://{host}"),
            http_fallback,
            repository: reference.repository.clone(),
            scope: format!(
                "repository:{}:{}",
                reference.repository,
                if push { "pull,push" } else { "pull" }
            ),
            auth: auth.cloned(),
            authorization: None,
        }
    }
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| h)
            .trim_start_matches('[');
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn add_pem_file(roots: &mut rustls::RootCertStore, path: &std::path::Path) -> Result<()> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::Tls(format!("reading {}: {e}", path.display())))?;
    let mut added = 0;
    for cert in certs {
        let cert = cert.map_err(|e| Error::Tls(format!("reading {}: {e}", path.display())))?;
        // The system bundle may hold certificates rustls cannot parse; skip those.
        if roots.add(cert).is_ok() {
            added += 1;
        }
    }
    if added == 0 {
        return Err(Error::Tls(format!(
            "{} holds no usable CA certificate",
            path.display()
        )));
    }
    Ok(())
}

/// Talks to one repository of one registry, keeping the authorization it earned.
pub struct Session {
    client: Client,
    /// `https://host:port`
    base: String,
    /// Whether to switch `base` to plain HTTP when the registry answers TLS with HTTP.
    http_fallback: bool,
    pub(super) repository: String,
    pub(super) scope: String,
    pub(super) auth: Option<RegistryAuth>,
    /// The `Authorization` header value once a challenge was answered.
    pub(super) authorization: Option<String>,
}

/// A response with its whole body.
pub(super) struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub url: String,
}

impl Session {
    /// `base/v2/<repository>/<path>`
    pub(super) fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    /// Resolves a `Location` header against the registry.
    pub(super) fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}/{}", self.base, location.trim_start_matches('/'))
        }
    }

    /// Sends a request, answering one 401 challenge and following redirects (without our
    /// credentials when they leave the registry), and reads the whole body.
    pub(super) async fn send(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(header::HeaderName, String)],
        body: Bytes,
    ) -> Result<Reply> {
        let (resp, url) = self.send_unread(method.clone(), url, headers, body).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = read_body(resp, &method, &url).await?;
        Ok(Reply {
            status,
            headers,
            body,
            url,
        })
    }

    /// [`Session::send`] without reading the final body; returns it with the URL that
    /// answered (after redirects).
    pub(super) async fn send_unread(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(header::HeaderName, String)],
        body: Bytes,
    ) -> Result<(Response<Incoming>, String)> {
        let mut url = url.to_string();
        let mut challenged = false;
        let mut redirects = 0;
        loop {
            let same_registry = url.starts_with(&format!("{}/", self.base));
            let authorization = self.authorization.clone().filter(|_| same_registry);
            let resp = match self
                .raw(
                    method.clone(),
                    &url,
                    headers,
                    body.clone(),
                    authorization.as_deref(),
                )
                .await
            {
                Ok(resp) => resp,
                Err((_, true)) if same_registry && self.http_fallback => {
                    self.http_fallback = false;
                    let http_base = self.base.replacen("https://", "http://", 1);
                    url = url.replacen(&self.base, &http_base, 1);
                    self.base = http_base;
                    continue;
                }
                Err((e, _)) => return Err(e),
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && same_registry && !challenged {
                challenged = true;
                let challenge = resp
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                if let Some(challenge) = challenge {
                    if self.answer(&challenge).await? {
                        continue;
                    }
                }
            }
            if status.is_redirection() && redirects < MAX_REDIRECTS {
                if let Some(location) = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                {
                    redirects += 1;
                    url = self.absolute(location);
                    continue;
                }
            }
            return Ok((resp, url));
        }
    }

    pub(super) async fn raw(
        &self,
        method: Method,
        url: &str,
        headers: &[(header::HeaderName, String)],
        body: Bytes,
        authorization: Option<&str>,
    ) -> std::result::Result<Response<Incoming>, (Error, bool)> {
        let transport = |message: String| Error::Transport {
            method: method.to_string(),
            url: url.to_string(),
            message,
        };
        let mut req = Request::builder().method(method.clone()).uri(url);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| (transport(e.to_string()), false))?;
        match tokio::time::timeout(REQUEST_TIMEOUT, self.client.http.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err((transport(error_chain(&e)), server_speaks_plain_http(&e))),
            Err(_) => Err((
                transport(format!("no response within {REQUEST_TIMEOUT:?}")),
                false,
            )),
        }
    }
}

pub(super) async fn read_body(
    resp: Response<Incoming>,
    method: &Method,
    url: &str,
) -> Result<Bytes> {
    match tokio::time::timeout(BODY_TIMEOUT, resp.into_body().collect()).await {
        Ok(Ok(body)) => Ok(body.to_bytes()),
        Ok(Err(e)) => Err(Error::Transport {
            method: method.to_string(),
            url: url.to_string(),
            message: format!("reading the body: {}", error_chain(&e)),
        }),
        Err(_) => Err(Error::Transport {
            method: method.to_string(),
            url: url.to_string(),
            message: format!("body not read within {BODY_TIMEOUT:?}"),
        }),
    }
}

/// Whether a TLS handshake failed because the server answered with something that is not
/// TLS (a plain HTTP registry): rustls then reports an invalid message.
fn server_speaks_plain_http(e: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return matches!(tls, rustls::Error::InvalidMessage(_));
    }
    // hyper-rustls wraps tokio-rustls's io::Error (which wraps rustls's) in another one.
    let wrapped = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .is_some_and(|inner| server_speaks_plain_http(inner));
    wrapped || e.source().is_some_and(server_speaks_plain_http)
}

/// An error with its causes, `outer: inner: ...` (hyper's own text says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

/// The registry's error body (`{"errors":[{"code","message"}]}`) as `: server message: ...`.
pub(super) fn server_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => {
            let items: Vec<String> = e
                .errors
                .iter()
                .map(|i| format!("{}: {}", i.code, i.message).to_lowercase())
                .collect();
            format!(": server message: {}", items.join("; "))
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_registries_use_plain_http_and_loopback_may_fall_back_to_it() {
        let client = Client::new(&RegistryConfig {
            insecure: vec!["reg.internal:5000".into(), "plain.example.com".into()],
            no_system_roots: true,
            ..Default::default()
        });
        // No roots at all is fine as long as no HTTPS registry is contacted.
        let client = client.expect("client");
        let cases = [
            ("ipv4 loopback", "127.0.0.1:5000", ("https", true)),
            ("localhost", "localhost:5000", ("https", true)),
            ("ipv6 loopback", "[::1]:5000", ("https", true)),
            ("configured host:port", "reg.internal:5000", ("http", false)),
            (
                "configured other port",
                "reg.internal:6000",
                ("https", false),
            ),
            (
                "configured host any port",
                "plain.example.com:443",
                ("http", false),
            ),
            ("default", "registry-1.docker.io", ("https", false)),
        ];
        for (name, host, want) in cases {
            assert_eq!(client.scheme(host), want, "{name}");
        }
    }

    #[test]
    fn registry_error_bodies_become_server_messages() {
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#;
        assert_eq!(
            server_message(body),
            ": server message: unauthorized: authentication required"
        );
        assert_eq!(server_message(b"<html>"), "");
    }
}
