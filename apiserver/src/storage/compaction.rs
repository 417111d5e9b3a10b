//! Periodic compaction on a schedule that survives restarts.
//!
//! Like upstream's compactor (every five minutes, `--etcd-compaction-interval`), history
//! is compacted up to the revision the store had one interval earlier, so a watch can
//! resume from any resourceVersion of the last interval. Upstream remembers that earlier
//! revision in memory, so a server restarted more often than once an interval never
//! compacts (100 restarts in 6 minutes left a 722 MB store). Here the checkpoint lives in
//! the store itself, under [`CHECKPOINT_KEY`] (upstream's `compact_rev_key` plays a
//! similar part): the key's mod revision is the checkpoint's revision, its value the wall
//! clock time it was written. A checkpoint one interval old is replaced by a new one
//! (compare-and-swap, so of several servers on one store one wins) and the store is
//! compacted to the old one's revision.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{json, Value};

use super::{Error, KeyValue, Result, Storage};

/// Where the checkpoint is stored: outside `/registry/`, so no resource's watch sees it.
pub const CHECKPOINT_KEY: &str = "/compact_rev_key";
/// Upstream's default `--etcd-compaction-interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// How soon a failed look at the schedule (storage unavailable) is tried again.
const RETRY: Duration = Duration::from_secs(30);

/// The wall clock the schedule reads (a test injects one it moves by hand).
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> SystemTime;
}

#[derive(Debug)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// How often to compact, by which clock.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub interval: Duration,
    pub clock: Arc<dyn Clock>,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            interval: DEFAULT_INTERVAL,
            clock: Arc::new(SystemClock),
        }
    }
}

/// The store's revision at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub revision: i64,
    pub time: SystemTime,
}

/// What to do on one look at the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// There is no usable checkpoint: write one now.
    Record,
    /// The checkpoint is an interval old: write a new one, then compact to its revision.
    Compact { to: i64 },
    /// Nothing is due yet: look again after this long.
    Wait(Duration),
}

/// The schedule as a pure decision.
pub fn next(checkpoint: Option<Checkpoint>, now: SystemTime, interval: Duration) -> Next {
    let Some(checkpoint) = checkpoint else {
        return Next::Record;
    };
    match now.duration_since(checkpoint.time) {
        Ok(age) if age >= interval => Next::Compact {
            to: checkpoint.revision,
        },
        Ok(age) => Next::Wait(interval - age),
        // Written "in the future": another server's clock runs ahead, or ours was set
        // back. A little ahead is waited out; further ahead would hold compaction off for
        // as long, so the checkpoint is written anew.
        Err(ahead) if ahead.duration() <= interval => Next::Wait(interval + ahead.duration()),
        Err(_) => Next::Record,
    }
}

fn encode(time: SystemTime) -> Bytes {
    let millis = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    Bytes::from(json!({ "unixMillis": millis }).to_string())
}

fn decode(kv: &KeyValue) -> Option<Checkpoint> {
    let value: Value = serde_json::from_slice(&kv.value).ok()?;
    let millis = value.get("unixMillis")?.as_u64()?;
    Some(Checkpoint {
        revision: kv.mod_revision,
        time: UNIX_EPOCH + Duration::from_millis(millis),
    })
}

/// One look at the schedule: writes the checkpoint and compacts when due. Returns how
/// long to wait before the next look.
pub async fn tick(storage: &dyn Storage, schedule: &Schedule) -> Result<Duration> {
    let stored = storage.get(CHECKPOINT_KEY).await?;
    let checkpoint = stored.as_ref().and_then(|kv| {
        let checkpoint = decode(kv);
        if checkpoint.is_none() {
            tracing::warn!(
                key = CHECKPOINT_KEY,
                "unreadable compaction checkpoint, writing a new one"
            );
        }
        checkpoint
    });
    let now = schedule.clock.now();
    let compact_to = match next(checkpoint, now, schedule.interval) {
        Next::Wait(wait) => return Ok(wait),
        Next::Record => None,
        Next::Compact { to } => Some(to),
    };
    let written = match &stored {
        Some(kv) => {
            storage
                .update(CHECKPOINT_KEY, encode(now), kv.mod_revision)
                .await
        }
        None => storage.create(CHECKPOINT_KEY, encode(now)).await,
    };
    match written {
        Ok(revision) => tracing::debug!(revision, "compaction checkpoint written"),
        // Another server moved the checkpoint first; it compacts this time. Look again
        // at once, to wait for the checkpoint it wrote.
        Err(Error::Conflict { .. } | Error::AlreadyExists(_) | Error::NotFound(_)) => {
            return Ok(Duration::ZERO)
        }
        Err(e) => return Err(e),
    }
    if let Some(revision) = compact_to {
        storage.compact(revision).await?;
        let bytes = storage.size_on_disk().await?;
        tracing::info!(revision, store_bytes = bytes, "compacted storage history");
    }
    Ok(schedule.interval)
}

