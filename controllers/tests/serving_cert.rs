//! The node API's serving certificate is renewed while the agent runs: with a signer
//! that grants 20-second certificates, the agent asks again after 70–90 % of that, and
//! the same listener hands new connections the new certificate without a restart.

use std::sync::Arc;
use std::time::Duration;

use agent::nodeapi::cert::{self, ClusterCa, SIGNER};
use apiserver::pki::{ExtendedKeyUsagePurpose, Grant, KeyUsagePurpose, Pki};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use kybern_testkit::{eventually, InProcess};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;

/// Signs every node-serving request with a certificate valid for 20 seconds after now
/// (the API server's signer backdates notBefore by a day).
async fn short_lived_signer(client: kube::Client, pki: Pki) {
    let csrs: Api<CertificateSigningRequest> = Api::all(client);
    let grant = Grant {
        key_usages: vec![KeyUsagePurpose::DigitalSignature],
        extended_key_usages: vec![ExtendedKeyUsagePurpose::ServerAuth],
        validity: Duration::from_secs(20),
    };
    loop {
        for csr in csrs.list(&ListParams::default()).await.unwrap() {
            let signed = csr.status.as_ref().is_some_and(|s| s.certificate.is_some());
            if csr.spec.signer_name != SIGNER || signed {
                continue;
            }
            let request = String::from_utf8(csr.spec.request.0.clone()).unwrap();
            let cert = pki.sign_request(&request, &grant).unwrap();
            let approved = json!({"status": {"conditions": [{
                "type": "Approved", "status": "True", "reason": "Test", "message": "test",
            }]}});
            csrs.patch_approval(
                &csr.name_any(),
                &PatchParams::default(),
                &Patch::Merge(approved),
            )
            .await
            .unwrap();
            let issued =
                json!({"status": {"certificate": k8s_openapi::ByteString(cert.into_bytes())}});
            csrs.patch_status(
                &csr.name_any(),
                &PatchParams::default(),
                &Patch::Merge(issued),
            )
            .await
            .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The notBefore (seconds) of the certificate a new TLS connection to `port` is shown.
async fn served_not_before(port: u16, ca: &Pki) -> Result<i64, String> {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca.ca_cert_pem.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    Ok(cert.validity().not_before.timestamp())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_api_renews_its_certificate_and_serves_the_new_one_without_restarting() {
    let server = InProcess::start().await;
    let pki = apiserver::pki::ensure(server.server.kubeconfig.parent().unwrap(), &[]).unwrap();
    let signer = tokio::spawn(short_lived_signer(server.client.clone(), pki.clone()));
    let ca = ClusterCa(
        CertificateDer::pem_slice_iter(pki.ca_cert_pem.as_bytes())
            .map(|c| c.unwrap().to_vec())
            .collect(),
    );
    let dir = tempfile::tempdir().unwrap();
    let serving = cert::server_config(
        &server.client,
        "rotating",
        "127.0.0.1".parse().unwrap(),
        dir.path(),
        &ca,
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(serving.tls.clone());
    let listening = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    let rotation = tokio::spawn(serving.rotate());

    let first = served_not_before(port, &pki).await.unwrap();
    eventually("a renewed certificate on a new connection", || async {
        let now = served_not_before(port, &pki).await?;
        (now > first)
            .then_some(())
            .ok_or(format!("notBefore {now}, first {first}"))
    })
    .await;
    let csrs = Api::<CertificateSigningRequest>::all(server.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        csrs.items.len() >= 2,
        "a new request for the renewal: {}",
        csrs.items.len()
    );
    for task in [signer, listening, rotation] {
        task.abort();
    }
}
