//! Secrets encrypted at rest on the real binary's embedded store, as a user and an
//! attacker with the data files see it:
//! nothing of a Secret's value in the files, everything through the API, across
//! restarts, rotations and records written before encryption was on; a record no key
//! opens fails alone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use apiserver::storage::embedded::EmbeddedStore;
use apiserver::storage::encryption::{EncryptionConfiguration, Key, DEFAULT_FILE};
use apiserver::storage::{reencrypt, Storage};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::Client;

use crate::common::secrets::{canary, key, password, secret};
use crate::common::{client_from_kubeconfig, kybern_binary, Binary};

const WAIT: Duration = Duration::from_secs(30);

/// Every file under `dir` holding `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
            {
                found.push(path);
            }
        }
    }
    found
}

/// The stored bytes of `key`, read from the stopped server's store file.
async fn raw_record(data_dir: &Path, key: &str) -> Vec<u8> {
    let store = EmbeddedStore::open(&data_dir.join("kybern.db")).unwrap();
    store
        .get(key)
        .await
        .unwrap()
        .expect("the record")
        .value
        .to_vec()
}

/// `kybern server` on `data_dir` with `flags`, and an admin client for it. The test
/// stops it with SIGKILL, after which this process may open its store.
async fn start(data_dir: &Path, flags: &[&str]) -> (Binary, Client) {
    let mut cmd = std::process::Command::new(kybern_binary());
    cmd.arg("server")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(flags);
    let server = Binary::spawn(cmd, data_dir);
    let client = client_from_kubeconfig(&server.kubeconfig).await;
    (server, client)
}

async fn stop(server: Binary, client: Client) {
    drop(client);
    server.kill();
}

