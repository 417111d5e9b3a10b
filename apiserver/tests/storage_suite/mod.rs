//! The contract test suite every [`Storage`] backend must pass.
//!
//! Each check works under its own key prefix (below a random base), so the suite can
//! run against an etcd that other tests share. It panics on the first violation.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use apiserver::storage::{Error, Event, EventKind, ListOptions, Storage, WatchStream};

type Store = Arc<dyn Storage>;

/// Runs every check, each under a fresh prefix.
pub(crate) async fn run_all(store: Store) {
    let base = format!("/suite-{}", uuid::Uuid::new_v4().simple());
    crud_and_cas(&store, &format!("{base}/crud/")).await;
    revisions_increase(&store, &format!("{base}/revs/")).await;
    list_prefix_and_pages(&store, &format!("{base}/list/")).await;
    list_at_past_revision(&store, &format!("{base}/past/")).await;
    watch_replay_then_live(&store, &format!("{base}/watch/")).await;
    concurrent_watchers(&store, &format!("{base}/watchers/")).await;
    concurrent_cas(&store, &format!("{base}/cas/")).await;
    compaction(&store, &format!("{base}/compact/")).await;
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// The next event of a watch, failing the test after 10 s.
pub(crate) async fn next_event(stream: &mut WatchStream) -> Event {
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within 10s"),
    }
}

/// Create, update, delete with and without compare-and-swap, and their failures.
pub(crate) async fn crud_and_cas(store: &Store, p: &str) {
    let key = format!("{p}k");
    let r1 = store.create(&key, b("v1")).await.expect("create");
    let kv = store
        .get(&key)
        .await
        .unwrap()
        .expect("created key is readable");
    assert_eq!(
        (kv.value.as_ref(), kv.create_revision, kv.mod_revision),
        (&b"v1"[..], r1, r1)
    );
    assert!(
        matches!(store.create(&key, b("again")).await, Err(Error::AlreadyExists(k)) if k == key)
    );

    let r2 = store.update(&key, b("v2"), r1).await.expect("update");
    assert!(r2 > r1);
    let kv = store.get(&key).await.unwrap().unwrap();
    assert_eq!(
        (kv.value.as_ref(), kv.create_revision, kv.mod_revision),
        (&b"v2"[..], r1, r2)
    );

    match store.update(&key, b("stale"), r1).await {
        Err(Error::Conflict {
            key: k,
            expected,
            actual,
        }) => assert_eq!((k, expected, actual), (key.clone(), r1, r2)),
        other => panic!("stale update: {other:?}"),
    }
    match store.delete(&key, Some(r1)).await {
        Err(Error::Conflict { actual, .. }) => assert_eq!(actual, r2),
        other => panic!("stale delete: {other:?}"),
    }
    let kv = store.get(&key).await.unwrap().unwrap();
    assert_eq!(
        (kv.value.as_ref(), kv.mod_revision),
        (&b"v2"[..], r2),
        "failed CAS changed nothing"
    );

    let (deleted, r3) = store.delete(&key, Some(r2)).await.expect("delete");
    assert!(r3 > r2);
    assert_eq!(
        (
            deleted.value.as_ref(),
            deleted.create_revision,
            deleted.mod_revision
        ),
        (&b"v2"[..], r1, r2)
    );
    assert_eq!(store.get(&key).await.unwrap(), None);

    let missing = format!("{p}missing");
    assert!(
        matches!(store.update(&missing, b("x"), r1).await, Err(Error::NotFound(k)) if k == missing)
    );
    assert!(matches!(
        store.delete(&missing, None).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.delete(&missing, Some(r1)).await,
        Err(Error::NotFound(_))
    ));

    let r4 = store
        .create(&key, b("v3"))
        .await
        .expect("re-create after delete");
    let kv = store.get(&key).await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision),
        (r4, r4),
        "a re-created key starts afresh"
    );
    let (deleted, _) = store
        .delete(&key, None)
        .await
        .expect("unconditional delete");
    assert_eq!(deleted.value.as_ref(), b"v3");
}

/// Every write gets a strictly greater revision, which is the key's mod_revision.
pub(crate) async fn revisions_increase(store: &Store, p: &str) {
    let mut last = store.current_revision().await.unwrap();
    for i in 0..10 {
        let key = format!("{p}{i}");
        let rev = store.create(&key, b("x")).await.unwrap();
        assert!(rev > last, "revision {rev} after {last}");
        assert_eq!(store.get(&key).await.unwrap().unwrap().mod_revision, rev);
        let rev2 = store.update(&key, b("y"), rev).await.unwrap();
        assert!(rev2 > rev);
        last = rev2;
    }
    assert!(store.current_revision().await.unwrap() >= last);
}

