//! `pods/proxy` and `services/proxy`: the API server passes a request on to the pod (a
//! service's ready endpoint) and its answer back, as `kubectl proxy` and
//! `kubectl get --raw .../proxy/...` use them. The "pod" here is a server on loopback
//! (the pod's IP is 127.0.0.1), so nothing leaves the machine.

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::InProcess;

/// An HTTP server on loopback that answers every request with its method and target.
async fn echo_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(echo(conn));
        }
    });
    port
}

/// [`echo_server`] over TLS, with a certificate from a CA the API server has never seen
/// (as a pod's own certificate is).
async fn tls_echo_server(dir: &std::path::Path) -> u16 {
    let pki = apiserver::pki::ensure(dir, &["127.0.0.1".into()]).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(apiserver::tls::server_config(&pki).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(conn).await {
                    echo(tls).await;
                }
            });
        }
    });
    port
}

/// Answers one request on `conn` with its request line.
async fn echo(mut conn: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin) {
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    let line = head.lines().next().unwrap_or("").to_string();
    let body = format!("you asked: {line}");
    let _ = conn
        .write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await;
    let _ = conn.shutdown().await;
}

async fn get(client: &kube::Client, path: &str) -> Result<String, kube::Error> {
    client
        .request_text(http::Request::get(path).body(Vec::new()).unwrap())
        .await
}

#[tokio::test]
async fn pod_and_service_proxies_reach_the_pod_by_port_number_or_name() {
    let s = InProcess::start().await;
    let port = echo_server().await;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": port}]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let mut status = pods.get_status("web").await.unwrap();
    status.status.as_mut().unwrap().pod_ip = Some("127.0.0.1".into());
    pods.replace_status("web", &PostParams::default(), &status)
        .await
        .unwrap();

    let by_number = get(
        &s.client,
        &format!("/api/v1/namespaces/default/pods/web:{port}/proxy/some/path?x=1"),
    )
    .await
    .unwrap();
    assert_eq!(by_number, "you asked: GET /some/path?x=1 HTTP/1.1");
    let by_name = get(&s.client, "/api/v1/namespaces/default/pods/web:http/proxy/")
        .await
        .unwrap();
    assert_eq!(by_name, "you asked: GET / HTTP/1.1");

    let services: Api<Service> = Api::namespaced(s.client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    // Without kube-rs's retries of 503s: the first answer is the one asserted.
    let once = crate::common::client_without_retries(&s.server.kubeconfig).await;
    let no_endpoints = get(&once, "/api/v1/namespaces/default/services/web:http/proxy/")
        .await
        .unwrap_err();
    assert!(
        matches!(&no_endpoints, kube::Error::Api(e) if e.code == 503 && e.message.contains("no endpoints available for service \"web\"")),
        "{no_endpoints:?}"
    );
    let endpoints: Api<Endpoints> = Api::namespaced(s.client.clone(), "default");
    let eps: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": port}]}]
    }))
    .unwrap();
    endpoints
        .create(&PostParams::default(), &eps)
        .await
        .unwrap();
    let through_service = get(
        &s.client,
        "/api/v1/namespaces/default/services/web:http/proxy/a/b",
    )
    .await
    .unwrap();
    assert_eq!(through_service, "you asked: GET /a/b HTTP/1.1");
}

#[tokio::test]
async fn a_pod_without_a_node_has_empty_logs_and_nothing_to_exec_into() {
    let s = InProcess::start().await;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "lonely"},
        "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let cases = [
        (
            "/api/v1/namespaces/default/pods/lonely/log",
            "a container name must be specified for pod lonely, choose one of: [a b]",
        ),
        (
            "/api/v1/namespaces/default/pods/lonely/log?container=c",
            "container c is not valid for pod lonely",
        ),
        (
            "/api/v1/namespaces/default/pods/lonely/exec?container=a&command=ls",
            "pod lonely does not have a host assigned",
        ),
    ];
    for (path, message) in cases {
        let err = get(&s.client, path).await.unwrap_err();
        assert!(
            matches!(&err, kube::Error::Api(e) if e.code == 400 && e.message == message),
            "{path}: {err:?}"
        );
    }
    // Upstream answers the logs of a pod no node runs yet with nothing.
    let empty = get(
        &s.client,
        "/api/v1/namespaces/default/pods/lonely/log?container=a",
    )
    .await
    .unwrap();
    assert_eq!(empty, "");
}

