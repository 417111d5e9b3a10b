//! The forwarder's cache (the `cache 30` of the k3s and kubeadm Corefiles): replies of the
//! upstream resolvers by question, kept for their TTL but at most 30 s, TTLs aged on hits.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// The longest any reply is kept.
pub(crate) const MAX_TTL: u32 = 30;
/// How many replies are kept; the oldest goes first.
pub(crate) const CAPACITY: usize = 10_000;

/// (lower-cased name, type, class, DNSSEC OK).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key(Name, RecordType, DNSClass, bool);

impl Key {
    pub(crate) fn of(request: &Message) -> Option<Self> {
        let q = request.queries.first()?;
        let dnssec_ok = request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        Some(Key(
            q.name().to_lowercase(),
            q.query_type(),
            q.query_class(),
            dnssec_ok,
        ))
    }
}

/// What is kept of a reply.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    pub(crate) rcode: ResponseCode,
    pub(crate) answers: Vec<Record>,
    pub(crate) authorities: Vec<Record>,
    pub(crate) additionals: Vec<Record>,
}

struct Entry {
    cached: Cached,
    stored: Instant,
    ttl: u32,
    seq: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// Insertion order, for eviction.
    order: BTreeMap<u64, Key>,
    next: u64,
}

pub(crate) struct Cache {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl Cache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::default(),
            capacity,
        }
    }

    /// The reply for `key` with its TTLs lowered by the time it has been kept.
    pub(crate) fn get(&self, key: &Key, now: Instant) -> Option<Cached> {
        let mut inner = self.inner.lock().unwrap();
        let entry = inner.entries.get(key)?;
        let age = u32::try_from(now.saturating_duration_since(entry.stored).as_secs())
            .unwrap_or(u32::MAX);
        if age >= entry.ttl {
            let seq = entry.seq;
            inner.entries.remove(key);
            inner.order.remove(&seq);
            return None;
        }
        let mut cached = entry.cached.clone();
        drop(inner);
        for r in cached
            .answers
            .iter_mut()
            .chain(cached.authorities.iter_mut())
            .chain(cached.additionals.iter_mut())
        {
            r.ttl = r.ttl.saturating_sub(age);
        }
        Some(cached)
    }

    /// Keeps a reply for as long as its records allow (at most 30 s). SERVFAIL and other
    /// failures, and negative replies without an SOA, are not kept.
    pub(crate) fn put(&self, key: Key, reply: &Message, now: Instant) {
        let Some(ttl) = ttl_of(reply) else {
            return;
        };
        let cached = Cached {
            rcode: reply.metadata.response_code,
            answers: reply.answers.clone(),
            authorities: reply.authorities.clone(),
            additionals: reply.additionals.clone(),
        };
        let mut inner = self.inner.lock().unwrap();
        let seq = inner.next;
        inner.next += 1;
        if let Some(old) = inner.entries.remove(&key) {
            inner.order.remove(&old.seq);
        }
        while inner.entries.len() >= self.capacity {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            inner.entries.remove(&oldest);
        }
        inner.order.insert(seq, key.clone());
        inner.entries.insert(
            key,
            Entry {
                cached,
                stored: now,
                ttl,
                seq,
            },
        );
    }
}

/// How long a reply may be kept: the smallest answer TTL for answers, the SOA's negative
/// TTL for NXDOMAIN and empty answers, capped at 30 s; `None`: do not keep it.
fn ttl_of(reply: &Message) -> Option<u32> {
    let ttl = match reply.metadata.response_code {
        ResponseCode::NoError if !reply.answers.is_empty() => {
            reply.answers.iter().map(|r| r.ttl).min()?
        }
        ResponseCode::NoError | ResponseCode::NXDomain => {
            reply.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })?
        }
        _ => return None,
    };
    (ttl > 0).then_some(ttl.min(MAX_TTL))
}
