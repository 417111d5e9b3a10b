//! `serviceaccounts/token` against the real server in-process: `kubectl create token` as
//! a user runs it, the JWT checked with the public key from the data dir (never with the
//! server's own code), and upstream's errors for a missing account, a too-short lifetime
//! and a stale bound-object uid.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};
use x509_parser::prelude::FromDer as _;

use apiserver::server::{self, Config, Server};

struct Cluster {
    server: Server,
    client: Client,
    dir: tempfile::TempDir,
}

async fn start() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::new(dir.path())
    };
    let server = server::start(config).await.unwrap();
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    Cluster {
        server,
        client,
        dir,
    }
}

impl Cluster {
    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.server.kubeconfig)
            .args(args)
            .output()
            .expect("running kubectl (installed at /usr/bin/kubectl)")
    }

    /// The token's claims, after checking its ES256 signature with the public key the
    /// server keeps in its data dir.
    fn verified_claims(&self, token: &str) -> Value {
        let pem = std::fs::read_to_string(self.dir.path().join("pki/service-account.pub")).unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der).unwrap();
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            spki.subject_public_key.data.to_vec(),
        );
        let parts: Vec<&str> = token.trim().split('.').collect();
        assert_eq!(parts.len(), 3, "a compact JWS: {token}");
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("the signature verifies");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
    }
}

async fn service_account(client: &Client, name: &str) -> ServiceAccount {
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &sa)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_token_issues_a_signed_token_for_the_account() {
    let c = start().await;
    let sa = service_account(&c.client, "robot").await;
    let out = c.kubectl(&["create", "token", "robot", "-n", "default"]);
    assert!(
        out.status.success(),
        "kubectl create token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let claims = c.verified_claims(&token);
    assert_eq!(
        claims["iss"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(claims["sub"], "system:serviceaccount:default:robot");
    assert_eq!(
        claims["aud"],
        json!(["https://kubernetes.default.svc.cluster.local"])
    );
    let (iat, nbf, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["nbf"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!((exp - iat, nbf), (3600, iat), "an hour by default");
    assert_eq!(
        claims["kubernetes.io"],
        json!({"namespace": "default", "serviceaccount": {"name": "robot", "uid": sa.uid().unwrap()}})
    );

    // What a bearer-token authenticator gets from the server's own verifier.
    let signer = c
        .server
        .api
        .token_signer
        .get()
        .expect("the server loaded its signing key");
    let user = signer
        .verify(
            &token,
            &["https://kubernetes.default.svc.cluster.local"],
            iat + 10,
        )
        .unwrap();
    assert_eq!(user.name, "system:serviceaccount:default:robot");
    assert_eq!(
        user.groups,
        vec!["system:serviceaccounts", "system:serviceaccounts:default"]
    );
    assert!(
        signer.verify(&token, &["vault"], iat + 10).is_err(),
        "another audience is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_bound_to_a_pod_names_it_and_carries_the_requested_audience_and_lifetime() {
    let c = start().await;
    service_account(&c.client, "robot").await;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"serviceAccountName": "robot", "nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    let pod = Api::<Pod>::namespaced(c.client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    let out = c.kubectl(&[
        "create",
        "token",
        "robot",
        "-n",
        "default",
        "--audience",
        "vault",
        "--duration",
        "20m",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "web",
    ]);
    assert!(
        out.status.success(),
        "kubectl create token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims = c.verified_claims(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(claims["aud"], json!(["vault"]));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        1200
    );
    assert_eq!(
        claims["kubernetes.io"]["pod"],
        json!({"name": "web", "uid": pod.uid().unwrap()})
    );
    // The pod's node is named too; with no Node object there is no uid to add.
    assert_eq!(claims["kubernetes.io"]["node"], json!({"name": "n1"}));

    // A uid from an earlier pod of that name is refused as upstream does (409).
    let stale: TokenRequest = serde_json::from_value(json!({
        "spec": {"audiences": [], "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "stale"}},
    }))
    .unwrap();
    let sas = Api::<ServiceAccount>::namespaced(c.client.clone(), "default");
    match sas
        .create_token_request("robot", &PostParams::default(), &stale)
        .await
    {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 409, "{e:?}");
            assert!(
                e.message.contains("does not match the UID in record"),
                "{}",
                e.message
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_refused_for_a_missing_account_and_too_short_a_lifetime() {
    let c = start().await;
    let out = c.kubectl(&["create", "token", "ghost", "-n", "default"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("serviceaccounts \"ghost\" not found"), "{err}");
    let sas = Api::<ServiceAccount>::namespaced(c.client.clone(), "default");
    let request: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": []}})).unwrap();
    match sas
        .create_token_request("ghost", &PostParams::default(), &request)
        .await
    {
        Err(kube::Error::Api(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"), "{e:?}")
        }
        other => panic!("expected NotFound, got {other:?}"),
    }

    service_account(&c.client, "robot").await;
    let out = c.kubectl(&[
        "create",
        "token",
        "robot",
        "-n",
        "default",
        "--duration",
        "1m",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"),
        "{err}"
    );
    let short: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 60}}))
            .unwrap();
    match sas
        .create_token_request("robot", &PostParams::default(), &short)
        .await
    {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 422, "{e:?}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}
