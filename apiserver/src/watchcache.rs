//! The watch cache: one per resource, kept current by a storage watch. It serves
//! watches (fan-out from one storage watch), `LIST` and `GET` with `resourceVersion=0`,
//! and a short history so watches can resume from a recent resourceVersion.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::object;
use crate::status::{ApiError, Result};
use crate::storage::{EventKind, ListOptions, Storage};

/// Events kept per resource for watches that resume from an older resourceVersion
/// (upstream sizes its cache for a few minutes of changes; with the five-minute
/// compaction a resumed watch older than this gets 410 and relists).
const HISTORY: usize = 1_000;
/// Live events buffered per watcher before a slow watcher is cut off.
const FANOUT_BUFFER: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, with the object as stored (resourceVersion set) and what it replaced.
#[derive(Debug)]
pub struct CacheEvent {
    pub kind: EventType,
    pub key: String,
    pub object: Arc<Value>,
    pub prev: Option<Arc<Value>>,
    pub revision: i64,
    json: OnceLock<Bytes>,
}

impl CacheEvent {
    fn new(
        kind: EventType,
        key: String,
        object: Arc<Value>,
        prev: Option<Arc<Value>>,
        revision: i64,
    ) -> Self {
        CacheEvent {
            kind,
            key,
            object,
            prev,
            revision,
            json: OnceLock::new(),
        }
    }

    /// The object serialized once and shared by every watcher.
    pub fn object_json(&self) -> &Bytes {
        self.json
            .get_or_init(|| Bytes::from(crate::json::to_vec(&self.object)))
    }
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Arc<Value>>,
    revision: i64,
    history: VecDeque<Arc<CacheEvent>>,
    /// Every event with a revision above this one is in `history`.
    complete_after: i64,
}

/// What a new watcher starts with.
pub struct Subscription {
    /// Objects that exist at `revision` (only when initial state was asked for).
    pub initial: Vec<Arc<Value>>,
    /// Buffered events after the requested revision.
    pub backlog: Vec<Arc<CacheEvent>>,
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
    pub revision: i64,
}

pub struct WatchCache {
    prefix: String,
    state: RwLock<State>,
    fanout: RwLock<broadcast::Sender<Arc<CacheEvent>>>,
    progress: watch::Sender<i64>,
}

/// Parses a stored value into an object carrying its resourceVersion.
pub fn decode(value: &[u8], revision: i64) -> Result<Value> {
    if let Some(reason) = crate::storage::encrypted::unreadable_reason(value) {
        return Err(ApiError::Internal(reason.into_owned()));
    }
    let mut obj: Value = crate::json::from_stored(value)
        .map_err(|e| ApiError::Internal(format!("stored object is not valid JSON: {e}")))?;
    object::set_resource_version(&mut obj, revision);
    Ok(obj)
}

/// The stored value of `key` as an object, or `None` (logged with the key and the
/// reason) when the server cannot read it: one such record must not stop a watch cache.
fn readable(key: &str, value: &[u8], revision: i64) -> Option<Value> {
    match decode(value, revision) {
        Ok(obj) => Some(obj),
        Err(e) => {
            tracing::error!(key, revision, error = %e, "skipping a stored object the server cannot read");
            None
        }
    }
}

/// `obj` as of `revision` (how a delete reports the last state it removed).
fn at_revision(obj: &Value, revision: i64) -> Value {
    let mut obj = obj.clone();
    object::set_resource_version(&mut obj, revision);
    obj
}

impl WatchCache {
    /// Loads every object under `prefix` and starts following changes.
    pub async fn start(storage: Arc<dyn Storage>, prefix: String) -> Result<Arc<Self>> {
        let (fanout, _) = broadcast::channel(FANOUT_BUFFER);
        let (progress, _) = watch::channel(0);
        let cache = Arc::new(WatchCache {
            prefix,
            state: RwLock::new(State::default()),
            fanout: RwLock::new(fanout),
            progress,
        });
        let revision = cache.reload(&*storage).await?;
        let weak = Arc::downgrade(&cache);
        tokio::spawn(async move { follow(weak, storage, revision).await });
        Ok(cache)
    }