/// Compacts on `schedule` until the task is dropped. Logs the store's size at start and
/// after every compaction.
pub async fn run(storage: Arc<dyn Storage>, schedule: Schedule) {
    match storage.size_on_disk().await {
        Ok(bytes) => tracing::info!(store_bytes = bytes, "storage size at start"),
        Err(e) => tracing::warn!(error = %e, "cannot read the storage size"),
    }
    loop {
        let wait = match tick(&*storage, &schedule).await {
            Ok(wait) => wait,
            Err(e) => {
                tracing::warn!(error = %e, "compaction failed");
                RETRY.min(schedule.interval)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::storage::embedded::EmbeddedStore;

    const MINUTE: Duration = Duration::from_secs(60);

    /// A clock that moves only when told to.
    #[derive(Debug)]
    struct FakeClock(Mutex<SystemTime>);

    impl FakeClock {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
    }

    #[test]
    fn the_schedule_compacts_to_a_checkpoint_once_it_is_an_interval_old() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = |revision, time| Some(Checkpoint { revision, time });
        let cases = [
            ("no checkpoint yet", None, t0, Next::Record),
            ("a fresh checkpoint", at(7, t0), t0, Next::Wait(5 * MINUTE)),
            (
                "two minutes old",
                at(7, t0),
                t0 + 2 * MINUTE,
                Next::Wait(3 * MINUTE),
            ),
            (
                "exactly an interval old",
                at(7, t0),
                t0 + 5 * MINUTE,
                Next::Compact { to: 7 },
            ),
            (
                "an hour old",
                at(7, t0),
                t0 + 60 * MINUTE,
                Next::Compact { to: 7 },
            ),
            (
                "a minute ahead of our clock",
                at(7, t0 + MINUTE),
                t0,
                Next::Wait(6 * MINUTE),
            ),
            (
                "a day ahead of our clock",
                at(7, t0 + 24 * 60 * MINUTE),
                t0,
                Next::Record,
            ),
        ];
        for (name, checkpoint, now, want) in cases {
            assert_eq!(next(checkpoint, now, 5 * MINUTE), want, "{name}");
        }
    }

    #[tokio::test]
    async fn a_store_whose_server_restarts_every_two_minutes_is_still_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("db")).unwrap();
        let clock = Arc::new(FakeClock(Mutex::new(
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        )));
        let schedule = Schedule {
            interval: 5 * MINUTE,
            clock: clock.clone(),
        };
        let mut first_write = None;
        // Each "server" looks at the schedule once when it starts and lives two minutes:
        // never long enough for a timer of its own to reach the interval.
        for restart in 0..4 {
            let rev = store
                .create(&format!("/registry/x/{restart}"), Bytes::from_static(b"{}"))
                .await
                .unwrap();
            first_write.get_or_insert(rev);
            tick(&*store, &schedule).await.unwrap();
            clock.advance(2 * MINUTE);
        }
        let compacted = store.compacted_revision().await.unwrap();
        // Started at minutes 0, 2, 4 and 6: the one at minute 6 compacted to the
        // checkpoint of minute 0, written right after the first object.
        assert!(compacted > first_write.unwrap(), "compacted to {compacted}");
        let checkpoint = store.get(CHECKPOINT_KEY).await.unwrap().unwrap();
        assert!(
            compacted < checkpoint.mod_revision,
            "history since the new checkpoint is kept"
        );
    }
}
