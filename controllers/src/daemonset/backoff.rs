//! Back-off for replacing failed daemon pods (upstream's failedPodsBackoff): a pod the
//! node keeps failing (a kubelet rejecting it, a crashing init) must not be deleted and
//! recreated in a hot loop. 1 s after the first failure, doubling to 15 min; an entry
//! untouched for twice the maximum starts over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(super) const INITIAL: Duration = Duration::from_secs(1);
pub(super) const MAX: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
    last_update: Instant,
}

/// Delays per key (`<ds uid>/<observed generation>/<node>`, so a new spec starts afresh).
#[derive(Debug, Default)]
pub struct Backoff {
    entries: Mutex<HashMap<String, Entry>>,
}

fn expired(e: &Entry, now: Instant) -> bool {
    now.saturating_duration_since(e.last_update) > 2 * MAX
}

impl Backoff {
    /// How much longer `key` must wait, if it is still backing off at `now`.
    pub fn remaining(&self, key: &str, now: Instant) -> Option<Duration> {
        let entries = self.entries.lock().expect("backoff lock");
        let e = entries.get(key).filter(|e| !expired(e, now))?;
        let since = now.saturating_duration_since(e.last_update);
        (since < e.delay).then(|| e.delay - since)
    }

    /// Records a replacement at `now`: the next one waits twice as long (up to [`MAX`]).
    pub fn next(&self, key: &str, now: Instant) {
        let mut entries = self.entries.lock().expect("backoff lock");
        entries.retain(|_, e| !expired(e, now));
        let delay = match entries.get(key) {
            Some(e) => (e.delay * 2).min(MAX),
            None => INITIAL,
        };
        entries.insert(
            key.to_string(),
            Entry {
                delay,
                last_update: now,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacements_back_off_doubling_up_to_fifteen_minutes() {
        let b = Backoff::default();
        let t0 = Instant::now();
        assert_eq!(
            b.remaining("k", t0),
            None,
            "the first failure is replaced at once"
        );
        b.next("k", t0);
        assert_eq!(b.remaining("k", t0), Some(INITIAL), "then 1s");
        assert_eq!(b.remaining("k", t0 + INITIAL), None);
        b.next("k", t0 + INITIAL);
        assert_eq!(
            b.remaining("k", t0 + INITIAL),
            Some(Duration::from_secs(2)),
            "then 2s"
        );
        for _ in 0..20 {
            b.next("k", t0 + INITIAL);
        }
        assert_eq!(
            b.remaining("k", t0 + INITIAL),
            Some(MAX),
            "capped at 15 min"
        );
        assert_eq!(b.remaining("other", t0), None, "keys are independent");
        let much_later = t0 + INITIAL + 2 * MAX + Duration::from_secs(1);
        b.next("k", much_later);
        assert_eq!(
            b.remaining("k", much_later),
            Some(INITIAL),
            "a long-quiet key starts over"
        );
    }
}
