//! The etcd backend: the storage contract mapped onto etcd v3 transactions and watches.
//!
//! Every key is stored as `prefix + key`, so several clusters (or test runs) can share
//! one etcd. etcd does not report its compacted revision, so the store remembers the
//! one it compacted to and, when asked, finds the oldest readable revision by bisection.
//! Like the embedded store, after `compact(C)` reads at C and watches after C work, and a
//! watch after C - 1 fails with `Compacted` (etcd itself would still serve that one).
//!
//! Range reads are paged (like upstream's storage) so that no single etcd response can
//! outgrow what the client accepts, whatever the object sizes; every page of one list is
//! read at the revision of the first, so the pages form one consistent snapshot.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, EventType, GetOptions, KvClient, Txn, TxnOp,
    TxnOpResponse, TxnResponse, WatchClient, WatchOptions,
};
use futures::StreamExt;

use super::{
    Error, Event, EventKind, KeyValue, ListOptions, ListResult, Result, Storage, WatchStream,
};

const COMPACTED_MSG: &str = "required revision has been compacted";
const FUTURE_MSG: &str = "required revision is a future revision";

/// The largest etcd response the client decodes: what etcd sends at most (its gRPC
/// server's send limit is Go's math.MaxInt32) and what etcd's own Go client accepts by
/// default. tonic's default of 4 MiB is what about 4,500 ConfigMaps of 1.2 KB fill.
/// Requests need no client-side cap: etcd refuses those over its --max-request-bytes.
pub const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// Keys per range request. etcd refuses writes over its --max-request-bytes (1.5 MiB by
/// default), so a page holds at most 500 x 1.5 MiB = 750 MiB, well under
/// [`MAX_RESPONSE_BYTES`] (2 GiB); with objects of a few KB it is a few MB. A page that
/// is still too large (an etcd with a raised request limit, a client with a lower
/// receive limit) is asked for again at half the size.
const PAGE_KEYS: usize = 500;

/// gRPC status codes (tonic's `Code` as its number).
const GRPC_RESOURCE_EXHAUSTED: i32 = 8;
const GRPC_OUT_OF_RANGE: i32 = 11;

/// A [`Storage`] on an etcd cluster. Connect with [`EtcdStore::connect`].
pub struct EtcdStore {
    /// Kept for the calls without a tuned client (status); it also owns the connection
    /// the two clients below share.
    client: Client,
    kv: KvClient,
    watch: WatchClient,
    prefix: String,
    /// The highest compacted revision seen so far.
    compacted: AtomicI64,
}

fn backend(context: &'static str) -> impl Fn(etcd_client::Error) -> Error {
    move |e| Error::Backend(format!("etcd {context}: {e}"))
}

/// The first key after every key starting with `prefix` (etcd's range end for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // the whole keyspace
}

fn revision_of(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.map_or(0, |h| h.revision())
}

/// Whether a range read failed only because its response was too large: refused by
/// etcd's send limit (RESOURCE_EXHAUSTED) or by our receive limit (OUT_OF_RANGE, the
/// code etcd also uses for compacted and future revisions, which are told apart first).
fn response_too_large(e: &etcd_client::Error) -> bool {
    let etcd_client::Error::GRpcStatus(status) = e else {
        return false;
    };
    let msg = status.message();
    match i32::from(status.code()) {
        GRPC_RESOURCE_EXHAUSTED => true,
        GRPC_OUT_OF_RANGE => !msg.contains(COMPACTED_MSG) && !msg.contains(FUTURE_MSG),
        _ => false,
    }
}

