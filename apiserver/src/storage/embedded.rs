//! The embedded backend: one redb file, a group-committing writer thread, an event log.
//!
//! Tables: `state` (key -> create rev, mod rev, value), `log` (revision -> the event,
//! with the value it replaced) and `meta` (current and compacted revision). Every write
//! goes through one writer thread that drains what is pending, applies it in one
//! durable transaction and only then answers. Reads at a past revision undo newer log
//! entries (so such a read holds the whole prefix in memory); watches replay the log and
//! then follow a broadcast of committed events.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::{
    Error, Event, EventKind, KeyValue, ListOptions, ListResult, Result, Storage, WatchStream,
};

const STATE: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("state");
const LOG: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");
const META_REV: &str = "revision";
const META_COMPACTED: &str = "compacted";
/// Most requests applied in one write transaction.
const MAX_BATCH: usize = 256;
/// Events fetched per read transaction while a watch replays the log.
const REPLAY_CHUNK: usize = 1024;

fn backend(context: &'static str) -> impl Fn(redb::Error) -> Error {
    move |e| Error::Backend(format!("redb {context}: {e}"))
}

macro_rules! db {
    ($ctx:literal, $e:expr) => {
        $e.map_err(|e| backend($ctx)(e.into()))
    };
}

enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: i64,
    },
    Delete {
        key: String,
        expected: Option<i64>,
    },
    Compact {
        revision: i64,
    },
}

enum Reply {
    Revision(i64),
    Deleted(KeyValue, i64),
    Compacted,
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Reply>>,
}

/// The redb-backed store. Open it with [`EmbeddedStore::open`].
/// redb page cache size.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
    writes: Option<mpsc::Sender<Request>>,
    events: broadcast::Sender<Event>,
    writer: Option<JoinHandle<()>>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in the single file `path` and starts its writer thread.
    ///
    /// This does file I/O (and, after a crash, redb's repair) on the calling thread: call
    /// it at startup or from `spawn_blocking`. Dropping the last handle waits for the
    /// writer's current batch and closes the file; watch streams end with an error then.
    pub fn open(path: &Path) -> Result<Arc<Self>> {
        // redb's default page cache is 1 GiB; the watch cache already holds every
        // object in memory, so a small cache keeps RSS low without slowing reads.
        let db = match Database::builder().set_cache_size(CACHE_BYTES).create(path) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(Error::InUse(path.display().to_string()))
            }
            r => db!("open", r)?,
        };
        let txn = db!("begin init", db.begin_write())?;
        {
            db!("init state", txn.open_table(STATE))?;
            db!("init log", txn.open_table(LOG))?;
            let mut meta = db!("init meta", txn.open_table(META))?;
            for name in [META_REV, META_COMPACTED] {
                if db!("read meta", meta.get(name))?.is_none() {
                    db!("write meta", meta.insert(name, 0))?;
                }
            }
        }
        db!("commit init", txn.commit())?;
        let mut db = db;
        shrink(&mut db, path)?;
        let db = Arc::new(db);
        let (writes, rx) = mpsc::channel(4096);
        let (events, _) = broadcast::channel(4096);
        let (wdb, wevents) = (db.clone(), events.clone());
        let writer = std::thread::Builder::new()
            .name("kybern-redb-writer".into())
            .spawn(move || writer_loop(&wdb, rx, &wevents))
            .map_err(|e| Error::Backend(format!("spawning the redb writer thread: {e}")))?;
        tracing::info!(path = %path.display(), "embedded store opened");
        Ok(Arc::new(Self {
            db,
            path: path.to_owned(),
            writes: Some(writes),
            events,
            writer: Some(writer),
        }))
    }

    async fn write(&self, op: Op) -> Result<Reply> {
        let closed = || Error::Backend("embedded store writer has stopped".into());
        let (reply, rx) = oneshot::channel();
        let writes = self.writes.as_ref().ok_or_else(closed)?;
        writes
            .send(Request { op, reply })
            .await
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| Error::Backend(format!("redb read task: {e}")))?
    }
}

