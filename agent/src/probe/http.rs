//! One HTTP GET as the kubelet's prober makes it: HTTP/1.1 on a fresh connection
//! (`Connection: close`), HTTPS without verifying the certificate, the user's headers (a
//! `Host` header sets the request's host), `User-Agent` and `Accept` defaults, and redirects
//! followed only while they stay on the same host name, at most 10 requests in all. Only the
//! status code counts; the body is never read.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction};
use tokio::io::{AsyncRead, AsyncWrite};

use super::net::{dial, error_chain, join_host_port};
use super::{resolve_port, Target};

/// Go's http.Client gives up after this many requests in one redirect chain.
const MAX_REQUESTS: usize = 10;

/// Where to send a GET and with what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HttpGet {
    pub url: Url,
    /// Header names and values, in order; a `Host` header replaces the request's host.
    pub headers: Vec<(String, String)>,
    /// Follow redirects to other hosts too (lifecycle hooks do; probes do not).
    pub follow_other_hosts: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Url {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// As given (a leading `/` added); empty means `/` on the wire.
    pub path: String,
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        let host = join_host_port(&self.host, self.port);
        write!(f, "{scheme}://{host}{}", self.path)
    }
}

/// How a GET ended when a response came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Response {
    pub status: u16,
}

impl HttpGet {
    /// The request an httpGet action describes: host defaults to the pod's IP, the port is
    /// resolved through the container's ports, `product` names the User-Agent default
    /// (`kube-probe`, `kube-lifecycle`).
    pub(super) fn for_action(
        action: &HTTPGetAction,
        target: &Target,
        ports: &[ContainerPort],
        product: &str,
    ) -> Result<HttpGet, String> {
        let port = resolve_port(&action.port, ports)?;
        let https = match action
            .scheme
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None | Some("" | "HTTP") => false,
            Some("HTTPS") => true,
            Some(other) => return Err(format!("unsupported scheme: {other:?}")),
        };
        let host = match action.host.as_deref() {
            Some(h) if !h.is_empty() => h.to_string(),
            _ => target.pod_ip.to_string(),
        };
        let path = match action.path.as_deref().unwrap_or("") {
            "" => String::new(),
            p if p.starts_with('/') => p.to_string(),
            p => format!("/{p}"),
        };
        let mut headers: Vec<(String, String)> = action
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let has = |name: &str, hs: &[(String, String)]| {
            hs.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        if !has("User-Agent", &headers) {
            headers.push((
                "User-Agent".into(),
                format!("{product}/{}", super::KUBE_VERSION),
            ));
        }
        if !has("Accept", &headers) {
            headers.push(("Accept".into(), "*/*".into()));
        }
        Ok(HttpGet {
            url: Url {
                https,
                host,
                port,
                path,
            },
            headers,
            follow_other_hosts: false,
        })
    }

    /// Sends the GET (following redirects) within `timeout`; the error is what Go's client
    /// returns, e.g. `Get "http://10.42.0.5:8080/healthz": dial tcp 10.42.0.5:8080: connect:
    /// connection refused`.
    pub(super) async fn send(&self, timeout: Duration) -> Result<Response, String> {
        let mut url = self.url.clone();
        match tokio::time::timeout(timeout, self.follow(&mut url)).await {
            Ok(result) => result.map_err(|e| format!("Get \"{url}\": {e}")),
            Err(_) => Err(format!(
                "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )),
        }
    }

    /// Follows the redirect chain; `url` is left at the request that failed or answered.
    async fn follow(&self, url: &mut Url) -> Result<Response, String> {
        let custom_host = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.clone());
        let mut host_header = custom_host;
        for sent in 1.. {
            let (status, location) = self.send_one(url, host_header.as_deref()).await?;
            let redirect = matches!(status, 301 | 302 | 303 | 307 | 308);
            let Some(location) = location.filter(|_| redirect) else {
                return Ok(Response { status });
            };
            let next = resolve_location(url, &location)?;
            if !self.follow_other_hosts && next.host != self.url.host {
                // Go's client hands back the redirect itself (ErrUseLastResponse).
                return Ok(Response { status });
            }
            *url = next;
            if sent >= MAX_REQUESTS {
                return Err(format!("stopped after {MAX_REQUESTS} redirects"));
            }
            // A custom Host survives only a relative redirect, as in Go.
            if location.contains("://") || location.starts_with("//") {
                host_header = None;
            }
        }
        unreachable!("the loop returns")
    }

    /// One request on a new connection: the status and the Location header.
    async fn send_one(
        &self,
        url: &Url,
        host_header: Option<&str>,
    ) -> Result<(u16, Option<String>), String> {
        let tcp = dial(&url.host, url.port).await?;
        let io: Box<dyn Io> = if url.https {
            let name = rustls::pki_types::ServerName::try_from(url.host.clone())
                .map_err(|e| format!("invalid TLS server name {:?}: {e}", url.host))?;
            let tls = tokio_rustls::TlsConnector::from(tls_config())
                .connect(name, tcp)
                .await
                .map_err(|e| error_chain(&e))?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| error_chain(&e))?;
        let conn = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let target = if url.path.is_empty() { "/" } else { &url.path };
        let mut req = http::Request::get(target);
        let default_host = join_host_port(&url.host, url.port);
        req = req.header(http::header::HOST, host_header.unwrap_or(&default_host));
        for (name, value) in &self.headers {
            if !name.eq_ignore_ascii_case("host") {
                req = req.header(name.as_str(), value.as_str());
            }
        }
        let req = req
            .header(http::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("building the request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| error_chain(&e))?;
        drop(conn);
        let location = resp
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok((resp.status().as_u16(), location))
    }
}

/// Where a `Location` header points, relative to `base`.
fn resolve_location(base: &Url, location: &str) -> Result<Url, String> {
    let location = location.split('#').next().unwrap_or("");
    let bad =
        |e: &dyn std::fmt::Display| format!("failed to parse Location header {location:?}: {e}");
    let absolute = if location.starts_with("//") {
        let scheme = if base.https { "https:" } else { "http:" };
        Some(format!("{scheme}{location}"))
    } else if location.contains("://") {
        Some(location.to_string())
    } else {
        None
    };
    if let Some(abs) = absolute {
        let uri: http::Uri = abs.parse().map_err(|e| bad(&e))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            other => return Err(bad(&format!("unsupported protocol scheme {other:?}"))),
        };
        let authority = uri.authority().ok_or_else(|| bad(&"no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        return Ok(Url {
            https,
            host: host.to_string(),
            port,
            path,
        });
    }
    let path = if location.starts_with('/') {
        location.to_string()
    } else {
        // Relative to the directory of the current path (query dropped).
        let current = base.path.split('?').next().unwrap_or("");
        let dir = current.rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/{location}")
    };
    Ok(Url {
        path,
        ..base.clone()
    })
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// TLS without certificate verification (the kubelet's `InsecureSkipVerify`); the handshake
/// signatures are still checked, so the peer holds the key of the certificate it shows.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        })
        .clone()
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
