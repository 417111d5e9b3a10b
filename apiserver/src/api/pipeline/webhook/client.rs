//! Calling a webhook: where its `clientConfig` points (a `url`, or a `service` resolved
//! through its EndpointSlices to a ready endpoint), HTTPS verified against its
//! `caBundle` (the host's trust store without one) under the server name upstream uses,
//! one POST of a JSON body within the webhook's timeout, on a kept-alive connection
//! ([`crate::api::pool`]). Admission and CRD conversion webhooks share it. Errors read as Go's HTTP client words them, since upstream puts
//! them in its messages (`Post "https://...": context deadline exceeded`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::Value;

use crate::api::pool::{self, bracketed, cause, Pool};
use crate::api::Api;

/// Where the host keeps its trusted CAs (Debian's bundle), for webhooks without a
/// `caBundle`.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Where one call goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// What to connect to.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The name the serving certificate must carry.
    pub(crate) server_name: String,
    /// Path and query to POST to.
    pub(crate) path: String,
    /// The URL as errors show it.
    pub(crate) url: String,
}

/// POSTs `body` to the webhook `client` names and returns the answer's body, or the
/// error as Go words it. Without `api` (no endpoint caches at hand) only `url`
/// webhooks can be called.
pub(crate) async fn post(
    api: Option<&Api>,
    client: &Value,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Bytes, String> {
    let endpoint = endpoint(api, client, timeout).await?;
    let ca_bundle = client.get("caBundle").and_then(Value::as_str);
    let key = pool::Key {
        host: endpoint.host.clone(),
        port: endpoint.port,
        server_name: endpoint.server_name.clone(),
        trust: ca_bundle.unwrap_or("").to_string(),
    };
    // One pool for every server in the process: a client is keyed by its caBundle.
    static CLIENTS: OnceLock<Pool<Full<Bytes>>> = OnceLock::new();
    let client = CLIENTS
        .get_or_init(Pool::default)
        .client(&key, || tls_config(ca_bundle))?;
    let url = endpoint.url.clone();
    match tokio::time::timeout(timeout, send(&client, &endpoint, body)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(format!("Post \"{url}\": {e}")),
        Err(_) => Err(format!("Post \"{url}\": context deadline exceeded")),
    }
}

async fn send(
    client: &pool::Client<Full<Bytes>>,
    endpoint: &Endpoint,
    body: Vec<u8>,
) -> Result<Bytes, String> {
    let address = format!("{}:{}", bracketed(&endpoint.host), endpoint.port);
    let request = Request::post(format!("https://{address}{}", endpoint.path))
        .header(http::header::HOST, &address)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| cause(&e))?;
    let code = response.status();
    let answer = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !code.is_success() {
        return Err(format!(
            "the server responded with the status code {} but did not return more information",
            code.as_u16()
        ));
    }
    Ok(answer)
}

/// Where `client` points, with upstream's `?timeout=` added to the query.
async fn endpoint(
    api: Option<&Api>,
    client: &Value,
    timeout: Duration,
) -> Result<Endpoint, String> {
    let timeout_query = format!("timeout={}s", timeout.as_secs());
    if let Some(url) = client.get("url").and_then(Value::as_str) {
        return url_endpoint(url, &timeout_query);
    }
    let Some(service) = client.get("service") else {
        return Err("neither url nor service is set in the clientConfig".into());
    };
    let text = |f: &str| service.get(f).and_then(Value::as_str).unwrap_or("");
    let (namespace, name) = (text("namespace"), text("name"));
    let port = service.get("port").and_then(Value::as_i64).unwrap_or(443);
    let Some(api) = api else {
        return Err(format!(
            "service \"{namespace}/{name}\" cannot be resolved on this path: only url webhooks are supported here"
        ));
    };
    let (svc, slices) = service_objects(api, namespace, name).await?;
    let (host, target) = resolve_service(namespace, name, svc.as_deref(), &slices, port)?;
    let path = with_query(
        if text("path").is_empty() {
            "/"
        } else {
            text("path")
        },
        &timeout_query,
    );
    let server_name = format!("{name}.{namespace}.svc");
    Ok(Endpoint {
        url: format!("https://{server_name}:{port}{path}"),
        host,
        port: target,
        server_name,
        path,
    })
}

fn with_query(path: &str, extra: &str) -> String {
    if path.contains('?') {
        format!("{path}&{extra}")
    } else {
        format!("{path}?{extra}")
    }
}

fn url_endpoint(url: &str, timeout_query: &str) -> Result<Endpoint, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("parse \"{url}\": {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!(
            "unsupported scheme in {url:?}: webhooks are called over https"
        ));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("no host in {url:?}"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let path = with_query(
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        timeout_query,
    );
    let shown = format!("https://{}:{port}{path}", bracketed(&host));
    Ok(Endpoint {
        server_name: host.clone(),
        host,
        port,
        path,
        url: shown,
    })
}

/// The Service and its EndpointSlices, from the watch caches.
async fn service_objects(
    api: &Api,
    namespace: &str,
    name: &str,
) -> Result<(Option<Arc<Value>>, Vec<Arc<Value>>), String> {
    let snap = api.registry.snapshot();
    let (Some(services), Some(slices)) = (
        snap.get("", "v1", "services"),
        snap.get("discovery.k8s.io", "v1", "endpointslices"),
    ) else {
        return Err("services or endpointslices are not served".into());
    };
    let svc = api
        .cache(services)
        .await
        .map_err(|e| e.to_string())?
        .get(&services.key(Some(namespace), name));
    let (all, _) = api
        .cache(slices)
        .await
        .map_err(|e| e.to_string())?
        .list(&slices.prefix_in(Some(namespace)));
    let own = all
        .into_iter()
        .filter(|s| {
            crate::object::labels(s)
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .and_then(Value::as_str)
                == Some(name)
        })
        .collect();
    Ok((svc, own))
}

