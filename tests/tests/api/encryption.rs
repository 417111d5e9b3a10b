//! Secrets encrypted at rest with etcd and with a configuration file of the user's, and
//! configurations the server refuses. (The embedded store's restarts, rotations and
//! unreadable records run the real binary: `tests/kubectl/encryption.rs`.)

use apiserver::server::{self, Config, Encryption};
use apiserver::storage::encryption::{EncryptionConfiguration, Key, DEFAULT_FILE};
use apiserver::storage::Storage;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::Client;

use crate::common::secrets::{canary, key, password, secret};
use crate::common::Etcd;
use crate::storage::{etcd_store, start};

async fn stop(server: server::Server, client: Client) {
    drop(client);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_stores_secrets_encrypted_with_the_given_configuration() {
    let etcd = Etcd::start().await;
    let secretbox = format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox: {{keys: [{{name: sb-key, secret: {}}}]}}\n",
        Key::generate("sb-key").secret
    );
    let aesgcm = serde_yaml::to_string(&EncryptionConfiguration::generated("etcd-key")).unwrap();
    let cases = [
        ("aesgcm", aesgcm, "k8s:enc:aesgcm:v1:etcd-key:"),
        ("secretbox", secretbox, "k8s:enc:secretbox:v1:sb-key:"),
    ];
    for (name, config, prefix) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("my-encryption.yaml");
        std::fs::write(&path, config).unwrap();
        let (server, client) = start(dir.path(), Some(&etcd), |c| {
            c.encryption = Encryption::File(path.clone())
        })
        .await;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
        let (value, b64) = canary("etcd");
        secrets
            .create(&PostParams::default(), &secret(name, &value))
            .await
            .unwrap();
        assert_eq!(password(&secrets, name).await, value, "{name}");
        let raw = etcd_store(&etcd)
            .await
            .get(&key(name))
            .await
            .unwrap()
            .unwrap()
            .value;
        assert!(raw.starts_with(prefix.as_bytes()), "{name}: {raw:?}");
        assert!(
            !raw.windows(b64.len()).any(|w| w == b64.as_bytes()),
            "{name}"
        );
        assert!(
            !dir.path().join(DEFAULT_FILE).exists(),
            "{name}: no key of its own with etcd"
        );
        stop(server, client).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_refuses_to_start_with_a_configuration_it_cannot_honour() {
    let dir = tempfile::tempdir().unwrap();
    let head = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n";
    let key = "{name: k, secret: c2VjcmV0aXMzMmJ5dGVzbG9uZ3NlY3JldGlzMzJieXQ=}";
    for (name, providers, want) in [
        (
            "aescbc",
            format!("  - aescbc: {{keys: [{key}]}}\n"),
            "the aescbc provider is not supported by kybern",
        ),
        (
            "kms",
            "  - kms: {name: k, endpoint: unix:///k.sock}\n".to_string(),
            "the kms provider is not supported by kybern",
        ),
        (
            "missing_file",
            String::new(),
            "reading the encryption configuration",
        ),
    ] {
        let path = dir.path().join(format!("{name}.yaml"));
        if name != "missing_file" {
            std::fs::write(&path, format!("{head}{providers}")).unwrap();
        }
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            encryption: Encryption::File(path),
            ..Config::new(dir.path().join(name))
        };
        let err = server::start(config)
            .await
            .err()
            .unwrap_or_else(|| panic!("{name}: started"));
        assert!(format!("{err:#}").contains(want), "{name}: {err:#}");
    }
}