/// The smallest key strictly greater than `key`.
fn key_after(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

impl EtcdStore {
    /// Connects to `endpoints`, storing every key under `prefix` (e.g. `/kybern`).
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Arc<Self>> {
        Self::connect_with_response_limit(endpoints, prefix, MAX_RESPONSE_BYTES).await
    }

    /// Like [`EtcdStore::connect`], decoding etcd responses of at most `max_response_bytes`
    /// (tests use tonic's old default of 4 MiB to show that reads are paged).
    pub async fn connect_with_response_limit(
        endpoints: &[String],
        prefix: &str,
        max_response_bytes: usize,
    ) -> Result<Arc<Self>> {
        let client = Client::connect(endpoints, None)
            .await
            .map_err(backend("connect"))?;
        tracing::info!(?endpoints, prefix, "connected to etcd");
        Ok(Arc::new(Self {
            kv: client
                .kv_client()
                .max_decoding_message_size(max_response_bytes),
            watch: client
                .watch_client()
                .max_decoding_message_size(max_response_bytes),
            client,
            prefix: prefix.to_owned(),
            compacted: AtomicI64::new(0),
        }))
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn key_value(&self, kv: &etcd_client::KeyValue) -> KeyValue {
        let key = String::from_utf8_lossy(kv.key());
        KeyValue {
            key: key.strip_prefix(&self.prefix).unwrap_or(&key).to_owned(),
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        }
    }

    /// Why a compare-and-swap transaction failed, from its `else` get of the key.
    fn cas_failure(&self, key: &str, expected: i64, resp: &TxnResponse) -> Error {
        let current = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.mod_revision()),
            _ => None,
        });
        match current {
            None => Error::NotFound(key.to_owned()),
            Some(actual) => Error::Conflict {
                key: key.to_owned(),
                expected,
                actual,
            },
        }
    }

    /// Whether `revision` can still be read.
    async fn readable(&self, revision: i64) -> Result<bool> {
        let opts = GetOptions::new().with_revision(revision).with_count_only();
        match self.kv.clone().get(self.full("/"), Some(opts)).await {
            Ok(_) => Ok(true),
            Err(e) if e.to_string().contains(COMPACTED_MSG) => Ok(false),
            Err(e) => Err(backend("probe compaction")(e)),
        }
    }

    fn saw_compacted(&self, revision: i64) {
        self.compacted.fetch_max(revision, Ordering::Relaxed);
    }
}

/// Maps one etcd watch event to ours; a delete carries the value it removed.
fn map_event(store_prefix: &str, ev: &etcd_client::Event) -> Option<Event> {
    let to_kv = |kv: &etcd_client::KeyValue| {
        let key = String::from_utf8_lossy(kv.key());
        KeyValue {
            key: key.strip_prefix(store_prefix).unwrap_or(&key).to_owned(),
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        }
    };
    let kv = to_kv(ev.kv()?);
    let prev = ev.prev_kv().map(to_kv);
    Some(match ev.event_type() {
        EventType::Put => Event {
            kind: EventKind::Put,
            kv,
            prev,
        },
        EventType::Delete => {
            let (value, create_revision) = prev
                .as_ref()
                .map_or((Bytes::new(), 0), |p| (p.value.clone(), p.create_revision));
            Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    value,
                    create_revision,
                    ..kv
                },
                prev,
            }
        }
    })
}

struct WatchState {
    stream: etcd_client::WatchStream,
    pending: VecDeque<Result<Event>>,
    prefix: String,
    after: i64,
    done: bool,
}

async fn next_watch_item(mut st: WatchState) -> Option<(Result<Event>, WatchState)> {
    loop {
        if let Some(item) = st.pending.pop_front() {
            return Some((item, st));
        }
        if st.done {
            return None;
        }
        let resp = match st.stream.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                st.done = true;
                st.pending
                    .push_back(Err(Error::Backend("etcd watch stream ended".into())));
                continue;
            }
            Err(e) => {
                st.done = true;
                st.pending.push_back(Err(backend("watch")(e)));
                continue;
            }
        };
        if resp.compact_revision() > 0 {
            st.done = true;
            let err = Error::Compacted {
                requested: st.after,
                compacted: resp.compact_revision(),
            };
            st.pending.push_back(Err(err));
        } else if resp.canceled() {
            st.done = true;
            let reason = resp.cancel_reason();
            let err = if reason.contains(COMPACTED_MSG) {
                Error::Compacted {
                    requested: st.after,
                    compacted: st.after + 1,
                }
            } else {
                Error::Backend(format!("etcd watch canceled: {reason}"))
            };
            st.pending.push_back(Err(err));
        }
        for ev in resp.events() {
            if let Some(event) = map_event(&st.prefix, ev) {
                st.after = event.revision();
                st.pending.push_back(Ok(event));
            }
        }
    }
}

