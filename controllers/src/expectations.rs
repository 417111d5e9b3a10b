//! Expectations: the creates and deletes a controller has issued but not yet seen in its
//! cache. Until they are observed (or time out) the controller must not act on the
//! cache's pod count, or a slow watch would make it create the same pods twice.
//!
//! Upstream counts adds/dels and lowers the counts from informer events; here the names
//! of created pods and uids of deleted pods are remembered and checked against the
//! store, which gives the same answer without hooking into the watch stream.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// After this long, unobserved expectations are given up on (upstream's 5 minutes), so a
/// lost watch event delays a controller but never wedges it.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Default)]
struct Pending {
    /// Names of pods created but not yet in the cache.
    creates: HashSet<String>,
    /// Uids of pods deleted but still in the cache (and not yet marked deleting).
    deletes: HashSet<String>,
    since: Option<Instant>,
}

/// Pending writes per controller key (`namespace/name`).
#[derive(Debug, Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

/// What the cache says about one object the controller wrote.
pub trait Observed {
    /// The cache holds a pod with this name.
    fn has_name(&self, name: &str) -> bool;
    /// The cache holds this uid, not being deleted.
    fn has_live_uid(&self, uid: &str) -> bool;
}

/// The objects of a cache (a reflector store's, or a slice of them) as expectations see
/// them: build it with [`cached`].
pub struct Cached<'a>(Vec<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>);

/// What the cache holds of the objects a controller writes (pods, slices, ...).
pub fn cached<'a, K: kube::Resource + 'a>(objects: impl IntoIterator<Item = &'a K>) -> Cached<'a> {
    Cached(objects.into_iter().map(kube::Resource::meta).collect())
}

impl Observed for Cached<'_> {
    fn has_name(&self, name: &str) -> bool {
        self.0.iter().any(|m| m.name.as_deref() == Some(name))
    }
    fn has_live_uid(&self, uid: &str) -> bool {
        self.0
            .iter()
            .any(|m| m.uid.as_deref() == Some(uid) && m.deletion_timestamp.is_none())
    }
}

/// Drops expired entries, so controllers deleted with writes in flight (never
/// reconciled again) do not leave their entries behind forever.
fn prune(pending: &mut HashMap<String, Pending>, now: Instant) {
    pending.retain(|_, e| {
        e.since
            .is_none_or(|t| now.duration_since(t) < EXPECTATIONS_TIMEOUT)
    });
}

impl Expectations {
    pub fn expect_creations(
        &self,
        key: &str,
        names: impl IntoIterator<Item = String>,
        now: Instant,
    ) {
        let mut pending = self.pending.lock().expect("expectations lock");
        prune(&mut pending, now);
        let entry = pending.entry(key.to_string()).or_default();
        entry.creates.extend(names);
        entry.since = Some(now);
    }

    pub fn expect_deletions(
        &self,
        key: &str,
        uids: impl IntoIterator<Item = String>,
        now: Instant,
    ) {
        let mut pending = self.pending.lock().expect("expectations lock");
        prune(&mut pending, now);
        let entry = pending.entry(key.to_string()).or_default();
        entry.deletes.extend(uids);
        entry.since = Some(now);
    }

    /// Whether the cache has caught up with every write for `key`; observed writes are
    /// forgotten. Returns the number of writes still in flight when not satisfied.
    pub fn satisfied(&self, key: &str, cache: &impl Observed, now: Instant) -> Result<(), usize> {
        let mut pending = self.pending.lock().expect("expectations lock");
        let Some(entry) = pending.get_mut(key) else {
            return Ok(());
        };
        entry.creates.retain(|name| !cache.has_name(name));
        entry.deletes.retain(|uid| cache.has_live_uid(uid));
        let left = entry.creates.len() + entry.deletes.len();
        let expired = entry
            .since
            .is_some_and(|t| now.duration_since(t) >= EXPECTATIONS_TIMEOUT);
        if left == 0 || expired {
            pending.remove(key);
            return Ok(());
        }
        Err(left)
    }

    /// Forgets a create that failed or a controller that was deleted.
    pub fn forget(&self, key: &str) {
        self.pending.lock().expect("expectations lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Cache {
        names: Vec<&'static str>,
        live_uids: Vec<&'static str>,
    }
    impl Observed for Cache {
        fn has_name(&self, name: &str) -> bool {
            self.names.contains(&name)
        }
        fn has_live_uid(&self, uid: &str) -> bool {
            self.live_uids.contains(&uid)
        }
    }

    #[test]
    fn unobserved_creates_block_until_the_cache_has_them() {
        let e = Expectations::default();
        let t0 = Instant::now();
        e.expect_creations("ns/rs", ["rs-a".to_string(), "rs-b".to_string()], t0);
        let stale = Cache {
            names: vec!["rs-a"],
            live_uids: vec![],
        };
        assert_eq!(
            e.satisfied("ns/rs", &stale, t0),
            Err(1),
            "one create still in flight"
        );
        let fresh = Cache {
            names: vec!["rs-a", "rs-b"],
            live_uids: vec![],
        };
        assert_eq!(e.satisfied("ns/rs", &fresh, t0), Ok(()));
        assert_eq!(
            e.satisfied("ns/rs", &stale, t0),
            Ok(()),
            "observed writes are forgotten"
        );
    }

    #[test]
    fn deletes_are_observed_when_the_uid_leaves_the_cache() {
        let e = Expectations::default();
        let t0 = Instant::now();
        e.expect_deletions("ns/rs", ["u1".to_string()], t0);
        let stale = Cache {
            names: vec![],
            live_uids: vec!["u1"],
        };
        assert_eq!(e.satisfied("ns/rs", &stale, t0), Err(1));
        let fresh = Cache {
            names: vec![],
            live_uids: vec![],
        };
        assert_eq!(e.satisfied("ns/rs", &fresh, t0), Ok(()));
    }

    #[test]
    fn expectations_expire_after_five_minutes() {
        let e = Expectations::default();
        let t0 = Instant::now();
        e.expect_creations("ns/rs", ["rs-a".to_string()], t0);
        let empty = Cache {
            names: vec![],
            live_uids: vec![],
        };
        assert_eq!(
            e.satisfied("ns/rs", &empty, t0 + Duration::from_secs(299)),
            Err(1)
        );
        assert_eq!(
            e.satisfied("ns/rs", &empty, t0 + EXPECTATIONS_TIMEOUT),
            Ok(())
        );
    }

    #[test]
    fn entries_of_controllers_never_reconciled_again_are_pruned() {
        let e = Expectations::default();
        let t0 = Instant::now();
        e.expect_creations("ns/deleted", ["x".to_string()], t0);
        e.expect_creations("ns/live", ["y".to_string()], t0 + EXPECTATIONS_TIMEOUT);
        let keys: Vec<String> = e.pending.lock().unwrap().keys().cloned().collect();
        assert_eq!(keys, vec!["ns/live".to_string()]);
    }

    #[test]
    fn keys_without_writes_are_satisfied() {
        let e = Expectations::default();
        let empty = Cache {
            names: vec![],
            live_uids: vec![],
        };
        assert_eq!(e.satisfied("ns/other", &empty, Instant::now()), Ok(()));
    }
}