/// The `Status` of a failed API call.
fn status(result: Result<impl std::fmt::Debug, kube::Error>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error status, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_secret_is_not_in_the_data_files_but_is_readable_through_the_api_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, client) = start(&data, &[]).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let (value, b64) = canary("secret");
    secrets
        .create(&PostParams::default(), &secret("s", &value))
        .await
        .unwrap();
    // The control: a ConfigMap is not encrypted, and the search finds it.
    let (plain, _) = canary("configmap");
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(
            serde_json::json!({"metadata": {"name": "c"}, "data": {"v": plain}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(password(&secrets, "s").await, value);
    stop(server, client).await;

    assert_eq!(
        files_containing(&data, &plain),
        [data.join("kybern.db")],
        "the ConfigMap is stored as it is"
    );
    for needle in [&value, &b64] {
        assert_eq!(
            files_containing(&data, needle),
            Vec::<PathBuf>::new(),
            "{needle}"
        );
    }
    let stored = raw_record(&data, &key("s")).await;
    assert!(
        stored.starts_with(b"k8s:enc:aesgcm:v1:aesgcm-"),
        "{stored:?}"
    );

    let (server, client) = start(&data, &[]).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    assert_eq!(password(&secrets, "s").await, value, "after a restart");
    stop(server, client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_written_before_encryption_was_on_stay_readable_and_are_encrypted_when_next_written(
) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, client) = start(&data, &["--secrets-encryption=false"]).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let (value, b64) = canary("old");
    secrets
        .create(&PostParams::default(), &secret("old", &value))
        .await
        .unwrap();
    stop(server, client).await;
    assert!(!data.join(DEFAULT_FILE).exists());
    assert!(
        !files_containing(&data, &b64).is_empty(),
        "plaintext before"
    );

    let (server, client) = start(&data, &[]).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    assert_eq!(password(&secrets, "old").await, value);
    let (newer, newer_b64) = canary("newer");
    secrets
        .replace("old", &PostParams::default(), &{
            let mut s = secrets.get("old").await.unwrap();
            s.data = secret("old", &newer).data;
            s
        })
        .await
        .unwrap();
    assert_eq!(password(&secrets, "old").await, newer);
    stop(server, client).await;
    let stored = raw_record(&data, &key("old")).await;
    assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:"), "{stored:?}");
    assert!(!stored
        .windows(newer_b64.len())
        .any(|w| w == newer_b64.as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotation_rewrites_every_secret_with_the_new_key_and_keeps_them_readable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, client) = start(&data, &[]).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let mut values = Vec::new();
    for i in 0..5 {
        let (value, _) = canary("rotated");
        secrets
            .create(&PostParams::default(), &secret(&format!("s{i}"), &value))
            .await
            .unwrap();
        values.push(value);
    }
    stop(server, client).await;

    let path = data.join(DEFAULT_FILE);
    let store = EmbeddedStore::open(&data.join("kybern.db")).unwrap();
    let mut seen = Vec::new();
    let report = reencrypt::rotate(
        &path,
        store.as_ref(),
        Key::generate("rotated"),
        |done, total| seen.push((done, total)),
    )
    .await
    .unwrap();
    assert_eq!((report.rewritten, report.unreadable.len()), (5, 0));
    assert_eq!(seen.last(), Some(&(5, 5)), "progress reaches the end");
    let config = EncryptionConfiguration::load(&path).unwrap();
    assert_eq!(
        config.writers(),
        [("secrets".to_string(), "aesgcm key \"rotated\"".to_string())]
    );
    let census = reencrypt::census(store.as_ref(), &config.transformer().unwrap())
        .await
        .unwrap();
    assert_eq!(
        census.into_iter().collect::<Vec<_>>(),
        [("aesgcm key \"rotated\"".to_string(), 5)],
        "no record is left under the old key"
    );
    drop(store);

    let (server, client) = start(&data, &[]).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    for (i, value) in values.iter().enumerate() {
        assert_eq!(&password(&secrets, &format!("s{i}")).await, value, "s{i}");
    }
    stop(server, client).await;
}

/// The writing provider's keys in the file at `path`, as (name, secret).
fn writer_keys(path: &Path) -> Vec<(String, String)> {
    let mut config = EncryptionConfiguration::load(path).unwrap();
    let keys = config.first_provider_mut().unwrap().keys_mut().unwrap();
    keys.iter()
        .map(|k| (k.name.clone(), k.secret.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prepared_key_only_reads_until_a_rotation_makes_it_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = data.join(DEFAULT_FILE);
    let (server, client) = start(&data, &[]).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let (before, _) = canary("before");
    secrets
        .create(&PostParams::default(), &secret("before", &before))
        .await
        .unwrap();
    stop(server, client).await;
    let [(current, _)] = <[_; 1]>::try_from(writer_keys(&path)).unwrap();

    let prepared = reencrypt::prepare(&path, Key::generate("next")).unwrap();
    assert_eq!(prepared, "prepared-next");
    let keys = writer_keys(&path);
    let names: Vec<&str> = keys.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [current.as_str(), "prepared-next"],
        "added after the writer"
    );
    let prepared_secret = keys[1].1.clone();
    let again = reencrypt::prepare(&path, Key::generate("other")).unwrap_err();
    assert!(again.to_string().contains("is prepared already"), "{again}");

    let (server, client) = start(&data, &[]).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let (after, _) = canary("after");
    secrets
        .create(&PostParams::default(), &secret("after", &after))
        .await
        .unwrap();
    stop(server, client).await;
    let stored = raw_record(&data, &key("after")).await;
    assert!(
        stored.starts_with(format!("k8s:enc:aesgcm:v1:{current}:").as_bytes()),
        "the prepared key does not write yet: {stored:?}"
    );

    let store = EmbeddedStore::open(&data.join("kybern.db")).unwrap();
    let report = reencrypt::rotate(&path, store.as_ref(), Key::generate("promoted"), |_, _| {})
        .await
        .unwrap();
    assert_eq!((report.rewritten, report.unreadable.len()), (2, 0));
    assert_eq!(
        writer_keys(&path),
        [("promoted".to_string(), prepared_secret)],
        "the prepared key's secret writes, under the new name; the old key is gone"
    );
    drop(store);

    let (server, client) = start(&data, &[]).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    assert_eq!(password(&secrets, "before").await, before);
    assert_eq!(password(&secrets, "after").await, after);
    stop(server, client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_secret_no_key_opens_fails_alone_and_never_stops_start_up_or_watches() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, client) = start(&data, &[]).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    for name in ["good", "corrupted"] {
        secrets
            .create(&PostParams::default(), &secret(name, name))
            .await
            .unwrap();
    }
    stop(server, client).await;
    {
        // One record with a flipped bit, one written under a key the server never had.
        let store = EmbeddedStore::open(&data.join("kybern.db")).unwrap();
        let kv = store.get(&key("corrupted")).await.unwrap().unwrap();
        let mut bytes = kv.value.to_vec();
        *bytes.last_mut().unwrap() ^= 1;
        store
            .update(&key("corrupted"), bytes.into(), kv.mod_revision)
            .await
            .unwrap();
        let stranger = EncryptionConfiguration::generated("stranger")
            .transformer()
            .unwrap();
        let value = serde_json::to_vec(&secret("unknown-key", "x")).unwrap();
        let sealed = stranger
            .to_storage(&key("unknown-key"), value.into())
            .unwrap();
        store.create(&key("unknown-key"), sealed).await.unwrap();
    }

    let (server, client) = start(&data, &[]).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    assert_eq!(password(&secrets, "good").await, "good");
    for (name, reason) in [
        ("corrupted", "cipher: message authentication failed"),
        (
            "unknown-key",
            "identity transformer tried to read encrypted data",
        ),
    ] {
        let s = status(secrets.get(name).await);
        assert_eq!(s.code, 500, "{name}");
        let want = format!("unable to transform key \"{}\": {reason}", key(name));
        assert!(s.message.contains(&want), "{name}: {}", s.message);
    }
    let cached = secrets
        .list(&ListParams::default().match_any())
        .await
        .unwrap();
    let names: Vec<_> = cached
        .items
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    assert_eq!(names, ["good"], "the watch cache serves what it can read");
    let mut events = secrets
        .watch(
            &WatchParams::default().timeout(60),
            &cached.metadata.resource_version.unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    secrets
        .create(&PostParams::default(), &secret("later", "later"))
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(WAIT, events.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Added(s) => {
                assert_eq!(s.metadata.name.as_deref(), Some("later"));
                break;
            }
            other => panic!("expected the ADDED of `later`, got {other:?}"),
        }
    }
    stop(server, client).await;
}
