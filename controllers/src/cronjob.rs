//! The CronJob controller (upstream pkg/controller/cronjob): creates a Job for each
//! scheduled time of a CronJob's cron schedule in its time zone, honours
//! concurrencyPolicy, suspend and startingDeadlineSeconds, keeps status.active,
//! lastScheduleTime and lastSuccessfulTime, prunes finished Jobs beyond the history
//! limits, and requeues itself for the next scheduled time.

mod jobs;
mod plan;
mod schedule;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::Controller;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

pub use jobs::{job_for, jobs_beyond_limit};
pub use plan::{decide, job_name, Decision, Inputs, TOO_MANY_MISSED};
pub use schedule::{time_zone, Schedule};

use crate::podcontrol::{self, controller_of, is_deleting};
use crate::runtime::informers::Informers;
use crate::{Context, LoopFuture};

/// The annotation recording which scheduled time a Job was created for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cronjob {0} has no namespace")]
    NoNamespace(String),
    #[error("creating job {job}: {source}")]
    CreateJob { job: String, source: kube::Error },
    #[error("deleting job {job}: {source}")]
    DeleteJob { job: String, source: kube::Error },
    #[error("reading job {job}: {source}")]
    GetJob { job: String, source: kube::Error },
    #[error("writing status of {key}: {source}")]
    Status { key: String, source: kube::Error },
}

impl crate::runtime::retry::ReconcileError for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The controller's clock, injectable so a test can decide what "now" is.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

pub struct State {
    pub client: kube::Client,
    pub jobs: Store<Job>,
    pub clock: Arc<dyn Clock>,
}

/// The loop entry for [`crate::loops`].
pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        run_controller(&ctx.informers, Arc::new(SystemClock)).await;
        anyhow::bail!("the cronjob controller stopped")
    })
}

pub async fn run_controller(informers: &Informers, clock: Arc<dyn Clock>) {
    let jobs = informers.all::<Job>();
    let cronjobs = informers.all::<CronJob>();
    tokio::join!(jobs.synced(), cronjobs.synced());
    let state = Arc::new(State {
        client: informers.client().clone(),
        jobs: jobs.store(),
        clock,
    });
    Controller::for_shared_stream(cronjobs.touched(), cronjobs.store())
        .watches_shared_stream(jobs.touched(), |job| cronjob_of(&job))
        .run(
            crate::runtime::metrics::metered(reconcile),
            crate::runtime::retry::error_policy,
            state,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "cronjob reconcile failed");
            }
        })
        .await;
}

fn cronjob_of(job: &Job) -> Option<ObjectRef<CronJob>> {
    let owner = controller_of(&job.metadata).filter(|o| o.kind == "CronJob")?;
    Some(ObjectRef::new(&owner.name).within(&job.namespace()?))
}

/// Whether a Job ended, and how: `Some(true)` Complete, `Some(false)` Failed.
pub(crate) fn job_outcome(job: &Job) -> Option<(bool, Option<Timestamp>)> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    conds
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| {
            (
                c.type_ == "Complete",
                c.last_transition_time.as_ref().map(|t| t.0),
            )
        })
}

/// An event about the CronJob, as upstream's cronjob-controller records it.
pub(crate) async fn event(
    client: &kube::Client,
    cj: &CronJob,
    type_: &str,
    reason: &str,
    message: &str,
) {
    podcontrol::publish_event(client, cj, type_, reason, message, "cronjob-controller").await;
}

fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some(Job::api_version(&()).into_owned()),
        kind: Some(Job::kind(&()).into_owned()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

fn time(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

pub async fn reconcile(cj: Arc<CronJob>, state: Arc<State>) -> Result<Action> {
    let ns = cj
        .namespace()
        .ok_or_else(|| Error::NoNamespace(cj.name_any()))?;
    let name = cj.name_any();
    let key = format!("{ns}/{name}");
    let uid = cj.uid().unwrap_or_default();
    let now = state.clock.now();
    let jobs_api: Api<Job> = Api::namespaced(state.client.clone(), &ns);
    let spec = cj.spec.clone().unwrap_or_default();
    let old_status = cj.status.clone().unwrap_or_default();
    let mut status = old_status.clone();
    let children: Vec<Arc<Job>> = state
        .jobs
        .state()
        .into_iter()
        .filter(|j| j.namespace().as_deref() == Some(ns.as_str()))
        .filter(|j| controller_of(&j.metadata).is_some_and(|o| o.uid == uid))
        .collect();

    // Active list: drop finished and vanished Jobs, add running children it lacks.
    let mut active: Vec<ObjectReference> = Vec::new();
    // Jobs that left the active list by finishing, for upstream's SawCompletedJob.
    let mut completed: Vec<(String, bool)> = Vec::new();
    for r in status.active.take().unwrap_or_default() {
        let child = children.iter().find(|j| j.uid() == r.uid);
        match child {
            Some(j) if job_outcome(j).is_none() => active.push(r),
            Some(j) => completed.extend(job_outcome(j).map(|(ok, _)| (j.name_any(), ok))),
            // Not in the cache: ask the apiserver before forgetting a Job the cache
            // may not have seen yet.
            None => {
                let jname = r.name.clone().unwrap_or_default();
                match jobs_api.get_opt(&jname).await {
                    Ok(Some(j)) if j.uid() == r.uid && job_outcome(&j).is_none() => active.push(r),
                    Ok(Some(j)) if j.uid() == r.uid => {
                        completed.extend(job_outcome(&j).map(|(ok, _)| (j.name_any(), ok)))
                    }
                    Ok(_) => {}
                    Err(source) => return Err(Error::GetJob { job: jname, source }),
                }
            }
        }
    }
    for (job, ok) in completed {
        let condition = if ok { "Complete" } else { "Failed" };
        let message = format!("Saw completed job: {job}, condition: {condition}");
        event(&state.client, &cj, "Normal", "SawCompletedJob", &message).await;
    }
    for j in &children {
        if job_outcome(j).is_none()
            && !is_deleting(&j.metadata)
            && !active.iter().any(|r| r.uid == j.uid())
        {
            active.push(reference(j));
        }
    }
    // Upstream takes the completion time of the newest successful Job.
    let last_success = children
        .iter()
        .filter_map(|j| match job_outcome(j) {
            Some((true, at)) => j
                .status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref())
                .map(|t| t.0)
                .or(at),
            _ => None,
        })
        .max();
    if let Some(t) = last_success {
        if status
            .last_successful_time
            .as_ref()
            .is_none_or(|old| old.0 < t)
        {
            status.last_successful_time = Some(time(t));
        }
    }
    jobs::prune_history(&jobs_api, &cj, &spec, &children).await?;

    let mut requeue = None;
    if !is_deleting(&cj.metadata) {
        requeue = schedule_run(&cj, &jobs_api, &mut active, &mut status, now).await?;
    }
    status.active = (!active.is_empty()).then_some(active);
    if status != old_status {
        let patch = json!({"status": {
            "active": status.active,
            "lastScheduleTime": status.last_schedule_time,
            "lastSuccessfulTime": status.last_successful_time,
        }});
        Api::<CronJob>::namespaced(state.client.clone(), &ns)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|source| Error::Status { key, source })?;
    }
    Ok(match requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// Starts the due run, if any; returns how long until the next scheduled time.
async fn schedule_run(
    cj: &CronJob,
    jobs_api: &Api<Job>,
    active: &mut Vec<ObjectReference>,
    status: &mut k8s_openapi::api::batch::v1::CronJobStatus,
    now: Timestamp,
) -> Result<Option<Duration>> {
    let client = jobs_api.clone().into_client();
    let name = cj.name_any();
    let spec = cj.spec.clone().unwrap_or_default();
    let tz = match time_zone(spec.time_zone.as_deref()) {
        Ok(tz) => tz,
        Err(e) => {
            warn!(cronjob = %name, error = %e, "invalid time zone; not scheduling");
            return Ok(None);
        }
    };
    let schedule = match Schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            warn!(cronjob = %name, error = %e, "unparseable schedule; not scheduling");
            return Ok(None);
        }
    };
    let active_names: Vec<String> = active.iter().filter_map(|r| r.name.clone()).collect();
    let created = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let inputs = Inputs {
        now,
        schedule: &schedule,
        tz: &tz,
        created,
        last_schedule: status.last_schedule_time.as_ref().map(|t| t.0),
        starting_deadline_seconds: spec.starting_deadline_seconds,
        concurrency_policy: spec.concurrency_policy.as_deref().unwrap_or("Allow"),
        suspend: spec.suspend.unwrap_or(false),
        active: &active_names,
        name: &name,
    };
    let until = |next: Option<Timestamp>| {
        // A little past the time, so the run is due when the reconcile comes.
        next.map(|n| {
            Duration::from_millis(
                u64::try_from(n.as_millisecond() - now.as_millisecond()).unwrap_or(0) + 100,
            )
        })
    };
    match decide(&inputs) {
        Decision::Wait { next } => Ok(until(next)),
        Decision::Forbidden { scheduled, next } => {
            info!(cronjob = %name, %scheduled, "not starting a job: the previous one still runs and concurrencyPolicy is Forbid");
            Ok(until(next))
        }
        Decision::Start {
            scheduled,
            replace,
            missed,
            next,
        } => {
            if missed > TOO_MANY_MISSED {
                warn!(cronjob = %name, missed, "too many missed start times; set or decrease .spec.startingDeadlineSeconds or check clock skew");
            }
            if replace {
                for r in active.drain(..) {
                    let jname = r.name.unwrap_or_default();
                    match jobs_api.delete(&jname, &DeleteParams::background()).await {
                        Ok(_) => {
                            info!(cronjob = %name, job = %jname, "deleted active job (concurrencyPolicy Replace)");
                            let message = format!("Deleted job {jname}");
                            event(&client, cj, "Normal", "SuccessfulDelete", &message).await;
                        }
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(source) => return Err(Error::DeleteJob { job: jname, source }),
                    }
                }
            }
            let job = job_for(cj, scheduled, &tz);
            let jname = job.name_any();
            match jobs_api.create(&PostParams::default(), &job).await {
                Ok(created) => {
                    info!(cronjob = %name, job = %jname, %scheduled, "created job");
                    let message = format!("Created job {jname}");
                    event(&client, cj, "Normal", "SuccessfulCreate", &message).await;
                    active.push(reference(&created));
                }
                // Created by an earlier sync whose status write was lost.
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(source) => {
                    let message =
                        format!("Error creating job: {}", podcontrol::error_message(&source));
                    event(&client, cj, "Warning", "FailedCreate", &message).await;
                    return Err(Error::CreateJob { job: jname, source });
                }
            }
            status.last_schedule_time = Some(time(scheduled));
            Ok(until(next))
        }
    }
}
