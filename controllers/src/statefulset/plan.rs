//! The StatefulSet's decisions as one pure function of the set, its two revisions and
//! its pods (upstream's updateStatefulSet): which ordinals to create, which pods to
//! delete (finished, scaled away, or out of date) and in what order, and the status that
//! results. OrderedReady ("monotonic") stops at the first step that must be waited for;
//! Parallel does every step it can at once.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::identity::{identity_matches, ordinal_of, pod_revision};
use crate::podcontrol::{is_available, is_deleting, is_ready};

/// Which revision a new pod is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revision {
    Current,
    Update,
}

/// Why a pod is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// It finished (Succeeded or Failed); it is recreated once gone.
    Finished,
    /// Its ordinal is beyond the wanted replicas.
    ScaleDown,
    /// It runs an older revision; it is recreated from the update revision.
    Update,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the claims, then the pod, of this ordinal.
    Create {
        ordinal: i32,
        revision: Revision,
    },
    Delete {
        name: String,
        uid: String,
        why: Why,
    },
    /// Put the identity labels back on a member pod.
    Relabel {
        name: String,
    },
}

#[derive(Debug)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub status: StatefulSetStatus,
}

pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

pub fn is_parallel(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        == Some("Parallel")
}

pub fn is_on_delete(set: &StatefulSet) -> bool {
    let kind = set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref());
    kind == Some("OnDelete")
}

fn partition(set: &StatefulSet) -> Option<i32> {
    let rolling = set
        .spec
        .as_ref()?
        .update_strategy
        .as_ref()?
        .rolling_update
        .as_ref()?;
    Some(rolling.partition.unwrap_or(0))
}

fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// maxUnavailable in pods, if set: percentages of replicas round down, and at least 1
/// (10 replicas at 25% -> 2; 3 replicas at 10% -> 0 -> 1).
pub fn max_unavailable(set: &StatefulSet) -> Option<i32> {
    let value = set
        .spec
        .as_ref()?
        .update_strategy
        .as_ref()?
        .rolling_update
        .as_ref()?
        .max_unavailable
        .as_ref()?;
    let n = match value {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => {
            let percent: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            i32::try_from(percent * i64::from(replicas(set)) / 100).unwrap_or(i32::MAX)
        }
    };
    Some(n.max(1))
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), Some("Succeeded" | "Failed"))
}

fn running_and_ready(pod: &Pod) -> bool {
    phase(pod) == Some("Running") && is_ready(pod)
}

fn running_and_available(pod: &Pod, min_ready: i32, now: Timestamp) -> bool {
    phase(pod) == Some("Running") && is_available(pod, min_ready, now)
}

/// Upstream's isHealthy: running, ready, and not on its way out.
fn healthy(pod: &Pod) -> bool {
    running_and_ready(pod) && !is_deleting(&pod.metadata)
}

