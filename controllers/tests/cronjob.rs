//! The CronJob controller with the Job controller on simulated nodes: a schedule that
//! fires every minute creates a Job that runs to completion, and `kubectl create job
//! --from=cronjob/NAME` starts one by hand. Scheduling decisions (Forbid, Replace,
//! deadlines, time zones) are unit-tested in controllers/src/cronjob/.

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{ListParams, PostParams};
use kybern_testkit::{eventually, Cluster};
use serde_json::json;

fn cronjob(name: &str, schedule: &str) -> CronJob {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {
                "metadata": {"labels": {"app": name}},
                "spec": {"template": {
                    "metadata": {"annotations": {"kybern.io/simulate-exit-code": "0"}},
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]},
                }},
            },
        },
    }))
    .unwrap()
}

fn is_complete(j: &Job) -> bool {
    j.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        })
}

// Waits for a real minute boundary (up to ~70 s): the one test that uses the real clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjob_every_minute_creates_a_job_that_completes() {
    let c = Cluster::start("cronminute", &["cronjob", "job", "scheduler"], 1).await;
    c.api::<CronJob>()
        .create(&PostParams::default(), &cronjob("tick", "* * * * *"))
        .await
        .unwrap();
    let mut found = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
    while found.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no job within 90 s");
        let jobs = c
            .api::<Job>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        if let Some(j) = jobs.iter().find(|j| is_complete(j)) {
            found = j.metadata.name.clone().unwrap();
            let minutes: i64 = found
                .strip_prefix("tick-")
                .expect("named after the cronjob")
                .parse()
                .unwrap();
            let stamp = &j.metadata.annotations.as_ref().unwrap()
                ["batch.kubernetes.io/cronjob-scheduled-timestamp"];
            let at: k8s_openapi::jiff::Timestamp = stamp.parse().unwrap();
            assert_eq!(at.as_second(), minutes * 60, "name and annotation agree");
            assert_eq!(
                j.metadata.owner_references.as_ref().unwrap()[0].kind,
                "CronJob"
            );
            assert_eq!(j.metadata.labels.as_ref().unwrap()["app"], "tick");
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    eventually(
        "lastScheduleTime and lastSuccessfulTime in the status",
        || async {
            let cj = c
                .api::<CronJob>()
                .get("tick")
                .await
                .map_err(|e| e.to_string())?;
            let s = cj.status.unwrap_or_default();
            (s.last_schedule_time.is_some() && s.last_successful_time.is_some())
                .then_some(())
                .ok_or(format!("{s:?}"))
        },
    )
    .await;
    c.wait_described(
        &["cronjob", "tick"],
        &[
            "SuccessfulCreate",
            &format!("Created job {found}"),
            "SawCompletedJob",
            &format!("Saw completed job: {found}, condition: Complete"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_job_from_a_cronjob_runs_it_now() {
    let c = Cluster::start("cronmanual", &["cronjob", "job", "scheduler"], 1).await;
    // Once a year: only the manual run happens during the test.
    c.api::<CronJob>()
        .create(&PostParams::default(), &cronjob("yearly", "@yearly"))
        .await
        .unwrap();
    c.kubectl(&["create", "job", "--from=cronjob/yearly", "by-hand"]);
    eventually("the manual job completes", || async {
        let j = c
            .api::<Job>()
            .get("by-hand")
            .await
            .map_err(|e| e.to_string())?;
        is_complete(&j)
            .then_some(())
            .ok_or(format!("{:?}", j.status))
    })
    .await;
    let j = c.api::<Job>().get("by-hand").await.unwrap();
    assert_eq!(
        j.metadata.annotations.as_ref().unwrap()["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    assert_eq!(j.status.unwrap().succeeded, Some(1));
    let cj = c.api::<CronJob>().get("yearly").await.unwrap();
    assert!(
        cj.status.and_then(|s| s.last_schedule_time).is_none(),
        "a manual run is not a scheduled one"
    );
}
