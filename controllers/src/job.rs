//! The Job controller: runs pods to completion (upstream pkg/controller/job). It counts
//! finished pods through the `batch.kubernetes.io/job-tracking` finalizer, so a pod is
//! never lost from the counts even when deleted; replaces failed pods with exponential
//! back-off; and ends the Job as Complete or Failed (back-off limit, deadline, pod
//! failure policy). Suspension and ttlSecondsAfterFinished are handled here too.

mod apply;
mod claim;
mod indexes;
mod orphans;
mod pods;
mod policy;
mod status;
mod sync;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::Controller;
use kube::{Api, ResourceExt};
use tracing::{info, warn};

pub use indexes::{format_ranges, indexes_to_create, parse_ranges, pod_index, INDEX_KEY};
pub use pods::{pod_for, TRACKING_FINALIZER};
pub use policy::{
    backoff_delay, match_failure_policy, restarts_exceed_limit, wanted_active, PolicyAction,
};
pub use status::{completions_reached, Finish};

use crate::expectations::Expectations;
use crate::podcontrol::{self, controller_of};
use crate::runtime::informers::Informers;
use crate::{Context, LoopFuture};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("job {0} has no namespace")]
    NoNamespace(String),
    #[error("creating pods for {key}: {source}")]
    CreatePods { key: String, source: kube::Error },
    #[error("deleting pod {pod}: {source}")]
    DeletePod { pod: String, source: kube::Error },
    #[error("removing the tracking finalizer of pod {pod}: {source}")]
    Finalizer { pod: String, source: kube::Error },
    #[error("writing status of {key}: {source}")]
    Status { key: String, source: kube::Error },
    #[error("adopting or releasing pod {pod}: {source}")]
    Claim { pod: String, source: kube::Error },
    #[error("deleting finished job {key}: {source}")]
    DeleteJob { key: String, source: kube::Error },
}

impl crate::runtime::retry::ReconcileError for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Failures since the Job's last success, for the replacement back-off.
#[derive(Debug, Clone, Copy)]
pub struct BackoffRecord {
    pub failures: u32,
    pub last_failure: Timestamp,
}

impl BackoffRecord {
    /// How long to wait before creating a replacement at `now` (zero when none).
    pub fn remaining(&self, now: Timestamp) -> Duration {
        let delay = backoff_delay(self.failures);
        let elapsed = now.as_millisecond() - self.last_failure.as_millisecond();
        let elapsed = Duration::from_millis(u64::try_from(elapsed).unwrap_or(0));
        delay.saturating_sub(elapsed)
    }
}

/// What the reconciler reads and remembers between syncs.
pub struct State {
    pub client: kube::Client,
    pub pods: Store<Pod>,
    pub expectations: Expectations,
    pub backoff: Mutex<HashMap<String, BackoffRecord>>,
}

/// The loop entry for [`crate::loops`].
pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        run_controller(&ctx.informers).await;
        anyhow::bail!("the job controller stopped")
    })
}

/// Runs the controller until its streams end.
pub async fn run_controller(informers: &Informers) {
    let client = informers.client().clone();
    let jobs = informers.all::<Job>();
    let job_store = jobs.store();
    let (orphans_tx, orphans_rx) = tokio::sync::mpsc::unbounded_channel();
    let pods = informers.all::<Pod>();
    tokio::join!(jobs.synced(), pods.synced());
    let orphan_jobs = job_store.clone();
    let pod_events = pods.touched().inspect(move |pod| {
        if orphans::maybe_orphan(pod, &job_store) {
            // The receiver lives as long as this stream; a send cannot fail.
            let _ = orphans_tx.send(pod.clone());
        }
    });
    tokio::spawn(orphans::release_orphans(client.clone(), orphans_rx));
    let state = Arc::new(State {
        client,
        pods: pods.store(),
        expectations: Expectations::default(),
        backoff: Mutex::default(),
    });
    Controller::for_shared_stream(jobs.touched(), jobs.store())
        .watches_shared_stream(pod_events, move |pod| {
            job_of(&pod)
                .into_iter()
                .chain(claim::jobs_for_orphan(&pod, &orphan_jobs))
        })
        .run(
            crate::runtime::metrics::metered(reconcile),
            crate::runtime::retry::error_policy,
            state,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "job reconcile failed");
            }
        })
        .await;
}