/// Prefix listing in key order, without sibling prefixes, paginated.
pub(crate) async fn list_prefix_and_pages(store: &Store, p: &str) {
    for key in ["a/b/2", "a/b/1", "a/bc/1", "a/b/3", "a/b/5", "a/b/4", "a/a"] {
        store.create(&format!("{p}{key}"), b(key)).await.unwrap();
    }
    let prefix = format!("{p}a/b/");
    let all = store.list(&prefix, ListOptions::default()).await.unwrap();
    let keys: Vec<_> = all
        .kvs
        .iter()
        .map(|kv| kv.key.strip_prefix(p).unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["a/b/1", "a/b/2", "a/b/3", "a/b/4", "a/b/5"]);
    assert!(!all.more);
    assert!(all.revision >= all.kvs.iter().map(|kv| kv.mod_revision).max().unwrap());
    assert_eq!(all.kvs[0].value.as_ref(), b"a/b/1");

    let mut seen = Vec::new();
    let mut opts = ListOptions {
        limit: 2,
        ..Default::default()
    };
    let mut mores = Vec::new();
    loop {
        let page = store.list(&prefix, opts.clone()).await.unwrap();
        assert!(page.kvs.len() <= 2);
        seen.extend(page.kvs.iter().map(|kv| kv.key.clone()));
        mores.push(page.more);
        if !page.more {
            break;
        }
        opts.start_after = Some(page.kvs.last().unwrap().key.clone());
        opts.revision = Some(page.revision);
    }
    assert_eq!(mores, [true, true, false]);
    assert_eq!(
        seen,
        all.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>()
    );

    let exact = ListOptions {
        limit: 5,
        ..Default::default()
    };
    assert!(
        !store.list(&prefix, exact).await.unwrap().more,
        "a full last page has no more"
    );
    let after_last = ListOptions {
        start_after: Some(format!("{p}a/b/5")),
        ..Default::default()
    };
    assert!(store
        .list(&prefix, after_last)
        .await
        .unwrap()
        .kvs
        .is_empty());
    let empty = store
        .list(&format!("{p}nothing/"), ListOptions::default())
        .await
        .unwrap();
    assert!(empty.kvs.is_empty() && !empty.more);
}

