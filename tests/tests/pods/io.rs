//! Pod I/O through the API server and the node API: what `kubectl logs`, `exec`,
//! `attach`, `port-forward` and `get --raw .../nodes/<node>/proxy/...` reach.

use crate::Node;

/// The status line's code of a GET of `path` on the node API at `port` on loopback, with
/// the client certificate `cert` (PEM cert and key), or none.
fn node_api_status(data_dir: &std::path::Path, port: u16, cert: Option<(&str, &str)>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = apiserver::pki::ensure(data_dir, &[]).unwrap();
    let config = match cert {
        Some((c, k)) => apiserver::tls::client_config(&pki, c, k).unwrap(),
        None => apiserver::tls::anonymous_client_config(&pki).unwrap(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        // The agent's certificate must verify against the cluster CA for 127.0.0.1.
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .expect("the node API's certificate is the cluster CA's, for the node's IP");
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        tls.read_to_end(&mut response).await.unwrap();
        let text = String::from_utf8_lossy(&response);
        text.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0)
    })
}

#[test]
fn the_node_api_lets_in_only_the_api_server() {
    let node = Node::start(&[]);
    let healthz = node.run(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{}/proxy/healthz", node.name),
    ]);
    assert_eq!(healthz, "ok", "the API server reaches the node API");
    let port: u16 = node
        .run(&[
            "get",
            "node",
            &node.name,
            "-o",
            "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}",
        ])
        .parse()
        .expect("the node reports its node API port");
    let data = node.dir.path().join("data");
    let pki = apiserver::pki::ensure(&data, &[]).unwrap();
    let (alice_cert, alice_key) = pki.issue_client_cert("alice", &["developers"]).unwrap();
    let cases = [
        ("no client certificate", None, 401),
        (
            "another user's certificate",
            Some((alice_cert.as_str(), alice_key.as_str())),
            403,
        ),
        (
            "the API server's certificate",
            Some((
                pki.kubelet_client_cert_pem.as_str(),
                pki.kubelet_client_key_pem.as_str(),
            )),
            200,
        ),
    ];
    for (name, cert, want) in cases {
        assert_eq!(node_api_status(&data, port, cert), want, "{name}");
    }
}
