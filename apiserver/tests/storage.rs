//! Runs the storage contract suite against both backends (the etcd one against a real
//! etcd this test starts), plus restart and crash-durability tests of the embedded store.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::storage::embedded::EmbeddedStore;
use apiserver::storage::etcd::EtcdStore;
mod storage_suite;

use apiserver::storage::{Error, ListOptions, Storage};
use bytes::Bytes;
use futures::StreamExt;
use storage_suite as suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("kybern.redb")).unwrap();
    suite::run_all(store.clone()).await;
    assert!(store.size_on_disk().await.unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kybern.redb");
    let (last, compacted) = {
        let store = EmbeddedStore::open(&path).unwrap();
        let mut last = 0;
        for i in 0..20 {
            last = store
                .create(&format!("/r/{i:02}"), Bytes::from(format!("v{i}")))
                .await
                .unwrap();
        }
        let (_, rev) = store.delete("/r/00", None).await.unwrap();
        store.compact(last).await.unwrap();
        (rev, last)
    };
    let store = EmbeddedStore::open(&path).expect("reopen after drop");
    assert_eq!(store.current_revision().await.unwrap(), last);
    assert_eq!(store.compacted_revision().await.unwrap(), compacted);
    let list = store.list("/r/", ListOptions::default()).await.unwrap();
    assert_eq!(list.kvs.len(), 19);
    assert_eq!(list.kvs[0].value.as_ref(), b"v1");
    let next = store
        .create("/r/new", Bytes::from_static(b"n"))
        .await
        .unwrap();
    assert!(
        next > last,
        "revision {next} after restart must exceed {last}"
    );
    // The delete after the compacted revision can still be watched.
    let mut w = store.watch("/r/", compacted).await.unwrap();
    assert_eq!(suite::next_event(&mut w).await.revision(), last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_lagging_watch_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("lag.redb")).unwrap();
    let start = store.current_revision().await.unwrap();
    // Not read while the writes happen, so it falls far behind the live broadcast.
    let mut w = store.watch("/lag/", start).await.unwrap();
    let (tasks, per_task) = (32, 200);
    let writers: Vec<_> = (0..tasks)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    store
                        .create(&format!("/lag/{t}/{i}"), Bytes::from_static(b"x"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let mut last = start;
    for _ in 0..tasks * per_task {
        let rev = suite::next_event(&mut w).await.revision();
        assert_eq!(
            rev,
            last + 1,
            "a lagging watch skipped or repeated an event"
        );
        last = rev;
    }
    assert_eq!(last, store.current_revision().await.unwrap());
}

const CRASH_CHILD_ENV: &str = "KYBERN_STORAGE_CRASH_CHILD";

/// The child half of `embedded_acknowledged_writes_survive_sigkill`: writes keys from
/// several tasks and prints each one once its create is acknowledged.
async fn crash_child(path: &Path) {
    let store = EmbeddedStore::open(path).unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("/crash/{t}-{i}");
                    store
                        .create(&key, Bytes::from_static(b"durable"))
                        .await
                        .unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {key}").unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_acknowledged_writes_survive_sigkill() {
    if let Ok(path) = std::env::var(CRASH_CHILD_ENV) {
        crash_child(Path::new(&path)).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "embedded_acknowledged_writes_survive_sigkill",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    while acked.len() < 300 {
        let line = lines
            .next()
            .expect("child exited before 300 acknowledgements")
            .unwrap();
        if let Some(key) = line.strip_prefix("ACK ") {
            acked.push(key.to_owned());
        }
    }
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    // Acknowledgements the child printed before it died count too.
    acked.extend(
        lines
            .map_while(|l| l.ok())
            .filter_map(|l| l.strip_prefix("ACK ").map(str::to_owned)),
    );

    let store = EmbeddedStore::open(&path).expect("reopen after SIGKILL");
    let present = store.list("/crash/", ListOptions::default()).await.unwrap();
    let present: std::collections::HashSet<_> = present.kvs.into_iter().map(|kv| kv.key).collect();
    let lost: Vec<_> = acked.iter().filter(|k| !present.contains(*k)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged keys lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        lost.first()
    );
}

/// A child process that gets SIGKILL (by its pid) when dropped, also when a test panics.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A throwaway etcd on loopback, killed when dropped.
struct EtcdProcess {
    _child: KillOnDrop,
    endpoint: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn etcd_binary() -> PathBuf {
    let candidates = [
        std::env::var("ETCD_BIN").ok(),
        Some("/usr/bin/etcd".into()),
        Some("/usr/local/bin/etcd".into()),
    ];
    candidates.into_iter().flatten().map(PathBuf::from).find(|p| p.exists()).unwrap_or_else(|| {
        panic!("the etcd binary is missing (looked for $ETCD_BIN, /usr/bin/etcd, /usr/local/bin/etcd): apt-get install etcd-server")
    })
}

async fn start_etcd() -> EtcdProcess {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let endpoint = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new(etcd_binary())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "--listen-client-urls",
            &endpoint,
            "--advertise-client-urls",
            &endpoint,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args(["--initial-cluster", &format!("default={peer_url}")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("etcd.log")).unwrap())
        .spawn()
        .expect("starting etcd");
    let etcd = EtcdProcess {
        _child: KillOnDrop(child),
        endpoint,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(store) = EtcdStore::connect(std::slice::from_ref(&etcd.endpoint), "/probe").await
        {
            if store.current_revision().await.is_ok() {
                return etcd;
            }
        }
        assert!(
            Instant::now() < deadline,
            "etcd did not become ready within 30s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_suite() {
    let etcd = start_etcd().await;
    let store = EtcdStore::connect(std::slice::from_ref(&etcd.endpoint), "/kybern")
        .await
        .unwrap();
    suite::run_all(store.clone() as Arc<dyn Storage>).await;
    assert!(store.size_on_disk().await.unwrap() > 0);
    // A fresh client knows nothing of the compaction: it must find it out from etcd.
    let fresh = EtcdStore::connect(std::slice::from_ref(&etcd.endpoint), "/kybern")
        .await
        .unwrap();
    let compacted = store.compacted_revision().await.unwrap();
    assert!(compacted > 1);
    assert_eq!(fresh.compacted_revision().await.unwrap(), compacted);
    let fresh = EtcdStore::connect(std::slice::from_ref(&etcd.endpoint), "/kybern")
        .await
        .unwrap();
    match fresh.watch("/", 1).await {
        Err(Error::Compacted { .. }) => {}
        Ok(mut w) => match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
            Ok(Some(Err(Error::Compacted { compacted: c, .. }))) => assert_eq!(c, compacted),
            other => panic!("watch from a compacted revision: {other:?}"),
        },
        Err(e) => panic!("watch from a compacted revision: {e}"),
    }
    let old = ListOptions {
        revision: Some(1),
        ..Default::default()
    };
    assert!(matches!(
        fresh.list("/", old).await,
        Err(Error::Compacted { .. })
    ));
    // A second client with another prefix sees none of the first one's keys.
    let other = EtcdStore::connect(std::slice::from_ref(&etcd.endpoint), "/elsewhere")
        .await
        .unwrap();
    assert!(other
        .list("/", ListOptions::default())
        .await
        .unwrap()
        .kvs
        .is_empty());
}

/// tonic's default receive limit, which the etcd client used to keep.
const OLD_RECEIVE_LIMIT: usize = 4 * 1024 * 1024;

/// Creates `count` keys `{prefix}{i:05}` with `value`, many at a time.
async fn seed(store: &Arc<EtcdStore>, prefix: &str, count: usize, value: Bytes) {
    futures::stream::iter(0..count)
        .map(|i| {
            let (store, value) = (store.clone(), value.clone());
            let key = format!("{prefix}{i:05}");
            async move { store.create(&key, value).await.unwrap() }
        })
        .buffer_unordered(128)
        .collect::<Vec<_>>()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_lists_more_than_one_response_can_hold_as_one_snapshot() {
    let etcd = start_etcd().await;
    let endpoints = std::slice::from_ref(&etcd.endpoint);
    let store = EtcdStore::connect_with_response_limit(endpoints, "/kybern", OLD_RECEIVE_LIMIT)
        .await
        .unwrap();
    // 5,000 objects of 1.2 KB: 6 MB, more than one 4 MiB response holds.
    seed(&store, "/cm/a", 5_000, Bytes::from(vec![b'x'; 1200])).await;
    // Writes go on while the list reads its pages, of keys before and after all others:
    // a list that read later pages at a later revision would miss the first kind.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                let key = format!("/cm/{}{i:05}", if i % 2 == 0 { "0" } else { "z" });
                store
                    .create(&key, Bytes::from_static(b"late"))
                    .await
                    .unwrap();
            }
        })
    };
    let all = store.list("/cm/", ListOptions::default()).await.unwrap();
    writer.await.unwrap();
    assert!(!all.more);
    assert!(all.kvs.len() >= 5_000, "{} keys listed", all.kvs.len());
    // Exactly the keys that existed at the list's revision, each as it was then.
    let now = store.list("/cm/", ListOptions::default()).await.unwrap();
    let existed = now
        .kvs
        .iter()
        .filter(|kv| kv.create_revision <= all.revision)
        .count();
    assert_eq!(
        all.kvs.len(),
        existed,
        "listed at revision {}",
        all.revision
    );
    assert!(all.kvs.iter().all(|kv| kv.mod_revision <= all.revision));
    // A limit over one page's worth is met across pages, with `more` still right.
    let limited = ListOptions {
        limit: 1_200,
        ..Default::default()
    };
    let page = store.list("/cm/", limited).await.unwrap();
    assert_eq!(page.kvs.len(), 1_200);
    assert!(page.more);
    let rest = ListOptions {
        start_after: page.kvs.last().map(|kv| kv.key.clone()),
        revision: Some(page.revision),
        ..Default::default()
    };
    let rest = store.list("/cm/", rest).await.unwrap();
    assert_eq!(page.kvs.len() + rest.kvs.len(), now.kvs.len());
    assert!(!rest.more);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_asks_for_smaller_pages_when_one_is_still_too_large() {
    let etcd = start_etcd().await;
    let endpoints = std::slice::from_ref(&etcd.endpoint);
    let store = EtcdStore::connect_with_response_limit(endpoints, "/kybern", OLD_RECEIVE_LIMIT)
        .await
        .unwrap();
    // Objects of 1 MiB (etcd takes up to 1.5 MiB): 8 of them are twice the 4 MiB limit.
    seed(&store, "/big/", 8, Bytes::from(vec![b'x'; 1024 * 1024])).await;
    let all = store.list("/big/", ListOptions::default()).await.unwrap();
    assert_eq!(all.kvs.len(), 8);
    assert!(all.kvs.iter().all(|kv| kv.value.len() == 1024 * 1024));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reopened_embedded_store_gives_the_space_of_compacted_history_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kybern.db");
    let (keys, rounds, size) = (200, 6, 16 * 1024);
    let grown = {
        let store = EmbeddedStore::open(&path).unwrap();
        // Every key rewritten in each round (one batch each): the pages of the live
        // objects end up spread among ~40 MB of logged history, so no free tail is left
        // for redb to trim by itself once that history is compacted.
        for round in 0..rounds {
            let value = Bytes::from(vec![b'a' + round as u8; size]);
            futures::stream::iter(0..keys)
                .map(|i| {
                    let (store, value) = (store.clone(), value.clone());
                    async move {
                        let key = format!("/r/{i:03}");
                        match store.get(&key).await.unwrap() {
                            Some(kv) => store.update(&key, value, kv.mod_revision).await.unwrap(),
                            None => store.create(&key, value).await.unwrap(),
                        }
                    }
                })
                .buffer_unordered(keys)
                .collect::<Vec<_>>()
                .await;
        }
        let current = store.current_revision().await.unwrap();
        store.compact(current).await.unwrap();
        store.size_on_disk().await.unwrap()
    };
    let store = EmbeddedStore::open(&path).unwrap();
    let shrunk = store.size_on_disk().await.unwrap();
    assert!(
        shrunk * 4 < grown,
        "{grown} bytes before, {shrunk} after reopening"
    );
    let list = store.list("/r/", ListOptions::default()).await.unwrap();
    assert_eq!(list.kvs.len(), keys);
    let last = b'a' + rounds as u8 - 1;
    assert!(list
        .kvs
        .iter()
        .all(|kv| kv.value.len() == size && kv.value[0] == last));
}