    /// Replaces the state with a fresh read of storage; returns the read revision. A
    /// record the server cannot read is left out (and logged), never fails the reload.
    async fn reload(&self, storage: &dyn Storage) -> Result<i64> {
        let mut objects = BTreeMap::new();
        let mut opts = ListOptions {
            limit: 5000,
            ..Default::default()
        };
        let revision = loop {
            let page = storage.list(&self.prefix, opts.clone()).await?;
            for kv in &page.kvs {
                if let Some(obj) = readable(&kv.key, &kv.value, kv.mod_revision) {
                    objects.insert(kv.key.clone(), Arc::new(obj));
                }
            }
            if !page.more {
                break page.revision;
            }
            opts.revision = Some(page.revision);
            opts.start_after = page.kvs.last().map(|kv| kv.key.clone());
        };
        let mut state = self.state.write().expect("watch cache lock poisoned");
        *state = State {
            objects,
            revision,
            history: VecDeque::new(),
            complete_after: revision,
        };
        // Watchers of the old state cannot be continued without a gap: end them.
        *self.fanout.write().expect("fanout lock poisoned") = broadcast::channel(FANOUT_BUFFER).0;
        drop(state);
        self.progress.send_replace(revision);
        Ok(revision)
    }

    /// Applies one storage event. A value the server cannot read is logged and skipped:
    /// an object it replaced leaves the cache as deleted (a list from the cache no longer
    /// has it either), and the cache still moves on to the event's revision.
    fn apply(&self, event: crate::storage::Event) {
        let revision = event.revision();
        let mut state = self.state.write().expect("watch cache lock poisoned");
        let prev = state.objects.get(&event.kv.key).cloned();
        let change = match event.kind {
            EventKind::Put => match readable(&event.kv.key, &event.kv.value, revision) {
                Some(obj) => {
                    let obj = Arc::new(obj);
                    state.objects.insert(event.kv.key.clone(), obj.clone());
                    Some((
                        if prev.is_some() {
                            EventType::Modified
                        } else {
                            EventType::Added
                        },
                        obj,
                    ))
                }
                None => {
                    state.objects.remove(&event.kv.key);
                    prev.as_ref()
                        .map(|p| (EventType::Deleted, Arc::new(at_revision(p, revision))))
                }
            },
            EventKind::Delete => {
                state.objects.remove(&event.kv.key);
                // Upstream reports a deleted object with the revision of the delete. Its
                // last value, if unreadable, was never in the cache: nothing to report.
                match decode(&event.kv.value, revision) {
                    Ok(obj) => Some((EventType::Deleted, Arc::new(obj))),
                    Err(_) => prev
                        .as_ref()
                        .map(|p| (EventType::Deleted, Arc::new(at_revision(p, revision)))),
                }
            }
        };
        state.revision = revision;
        if let Some((kind, object)) = change {
            let ev = Arc::new(CacheEvent::new(kind, event.kv.key, object, prev, revision));
            if state.history.len() == HISTORY {
                if let Some(old) = state.history.pop_front() {
                    state.complete_after = old.revision;
                }
            }
            state.history.push_back(ev.clone());
            let _ = self.fanout.read().expect("fanout lock poisoned").send(ev);
        }
        drop(state);
        self.progress.send_replace(revision);
    }

    pub fn revision(&self) -> i64 {
        self.state
            .read()
            .expect("watch cache lock poisoned")
            .revision
    }

