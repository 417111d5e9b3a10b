//! The scheduling queue, as upstream's PriorityQueue: an active queue ordered by
//! priority (higher first) then creation time (older first); a back-off queue (1 s after
//! the first failed attempt, doubling to at most 10 s); and an unschedulable set whose
//! pods move back when a cluster event could help them (a node added, a node change or a
//! pod added or deleted that concerns a plugin which rejected the pod) or after
//! `UNSCHEDULABLE_TIMEOUT` (upstream's 5 minutes) at the latest.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::cache::PodInfo;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
pub const UNSCHEDULABLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Back-off after `attempts` failed attempts: 1 s, 2 s, 4 s, 8 s, then 10 s.
pub fn backoff(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(16);
    (INITIAL_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF)
}

/// A pod waiting to be scheduled.
#[derive(Clone, Debug)]
pub struct QueuedPod {
    pub info: Arc<PodInfo>,
    pub attempts: u32,
    pub last_attempt: Option<Instant>,
}

impl QueuedPod {
    fn backoff_until(&self) -> Option<Instant> {
        self.last_attempt.map(|t| t + backoff(self.attempts))
    }
}

/// Priority (higher first), creation time in ns (older first), arrival order.
type ActiveKey = (Reverse<i32>, i128, u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable(Instant),
    InFlight,
}

struct Entry {
    pod: QueuedPod,
    place: Place,
    key: ActiveKey,
    /// Plugins that rejected the pod in its last attempt (`framework::plugin` bits).
    rejected: u16,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Keys are unique (arrival order last); the value is the entry's pod, whose uid
    /// finds the entry, so the active queue holds no copy of every uid.
    active: BTreeMap<ActiveKey, Arc<PodInfo>>,
    /// The uids in `Place::Unschedulable`, so events look at parked pods only.
    parked: HashSet<String>,
    seq: u64,
    cycle: u64,
    move_request_cycle: u64,
}

/// Shared between the informers (producers) and the one scheduling loop (consumer).
#[derive(Default)]
pub struct SchedulingQueue {
    inner: Mutex<Inner>,
    notify: Notify,
}

fn creation(info: &PodInfo) -> i128 {
    info.created
}

impl Inner {
    fn activate(&mut self, uid: &str) {
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        self.seq += 1;
        e.key = (
            Reverse(e.pod.info.priority),
            creation(&e.pod.info),
            self.seq,
        );
        e.place = Place::Active;
        self.active.insert(e.key, e.pod.info.clone());
        self.parked.remove(uid);
    }

    fn leave_active(&mut self, uid: &str) {
        if let Some(e) = self.entries.get(uid) {
            if e.place == Place::Active {
                self.active.remove(&e.key);
            }
        }
    }

    /// Active if its back-off has passed, else the back-off queue.
    fn activate_or_backoff(&mut self, uid: &str, now: Instant) {
        let until = self.entries.get(uid).and_then(|e| e.pod.backoff_until());
        if until.is_some_and(|u| u > now) {
            if let Some(e) = self.entries.get_mut(uid) {
                e.place = Place::Backoff;
            }
            self.parked.remove(uid);
        } else {
            self.activate(uid);
        }
    }
}

impl SchedulingQueue {
    pub fn new() -> Arc<SchedulingQueue> {
        Arc::new(SchedulingQueue::default())
    }

    /// A pending pod was added or updated. An update of a pod parked as unschedulable
    /// gives it another try (its spec may now fit).
    pub fn add(&self, info: Arc<PodInfo>) {
        let mut q = self.inner.lock().expect("queue lock");
        let uid = info.uid.clone();
        let now = Instant::now();
        match q.entries.get_mut(&uid) {
            Some(e) => {
                let place = e.place;
                e.pod.info = info;
                match place {
                    Place::Active => {
                        q.leave_active(&uid);
                        q.activate(&uid);
                    }
                    Place::Unschedulable(_) => q.activate_or_backoff(&uid, now),
                    Place::Backoff | Place::InFlight => {}
                }
            }
            None => {
                let pod = QueuedPod {
                    info,
                    attempts: 0,
                    last_attempt: None,
                };
                q.entries.insert(
                    uid.clone(),
                    Entry {
                        pod,
                        place: Place::Active,
                        key: (Reverse(0), 0, 0),
                        rejected: 0,
                    },
                );
                q.activate(&uid);
            }
        }
        drop(q);
        self.notify.notify_one();
    }