/// Rewrites the file without its free pages when they are most of it. Compacting history
/// frees the pages of the event log inside the file, which redb reuses for new writes but
/// gives back to the file system only by a compaction that needs the database to itself:
/// so it runs here, before the store is shared. 220,000 writes of 1.2 KB objects make a
/// 1.1 GB file that, once compacted, holds 42 MB of pages: a few seconds at start-up.
fn shrink(db: &mut Database, path: &Path) -> Result<()> {
    /// Free space worth a rewrite: at least this much, and at least half the file.
    const MIN_FREE_BYTES: u64 = 8 * 1024 * 1024;
    let file_bytes = std::fs::metadata(path)
        .map_err(|e| Error::Backend(format!("stat {}: {e}", path.display())))?
        .len();
    let txn = db!("begin stats", db.begin_write())?;
    let stats = db!("read stats", txn.stats())?;
    db!("end stats", txn.abort())?;
    let used = stats.allocated_pages() * stats.page_size() as u64;
    let free = file_bytes.saturating_sub(used);
    if free < MIN_FREE_BYTES || free < file_bytes / 2 {
        return Ok(());
    }
    let started = std::time::Instant::now();
    while db!("compact file", db.compact())? {}
    let after = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    tracing::info!(path = %path.display(), before_bytes = file_bytes, after_bytes = after, elapsed = ?started.elapsed(), "embedded store file shrunk");
    Ok(())
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the channel stops the writer after its current batch; wait for it so
        // the file is released when the store is gone.
        self.writes.take();
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("redb writer thread panicked");
            }
        }
    }
}

fn writer_loop(db: &Database, mut rx: mpsc::Receiver<Request>, events: &broadcast::Sender<Event>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let result = apply_batch(db, batch.iter().map(|r| &r.op));
        tracing::trace!(requests = batch.len(), elapsed = ?started.elapsed(), "redb batch committed");
        match result {
            Ok((results, new_events)) => {
                for event in new_events {
                    let _ = events.send(event);
                }
                for (request, result) in batch.into_iter().zip(results) {
                    let _ = request.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "redb write transaction failed");
                for request in batch {
                    let _ = request.reply.send(Err(Error::Backend(e.to_string())));
                }
            }
        }
    }
    tracing::debug!("redb writer thread stopping");
}