/// A list at a past revision shows the state of then, pagination included.
pub(crate) async fn list_at_past_revision(store: &Store, p: &str) {
    let x = format!("{p}x");
    let y = format!("{p}y");
    let rx = store.create(&x, b("x1")).await.unwrap();
    let ry = store.create(&y, b("y1")).await.unwrap();
    let then = store.list(p, ListOptions::default()).await.unwrap();
    store.update(&x, b("x2"), rx).await.unwrap();
    store.delete(&y, Some(ry)).await.unwrap();
    store.create(&format!("{p}z"), b("z1")).await.unwrap();

    let past = store
        .list(
            p,
            ListOptions {
                revision: Some(then.revision),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(past.revision, then.revision);
    assert_eq!(past.kvs, then.kvs);
    let first = store
        .list(
            p,
            ListOptions {
                revision: Some(rx),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(first.kvs.len(), 1);
    assert_eq!(
        (first.kvs[0].value.as_ref(), first.kvs[0].mod_revision),
        (&b"x1"[..], rx)
    );
    let page = ListOptions {
        revision: Some(then.revision),
        limit: 1,
        start_after: None,
    };
    let page = store.list(p, page).await.unwrap();
    assert_eq!((page.kvs.len(), page.more), (1, true));
    let now = store.list(p, ListOptions::default()).await.unwrap();
    let values: Vec<_> = now.kvs.iter().map(|kv| kv.value.clone()).collect();
    assert_eq!(values, [b("x2"), b("z1")]);
    let future = ListOptions {
        revision: Some(now.revision + 1000),
        ..Default::default()
    };
    assert!(matches!(
        store.list(p, future).await,
        Err(Error::FutureRevision { .. })
    ));
}

/// A watch replays exactly the events after its revision, with previous values, then
/// continues live; events of other prefixes are not delivered.
pub(crate) async fn watch_replay_then_live(store: &Store, p: &str) {
    let start = store.current_revision().await.unwrap();
    let a = format!("{p}w/a");
    let r1 = store.create(&a, b("1")).await.unwrap();
    store.create(&format!("{p}other"), b("no")).await.unwrap();
    let r2 = store.update(&a, b("2"), r1).await.unwrap();
    let (_, r3) = store.delete(&a, Some(r2)).await.unwrap();

    let prefix = format!("{p}w/");
    let mut w = store.watch(&prefix, start).await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!(
        (
            e.kind,
            e.kv.key.as_str(),
            e.kv.value.as_ref(),
            e.revision(),
            &e.prev
        ),
        (EventKind::Put, a.as_str(), &b"1"[..], r1, &None)
    );
    let e = next_event(&mut w).await;
    assert_eq!(
        (
            e.kind,
            e.kv.value.as_ref(),
            e.revision(),
            e.kv.create_revision
        ),
        (EventKind::Put, &b"2"[..], r2, r1)
    );
    let prev = e.prev.expect("an update has a prev value");
    assert_eq!((prev.value.as_ref(), prev.mod_revision), (&b"1"[..], r1));
    let e = next_event(&mut w).await;
    assert_eq!(
        (e.kind, e.kv.key.as_str(), e.revision()),
        (EventKind::Delete, a.as_str(), r3)
    );
    let prev = e.prev.expect("a delete has a prev value");
    assert_eq!((prev.value.as_ref(), prev.mod_revision), (&b"2"[..], r2));

    // From the middle: only what came after.
    let mut mid = store.watch(&prefix, r2).await.unwrap();
    assert_eq!(next_event(&mut mid).await.revision(), r3);

    store.create(&format!("{p}other2"), b("no")).await.unwrap();
    let r4 = store.create(&format!("{p}w/b"), b("live")).await.unwrap();
    for stream in [&mut w, &mut mid] {
        let e = next_event(stream).await;
        assert_eq!(
            (e.kind, e.revision(), e.kv.value.as_ref(), &e.prev),
            (EventKind::Put, r4, &b"live"[..], &None)
        );
    }
}

/// Two watchers both see every one of many concurrent writes, in revision order.
pub(crate) async fn concurrent_watchers(store: &Store, p: &str) {
    let start = store.current_revision().await.unwrap();
    let mut w1 = store.watch(p, start).await.unwrap();
    let mut w2 = store.watch(p, start).await.unwrap();
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (store, p) = (store.clone(), p.to_owned());
            tokio::spawn(async move {
                for i in 0..50 {
                    store.create(&format!("{p}{t}-{i}"), b("x")).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    for w in [&mut w1, &mut w2] {
        let mut last = start;
        for _ in 0..200 {
            let e = next_event(w).await;
            assert!(
                e.revision() > last,
                "events out of order: {} after {last}",
                e.revision()
            );
            last = e.revision();
        }
    }
}

/// Eight tasks race a compare-and-swap on one key: exactly one wins each round.
pub(crate) async fn concurrent_cas(store: &Store, p: &str) {
    let key = format!("{p}contended");
    let mut rev = store.create(&key, b("0")).await.unwrap();
    for round in 0..10 {
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let (store, key) = (store.clone(), key.clone());
                tokio::spawn(
                    async move { store.update(&key, b(&format!("{round}-{t}")), rev).await },
                )
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(r) => winners.push(r),
                Err(Error::Conflict { actual, .. }) => assert!(actual > rev),
                Err(e) => panic!("unexpected CAS error: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {} winners", winners.len());
        rev = winners[0];
        assert_eq!(store.get(&key).await.unwrap().unwrap().mod_revision, rev);
    }
}

/// After compaction, older watches and reads fail with `Compacted`; newer ones work.
pub(crate) async fn compaction(store: &Store, p: &str) {
    let mut revs = Vec::new();
    for i in 0..5 {
        revs.push(store.create(&format!("{p}{i}"), b("x")).await.unwrap());
    }
    let at = revs[3];
    store.compact(at).await.expect("compact");
    assert!(store.compacted_revision().await.unwrap() >= at);
    store
        .compact(at)
        .await
        .expect("compacting again is harmless");

    match store.watch(p, revs[1]).await {
        Err(Error::Compacted { .. }) => {}
        Ok(mut w) => match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
            Ok(Some(Err(Error::Compacted { .. }))) => {}
            other => panic!("watch from a compacted revision: {other:?}"),
        },
        Err(e) => panic!("watch from a compacted revision: {e}"),
    }
    let old = ListOptions {
        revision: Some(revs[1]),
        ..Default::default()
    };
    assert!(matches!(
        store.list(p, old).await,
        Err(Error::Compacted { .. })
    ));

    let kept = ListOptions {
        revision: Some(at),
        ..Default::default()
    };
    assert_eq!(store.list(p, kept).await.unwrap().kvs.len(), 4);
    let mut w = store
        .watch(p, at)
        .await
        .expect("watch after the compacted revision");
    assert_eq!(next_event(&mut w).await.revision(), revs[4]);
    let r = store.create(&format!("{p}after"), b("x")).await.unwrap();
    assert_eq!(next_event(&mut w).await.revision(), r);
}