/// A ready endpoint of the Service for its port `port` (upstream's endpoint
/// resolver): the address, and the port its EndpointSlices give the service port's
/// name. An ExternalName Service resolves to its external name.
pub(crate) fn resolve_service(
    namespace: &str,
    name: &str,
    svc: Option<&Value>,
    slices: &[Arc<Value>],
    port: i64,
) -> Result<(String, u16), String> {
    let svc = svc.ok_or_else(|| format!("service \"{name}\" not found"))?;
    let spec = svc.get("spec").cloned().unwrap_or(Value::Null);
    let svc_port = spec
        .get("ports")
        .and_then(Value::as_array)
        .and_then(|ports| {
            ports
                .iter()
                .find(|p| p.get("port").and_then(Value::as_i64) == Some(port))
        })
        .ok_or_else(|| format!("no service port {port} found for service \"{name}\""))?;
    if spec.get("type").and_then(Value::as_str) == Some("ExternalName") {
        let host = spec
            .get("externalName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return Ok((host.to_string(), port as u16));
    }
    let port_name = svc_port.get("name").and_then(Value::as_str).unwrap_or("");
    for slice in slices {
        let Some(target) = slice
            .get("ports")
            .and_then(Value::as_array)
            .and_then(|ports| {
                ports
                    .iter()
                    .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
            })
            .and_then(|p| p.get("port").and_then(Value::as_u64))
        else {
            continue;
        };
        let ready = slice
            .get("endpoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|e| e.pointer("/conditions/ready").and_then(Value::as_bool) != Some(false))
            .filter_map(|e| e.pointer("/addresses/0").and_then(Value::as_str))
            .next();
        if let Some(address) = ready {
            return Ok((address.to_string(), target as u16));
        }
    }
    Err(format!(
        "no endpoints available for service \"{namespace}/{name}\""
    ))
}

/// A TLS client trusting `ca_bundle` (base64 PEM), or the host's CAs without one;
/// built once per pooled client.
fn tls_config(ca_bundle: Option<&str>) -> Result<Arc<rustls::ClientConfig>, String> {
    let pem = match ca_bundle.filter(|b| !b.is_empty()) {
        Some(b) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| format!("caBundle is not base64: {e}"))?,
        None => std::fs::read(SYSTEM_ROOTS).map_err(|e| format!("reading {SYSTEM_ROOTS}: {e}"))?,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("caBundle: {e}"))?;
        roots.add(cert).map_err(|e| format!("caBundle: {e}"))?;
    }
    if roots.is_empty() {
        return Err("x509: no certificates in caBundle".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(ports: Value) -> Value {
        json!({"metadata": {"name": "hook", "namespace": "ns"}, "spec": {"ports": ports}})
    }

    fn slice(port_name: &str, port: u16, endpoints: Value) -> Arc<Value> {
        Arc::new(json!({
            "metadata": {"name": "hook-abc", "namespace": "ns", "labels": {"kubernetes.io/service-name": "hook"}},
            "ports": [{"name": port_name, "port": port}],
            "endpoints": endpoints,
        }))
    }

    #[test]
    fn a_service_resolves_to_a_ready_endpoint_on_the_named_target_port() {
        let svc = service(json!([{"name": "https", "port": 443, "targetPort": 8443}]));
        let slices = [slice(
            "https",
            8443,
            json!([
                {"addresses": ["10.0.0.1"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": true}}
            ]),
        )];
        assert_eq!(
            resolve_service("ns", "hook", Some(&svc), &slices, 443),
            Ok(("10.0.0.2".to_string(), 8443))
        );
    }

    #[test]
    fn service_resolution_errors_say_what_is_missing() {
        let svc = service(json!([{"name": "https", "port": 443}]));
        let not_ready = [slice(
            "https",
            8443,
            json!([{"addresses": ["10.0.0.1"], "conditions": {"ready": false}}]),
        )];
        type Case<'a> = (&'a str, Option<&'a Value>, &'a [Arc<Value>], i64, &'a str);
        let cases: [Case<'_>; 3] = [
            ("no service", None, &[], 443, "service \"hook\" not found"),
            (
                "no such port",
                Some(&svc),
                &[],
                8080,
                "no service port 8080 found for service \"hook\"",
            ),
            (
                "no ready endpoint",
                Some(&svc),
                &not_ready,
                443,
                "no endpoints available for service \"ns/hook\"",
            ),
        ];
        for (name, svc, slices, port, want) in cases {
            assert_eq!(
                resolve_service("ns", "hook", svc, slices, port),
                Err(want.to_string()),
                "{name}"
            );
        }
    }

    #[test]
    fn an_external_name_service_resolves_to_its_name() {
        let svc = json!({"spec": {"type": "ExternalName", "externalName": "hooks.example.test",
            "ports": [{"port": 443}]}});
        assert_eq!(
            resolve_service("ns", "hook", Some(&svc), &[], 443),
            Ok(("hooks.example.test".to_string(), 443))
        );
    }

    #[test]
    fn a_url_keeps_its_path_and_gets_the_timeout_query() {
        let e = url_endpoint("https://127.0.0.1:9443/mutate?x=1", "timeout=5s").unwrap();
        assert_eq!(e.host, "127.0.0.1");
        assert_eq!(e.port, 9443);
        assert_eq!(e.path, "/mutate?x=1&timeout=5s");
        assert_eq!(e.url, "https://127.0.0.1:9443/mutate?x=1&timeout=5s");
        assert!(url_endpoint("http://127.0.0.1/", "timeout=5s").is_err());
    }
}