#[async_trait]
impl Storage for EtcdStore {
    async fn current_revision(&self) -> Result<i64> {
        let opts = GetOptions::new().with_count_only();
        let resp = self
            .kv
            .clone()
            .get(self.full("/"), Some(opts))
            .await
            .map_err(backend("get revision"))?;
        Ok(revision_of(resp.header()))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self
            .kv
            .clone()
            .get(self.full(key), None)
            .await
            .map_err(backend("get"))?;
        Ok(resp.kvs().first().map(|kv| self.key_value(kv)))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let full = self.full(prefix);
        let range_end = prefix_end(full.as_bytes());
        let mut start = match &opts.start_after {
            Some(after) if after.as_str() >= prefix => key_after(self.full(after).as_bytes()),
            _ => full.into_bytes(),
        };
        let mut at = opts.revision.filter(|r| *r > 0);
        if let Some(at) = at {
            let compacted = self.compacted.load(Ordering::Relaxed);
            if at < compacted {
                return Err(Error::Compacted {
                    requested: at,
                    compacted,
                });
            }
        }
        let wanted = if opts.limit == 0 {
            usize::MAX
        } else {
            opts.limit
        };
        let mut page_keys = PAGE_KEYS;
        let mut kvs = Vec::new();
        loop {
            let ask = page_keys.min(wanted - kvs.len());
            let mut get = GetOptions::new()
                .with_range(range_end.clone())
                .with_limit(ask as i64);
            if let Some(at) = at {
                get = get.with_revision(at);
            }
            let resp = match self.kv.clone().get(start.clone(), Some(get)).await {
                Ok(resp) => resp,
                Err(e) if e.to_string().contains(COMPACTED_MSG) => {
                    let requested = at.unwrap_or(0);
                    return Err(Error::Compacted {
                        requested,
                        compacted: self.compacted_revision().await?,
                    });
                }
                Err(e) if e.to_string().contains(FUTURE_MSG) => {
                    let current = self.current_revision().await?;
                    return Err(Error::FutureRevision {
                        requested: at.unwrap_or(0),
                        current,
                    });
                }
                Err(e) if response_too_large(&e) && page_keys > 1 => {
                    page_keys /= 2;
                    tracing::warn!(prefix, page_keys, error = %e, "etcd page too large, asking for a smaller one");
                    continue;
                }
                Err(e) => return Err(backend("list")(e)),
            };
            // The first page fixes the revision every later page is read at.
            let revision = *at.get_or_insert_with(|| revision_of(resp.header()));
            if let Some(last) = resp.kvs().last() {
                start = key_after(last.key());
            }
            kvs.extend(resp.kvs().iter().map(|kv| self.key_value(kv)));
            if !resp.more() || kvs.len() >= wanted || resp.kvs().is_empty() {
                return Ok(ListResult {
                    kvs,
                    revision,
                    more: resp.more(),
                });
            }
        }
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<i64> {
        let k = self.full(key);
        let txn = Txn::new()
            .when([Compare::create_revision(k.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(k, value.to_vec(), None)]);
        let resp = self.kv.clone().txn(txn).await.map_err(backend("create"))?;
        if !resp.succeeded() {
            return Err(Error::AlreadyExists(key.to_owned()));
        }
        Ok(revision_of(resp.header()))
    }

    async fn update(&self, key: &str, value: Bytes, expected_revision: i64) -> Result<i64> {
        let k = self.full(key);
        let txn = Txn::new()
            .when([
                Compare::version(k.clone(), CompareOp::Greater, 0),
                Compare::mod_revision(k.clone(), CompareOp::Equal, expected_revision),
            ])
            .and_then([TxnOp::put(k.clone(), value.to_vec(), None)])
            .or_else([TxnOp::get(k, None)]);
        let resp = self.kv.clone().txn(txn).await.map_err(backend("update"))?;
        if !resp.succeeded() {
            return Err(self.cas_failure(key, expected_revision, &resp));
        }
        Ok(revision_of(resp.header()))
    }

    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<(KeyValue, i64)> {
        let k = self.full(key);
        let mut when = vec![Compare::version(k.clone(), CompareOp::Greater, 0)];
        if let Some(expected) = expected_revision {
            when.push(Compare::mod_revision(k.clone(), CompareOp::Equal, expected));
        }
        let txn = Txn::new()
            .when(when)
            .and_then([TxnOp::delete(
                k.clone(),
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(k, None)]);
        let resp = self.kv.clone().txn(txn).await.map_err(backend("delete"))?;
        if !resp.succeeded() {
            return Err(self.cas_failure(key, expected_revision.unwrap_or(0), &resp));
        }
        let prev = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Delete(del) => del.prev_kvs().first().map(|kv| self.key_value(kv)),
            _ => None,
        });
        let prev = prev.ok_or_else(|| {
            Error::Backend(format!("etcd delete of {key} returned no previous value"))
        })?;
        Ok((prev, revision_of(resp.header())))
    }

    async fn watch(&self, prefix: &str, after_revision: i64) -> Result<WatchStream> {
        let compacted = self.compacted.load(Ordering::Relaxed);
        if after_revision < compacted {
            return Err(Error::Compacted {
                requested: after_revision,
                compacted,
            });
        }
        let full = self.full(prefix);
        let opts = WatchOptions::new()
            .with_range(prefix_end(full.as_bytes()))
            .with_start_revision(after_revision + 1)
            .with_prev_key();
        let mut stream = self
            .watch
            .clone()
            .watch(full, Some(opts))
            .await
            .map_err(backend("watch"))?;
        // Wait until etcd has registered the watch, so setup failures surface here.
        let mut pending = VecDeque::new();
        match stream.message().await.map_err(backend("watch"))? {
            Some(resp) if resp.created() && !resp.canceled() => {}
            Some(resp) if resp.compact_revision() > 0 => {
                self.saw_compacted(resp.compact_revision());
                return Err(Error::Compacted {
                    requested: after_revision,
                    compacted: resp.compact_revision(),
                });
            }
            Some(resp) => {
                if resp.canceled() {
                    return Err(Error::Backend(format!(
                        "etcd watch canceled: {}",
                        resp.cancel_reason()
                    )));
                }
                pending.extend(
                    resp.events()
                        .iter()
                        .filter_map(|ev| map_event(&self.prefix, ev))
                        .map(Ok),
                );
            }
            None => {
                return Err(Error::Backend(
                    "etcd watch stream ended before it started".into(),
                ))
            }
        }
        let state = WatchState {
            stream,
            pending,
            prefix: self.prefix.clone(),
            after: after_revision,
            done: false,
        };
        Ok(futures::stream::unfold(state, next_watch_item).boxed())
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        match self.kv.clone().compact(revision, None).await {
            Ok(_) => {}
            // Already compacted that far: nothing left to do.
            Err(e) if e.to_string().contains(COMPACTED_MSG) => {}
            Err(e) if e.to_string().contains(FUTURE_MSG) => {
                let current = self.current_revision().await?;
                return Err(Error::FutureRevision {
                    requested: revision,
                    current,
                });
            }
            Err(e) => return Err(backend("compact")(e)),
        }
        self.saw_compacted(revision);
        tracing::debug!(revision, "etcd compacted");
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<i64> {
        // The oldest readable revision, searched upwards from the last one known; another
        // client may have compacted further since.
        let known = self.compacted.load(Ordering::Relaxed);
        let low = known.max(1);
        if self.readable(low).await? {
            return Ok(known);
        }
        let (mut unreadable, mut readable) = (low, self.current_revision().await?);
        while readable - unreadable > 1 {
            let mid = unreadable + (readable - unreadable) / 2;
            if self.readable(mid).await? {
                readable = mid;
            } else {
                unreadable = mid;
            }
        }
        self.saw_compacted(readable);
        Ok(self.compacted.load(Ordering::Relaxed))
    }

    async fn size_on_disk(&self) -> Result<u64> {
        let status = self
            .client
            .clone()
            .status()
            .await
            .map_err(backend("status"))?;
        Ok(u64::try_from(status.db_size()).unwrap_or(0))
    }
}