/// A pod (loopback) serving HTTPS on `port`, and a Service `web` in front of it whose
/// port `https` (443) has that pod as its endpoint.
async fn https_pod_and_service(client: &kube::Client, port: u16) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "secure"},
        "spec": {"containers": [{"name": "c", "image": "x", "ports": [{"name": "https", "containerPort": port}]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let mut status = pods.get_status("secure").await.unwrap();
    status.status.as_mut().unwrap().pod_ip = Some("127.0.0.1".into());
    pods.replace_status("secure", &PostParams::default(), &status)
        .await
        .unwrap();
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "secure"},
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": "https"}]}
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    let eps: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "secure"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port}]}]
    }))
    .unwrap();
    Api::<Endpoints>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &eps)
        .await
        .unwrap();
}

#[tokio::test]
async fn https_pod_and_service_proxies_reach_a_pod_whose_certificate_nobody_signed() {
    let s = InProcess::start().await;
    let pod_pki = tempfile::tempdir().unwrap();
    let port = tls_echo_server(pod_pki.path()).await;
    https_pod_and_service(&s.client, port).await;
    let cases = [
        (
            "pod by port number",
            format!("/api/v1/namespaces/default/pods/https:secure:{port}/proxy/a?x=1"),
            "you asked: GET /a?x=1 HTTP/1.1",
        ),
        (
            "pod by port name",
            "/api/v1/namespaces/default/pods/https:secure:https/proxy/".to_string(),
            "you asked: GET / HTTP/1.1",
        ),
        (
            "service by port name",
            "/api/v1/namespaces/default/services/https:secure:https/proxy/b".to_string(),
            "you asked: GET /b HTTP/1.1",
        ),
        (
            "service by port number",
            "/api/v1/namespaces/default/services/https:secure:443/proxy/c".to_string(),
            "you asked: GET /c HTTP/1.1",
        ),
    ];
    for (name, path, want) in cases {
        let got = get(&s.client, &path).await;
        assert_eq!(got.as_deref().ok(), Some(want), "{name}: {got:?}");
    }
}

#[tokio::test]
async fn a_proxy_scheme_other_than_http_or_https_is_a_bad_request() {
    let s = InProcess::start().await;
    let pod_pki = tempfile::tempdir().unwrap();
    let port = tls_echo_server(pod_pki.path()).await;
    https_pod_and_service(&s.client, port).await;
    let err = get(
        &s.client,
        "/api/v1/namespaces/default/pods/ftp:secure:https/proxy/",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(e) if e.code == 400 && e.message == "invalid pod request \"ftp:secure:https\""),
        "{err:?}"
    );
}

/// A node's agent on loopback with a certificate from the cluster's CA (as a real
/// agent's is): it answers every request with `ok` on a kept-alive connection and
/// counts the connections it is given.
async fn node_agent(
    data_dir: &std::path::Path,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let pki = apiserver::pki::ensure(data_dir, &[]).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(apiserver::tls::server_config(&pki).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(conn).await else {
                    return;
                };
                // Requests one after another, until the far side closes.
                let mut buf = Vec::new();
                while crate::common::http::next_request(&mut tls, &mut buf)
                    .await
                    .is_some()
                {
                    let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if tls.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, connections)
}

#[tokio::test]
async fn requests_through_a_node_share_kept_alive_connections_to_its_agent() {
    const CALLS: usize = 10;
    let s = InProcess::start().await;
    let (port, connections) = node_agent(s.data_dir()).await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(s.client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "n1"},
                "status": {
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                },
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    for i in 0..CALLS {
        let got = get(
            &s.client,
            &format!("/api/v1/nodes/n1/proxy/healthz?call={i}"),
        )
        .await;
        assert_eq!(got.as_deref().ok(), Some("ok"), "call {i}: {got:?}");
    }
    let used = connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        used < CALLS,
        "{CALLS} requests through the node used {used} connections"
    );
}
