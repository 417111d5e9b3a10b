//! Storage hardening as a user sees it: large stores on etcd (paged reads), records the
//! server cannot read, compaction across frequent restarts, and a private data dir.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apiserver::server::{self, Config, Server, StorageBackend};
use apiserver::storage::compaction::{Clock, CHECKPOINT_KEY};
use apiserver::storage::embedded::EmbeddedStore;
use apiserver::storage::etcd::EtcdStore;
use apiserver::storage::Storage;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::Client;
use serde_json::{json, Value};

use crate::common::{client_from_kubeconfig, Backend, Etcd};
use crate::{code, configmap};

const WAIT: Duration = Duration::from_secs(30);
const CONFIGMAPS: &str = "/registry/core/configmaps/";

/// A server on `data_dir` (and `etcd`, if given), configured further by `tweak`.
pub(crate) async fn start(
    data_dir: &Path,
    etcd: Option<&Etcd>,
    tweak: impl FnOnce(&mut Config),
) -> (Server, Client) {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::new(data_dir)
    };
    if let Some(etcd) = etcd {
        config.storage = StorageBackend::Etcd;
        config.etcd_endpoints = vec![etcd.endpoint.clone()];
    }
    tweak(&mut config);
    let server = server::start(config).await.expect("the server starts");
    let client = client_from_kubeconfig(&server.kubeconfig).await;
    (server, client)
}

/// The server's storage, opened directly (the etcd prefix is the default, empty one).
pub(crate) async fn etcd_store(etcd: &Etcd) -> Arc<EtcdStore> {
    EtcdStore::connect(std::slice::from_ref(&etcd.endpoint), "")
        .await
        .unwrap()
}

fn names(list: &[ConfigMap]) -> Vec<String> {
    list.iter()
        .map(|cm| cm.metadata.name.clone().unwrap())
        .collect()
}

/// The next watch event other than a bookmark.
async fn next_event(
    events: &mut BoxStream<'static, kube::Result<WatchEvent<ConfigMap>>>,
) -> WatchEvent<ConfigMap> {
    loop {
        match tokio::time::timeout(WAIT, events.try_next())
            .await
            .expect("an event")
            .unwrap()
            .expect("open")
        {
            WatchEvent::Bookmark(_) => continue,
            event => return event,
        }
    }
}

