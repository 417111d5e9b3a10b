//! The one event recorder of the loops, as client-go's `tools/record` correlator:
//!
//! - the same event again (same source, object, type, reason and message) is not a new
//!   Event but the stored one patched: `count` + 1, `lastTimestamp`, message;
//! - more than 10 distinct messages for one object, type and reason within 10 minutes
//!   become one event "(combined from similar events): <latest message>", itself
//!   counted as above;
//! - each source and object gets a token bucket (25 events, then one per 5 minutes):
//!   events beyond it are dropped;
//! - both caches keep the 4096 most recently used keys.
//!
//! The decisions are [`Correlator::correlate`], pure and clocked by its caller; the
//! [`Recorder`] carries them out against the API. Every loop of the process records
//! through [`Recorder::global`] (via `podcontrol::record_event`), as the loops of
//! kube-controller-manager share their broadcaster's correlator. Usage:
//!
//! ```ignore
//! Recorder::global()
//!     .record(&client, &deployment, "Normal", "ScalingReplicaSet", &message, "deployment-controller")
//!     .await?;
//! ```

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, OnceLock};

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

/// client-go's `maxLruCacheEntries`.
const CACHE_ENTRIES: usize = 4096;
/// Distinct messages for one aggregate key before they are combined (`defaultAggregateMaxEvents`).
const AGGREGATE_MAX_EVENTS: usize = 10;
/// `defaultAggregateIntervalInSeconds`.
const AGGREGATE_INTERVAL_SECONDS: i64 = 600;
/// `defaultSpamBurst` and `defaultSpamQPS` (one event per 300 s).
const SPAM_BURST: f64 = 25.0;
const SPAM_QPS: f64 = 1.0 / 300.0;
const COMBINED_PREFIX: &str = "(combined from similar events): ";

/// What to do with one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Create this Event.
    Create { key: String, event: Event },
    /// Patch the stored Event `event` names with `patch` (count, lastTimestamp, message).
    Patch {
        key: String,
        event: Event,
        patch: serde_json::Value,
    },
    /// Dropped by the rate limit.
    Skip,
}

/// A map that forgets its least recently used key beyond [`CACHE_ENTRIES`].
#[derive(Debug)]
struct Lru<V> {
    entries: HashMap<String, (u64, V)>,
    tick: u64,
}

impl<V> Default for Lru<V> {
    fn default() -> Self {
        Lru {
            entries: HashMap::new(),
            tick: 0,
        }
    }
}

impl<V> Lru<V> {
    fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(key).map(|(t, v)| {
            *t = tick;
            v
        })
    }

    fn insert(&mut self, key: String, value: V) {
        self.tick += 1;
        self.entries.insert(key, (self.tick, value));
        if self.entries.len() > CACHE_ENTRIES {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.entries.remove(&k);
            }
        }
    }
}

#[derive(Debug)]
struct Aggregate {
    messages: BTreeSet<String>,
    last: Timestamp,
}