    pub fn delete(&self, uid: &str) {
        let mut q = self.inner.lock().expect("queue lock");
        q.leave_active(uid);
        q.entries.remove(uid);
        q.parked.remove(uid);
    }

    fn try_pop(&self) -> Option<(QueuedPod, u64)> {
        let mut q = self.inner.lock().expect("queue lock");
        let (_, info) = q.active.pop_first()?;
        let uid = &*info.uid;
        q.cycle += 1;
        let cycle = q.cycle;
        let e = q.entries.get_mut(uid)?;
        e.place = Place::InFlight;
        e.pod.attempts += 1;
        e.pod.last_attempt = Some(Instant::now());
        Some((e.pod.clone(), cycle))
    }

    /// Waits for the highest-priority active pod; returns it with its scheduling cycle.
    pub async fn pop(&self) -> (QueuedPod, u64) {
        loop {
            if let Some(p) = self.try_pop() {
                return p;
            }
            self.notify.notified().await;
        }
    }

    /// The pod was assumed onto a node; the queue forgets it.
    pub fn done(&self, uid: &str) {
        let mut q = self.inner.lock().expect("queue lock");
        if q.entries
            .get(uid)
            .is_some_and(|e| e.place == Place::InFlight)
        {
            q.entries.remove(uid);
        }
    }

    /// No node fits; `rejected` names the plugins that said no. If the cluster changed
    /// while the pod was being scheduled (a move request in or after its cycle), it goes
    /// to back-off instead of waiting for the next change, which it might otherwise miss.
    pub fn unschedulable(&self, pod: QueuedPod, cycle: u64, rejected: u16) {
        let mut guard = self.inner.lock().expect("queue lock");
        let q = &mut *guard;
        let uid = pod.info.uid.clone();
        let moved = q.move_request_cycle >= cycle;
        let Some(e) = q.entries.get_mut(&uid) else {
            return;
        };
        if e.place != Place::InFlight {
            return;
        }
        e.rejected = rejected;
        if moved {
            e.place = Place::Backoff;
        } else {
            e.place = Place::Unschedulable(Instant::now());
            q.parked.insert(uid);
        }
    }

    /// Binding or an API call failed: retry after back-off, whether or not anything changed.
    pub fn retry(&self, pod: QueuedPod) {
        let mut q = self.inner.lock().expect("queue lock");
        let uid = pod.info.uid.clone();
        let entry = q.entries.entry(uid).or_insert(Entry {
            pod: pod.clone(),
            place: Place::Backoff,
            key: (Reverse(0), 0, 0),
            rejected: 0,
        });
        entry.pod.attempts = entry.pod.attempts.max(pod.attempts);
        entry.pod.last_attempt = pod.last_attempt;
        if entry.place != Place::Active {
            entry.place = Place::Backoff;
        }
        q.parked.remove(&pod.info.uid);
    }

    /// A cluster event that may make unschedulable pods fit, as the set of plugins whose
    /// verdict it may change (`framework::event`): moves back the parked pods that one
    /// of those plugins rejected.
    pub fn move_for(&self, event: u16) {
        let mut q = self.inner.lock().expect("queue lock");
        q.move_request_cycle = q.cycle;
        let now = Instant::now();
        let parked: Vec<String> = q
            .parked
            .iter()
            .filter(|uid| {
                q.entries
                    .get(*uid)
                    .is_some_and(|e| e.rejected == 0 || e.rejected & event != 0)
            })
            .cloned()
            .collect();
        let any = !parked.is_empty();
        for uid in parked {
            q.activate_or_backoff(&uid, now);
        }
        drop(q);
        if any {
            self.notify.notify_one();
        }
    }