    /// Waits (briefly) until the cache has seen `revision`; false if it did not.
    pub async fn wait_for(&self, revision: i64, timeout: Duration) -> bool {
        let mut rx = self.progress.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub fn get(&self, key: &str) -> Option<Arc<Value>> {
        self.state
            .read()
            .expect("watch cache lock poisoned")
            .objects
            .get(key)
            .cloned()
    }

    /// Every object under `prefix` (a namespace or the whole resource), and the revision.
    pub fn list(&self, prefix: &str) -> (Vec<Arc<Value>>, i64) {
        let state = self.state.read().expect("watch cache lock poisoned");
        let items = state
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        (items, state.revision)
    }

    /// Registers a watcher. With `after = None` it starts from the current state
    /// (returned in `initial`); otherwise from the events after that revision, or
    /// 410 Gone when they are no longer kept.
    pub fn subscribe(&self, prefix: &str, after: Option<i64>) -> Result<Subscription> {
        let state = self.state.read().expect("watch cache lock poisoned");
        let live = self
            .fanout
            .read()
            .expect("fanout lock poisoned")
            .subscribe();
        match after {
            None => Ok(Subscription {
                initial: state
                    .objects
                    .range(prefix.to_string()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(_, v)| v.clone())
                    .collect(),
                backlog: Vec::new(),
                live,
                revision: state.revision,
            }),
            Some(rev) if rev < state.complete_after => Err(ApiError::Gone(format!(
                "too old resource version: {rev} ({})",
                state.complete_after + 1
            ))),
            Some(rev) => Ok(Subscription {
                initial: Vec::new(),
                backlog: state
                    .history
                    .iter()
                    .filter(|e| e.revision > rev)
                    .cloned()
                    .collect(),
                live,
                revision: rev.max(state.revision),
            }),
        }
    }
}

/// Applies storage events to the cache until it is dropped; reloads after errors.
async fn follow(cache: std::sync::Weak<WatchCache>, storage: Arc<dyn Storage>, mut revision: i64) {
    loop {
        let Some(prefix) = cache.upgrade().map(|c| c.prefix.clone()) else {
            return;
        };
        match storage.watch(&prefix, revision).await {
            Ok(mut stream) => {
                while let Some(item) = stream.next().await {
                    let Some(c) = cache.upgrade() else { return };
                    match item {
                        Ok(ev) => {
                            revision = ev.revision();
                            c.apply(ev);
                        }
                        Err(e) => {
                            tracing::warn!(prefix = %prefix, error = %e, "watch cache lost its storage watch");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(prefix = %prefix, error = %e, "watch cache cannot watch storage")
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Some(c) = cache.upgrade() else { return };
        match c.reload(&*storage).await {
            Ok(rev) => revision = rev,
            Err(e) => tracing::warn!(prefix = %prefix, error = %e, "watch cache reload failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::embedded::EmbeddedStore;

    #[tokio::test]
    async fn a_watch_from_before_the_cache_history_is_gone_and_later_ones_replay() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(&dir.path().join("db")).expect("open store");
        let obj = |n: &str| Bytes::from(format!("{{\"metadata\":{{\"name\":\"{n}\"}}}}"));
        let first = store
            .create("/registry/core/configmaps/ns/a", obj("a"))
            .await
            .expect("create a");
        store
            .create("/registry/core/configmaps/ns/b", obj("b"))
            .await
            .expect("create b");
        let cache = WatchCache::start(store.clone(), "/registry/core/configmaps/".into())
            .await
            .expect("cache");
        // The cache started after both writes: their events are not in its history.
        let err = cache
            .subscribe("/registry/core/configmaps/", Some(first))
            .err()
            .expect("410");
        assert_eq!(err.code(), 410);
        assert!(
            err.to_string().starts_with("too old resource version"),
            "{err}"
        );
        let now = cache.revision();
        let third = store
            .create("/registry/core/configmaps/ns/c", obj("c"))
            .await
            .expect("create c");
        assert!(cache.wait_for(third, Duration::from_secs(5)).await);
        let sub = cache
            .subscribe("/registry/core/configmaps/", Some(now))
            .expect("resume");
        assert_eq!(sub.backlog.len(), 1);
        assert_eq!(sub.backlog[0].kind, EventType::Added);
        assert_eq!(
            sub.backlog[0].object["metadata"]["resourceVersion"],
            third.to_string()
        );
    }

    #[tokio::test]
    async fn an_unreadable_record_is_skipped_and_the_cache_keeps_following() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(&dir.path().join("db")).expect("open store");
        let prefix = "/registry/core/configmaps/";
        let key = |n: &str| format!("{prefix}ns/{n}");
        let obj = |n: &str| Bytes::from(format!("{{\"metadata\":{{\"name\":\"{n}\"}}}}"));
        let garbage = || Bytes::from_static(b"\xff not an object");
        let names = |cache: &WatchCache| -> Vec<String> {
            cache
                .list(prefix)
                .0
                .iter()
                .map(|o| o["metadata"]["name"].as_str().unwrap_or("").to_string())
                .collect()
        };
        store.create(&key("a"), obj("a")).await.expect("create a");
        let bad = store
            .create(&key("bad"), garbage())
            .await
            .expect("create bad");
        let cache = WatchCache::start(store.clone(), prefix.into())
            .await
            .expect("a cache starts past an unreadable record");
        assert_eq!(names(&cache), ["a"]);
        let mut sub = cache.subscribe(prefix, None).expect("subscribe");

        store
            .update(&key("bad"), garbage(), bad)
            .await
            .expect("rewrite bad");
        let c = store.create(&key("c"), obj("c")).await.expect("create c");
        assert!(
            cache.wait_for(c, Duration::from_secs(5)).await,
            "the cache follows events after an unreadable one"
        );
        assert_eq!(names(&cache), ["a", "c"]);
        let ev = sub.live.recv().await.expect("an event");
        assert_eq!(
            (ev.kind, ev.key.as_str()),
            (EventType::Added, key("c").as_str())
        );

        // An object overwritten with something unreadable leaves the cache as deleted.
        let a = cache.get(&key("a")).expect("a cached");
        let rev: i64 = a["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .parse()
            .expect("a's revision");
        let broken = store
            .update(&key("a"), garbage(), rev)
            .await
            .expect("break a");
        assert!(cache.wait_for(broken, Duration::from_secs(5)).await);
        assert_eq!(names(&cache), ["c"]);
        let ev = sub.live.recv().await.expect("an event");
        assert_eq!(
            (ev.kind, ev.key.as_str(), ev.revision),
            (EventType::Deleted, key("a").as_str(), broken)
        );
    }
}