/// What was last stored for an event key (client-go's `eventLog`).
#[derive(Debug, Clone)]
struct Observation {
    count: i32,
    first: Option<Time>,
    name: String,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

/// client-go's `EventCorrelator`: aggregation, deduplication and the spam filter.
#[derive(Debug, Default)]
pub struct Correlator {
    aggregates: Lru<Aggregate>,
    observed: Lru<Observation>,
    buckets: Lru<Bucket>,
}

fn s(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// `getEventKey`: everything that makes two events the same event.
fn event_key(e: &Event) -> String {
    let (src, o) = (e.source.clone().unwrap_or_default(), &e.involved_object);
    [
        s(&src.component),
        s(&src.host),
        s(&o.kind),
        s(&o.namespace),
        s(&o.name),
        s(&o.field_path),
        s(&o.uid),
        s(&o.api_version),
        s(&e.type_),
        s(&e.reason),
        s(&e.message),
    ]
    .concat()
}

/// `EventAggregatorByReasonFunc`: the key without the message.
fn aggregate_key(e: &Event) -> String {
    let (src, o) = (e.source.clone().unwrap_or_default(), &e.involved_object);
    [
        s(&src.component),
        s(&src.host),
        s(&o.kind),
        s(&o.namespace),
        s(&o.name),
        s(&o.uid),
        s(&o.api_version),
        s(&e.type_),
        s(&e.reason),
        s(&e.reporting_component),
        s(&e.reporting_instance),
    ]
    .concat()
}

/// `getSpamKey`: the source and the object.
fn spam_key(e: &Event) -> String {
    let (src, o) = (e.source.clone().unwrap_or_default(), &e.involved_object);
    [
        s(&src.component),
        s(&src.host),
        s(&o.kind),
        s(&o.namespace),
        s(&o.name),
        s(&o.uid),
        s(&o.api_version),
    ]
    .concat()
}

/// client-go's event names: the object's name and the time in hex nanoseconds.
fn event_name(object: &str, now: Timestamp) -> String {
    format!("{object}.{:x}", now.as_nanosecond())
}

impl Correlator {
    /// Decides what `event` (as a loop made it, count 1) becomes at `now`.
    pub fn correlate(&mut self, event: Event, now: Timestamp) -> Verdict {
        let (event, key) = self.aggregate(event, now);
        let (event, patch) = self.observe(event, &key);
        if !self.allow(&event, now) {
            return Verdict::Skip;
        }
        match patch {
            Some(patch) => Verdict::Patch { key, event, patch },
            None => Verdict::Create { key, event },
        }
    }

    /// Records what the server stored under `key` (its name may differ after a
    /// create that fell back from a patch).
    pub fn stored(&mut self, key: &str, event: &Event) {
        let name = event.metadata.name.clone().unwrap_or_default();
        self.observed.insert(
            key.to_string(),
            Observation {
                count: event.count.unwrap_or(1),
                first: event.first_timestamp.clone(),
                name,
            },
        );
    }

    /// `EventAggregate`: past the threshold of distinct messages, a combined event
    /// keyed by the aggregate key alone.
    fn aggregate(&mut self, event: Event, now: Timestamp) -> (Event, String) {
        let agg_key = aggregate_key(&event);
        let key = event_key(&event);
        let fresh = || Aggregate {
            messages: BTreeSet::new(),
            last: now,
        };
        let mut record = match self.aggregates.get_mut(&agg_key) {
            Some(r) if now.as_second() - r.last.as_second() <= AGGREGATE_INTERVAL_SECONDS => {
                std::mem::replace(r, fresh())
            }
            _ => fresh(),
        };
        record.messages.insert(s(&event.message).to_string());
        record.last = now;
        let combine = record.messages.len() >= AGGREGATE_MAX_EVENTS;
        if combine {
            // Never grow the set past the threshold.
            record.messages.pop_first();
        }
        self.aggregates.insert(agg_key.clone(), record);
        if !combine {
            return (event, key);
        }
        let object = s(&event.involved_object.name).to_string();
        let combined = Event {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(event_name(&object, now)),
                namespace: event.metadata.namespace.clone(),
                ..Default::default()
            },
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            message: Some(format!("{COMBINED_PREFIX}{}", s(&event.message))),
            ..event
        };
        (combined, agg_key)
    }

    /// `eventObserve`: an event seen before takes the stored one's name, first
    /// timestamp and count + 1, and becomes a patch.
    fn observe(&mut self, mut event: Event, key: &str) -> (Event, Option<serde_json::Value>) {
        let seen = self.observed.get_mut(key).cloned();
        let patch = seen.filter(|o| o.count > 0).map(|o| {
            event.metadata.name = Some(o.name);
            event.first_timestamp = o.first;
            event.count = Some(o.count + 1);
            json!({
                "count": event.count,
                "lastTimestamp": event.last_timestamp,
                "message": event.message,
            })
        });
        self.stored(key, &event);
        (event, patch)
    }

    /// The spam filter's token bucket for the event's source and object.
    fn allow(&mut self, event: &Event, now: Timestamp) -> bool {
        let key = spam_key(event);
        let bucket = match self.buckets.get_mut(&key) {
            Some(b) => b,
            None => {
                self.buckets.insert(
                    key.clone(),
                    Bucket {
                        tokens: SPAM_BURST,
                        at: now,
                    },
                );
                self.buckets.get_mut(&key).expect("just inserted")
            }
        };
        let elapsed = (now.as_millisecond() - bucket.at.as_millisecond()).max(0) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * SPAM_QPS).min(SPAM_BURST);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The correlator and the writes it decides.
#[derive(Debug, Default)]
pub struct Recorder {
    correlator: Mutex<Correlator>,
}

impl Recorder {
    /// The recorder every loop of this process shares.
    pub fn global() -> &'static Recorder {
        static GLOBAL: OnceLock<Recorder> = OnceLock::new();
        GLOBAL.get_or_init(Recorder::default)
    }

    /// Records `event` (made with count 1 and both timestamps now): created, patched
    /// onto the same earlier event, or dropped by the rate limit.
    pub async fn record_event(&self, client: &kube::Client, event: Event) -> kube::Result<()> {
        let now = event
            .last_timestamp
            .as_ref()
            .map_or_else(Timestamp::now, |t| t.0);
        let verdict = self
            .correlator
            .lock()
            .expect("the event correlator lock is never poisoned")
            .correlate(event, now);
        let ns = |e: &Event| {
            e.metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into())
        };
        let (key, stored) = match verdict {
            Verdict::Skip => return Ok(()),
            Verdict::Create { key, event } => {
                let api = Api::<Event>::namespaced(client.clone(), &ns(&event));
                (key, api.create(&PostParams::default(), &event).await?)
            }
            Verdict::Patch { key, event, patch } => {
                let api = Api::<Event>::namespaced(client.clone(), &ns(&event));
                let name = event.metadata.name.clone().unwrap_or_default();
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                {
                    Ok(stored) => (key, stored),
                    // Gone (expired, deleted): create it again, as client-go does.
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        let mut event = event;
                        event.metadata.resource_version = None;
                        (key, api.create(&PostParams::default(), &event).await?)
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        self.correlator
            .lock()
            .expect("the event correlator lock is never poisoned")
            .stored(&key, &stored);
        Ok(())
    }
}

/// A fresh event as client-go's `makeEvent`: named `<object>.<hex nanos>`, count 1.
pub fn new_event(
    object: k8s_openapi::api::core::v1::ObjectReference,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
    now: Timestamp,
) -> Event {
    use k8s_openapi::api::core::v1::EventSource;
    let ns = object
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    Event {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(event_name(s(&object.name), now)),
            namespace: Some(ns),
            ..Default::default()
        },
        involved_object: object,
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(type_.into()),
        source: Some(EventSource {
            component: Some(component.into()),
            host: None,
        }),
        reporting_component: Some(component.into()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "recorder_tests.rs"]
mod tests;
