//! The Job's writes to its pods: creating them in slow-start batches, deleting them,
//! and remembering failures for the replacement back-off.

use std::time::Instant;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, ResourceExt};
use tracing::info;

use super::pods::{has_tracking_finalizer, pod_for, remove_tracking_finalizer};
use super::{BackoffRecord, Error, Result, State};
use crate::podcontrol::{self, PodWrite};

/// The event source upstream's Job loop reports as.
pub(super) const COMPONENT: &str = "job-controller";

/// Finished pods seen for the first time, split by how they count.
#[derive(Default)]
pub(super) struct NewlyFinished<'a> {
    pub succeeded: Vec<&'a Pod>,
    pub failed: Vec<&'a Pod>,
    /// Finalizer to remove, not counted (policy Ignore, or left over by a finished Job).
    pub ignored: Vec<&'a Pod>,
}

/// When a failed pod's last container stopped, for the back-off clock.
fn finished_time(pod: &Pod) -> Option<Timestamp> {
    let s = pod.status.as_ref()?;
    s.container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max()
}

/// Remembers new failures (and forgets them after a success) for the back-off.
pub(super) fn record_backoff(state: &State, key: &str, new: &NewlyFinished<'_>, now: Timestamp) {
    if new.succeeded.is_empty() && new.failed.is_empty() {
        return;
    }
    let mut records = state.backoff.lock().expect("backoff lock");
    let record = records.entry(key.to_string()).or_insert(BackoffRecord {
        failures: 0,
        last_failure: now,
    });
    if !new.succeeded.is_empty() {
        record.failures = 0;
    }
    if !new.failed.is_empty() {
        record.failures += u32::try_from(new.failed.len()).unwrap_or(u32::MAX);
        record.last_failure = new
            .failed
            .iter()
            .filter_map(|p| finished_time(p))
            .max()
            .unwrap_or(now)
            .min(now);
    }
}

/// An event about `job` and one of its pods, as upstream's pod control records it.
async fn pod_event(
    api: &Api<Pod>,
    job: &Job,
    write: PodWrite,
    pod: &str,
    error: Option<&kube::Error>,
) {
    let client = api.clone().into_client();
    podcontrol::publish_pod_event(&client, job, write, pod, error, COMPONENT).await;
}

/// Creates one pod per entry (its completion index when Indexed), 1, 2, 4, ... at a
/// time so a template that cannot be created fails after one request.
pub(super) async fn create_pods(
    state: &State,
    key: &str,
    job: &Job,
    api: &Api<Pod>,
    to_create: &[Option<i32>],
) -> std::result::Result<usize, (usize, Error)> {
    let mut created = 0;
    let mut rest = to_create;
    let mut size = 1;
    while !rest.is_empty() {
        let (now, later) = rest.split_at(size.min(rest.len()));
        size *= 2;
        rest = later;
        let creates = now.iter().map(|index| {
            let pod = pod_for(job, *index);
            async move { api.create(&kube::api::PostParams::default(), &pod).await }
        });
        let mut names = Vec::new();
        let mut failure = None;
        for result in futures::future::join_all(creates).await {
            let pod = result.as_ref().map_or(String::new(), |p| p.name_any());
            pod_event(api, job, PodWrite::Create, &pod, result.as_ref().err()).await;
            match result {
                Ok(pod) => names.push(pod.name_any()),
                Err(source) => failure = Some(source),
            }
        }
        created += names.len();
        info!(job = %key, created = names.len(), "created pods");
        state
            .expectations
            .expect_creations(key, names, Instant::now());
        if let Some(source) = failure {
            return Err((
                created,
                Error::CreatePods {
                    key: key.into(),
                    source,
                },
            ));
        }
    }
    Ok(created)
}

/// Deletes pods. Pods the Job stops on purpose (suspension, lower parallelism) first
/// lose the tracking finalizer so they are not counted as failed, as upstream does.
pub(super) async fn delete_pods(
    state: &State,
    key: &str,
    job: &Job,
    api: &Api<Pod>,
    pods: &[&Pod],
    uncount: bool,
) -> Result<usize> {
    if pods.is_empty() {
        return Ok(0);
    }
    state
        .expectations
        .expect_deletions(key, pods.iter().filter_map(|p| p.uid()), Instant::now());
    for pod in pods {
        let result = async {
            if uncount && has_tracking_finalizer(pod) {
                remove_tracking_finalizer(api, pod)
                    .await
                    .map_err(|source| Error::Finalizer {
                        pod: pod.name_any(),
                        source,
                    })?;
            }
            let deleted = podcontrol::delete_pod(api, &pod.name_any()).await;
            pod_event(
                api,
                job,
                PodWrite::Delete,
                &pod.name_any(),
                deleted.as_ref().err(),
            )
            .await;
            deleted.map_err(|source| Error::DeletePod {
                pod: pod.name_any(),
                source,
            })
        }
        .await;
        if let Err(e) = result {
            state.expectations.forget(key);
            return Err(e);
        }
    }
    info!(job = %key, deleted = pods.len(), "deleted pods");
    Ok(pods.len())
}