/// Waits (up to `WAIT`) until `done` holds; panics with `what` otherwise.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut done: impl FnMut() -> F,
) {
    let deadline = Instant::now() + WAIT;
    while !done().await {
        assert!(Instant::now() < deadline, "{what} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_thousand_configmaps_on_etcd_list_in_full_and_in_pages_survive_a_restart_and_delete()
{
    const COUNT: usize = 20_000;
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (first, client) = start(dir.path(), Some(&etcd), |_| {}).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    // 1.2 KB each: 24 MB in all, six times what one response could hold before.
    let payload = "x".repeat(1_100);
    let template = cms
        .create(
            &PostParams::default(),
            &configmap("cm-00000", json!({ "payload": payload })),
        )
        .await
        .unwrap();
    let store = etcd_store(&etcd).await;
    let stored = store
        .get(&format!("{CONFIGMAPS}default/cm-00000"))
        .await
        .unwrap()
        .unwrap();
    let stored: Value = serde_json::from_slice(&stored.value).unwrap();
    let uid = template.metadata.uid.unwrap();
    // The others written straight into etcd, as the server would have stored them.
    futures::stream::iter(1..COUNT)
        .map(|i| {
            let (store, mut obj) = (store.clone(), stored.clone());
            let name = format!("cm-{i:05}");
            obj["metadata"]["name"] = json!(name);
            obj["metadata"]["uid"] = json!(format!("{}{i:05}", &uid[..uid.len() - 5]));
            async move {
                let value = serde_json::to_vec(&obj).unwrap();
                store
                    .create(&format!("{CONFIGMAPS}default/{name}"), value.into())
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(1024)
        .collect::<Vec<_>>()
        .await;

    let all = cms
        .list(&ListParams::default())
        .await
        .expect("an unpaginated LIST from etcd");
    assert_eq!(all.items.len(), COUNT);
    let mut paged = Vec::new();
    let mut lp = ListParams::default().limit(1_000);
    loop {
        let page = cms.list(&lp).await.expect("a page");
        paged.extend(names(&page.items));
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(
        paged,
        names(&all.items),
        "the pages hold the same objects in the same order"
    );

    // A server started on that etcd loads every watch cache and serves them all.
    first.shutdown().await;
    let (_second, client) = start(dir.path(), Some(&etcd), |_| {}).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let cached = cms
        .list(&ListParams::default().match_any())
        .await
        .expect("a LIST from the watch cache");
    assert_eq!(cached.items.len(), COUNT);

    cms.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("deletecollection of all of them");
    assert!(cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
}

/// A stored value no decoder accepts.
const GARBAGE: &[u8] = b"\xff\x00 not an object";

async fn an_unreadable_record_leaves_its_resource_served(backend: Backend) {
    let etcd = match backend {
        Backend::Embedded => None,
        Backend::Etcd => Some(Etcd::start().await),
    };
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), etcd.as_ref(), |_| {}).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let before = cms
        .create(&PostParams::default(), &configmap("before", json!({})))
        .await
        .unwrap();
    let mut events = cms
        .watch(
            &WatchParams::default().timeout(60),
            &before.metadata.resource_version.unwrap(),
        )
        .await
        .unwrap()
        .boxed();

    let storage = &server.api.storage;
    storage
        .create(&format!("{CONFIGMAPS}default/broken"), GARBAGE.into())
        .await
        .unwrap();
    cms.create(&PostParams::default(), &configmap("after", json!({})))
        .await
        .unwrap();

    match next_event(&mut events).await {
        WatchEvent::Added(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("after")),
        other => panic!("{backend:?}: expected the ADDED of `after`, got {other:?}"),
    }
    let cached = cms.list(&ListParams::default().match_any()).await.unwrap();
    assert_eq!(names(&cached.items), ["after", "before"], "{backend:?}");
    assert_eq!(code(cms.get("broken").await), 500, "{backend:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreadable_record_leaves_lists_and_watches_of_its_resource_working_on_embedded_storage()
{
    an_unreadable_record_leaves_its_resource_served(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreadable_record_leaves_lists_and_watches_of_its_resource_working_on_etcd() {
    an_unreadable_record_leaves_its_resource_served(Backend::Etcd).await;
}

/// Unreadable records of a built-in resource and of a CRD, in storage before start.
const BROKEN_KEYS: [&str; 2] = [
    "/registry/core/configmaps/default/broken",
    "/registry/apiextensions.k8s.io/customresourcedefinitions/broken.example.com",
];

async fn a_server_starts_past_unreadable_records(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let etcd = match backend {
        Backend::Embedded => {
            std::fs::create_dir_all(dir.path()).unwrap();
            let store = EmbeddedStore::open(&dir.path().join("kybern.db")).unwrap();
            for key in BROKEN_KEYS {
                store.create(key, GARBAGE.into()).await.unwrap();
            }
            None
        }
        Backend::Etcd => {
            let etcd = Etcd::start().await;
            let store = etcd_store(&etcd).await;
            for key in BROKEN_KEYS {
                store.create(key, GARBAGE.into()).await.unwrap();
            }
            Some(etcd)
        }
    };
    let (_server, client) = start(dir.path(), etcd.as_ref(), |_| {}).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut events = cms
        .watch(&WatchParams::default().timeout(60), "0")
        .await
        .unwrap()
        .boxed();
    cms.create(&PostParams::default(), &configmap("after", json!({})))
        .await
        .unwrap();
    match next_event(&mut events).await {
        WatchEvent::Added(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("after")),
        other => panic!("{backend:?}: expected the ADDED of `after`, got {other:?}"),
    }
    let cached = cms.list(&ListParams::default().match_any()).await.unwrap();
    assert_eq!(names(&cached.items), ["after"], "{backend:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_starts_and_serves_on_a_store_with_unreadable_records_on_embedded_storage() {
    a_server_starts_past_unreadable_records(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_starts_and_serves_on_a_store_with_unreadable_records_on_etcd() {
    a_server_starts_past_unreadable_records(Backend::Etcd).await;
}

/// A wall clock the test moves by hand.
#[derive(Debug)]
struct FakeClock(Mutex<SystemTime>);

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_restarted_every_two_minutes_still_compacts_its_history() {
    const MINUTE: Duration = Duration::from_secs(60);
    let etcd = Etcd::start().await;
    let store = etcd_store(&etcd).await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock(Mutex::new(
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    )));
    let mut checkpoint = 0;
    // Servers started at minutes 0, 2, 4 and 6, none of them up for an interval (five
    // minutes, upstream's default): the one at minute 6 finds the checkpoint of minute 0
    // five minutes old.
    for minute in [0, 2, 4, 6] {
        let (server, client) = start(dir.path(), Some(&etcd), |c| {
            c.compaction_clock = clock.clone()
        })
        .await;
        let cms: Api<ConfigMap> = Api::namespaced(client, "default");
        cms.create(
            &PostParams::default(),
            &configmap(&format!("at-{minute}"), json!({})),
        )
        .await
        .unwrap();
        if minute == 0 {
            eventually("a compaction checkpoint is written at start", || async {
                store.get(CHECKPOINT_KEY).await.unwrap().is_some()
            })
            .await;
            checkpoint = store
                .get(CHECKPOINT_KEY)
                .await
                .unwrap()
                .unwrap()
                .mod_revision;
        } else if minute < 6 {
            assert_eq!(
                store.compacted_revision().await.unwrap(),
                0,
                "nothing compacted by minute {minute}"
            );
        } else {
            eventually(
                "history up to the first checkpoint is compacted",
                || async { store.compacted_revision().await.unwrap() >= checkpoint },
            )
            .await;
        }
        server.shutdown().await;
        *clock.0.lock().unwrap() += 2 * MINUTE;
    }
    // Only history older than five minutes went: what the minute-6 server kept is readable.
    assert_eq!(store.compacted_revision().await.unwrap(), checkpoint);
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_data_dir_readable_by_every_user_is_made_private_on_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // What an older server left: a store, certificates and keys, all open to everyone.
    std::fs::create_dir(&data).unwrap();
    drop(EmbeddedStore::open(&data.join("kybern.db")).unwrap());
    apiserver::pki::ensure(&data, &[]).unwrap();
    let pki = data.join("pki");
    for entry in std::fs::read_dir(&pki).unwrap() {
        set_mode(&entry.unwrap().path(), 0o644);
    }
    for (path, loose) in [
        (&pki, 0o755),
        (&data.join("kybern.db"), 0o644),
        (&data, 0o755),
    ] {
        set_mode(path, loose);
    }

    let (_server, _client) = start(&data, None, |_| {}).await;
    assert_eq!(mode(&data), 0o700, "the data dir");
    assert_eq!(mode(&pki), 0o700, "the pki dir");
    let mut files = Vec::new();
    for d in [&data, &pki] {
        for entry in std::fs::read_dir(d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                files.push((path.display().to_string(), mode(&path)));
            }
        }
    }
    for name in [
        "kybern.db",
        "admin.kubeconfig",
        "encryption-config.yaml",
        "pki/ca.crt",
        "pki/ca.key",
        "pki/service-account.key",
    ] {
        assert!(
            files.iter().any(|(p, _)| p.ends_with(name)),
            "{name} in {files:?}"
        );
    }
    let loose: Vec<_> = files.iter().filter(|(_, m)| *m != 0o600).collect();
    assert!(loose.is_empty(), "files not 0600: {loose:?}");
}