/// The Job a pod event concerns: its controller, when that is a Job.
fn job_of(pod: &Pod) -> Option<ObjectRef<Job>> {
    let owner = controller_of(&pod.metadata).filter(|o| o.kind == "Job")?;
    Some(ObjectRef::new(&owner.name).within(&pod.namespace()?))
}

pub async fn reconcile(job: Arc<Job>, state: Arc<State>) -> Result<Action> {
    let ns = job
        .namespace()
        .ok_or_else(|| Error::NoNamespace(job.name_any()))?;
    let key = format!("{ns}/{}", job.name_any());
    let uid = job.uid().unwrap_or_default();
    let in_namespace: Vec<Arc<Pod>> = state
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .collect();
    let now = Timestamp::now();
    if let Some(done) = status::finished_at(&job) {
        // A finished Job adopts nothing (as upstream): it only lets go of its own.
        let pods: Vec<Pod> = in_namespace
            .iter()
            .filter(|p| controller_of(&p.metadata).is_some_and(|o| o.uid == uid))
            .map(|p| p.as_ref().clone())
            .collect();
        return finished(&state, &job, &key, &pods, done, now).await;
    }
    if podcontrol::is_deleting(&job.metadata) {
        return Ok(Action::await_change());
    }
    let pods_api: Api<Pod> = Api::namespaced(state.client.clone(), &ns);
    let pods = claim::claim_pods(&pods_api, &job, &in_namespace).await?;
    sync::sync_job(&state, &job, &key, &pods, now).await
}

/// A finished Job only lets go of its pods and waits out its TTL.
async fn finished(
    state: &State,
    job: &Job,
    key: &str,
    pods: &[Pod],
    done: Timestamp,
    now: Timestamp,
) -> Result<Action> {
    let pods_api: Api<Pod> =
        Api::namespaced(state.client.clone(), &job.namespace().unwrap_or_default());
    for pod in pods.iter().filter(|p| pods::has_tracking_finalizer(p)) {
        pods::remove_tracking_finalizer(&pods_api, pod)
            .await
            .map_err(|source| Error::Finalizer {
                pod: pod.name_any(),
                source,
            })?;
    }
    state.expectations.forget(key);
    state.backoff.lock().expect("backoff lock").remove(key);
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(Action::await_change());
    };
    let left = done.as_second() + i64::from(ttl) - now.as_second();
    if left > 0 {
        return Ok(Action::requeue(Duration::from_secs(left.unsigned_abs())));
    }
    if podcontrol::is_deleting(&job.metadata) {
        return Ok(Action::await_change());
    }
    // Like upstream's TTL-after-finished controller: the Job goes, its pods follow it
    // through the garbage collector. The uid precondition spares a recreated namesake.
    let params = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: job.uid(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    let jobs: Api<Job> =
        Api::namespaced(state.client.clone(), &job.namespace().unwrap_or_default());
    match jobs.delete(&job.name_any(), &params).await {
        Ok(_) => info!(job = %key, "deleted job after ttlSecondsAfterFinished"),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(source) => {
            return Err(Error::DeleteJob {
                key: key.into(),
                source,
            })
        }
    }
    Ok(Action::await_change())
}

/// Writes a new status with the Job's resourceVersion as precondition: the counts must
/// never be computed from a stale Job.
async fn write_status(
    client: &kube::Client,
    job: &Job,
    new: k8s_openapi::api::batch::v1::JobStatus,
    key: &str,
) -> Result<Job> {
    let api: Api<Job> = Api::namespaced(client.clone(), &job.namespace().unwrap_or_default());
    let mut updated = job.clone();
    updated.status = Some(new);
    api.replace_status(&job.name_any(), &PostParams::default(), &updated)
        .await
        .map_err(|source| Error::Status {
            key: key.into(),
            source,
        })
}