    /// Periodic: back-off expired → active; unschedulable for too long → active.
    pub fn flush(&self) {
        let mut q = self.inner.lock().expect("queue lock");
        let now = Instant::now();
        let due: Vec<(String, bool)> = q
            .entries
            .iter()
            .filter_map(|(k, e)| match e.place {
                Place::Backoff if e.pod.backoff_until().is_none_or(|u| u <= now) => {
                    Some((k.clone(), true))
                }
                Place::Unschedulable(since) if now - since >= UNSCHEDULABLE_TIMEOUT => {
                    Some((k.clone(), false))
                }
                _ => None,
            })
            .collect();
        let any = !due.is_empty();
        for (uid, from_backoff) in due {
            if from_backoff {
                q.activate(&uid)
            } else {
                q.activate_or_backoff(&uid, now)
            }
        }
        drop(q);
        if any {
            self.notify.notify_one();
        }
    }

    /// The uids of queued pods (active, backing off, parked or in flight) that `keep`
    /// rejects.
    pub fn uids_except(&self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let q = self.inner.lock().expect("queue lock");
        q.entries.keys().filter(|u| !keep(u)).cloned().collect()
    }

    /// (active, back-off, unschedulable) sizes, for tests and logs.
    pub fn lens(&self) -> (usize, usize, usize) {
        let q = self.inner.lock().expect("queue lock");
        let count = |f: fn(&Place) -> bool| q.entries.values().filter(|e| f(&e.place)).count();
        (
            q.active.len(),
            count(|p| *p == Place::Backoff),
            count(|p| matches!(p, Place::Unschedulable(_))),
        )
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;

    use super::*;
    use crate::framework::{event, plugin};
    use controllers::fixtures::PodFixture;

    fn info(pod: Pod) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(pod.into())))
    }

    #[test]
    fn backoff_doubles_from_one_second_to_ten() {
        let got: Vec<u64> = (1..=6).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 10, 10]);
    }

    #[tokio::test]
    async fn higher_priority_pops_first_then_fifo() {
        let q = SchedulingQueue::new();
        q.add(info(Pod::test("low1")));
        q.add(info(Pod::test("high").priority(100)));
        q.add(info(Pod::test("low2")));
        let mut order = vec![];
        for _ in 0..3 {
            order.push(q.pop().await.0.info.name.clone());
        }
        assert_eq!(order, vec!["high", "low1", "low2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_pods_wait_for_a_move_then_back_off() {
        let q = SchedulingQueue::new();
        q.add(info(Pod::test("p")));
        let (pod, cycle) = q.pop().await;
        q.unschedulable(pod, cycle, plugin::RESOURCES_FIT);
        assert_eq!(q.lens(), (0, 0, 1), "parked as unschedulable");
        q.move_for(event::NODE_LABELS);
        assert_eq!(q.lens(), (0, 0, 1), "a label change cannot free resources");
        q.move_for(event::ASSIGNED_POD_DELETE);
        assert_eq!(q.lens(), (0, 1, 0), "moved, but still backing off 1s");
        tokio::time::advance(Duration::from_millis(1001)).await;
        q.flush();
        assert_eq!(q.lens(), (1, 0, 0), "back-off over: active");
    }

    #[tokio::test(start_paused = true)]
    async fn a_move_during_the_cycle_sends_the_pod_to_backoff() {
        let q = SchedulingQueue::new();
        q.add(info(Pod::test("p")));
        let (pod, cycle) = q.pop().await;
        q.move_for(event::NODE_ADD);
        q.unschedulable(pod, cycle, plugin::RESOURCES_FIT);
        assert_eq!(
            q.lens(),
            (0, 1, 0),
            "not parked: the change might have helped"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_pods_retry_after_five_minutes_without_events() {
        let q = SchedulingQueue::new();
        q.add(info(Pod::test("p")));
        let (pod, cycle) = q.pop().await;
        q.unschedulable(pod, cycle, plugin::NODE_AFFINITY);
        tokio::time::advance(UNSCHEDULABLE_TIMEOUT - Duration::from_secs(1)).await;
        q.flush();
        assert_eq!(q.lens(), (0, 0, 1), "still parked just before the timeout");
        tokio::time::advance(Duration::from_secs(1)).await;
        q.flush();
        assert_eq!(q.lens(), (1, 0, 0), "timed out into active");
    }
}