/// The revision a pod created now for `ordinal` gets: with a partition, ordinals below
/// it stay on the current revision; OnDelete and unpartitioned updates use the update
/// revision (upstream's newVersionedStatefulSetPod).
pub fn revision_for_new(set: &StatefulSet, ordinal: i32) -> Revision {
    match partition(set) {
        Some(p) if !is_on_delete(set) && ordinal < start_ordinal(set) + p => Revision::Current,
        _ => Revision::Update,
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The status the pods show (upstream counts every claimed pod in `replicas`, and only
/// created, not terminating pods per revision).
fn observed_status(
    set: &StatefulSet,
    current: &str,
    update: &str,
    pods: &[&Pod],
    now: Timestamp,
) -> StatefulSetStatus {
    let min_ready = min_ready_seconds(set);
    let live = |p: &&&Pod| phase(p).is_some() && !is_deleting(&p.metadata);
    StatefulSetStatus {
        replicas: count(pods.len()),
        ready_replicas: Some(count(pods.iter().filter(|p| running_and_ready(p)).count())),
        available_replicas: Some(count(
            pods.iter()
                .filter(|p| running_and_ready(p) && running_and_available(p, min_ready, now))
                .count(),
        )),
        current_replicas: Some(count(
            pods.iter()
                .filter(live)
                .filter(|p| pod_revision(p) == current)
                .count(),
        )),
        updated_replicas: Some(count(
            pods.iter()
                .filter(live)
                .filter(|p| pod_revision(p) == update)
                .count(),
        )),
        current_revision: Some(current.to_string()),
        update_revision: Some(update.to_string()),
        observed_generation: set.metadata.generation,
        collision_count: set.status.as_ref().and_then(|s| s.collision_count),
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
    }
}

fn bump(v: &mut Option<i32>, by: i32) {
    *v = Some(v.unwrap_or(0) + by);
}

/// What the rolling-update step knows of an in-range slot.
struct Slot<'a> {
    pod: Option<&'a Pod>,
    revision: String,
    healthy: bool,
    available: bool,
    terminating: bool,
}

/// Upstream's updateStatefulSet as a plan. `pods` are the set's claimed pods; `current`
/// and `update` are revision names.
pub fn plan(set: &StatefulSet, current: &str, update: &str, pods: &[&Pod], now: Timestamp) -> Plan {
    let mut status = observed_status(set, current, update, pods, now);
    let mut steps = Vec::new();
    let start = start_ordinal(set);
    let want = replicas(set);
    let monotonic = !is_parallel(set);
    let min_ready = min_ready_seconds(set);

    let mut slots: Vec<Option<&Pod>> = vec![None; usize::try_from(want).unwrap_or(0)];
    let mut condemned: Vec<(i32, &Pod)> = Vec::new();
    for pod in pods {
        let Some(ordinal) = ordinal_of(set, pod) else {
            continue;
        };
        if (start..start + want).contains(&ordinal) {
            slots[usize::try_from(ordinal - start).unwrap_or(0)] = Some(pod);
        } else {
            condemned.push((ordinal, pod));
        }
    }
    condemned.sort_by_key(|(ordinal, _)| std::cmp::Reverse(*ordinal));
    // The first pod, in ordinal order, that is not healthy (a missing one counts): the
    // one condemned pod that may be deleted though unhealthy.
    let first_unhealthy: Option<String> = if slots.iter().any(|s| s.is_none_or(|p| !healthy(p))) {
        None
    } else {
        condemned
            .iter()
            .rev()
            .find(|(_, p)| !healthy(p))
            .map(|(_, p)| p.name_any())
    };
    if is_deleting(&set.metadata) {
        return finish(set, Plan { steps, status });
    }

    let mut view: Vec<Slot<'_>> = Vec::new();
    for (i, slot) in slots.iter().enumerate() {
        let ordinal = start + count(i);
        let Some(pod) = slot else {
            let revision = revision_for_new(set, ordinal);
            let name = if revision == Revision::Current {
                current
            } else {
                update
            };
            steps.push(Step::Create { ordinal, revision });
            status.replicas += 1;
            if name == current {
                bump(&mut status.current_replicas, 1);
            }
            if name == update {
                bump(&mut status.updated_replicas, 1);
            }
            if monotonic {
                return finish(set, Plan { steps, status });
            }
            view.push(Slot {
                pod: None,
                revision: name.into(),
                healthy: false,
                available: false,
                terminating: false,
            });
            continue;
        };
        let terminating = is_deleting(&pod.metadata);
        if is_finished(pod) {
            // Deleted now, recreated on a later sync once the old pod is gone.
            if !terminating {
                steps.push(Step::Delete {
                    name: pod.name_any(),
                    uid: pod.uid().unwrap_or_default(),
                    why: Why::Finished,
                });
                let rev = pod_revision(pod);
                status.replicas -= 1;
                if rev == current {
                    bump(&mut status.current_replicas, -1);
                }
                if rev == update {
                    bump(&mut status.updated_replicas, -1);
                }
            }
            if monotonic {
                return finish(set, Plan { steps, status });
            }
        } else if monotonic
            && (terminating
                || !running_and_ready(pod)
                || !running_and_available(pod, min_ready, now))
        {
            // OrderedReady: every predecessor Running, Ready (and available) first.
            return finish(set, Plan { steps, status });
        } else if !identity_matches(set, pod) {
            steps.push(Step::Relabel {
                name: pod.name_any(),
            });
        }
        view.push(Slot {
            pod: Some(pod),
            revision: pod_revision(pod).into(),
            healthy: healthy(pod) && !is_finished(pod),
            available: running_and_available(pod, min_ready, now),
            terminating: terminating || is_finished(pod),
        });
    }

    // Scale down from the highest ordinal. OrderedReady: one at a time, only while all
    // others are healthy (the first unhealthy pod excepted), never past a terminating one.
    for (_, pod) in &condemned {
        let is_first_unhealthy = first_unhealthy.as_deref() == Some(pod.name_any().as_str());
        if is_deleting(&pod.metadata) {
            if monotonic {
                return finish(set, Plan { steps, status });
            }
            continue;
        }
        if monotonic
            && !is_first_unhealthy
            && (!running_and_ready(pod) || !running_and_available(pod, min_ready, now))
        {
            return finish(set, Plan { steps, status });
        }
        steps.push(Step::Delete {
            name: pod.name_any(),
            uid: pod.uid().unwrap_or_default(),
            why: Why::ScaleDown,
        });
        if monotonic {
            return finish(set, Plan { steps, status });
        }
    }

    if !is_on_delete(set) {
        rolling_update(set, update, &view, &mut steps, &mut status);
    }
    finish(set, Plan { steps, status })
}

/// Deletes out-of-date pods from the highest ordinal down to the partition: one at a
/// time, waiting for each replacement to be healthy; or, with maxUnavailable, as many
/// as keep at most that many in-range pods unavailable.
fn rolling_update(
    set: &StatefulSet,
    update: &str,
    view: &[Slot<'_>],
    steps: &mut Vec<Step>,
    status: &mut StatefulSetStatus,
) {
    let floor = usize::try_from(partition(set).unwrap_or(0)).unwrap_or(0);
    let outdated = |s: &Slot<'_>| s.revision != update && !s.terminating;
    let mut delete = |s: &Slot<'_>, steps: &mut Vec<Step>| {
        if let Some(pod) = s.pod {
            steps.push(Step::Delete {
                name: pod.name_any(),
                uid: pod.uid().unwrap_or_default(),
                why: Why::Update,
            });
            bump(&mut status.current_replicas, -1);
        }
    };
    if let Some(max) = max_unavailable(set) {
        let unavailable = count(view.iter().filter(|s| !s.healthy || !s.available).count());
        let mut budget = max - unavailable;
        for s in view.iter().skip(floor).rev() {
            if budget <= 0 {
                break;
            }
            if outdated(s) {
                delete(s, steps);
                budget -= 1;
            }
        }
        return;
    }
    for s in view.iter().skip(floor).rev() {
        if outdated(s) {
            delete(s, steps);
            return;
        }
        if !s.healthy {
            return;
        }
    }
}

/// Upstream's completeRollingUpdate: once every pod runs the update revision and is
/// ready, the update revision becomes the current one.
fn finish(set: &StatefulSet, mut plan: Plan) -> Plan {
    let s = &mut plan.status;
    if !is_on_delete(set)
        && s.updated_replicas.unwrap_or(0) == s.replicas
        && s.ready_replicas.unwrap_or(0) == s.replicas
    {
        s.current_replicas = s.updated_replicas;
        s.current_revision = s.update_revision.clone();
    }
    plan
}