/// Applies `ops` in order in one durable transaction. The outer error fails the whole
/// batch (nothing was committed); inner errors fail only their request.
fn apply_batch<'a>(
    db: &Database,
    ops: impl Iterator<Item = &'a Op>,
) -> Result<(Vec<Result<Reply>>, Vec<Event>)> {
    let txn = db!("begin write", db.begin_write())?;
    let mut results = Vec::new();
    let mut events = Vec::new();
    {
        let mut state = db!("open state", txn.open_table(STATE))?;
        let mut log = db!("open log", txn.open_table(LOG))?;
        let mut meta = db!("open meta", txn.open_table(META))?;
        let mut rev = db!("read revision", meta.get(META_REV))?.map_or(0, |v| v.value()) as i64;
        let compacted =
            db!("read compacted", meta.get(META_COMPACTED))?.map_or(0, |v| v.value()) as i64;
        for op in ops {
            let key = match op {
                Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => {
                    key.as_str()
                }
                Op::Compact { revision } => {
                    let revision = *revision;
                    if revision > rev {
                        results.push(Err(Error::FutureRevision {
                            requested: revision,
                            current: rev,
                        }));
                    } else {
                        if revision > compacted {
                            db!(
                                "compact log",
                                log.retain_in(..=(revision as u64), |_, _| false)
                            )?;
                            db!(
                                "write compacted",
                                meta.insert(META_COMPACTED, revision as u64)
                            )?;
                        }
                        results.push(Ok(Reply::Compacted));
                    }
                    continue;
                }
            };
            let prev = db!("read key", state.get(key))?.map(|v| decode_kv(key, v.value()));
            let check = match (op, &prev) {
                (Op::Create { .. }, Some(_)) => Err(Error::AlreadyExists(key.into())),
                (Op::Create { .. }, None) => Ok(()),
                (_, None) => Err(Error::NotFound(key.into())),
                (
                    Op::Update { expected, .. }
                    | Op::Delete {
                        expected: Some(expected),
                        ..
                    },
                    Some(p),
                ) if p.mod_revision != *expected => Err(Error::Conflict {
                    key: key.into(),
                    expected: *expected,
                    actual: p.mod_revision,
                }),
                _ => Ok(()),
            };
            if let Err(e) = check {
                results.push(Err(e));
                continue;
            }
            rev += 1;
            let event = match op {
                Op::Create { value, .. } | Op::Update { value, .. } => {
                    let create_revision = prev.as_ref().map_or(rev, |p| p.create_revision);
                    let kv = KeyValue {
                        key: key.into(),
                        value: value.clone(),
                        create_revision,
                        mod_revision: rev,
                    };
                    db!("write key", state.insert(key, encode_kv(&kv).as_slice()))?;
                    results.push(Ok(Reply::Revision(rev)));
                    Event {
                        kind: EventKind::Put,
                        kv,
                        prev,
                    }
                }
                _ => {
                    let p = prev.expect("checked above");
                    db!("remove key", state.remove(key))?;
                    let kv = KeyValue {
                        mod_revision: rev,
                        ..p.clone()
                    };
                    results.push(Ok(Reply::Deleted(p.clone(), rev)));
                    Event {
                        kind: EventKind::Delete,
                        kv,
                        prev: Some(p),
                    }
                }
            };
            db!(
                "append log",
                log.insert(rev as u64, encode_event(&event).as_slice())
            )?;
            events.push(event);
        }
        db!("write revision", meta.insert(META_REV, rev as u64))?;
    }
    db!("commit", txn.commit())?;
    Ok((results, events))
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

fn decode_kv(key: &str, b: &[u8]) -> KeyValue {
    let num = |i: usize| i64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    KeyValue {
        key: key.into(),
        create_revision: num(0),
        mod_revision: num(8),
        value: Bytes::copy_from_slice(&b[16..]),
    }
}

/// kind, key, then the new state (or the deleted one) and the previous state, if any.
fn encode_event(e: &Event) -> Vec<u8> {
    let mut out = vec![u8::from(e.kind == EventKind::Delete)];
    put_bytes(&mut out, e.kv.key.as_bytes());
    put_bytes(&mut out, &encode_kv(&e.kv));
    if let Some(prev) = &e.prev {
        put_bytes(&mut out, &encode_kv(prev));
    }
    out
}

fn decode_event(b: &[u8]) -> Result<Event> {
    let corrupt = || Error::Backend("redb: corrupt event log entry".into());
    let mut pos = 1;
    let mut take = || -> Result<&[u8]> {
        let len = u32::from_le_bytes(
            b.get(pos..pos + 4)
                .ok_or_else(corrupt)?
                .try_into()
                .expect("4 bytes"),
        ) as usize;
        let slice = b.get(pos + 4..pos + 4 + len).ok_or_else(corrupt)?;
        pos += 4 + len;
        Ok(slice)
    };
    let key = std::str::from_utf8(take()?)
        .map_err(|_| corrupt())?
        .to_owned();
    let kv = decode_kv(&key, take()?);
    let prev = take().ok().map(|p| decode_kv(&key, p));
    let kind = if b[0] == 1 {
        EventKind::Delete
    } else {
        EventKind::Put
    };
    Ok(Event { kind, kv, prev })
}

/// Current and compacted revision as seen by a read transaction.
fn revisions(txn: &redb::ReadTransaction) -> Result<(i64, i64)> {
    let meta = db!("open meta", txn.open_table(META))?;
    let rev = db!("read revision", meta.get(META_REV))?.map_or(0, |v| v.value()) as i64;
    let compacted =
        db!("read compacted", meta.get(META_COMPACTED))?.map_or(0, |v| v.value()) as i64;
    Ok((rev, compacted))
}

fn list_blocking(db: &Database, prefix: &str, opts: &ListOptions) -> Result<ListResult> {
    let txn = db!("begin read", db.begin_read())?;
    let (current, compacted) = revisions(&txn)?;
    let at = opts.revision.filter(|r| *r > 0).unwrap_or(current);
    if at > current {
        return Err(Error::FutureRevision {
            requested: at,
            current,
        });
    }
    if at < compacted {
        return Err(Error::Compacted {
            requested: at,
            compacted,
        });
    }
    let lower = match &opts.start_after {
        Some(after) if after.as_str() >= prefix => Bound::Excluded(after.as_str()),
        _ => Bound::Included(prefix),
    };
    let state = db!("open state", txn.open_table(STATE))?;
    let limit = if opts.limit == 0 {
        usize::MAX
    } else {
        opts.limit
    };
    let mut kvs = Vec::new();
    let mut more = false;
    if at == current {
        for entry in db!(
            "range state",
            state.range::<&str>((lower, Bound::Unbounded))
        )? {
            let (k, v) = db!("range state", entry)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            if kvs.len() == limit {
                more = true;
                break;
            }
            kvs.push(decode_kv(k.value(), v.value()));
        }
        return Ok(ListResult {
            kvs,
            revision: at,
            more,
        });
    }
    // A past revision: take the current state under the prefix and undo newer events.
    let mut past = BTreeMap::new();
    for entry in db!("range state", state.range::<&str>(prefix..))? {
        let (k, v) = db!("range state", entry)?;
        if !k.value().starts_with(prefix) {
            break;
        }
        past.insert(k.value().to_owned(), decode_kv(k.value(), v.value()));
    }
    let log = db!("open log", txn.open_table(LOG))?;
    for entry in db!("range log", log.range((at as u64 + 1)..))?.rev() {
        let event = decode_event(db!("range log", entry)?.1.value())?;
        if event.kv.key.starts_with(prefix) {
            match event.prev {
                Some(prev) => past.insert(event.kv.key, prev),
                None => past.remove(&event.kv.key),
            };
        }
    }
    let (lower, upper) = (lower.map(str::to_owned), Bound::Unbounded);
    let mut page = past
        .range::<String, _>((lower, upper))
        .map(|(_, kv)| kv.clone());
    kvs.extend(page.by_ref().take(limit));
    more = page.next().is_some();
    Ok(ListResult {
        kvs,
        revision: at,
        more,
    })
}

/// Up to `REPLAY_CHUNK` logged events under `prefix` after `after`, and the revision the
/// scan reached (everything up to it has been seen), or `Compacted`.
fn replay_chunk(db: &Database, prefix: &str, after: i64) -> Result<(Vec<Event>, i64, bool)> {
    let txn = db!("begin read", db.begin_read())?;
    let (current, compacted) = revisions(&txn)?;
    if after < compacted {
        return Err(Error::Compacted {
            requested: after,
            compacted,
        });
    }
    let log = db!("open log", txn.open_table(LOG))?;
    let mut events = Vec::new();
    let mut reached = after.max(0);
    for entry in db!("range log", log.range((after.max(0) as u64 + 1)..))? {
        let (rev, value) = db!("range log", entry)?;
        let event = decode_event(value.value())?;
        reached = rev.value() as i64;
        if event.kv.key.starts_with(prefix) {
            events.push(event);
            if events.len() == REPLAY_CHUNK {
                return Ok((events, reached, false));
            }
        }
    }
    Ok((events, current.max(reached), true))
}

/// Feeds one watch: replay the log after `last`, then follow the live broadcast; on
/// lagging behind it, subscribe anew and replay the gap from the log.
async fn run_watch(
    db: Arc<Database>,
    prefix: String,
    mut last: i64,
    mut live: broadcast::Receiver<Event>,
    out: mpsc::Sender<Result<Event>>,
) {
    loop {
        loop {
            let (db, p) = (db.clone(), prefix.clone());
            let chunk = tokio::task::spawn_blocking(move || replay_chunk(&db, &p, last))
                .await
                .unwrap_or_else(|e| Err(Error::Backend(format!("redb replay task: {e}"))));
            let (events, reached, done) = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = out.send(Err(e)).await;
                    return;
                }
            };
            for event in events {
                if out.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            last = reached;
            if done {
                break;
            }
        }
        loop {
            let received = tokio::select! {
                _ = out.closed() => return,
                r = live.recv() => r,
            };
            match received {
                Ok(event) if event.revision() > last => {
                    last = event.revision();
                    if event.kv.key.starts_with(&prefix) && out.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(
                        missed = n,
                        after = last,
                        "watch lagged, replaying from the log"
                    );
                    live = live.resubscribe();
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = out
                        .send(Err(Error::Backend("embedded store closed".into())))
                        .await;
                    return;
                }
            }
        }
    }
}

