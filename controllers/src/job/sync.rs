//! One sync of an unfinished Job, in upstream's order: account for finished pods (two
//! phases through `status.uncountedTerminatedPods`, so a crash between removing a
//! finalizer and writing the count neither loses nor doubles a pod), decide whether the
//! Job is finishing, then suspend, or create and delete pods, and write the status.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::{Job, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use tracing::info;

use super::apply::{create_pods, delete_pods, record_backoff, NewlyFinished, COMPONENT};
use super::indexes::{format_ranges, indexes_to_create, parse_ranges, pod_index};
use super::pods::{has_tracking_finalizer, remove_tracking_finalizer};
use super::policy::{match_failure_policy, restarts_exceed_limit, wanted_active, PolicyAction};
use super::status::{completions_reached, deadline_left, pending_finish, set_condition, Finish};
use super::status::{COMPLETIONS_REACHED, COMPLETIONS_REACHED_MESSAGE};
use super::{write_status, Error, Result, State};
use crate::expectations::cached;
use crate::podcontrol::{self, is_active, is_ready};
use crate::shared::ranking::pods_to_delete;

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn now_time(now: Timestamp) -> Time {
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

pub(super) async fn sync_job(
    state: &State,
    job: &Job,
    key: &str,
    pods: &[Pod],
    now: Timestamp,
) -> Result<Action> {
    let ns = job.namespace().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(state.client.clone(), &ns);
    let spec = job.spec.clone().unwrap_or_default();
    let old_status = job.status.clone().unwrap_or_default();
    let mut status = old_status.clone();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1);
    let suspended = spec.suspend.unwrap_or(false);
    let mut uncounted = status.uncounted_terminated_pods.take().unwrap_or_default();
    let uncounted_uids: HashSet<String> = uncounted
        .succeeded
        .iter()
        .chain(uncounted.failed.iter())
        .flatten()
        .cloned()
        .collect();
    // With a failure policy (or podReplacementPolicy Failed) a terminating pod counts
    // only once it reaches phase Failed; otherwise a deleted pod counts as failed.
    let only_failed_phase = spec.pod_failure_policy.is_some()
        || spec.pod_replacement_policy.as_deref() == Some("Failed");
    let active: Vec<&Pod> = pods.iter().filter(|p| is_active(p)).collect();
    let mut completed: BTreeSet<i32> = parse_ranges(
        status.completed_indexes.as_deref().unwrap_or_default(),
        completions.unwrap_or(0),
    );

    // 1. Classify pods that finished since the last sync.
    let mut finish = pending_finish(job.status.as_ref());
    let mut new = NewlyFinished::default();
    let tracked = pods.iter().filter(|p| {
        has_tracking_finalizer(p) && !p.uid().is_some_and(|u| uncounted_uids.contains(&u))
    });
    for pod in tracked.clone() {
        let deleting = podcontrol::is_deleting(&pod.metadata);
        match phase(pod) {
            "Succeeded" => new.succeeded.push(pod),
            "Failed" => match spec
                .pod_failure_policy
                .as_ref()
                .map(|p| match_failure_policy(p, pod))
            {
                Some(PolicyAction::Ignore) => new.ignored.push(pod),
                Some(PolicyAction::FailJob(message)) => {
                    if finish.is_none() {
                        finish = Some(Finish::Failure {
                            reason: "PodFailurePolicy".into(),
                            message,
                        });
                    }
                    new.failed.push(pod);
                }
                Some(PolicyAction::Count) | None => new.failed.push(pod),
            },
            _ if deleting && !only_failed_phase => new.failed.push(pod),
            _ => {}
        }
    }
    record_backoff(state, key, &new, now);
    if indexed {
        let c = completions.unwrap_or(0);
        completed.extend(
            new.succeeded
                .iter()
                .filter_map(|p| pod_index(p))
                .filter(|i| *i < c),
        );
    }
    let failed_total = old_status.failed.unwrap_or(0)
        + count(&uncounted.failed)
        + i32::try_from(new.failed.len()).unwrap_or(i32::MAX);
    let succeeded_total = if indexed {
        i32::try_from(completed.len()).unwrap_or(i32::MAX)
    } else {
        old_status.succeeded.unwrap_or(0)
            + count(&uncounted.succeeded)
            + i32::try_from(new.succeeded.len()).unwrap_or(i32::MAX)
    };

    // 2. Is the Job finishing?
    let restart_policy = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_default();
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    if finish.is_none() {
        let deadline = deadline_left(
            status.start_time.as_ref(),
            spec.active_deadline_seconds,
            now,
        );
        finish = if failed_total > backoff_limit
            || restarts_exceed_limit(&restart_policy, backoff_limit, &active)
        {
            Some(Finish::Failure {
                reason: "BackoffLimitExceeded".into(),
                message: "Job has reached the specified backoff limit".into(),
            })
        } else if !suspended && deadline.is_some_and(|left| left <= 0) {
            Some(Finish::Failure {
                reason: "DeadlineExceeded".into(),
                message: "Job was active longer than specified deadline".into(),
            })
        } else if completions_reached(completions, succeeded_total, active.len()) {
            Some(Finish::Success)
        } else {
            None
        };
    }
    // A finishing Job lets go of every pod: a failing Job counts the unfinished ones as
    // failed, a succeeding one does not count them at all.
    if let Some(f) = &finish {
        let accounted: HashSet<&str> = new
            .succeeded
            .iter()
            .chain(&new.failed)
            .chain(&new.ignored)
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        let rest: Vec<&Pod> = tracked
            .filter(|p| {
                !p.metadata
                    .uid
                    .as_deref()
                    .is_some_and(|u| accounted.contains(u))
            })
            .collect();
        for pod in rest {
            match f {
                Finish::Failure { .. } => new.failed.push(pod),
                Finish::Success => new.ignored.push(pod),
            }
        }
    }

    // 3. Record the newly finished pods as uncounted before touching their finalizers.
    let mut job = job.clone();
    let uids = |v: &[&Pod]| v.iter().filter_map(|p| p.uid()).collect::<Vec<_>>();
    if !new.succeeded.is_empty() || !new.failed.is_empty() {
        uncounted
            .succeeded
            .get_or_insert_with(Vec::new)
            .extend(uids(&new.succeeded));
        uncounted
            .failed
            .get_or_insert_with(Vec::new)
            .extend(uids(&new.failed));
        let mut interim = old_status.clone();
        interim.uncounted_terminated_pods = Some(uncounted.clone());
        if indexed {
            interim.completed_indexes = Some(format_ranges(&completed));
        }
        job = write_status(&state.client, &job, interim, key).await?;
    }

    // 4. Remove finalizers: of the new pods and of uncounted pods still holding one.
    let mut released: HashSet<String> = HashSet::new();
    let holding: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            has_tracking_finalizer(p) && p.uid().is_some_and(|u| uncounted_uids.contains(&u))
        })
        .chain(
            new.succeeded
                .iter()
                .chain(&new.failed)
                .chain(&new.ignored)
                .copied(),
        )
        .collect();
    let mut finalizer_error = None;
    for pod in holding {
        match remove_tracking_finalizer(&pods_api, pod).await {
            Ok(()) => {
                released.extend(pod.uid());
            }
            Err(source) => {
                finalizer_error = Some(Error::Finalizer {
                    pod: pod.name_any(),
                    source,
                })
            }
        }
    }

    // 5. Move uncounted pods whose finalizer is gone into the counts.
    let gone = |uid: &String| {
        released.contains(uid)
            || !pods
                .iter()
                .any(|p| p.uid().as_ref() == Some(uid) && has_tracking_finalizer(p))
    };
    let (done_s, left_s): (Vec<String>, Vec<String>) = uncounted
        .succeeded
        .take()
        .unwrap_or_default()
        .into_iter()
        .partition(|u| gone(u));
    let (done_f, left_f): (Vec<String>, Vec<String>) = uncounted
        .failed
        .take()
        .unwrap_or_default()
        .into_iter()
        .partition(|u| gone(u));
    status.succeeded = Some(if indexed {
        succeeded_total
    } else {
        old_status.succeeded.unwrap_or(0) + count(&Some(done_s))
    });
    status.failed = Some(old_status.failed.unwrap_or(0) + count(&Some(done_f)));
    let all_counted = left_s.is_empty() && left_f.is_empty();
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: Some(left_s),
        failed: Some(left_f),
    });
    if indexed {
        status.completed_indexes = Some(format_ranges(&completed));
    }
    let mut conditions = status.conditions.take().unwrap_or_default();

    // 6. Act on the pods.
    let mut requeue: Option<Duration> = None;
    let mut created = 0usize;
    let mut deleted = 0usize;
    let mut manage_error = None;
    if let Some(f) = &finish {
        deleted = delete_pods(state, key, &job, &pods_api, &active, false).await?;
        let (interim, terminal, reason, message) = match f {
            Finish::Success => (
                "SuccessCriteriaMet",
                "Complete",
                COMPLETIONS_REACHED,
                COMPLETIONS_REACHED_MESSAGE,
            ),
            Finish::Failure { reason, message } => {
                ("FailureTarget", "Failed", reason.as_str(), message.as_str())
            }
        };
        set_condition(&mut conditions, interim, "True", reason, message, now);
        // The terminal condition waits until no pod runs and every pod is counted.
        if active.is_empty() && all_counted {
            let newly = set_condition(&mut conditions, terminal, "True", reason, message, now);
            if matches!(f, Finish::Success) {
                status.completion_time = Some(now_time(now));
            }
            info!(job = %key, %terminal, %reason, "job finished");
            if newly {
                // Upstream's recordJobFinished: "Completed", or the failure's reason.
                let (type_, reason, message) = match f {
                    Finish::Success => ("Normal", "Completed", "Job completed"),
                    Finish::Failure { .. } => ("Warning", reason, message),
                };
                podcontrol::publish_event(&state.client, &job, type_, reason, message, COMPONENT)
                    .await;
            }
        }
    } else if suspended {
        deleted = delete_pods(state, key, &job, &pods_api, &active, true).await?;
        if set_condition(
            &mut conditions,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            now,
        ) {
            info!(job = %key, "job suspended");
        }
    } else {
        let was_suspended = conditions
            .iter()
            .any(|c| c.type_ == "Suspended" && c.status == "True");
        if was_suspended {
            set_condition(
                &mut conditions,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                now,
            );
            // Resuming restarts the activeDeadlineSeconds clock, as upstream does.
            status.start_time = Some(now_time(now));
        }
        if status.start_time.is_none() {
            status.start_time = Some(now_time(now));
        }
        let cache = cached(pods);
        if let Err(in_flight) = state.expectations.satisfied(key, &cache, Instant::now()) {
            info!(job = %key, in_flight, "waiting for the cache to observe earlier creates/deletes");
            requeue = Some(Duration::from_secs(5));
        } else {
            let want = if indexed {
                (completions.unwrap_or(0) - i32::try_from(completed.len()).unwrap_or(i32::MAX))
                    .clamp(0, parallelism.max(0))
            } else {
                wanted_active(
                    parallelism,
                    completions,
                    succeeded_total,
                    i32::try_from(active.len()).unwrap_or(i32::MAX),
                )
            };
            let want = usize::try_from(want).unwrap_or(0);
            if active.len() > want {
                let mut victims = if indexed {
                    let mut v = active.clone();
                    v.sort_by_key(|p| std::cmp::Reverse(pod_index(p)));
                    v
                } else {
                    pods_to_delete(&active, active.len())
                };
                victims.truncate(active.len() - want);
                deleted = delete_pods(state, key, &job, &pods_api, &victims, true).await?;
            } else if active.len() < want {
                let backoff = state
                    .backoff
                    .lock()
                    .expect("backoff lock")
                    .get(key)
                    .map(|r| r.remaining(now));
                match backoff.filter(|d| !d.is_zero()) {
                    Some(wait) => requeue = Some(wait),
                    None => {
                        let n = want - active.len();
                        let to_create: Vec<Option<i32>> = if indexed {
                            let running: BTreeSet<i32> =
                                active.iter().filter_map(|p| pod_index(p)).collect();
                            indexes_to_create(completions.unwrap_or(0), &completed, &running, n)
                                .into_iter()
                                .map(Some)
                                .collect()
                        } else {
                            vec![None; n]
                        };
                        match create_pods(state, key, &job, &pods_api, &to_create).await {
                            Ok(n) => created = n,
                            Err((n, e)) => {
                                created = n;
                                manage_error = Some(e);
                            }
                        }
                    }
                }
            }
        }
        if let Some(left) = deadline_left(
            status.start_time.as_ref(),
            spec.active_deadline_seconds,
            now,
        ) {
            let left = Duration::from_secs(left.max(0).unsigned_abs() + 1);
            requeue = Some(requeue.map_or(left, |r| r.min(left)));
        }
    }

    // 7. Status.
    let deleting = pods
        .iter()
        .filter(|p| {
            podcontrol::is_deleting(&p.metadata) && !matches!(phase(p), "Succeeded" | "Failed")
        })
        .count();
    let to_i32 = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    status.active = Some(to_i32((active.len() + created).saturating_sub(deleted)));
    status.ready = Some(to_i32(active.iter().filter(|p| is_ready(p)).count()));
    status.terminating = Some(to_i32(deleting + deleted));
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    if job.status.as_ref() != Some(&status) {
        write_status(&state.client, &job, status, key).await?;
    }
    if let Some(e) = finalizer_error.or(manage_error) {
        return Err(e);
    }
    Ok(Action::requeue(requeue.unwrap_or(Duration::from_secs(300))))
}

fn count(v: &Option<Vec<String>>) -> i32 {
    i32::try_from(v.as_ref().map_or(0, Vec::len)).unwrap_or(i32::MAX)
}
