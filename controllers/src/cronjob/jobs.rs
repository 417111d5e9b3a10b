//! The Jobs a CronJob owns: the Job built for one scheduled run, and the finished
//! Jobs pruned beyond the history limits.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::Timestamp;
use kube::api::DeleteParams;
use kube::{Api, ResourceExt};
use tracing::info;

use super::{job_name, job_outcome, Error, Result, SCHEDULED_TIMESTAMP};
use crate::podcontrol::{controller_ref, is_deleting};

/// The Job for the run at `scheduled`: the template, the scheduled-time annotation (in
/// the CronJob's time zone) and the CronJob as controller.
pub fn job_for(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    let stamp = scheduled
        .to_zoned(tz.clone())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    let stamp = stamp.replace("+00:00", "Z");
    annotations.insert(SCHEDULED_TIMESTAMP.into(), stamp);
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cj.name_any(), scheduled)),
            namespace: cj.namespace(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(cj)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Deletes the oldest finished Jobs beyond successfulJobsHistoryLimit (Complete) and
/// failedJobsHistoryLimit (Failed).
pub(super) async fn prune_history(
    api: &Api<Job>,
    cj: &CronJob,
    spec: &CronJobSpec,
    children: &[Arc<Job>],
) -> Result<()> {
    for (succeeded, limit) in [
        (true, spec.successful_jobs_history_limit.unwrap_or(3)),
        (false, spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        for job in jobs_beyond_limit(children, succeeded, limit) {
            let jname = job.name_any();
            match api.delete(&jname, &DeleteParams::background()).await {
                Ok(_) => {
                    info!(job = %jname, "deleted finished job beyond the history limit");
                    let client = api.clone().into_client();
                    let message = format!("Deleted job {jname}");
                    super::event(&client, cj, "Normal", "SuccessfulDelete", &message).await;
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => return Err(Error::DeleteJob { job: jname, source }),
            }
        }
    }
    Ok(())
}

/// The finished Jobs of one outcome to delete: all but the newest `limit`, oldest first
/// (by start time, else creation time).
pub fn jobs_beyond_limit(children: &[Arc<Job>], succeeded: bool, limit: i32) -> Vec<Arc<Job>> {
    let mut done: Vec<Arc<Job>> = children
        .iter()
        .filter(|j| {
            !is_deleting(&j.metadata) && job_outcome(j).is_some_and(|(ok, _)| ok == succeeded)
        })
        .cloned()
        .collect();
    let started = |j: &Job| {
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .or(j.metadata.creation_timestamp.as_ref())
            .map(|t| t.0)
    };
    done.sort_by_key(|j| started(j));
    let keep = usize::try_from(limit).unwrap_or(0);
    let excess = done.len().saturating_sub(keep);
    done.truncate(excess);
    done
}

#[cfg(test)]
mod tests {
    use super::super::time_zone;
    use super::*;
    use serde_json::json;

    fn finished(name: &str, start: i64, ok: bool) -> Arc<Job> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "status": {
                    "startTime": Timestamp::from_second(start).unwrap().to_string(),
                    "conditions": [{"type": if ok { "Complete" } else { "Failed" }, "status": "True"}],
                },
            }))
            .unwrap(),
        )
    }

    #[test]
    fn history_limits_delete_the_oldest_finished_jobs() {
        let jobs = vec![
            finished("ok-3", 300, true),
            finished("ok-1", 100, true),
            finished("bad-1", 150, false),
            finished("ok-2", 200, true),
            finished("bad-2", 250, false),
        ];
        let names = |v: Vec<Arc<Job>>| v.iter().map(|j| j.name_any()).collect::<Vec<_>>();
        let cases = [
            ("keep two successes", true, 2, vec!["ok-1"]),
            ("keep no success", true, 0, vec!["ok-1", "ok-2", "ok-3"]),
            ("keep one failure", false, 1, vec!["bad-1"]),
            ("limit above count", false, 5, vec![]),
        ];
        for (name, succeeded, limit, want) in cases {
            assert_eq!(
                names(jobs_beyond_limit(&jobs, succeeded, limit)),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn jobs_are_named_and_stamped_for_their_run() {
        let cj: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "hello", "namespace": "ns", "uid": "u"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
            }},
        }))
        .unwrap();
        let at: Timestamp = "2024-01-01T10:05:00Z".parse().unwrap();
        let utc = job_for(&cj, at, &TimeZone::UTC);
        assert_eq!(utc.name_any(), "hello-28401725");
        assert_eq!(
            utc.annotations()[SCHEDULED_TIMESTAMP],
            "2024-01-01T10:05:00Z"
        );
        assert_eq!(utc.labels()["app"], "x");
        assert_eq!(utc.owner_references()[0].kind, "CronJob");
        let ny = job_for(&cj, at, &time_zone(Some("America/New_York")).unwrap());
        assert_eq!(
            ny.annotations()[SCHEDULED_TIMESTAMP],
            "2024-01-01T05:05:00-05:00"
        );
    }
}