#[async_trait]
impl Storage for EmbeddedStore {
    async fn current_revision(&self) -> Result<i64> {
        self.read(|db| revisions(&db!("begin read", db.begin_read())?).map(|r| r.0))
            .await
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.read(move |db| {
            let txn = db!("begin read", db.begin_read())?;
            let state = db!("open state", txn.open_table(STATE))?;
            Ok(db!("read key", state.get(key.as_str()))?.map(|v| decode_kv(&key, v.value())))
        })
        .await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let prefix = prefix.to_owned();
        self.read(move |db| list_blocking(db, &prefix, &opts)).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<i64> {
        match self
            .write(Op::Create {
                key: key.into(),
                value,
            })
            .await?
        {
            Reply::Revision(rev) => Ok(rev),
            _ => unreachable!("create answers with a revision"),
        }
    }

    async fn update(&self, key: &str, value: Bytes, expected_revision: i64) -> Result<i64> {
        match self
            .write(Op::Update {
                key: key.into(),
                value,
                expected: expected_revision,
            })
            .await?
        {
            Reply::Revision(rev) => Ok(rev),
            _ => unreachable!("update answers with a revision"),
        }
    }

    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<(KeyValue, i64)> {
        match self
            .write(Op::Delete {
                key: key.into(),
                expected: expected_revision,
            })
            .await?
        {
            Reply::Deleted(kv, rev) => Ok((kv, rev)),
            _ => unreachable!("delete answers with the deleted value"),
        }
    }

    async fn watch(&self, prefix: &str, after_revision: i64) -> Result<WatchStream> {
        // Subscribe before the first replay so that nothing committed in between is missed.
        let live = self.events.subscribe();
        let compacted = self.compacted_revision().await?;
        if after_revision < compacted {
            return Err(Error::Compacted {
                requested: after_revision,
                compacted,
            });
        }
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run_watch(
            self.db.clone(),
            prefix.to_owned(),
            after_revision,
            live,
            tx,
        ));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        self.write(Op::Compact { revision }).await.map(|_| ())
    }

    async fn compacted_revision(&self) -> Result<i64> {
        self.read(|db| revisions(&db!("begin read", db.begin_read())?).map(|r| r.1))
            .await
    }

    async fn size_on_disk(&self) -> Result<u64> {
        let path = self.path.clone();
        let meta = tokio::fs::metadata(&path).await;
        meta.map(|m| m.len())
            .map_err(|e| Error::Backend(format!("stat {}: {e}", path.display())))
    }
}
