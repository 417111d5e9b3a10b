//! The Job controller on simulated nodes: pods run to completion (the simulator's
//! `kybern.io/simulate-exit-code` annotation decides how they exit), and the Job ends
//! Complete or Failed the way upstream's does.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kybern_testkit::{eventually, Cluster};
use serde_json::{json, Value};

fn job(name: &str, spec: Value, annotations: Value) -> Job {
    let mut spec = spec;
    spec["template"] = json!({
        "metadata": {"annotations": annotations},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]},
    });
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn succeeding(name: &str, spec: Value) -> Job {
    job(name, spec, json!({"kybern.io/simulate-exit-code": "0"}))
}

async fn create(c: &Cluster, j: &Job) {
    c.api::<Job>()
        .create(&PostParams::default(), j)
        .await
        .unwrap();
}

/// Waits for a condition of type `type_` with status True, returning the Job.
async fn wait_condition(c: &Cluster, name: &str, type_: &str) -> Job {
    eventually(&format!("job {name} {type_}"), || async {
        let j = c.api::<Job>().get(name).await.map_err(|e| e.to_string())?;
        let conds = j
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        if conds.iter().any(|c| c.type_ == type_ && c.status == "True") {
            return Ok(());
        }
        Err(format!("{:?}", j.status))
    })
    .await;
    c.api::<Job>().get(name).await.unwrap()
}

fn condition_reason(j: &Job, type_: &str) -> Option<String> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?
        .reason
        .clone()
}

async fn job_pods(c: &Cluster, name: &str) -> Vec<Pod> {
    let lp = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}"));
    c.api::<Pod>().list(&lp).await.unwrap().items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_five_completions_and_parallelism_two_completes() {
    let c = Cluster::start("jobcomplete", &["job", "scheduler"], 2).await;
    create(
        &c,
        &succeeding("five", json!({"completions": 5, "parallelism": 2})),
    )
    .await;
    let j = wait_condition(&c, "five", "Complete").await;
    let s = j.status.clone().unwrap();
    assert_eq!(s.succeeded, Some(5), "{s:?}");
    // Zero counts are omitted, as upstream's omitempty fields.
    assert_eq!(s.failed.unwrap_or(0), 0, "{s:?}");
    assert_eq!(s.active.unwrap_or(0), 0, "{s:?}");
    assert!(
        s.completion_time.is_some() && s.start_time.is_some(),
        "{s:?}"
    );
    assert_eq!(
        condition_reason(&j, "SuccessCriteriaMet").as_deref(),
        Some("CompletionsReached")
    );
    let pods = job_pods(&c, "five").await;
    assert_eq!(pods.len(), 5, "one pod per completion, none extra");
    for p in &pods {
        assert!(
            p.metadata
                .finalizers
                .as_deref()
                .unwrap_or_default()
                .is_empty(),
            "tracking finalizer removed from {:?}",
            p.metadata.name
        );
        let labels = p.metadata.labels.as_ref().unwrap();
        assert_eq!(
            labels["batch.kubernetes.io/controller-uid"],
            j.metadata.uid.clone().unwrap()
        );
        assert_eq!(labels["job-name"], "five");
    }
    c.wait_described(
        &["job", "five"],
        &[
            "SuccessfulCreate",
            "Created pod: five-",
            "Completed",
            "Job completed",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_indexed_job_runs_every_index_once() {
    let c = Cluster::start("jobindexed", &["job", "scheduler"], 2).await;
    create(
        &c,
        &succeeding(
            "idx",
            json!({"completions": 4, "parallelism": 3, "completionMode": "Indexed"}),
        ),
    )
    .await;
    let j = wait_condition(&c, "idx", "Complete").await;
    let s = j.status.unwrap();
    assert_eq!(s.completed_indexes.as_deref(), Some("0-3"), "{s:?}");
    assert_eq!(s.succeeded, Some(4));
    let mut indexes: Vec<String> = job_pods(&c, "idx")
        .await
        .iter()
        .map(|p| {
            let index = p.metadata.annotations.as_ref().unwrap()
                ["batch.kubernetes.io/job-completion-index"]
                .clone();
            let spec = p.spec.as_ref().unwrap();
            assert_eq!(
                spec.hostname.as_deref(),
                Some(format!("idx-{index}").as_str())
            );
            assert!(spec.containers[0]
                .env
                .as_ref()
                .unwrap()
                .iter()
                .any(|e| e.name == "JOB_COMPLETION_INDEX"));
            assert_eq!(
                p.metadata.labels.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"],
                index
            );
            index
        })
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2", "3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_stops_at_its_backoff_limit() {
    let c = Cluster::start("jobbackoff", &["job", "scheduler"], 1).await;
    // backoffLimit 1: the first failure is retried after the 10 s back-off, the second ends it.
    create(
        &c,
        &job(
            "fails",
            json!({"backoffLimit": 1}),
            json!({"kybern.io/simulate-exit-code": "1"}),
        ),
    )
    .await;
    let j = wait_condition(&c, "fails", "Failed").await;
    let s = j.status.clone().unwrap();
    assert_eq!(
        condition_reason(&j, "Failed").as_deref(),
        Some("BackoffLimitExceeded")
    );
    assert_eq!(s.failed, Some(2), "{s:?}");
    assert_eq!(s.succeeded.unwrap_or(0), 0);
    assert!(
        s.completion_time.is_none(),
        "a failed job has no completion time"
    );
    assert_eq!(
        job_pods(&c, "fails").await.len(),
        2,
        "no pod after the limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_failure_policy_fails_the_job_on_a_matching_exit_code() {
    let c = Cluster::start("jobpolicy", &["job", "scheduler"], 1).await;
    let spec = json!({
        "backoffLimit": 6,
        "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
        ]},
    });
    create(
        &c,
        &job(
            "policy",
            spec,
            json!({"kybern.io/simulate-exit-code": "42"}),
        ),
    )
    .await;
    let j = wait_condition(&c, "policy", "Failed").await;
    assert_eq!(
        condition_reason(&j, "Failed").as_deref(),
        Some("PodFailurePolicy")
    );
    let message = j
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Failed")
        .unwrap()
        .message
        .clone()
        .unwrap();
    assert!(
        message.contains("exit code 42") && message.contains("rule at index 1"),
        "{message}"
    );
    assert_eq!(
        j.status.unwrap().failed,
        Some(1),
        "no retry although backoffLimit is 6"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_active_deadline_fails_and_its_pods_go() {
    let c = Cluster::start("jobdeadline", &["job", "scheduler"], 1).await;
    // Pods that run forever (no exit code), stopped by the deadline.
    create(
        &c,
        &job(
            "slow",
            json!({"activeDeadlineSeconds": 3, "parallelism": 2, "completions": 2}),
            json!({}),
        ),
    )
    .await;
    let j = wait_condition(&c, "slow", "Failed").await;
    assert_eq!(
        condition_reason(&j, "Failed").as_deref(),
        Some("DeadlineExceeded")
    );
    assert_eq!(
        condition_reason(&j, "FailureTarget").as_deref(),
        Some("DeadlineExceeded")
    );
    let s = j.status.unwrap();
    assert_eq!(
        (s.active.unwrap_or(0), s.failed),
        (0, Some(2)),
        "running pods counted as failed"
    );
    eventually("running pods deleted", || async {
        let left: Vec<String> = job_pods(&c, "slow")
            .await
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        left.is_empty().then_some(()).ok_or(format!("{left:?}"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_job_runs_no_pods_until_resumed() {
    let c = Cluster::start("jobsuspend", &["job", "scheduler"], 1).await;
    create(
        &c,
        &job(
            "later",
            json!({"suspend": true, "completions": 2, "parallelism": 2}),
            json!({}),
        ),
    )
    .await;
    let j = wait_condition(&c, "later", "Suspended").await;
    assert!(
        j.status.as_ref().unwrap().start_time.is_none(),
        "a job created suspended has not started"
    );
    assert!(job_pods(&c, "later").await.is_empty());
    let patch = |suspend: bool| Patch::Merge(json!({"spec": {"suspend": suspend}}));
    c.api::<Job>()
        .patch("later", &PatchParams::default(), &patch(false))
        .await
        .unwrap();
    eventually("two running pods after resume", || async {
        let j = c
            .api::<Job>()
            .get("later")
            .await
            .map_err(|e| e.to_string())?;
        let s = j.status.clone().unwrap_or_default();
        (s.active == Some(2)
            && s.ready == Some(2)
            && condition_reason(&j, "Suspended").as_deref() == Some("JobResumed"))
        .then_some(())
        .ok_or(format!("{s:?}"))
    })
    .await;
    c.api::<Job>()
        .patch("later", &PatchParams::default(), &patch(true))
        .await
        .unwrap();
    eventually("pods deleted on suspend, not counted as failed", || async {
        let j = c
            .api::<Job>()
            .get("later")
            .await
            .map_err(|e| e.to_string())?;
        let s = j.status.clone().unwrap_or_default();
        let pods = job_pods(&c, "later").await;
        (pods.is_empty()
            && s.active.unwrap_or(0) == 0
            && s.failed.unwrap_or(0) == 0
            && condition_reason(&j, "Suspended").as_deref() == Some("JobSuspended"))
        .then_some(())
        .ok_or(format!("{} pods, {s:?}", pods.len()))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_is_deleted_after_its_ttl() {
    let c = Cluster::start("jobttl", &["job", "scheduler", "garbagecollector"], 1).await;
    create(
        &c,
        &succeeding("short", json!({"ttlSecondsAfterFinished": 1})),
    )
    .await;
    eventually("the job and its pod deleted", || async {
        let job = c
            .api::<Job>()
            .get_opt("short")
            .await
            .map_err(|e| e.to_string())?;
        let pods = job_pods(&c, "short").await;
        (job.is_none() && pods.is_empty())
            .then_some(())
            .ok_or(format!(
                "job {:?}, {} pods",
                job.map(|j| j.status),
                pods.len()
            ))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_running_job_deletes_its_tracked_pods() {
    let c = Cluster::start("jobdelete", &["job", "scheduler", "garbagecollector"], 1).await;
    create(
        &c,
        &job(
            "running",
            json!({"parallelism": 2, "completions": 2}),
            json!({}),
        ),
    )
    .await;
    eventually("two running pods", || async {
        let j = c
            .api::<Job>()
            .get("running")
            .await
            .map_err(|e| e.to_string())?;
        let s = j.status.unwrap_or_default();
        (s.ready == Some(2)).then_some(()).ok_or(format!("{s:?}"))
    })
    .await;
    c.api::<Job>()
        .delete("running", &kube::api::DeleteParams::background())
        .await
        .unwrap();
    // The pods hold the tracking finalizer; with their Job gone it must be released.
    eventually("pods gone with their job", || async {
        let pods: Vec<String> = job_pods(&c, "running")
            .await
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        pods.is_empty().then_some(()).ok_or(format!("{pods:?}"))
    })
    .await;
}

/// Upstream's e2e "should adopt matching orphans and release non-matching pods".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_adopts_matching_orphans_and_releases_pods_that_stop_matching() {
    let c = Cluster::start("jobadopt", &["job", "scheduler"], 1).await;
    // No exit code: the simulated pods keep running.
    create(
        &c,
        &job(
            "adopt",
            json!({"parallelism": 2, "completions": 2}),
            json!({}),
        ),
    )
    .await;
    let uid = c
        .api::<Job>()
        .get("adopt")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let pods = eventually("two job pods", || async {
        let pods = job_pods(&c, "adopt").await;
        if pods.len() == 2 {
            Ok(pods)
        } else {
            Err(format!("{} pods", pods.len()))
        }
    })
    .await;
    let controlled_by_job = |p: &Pod| {
        p.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == uid && o.controller == Some(true))
    };
    let tracked = |p: &Pod| {
        p.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "batch.kubernetes.io/job-tracking")
    };

    // Orphaned (owner reference and finalizer removed), the pod is adopted again.
    let orphan = pods[0].metadata.name.clone().unwrap();
    c.api::<Pod>()
        .patch(
            &orphan,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"ownerReferences": null, "finalizers": null}})),
        )
        .await
        .unwrap();
    eventually("the orphan adopted again", || async {
        let p = c
            .api::<Pod>()
            .get(&orphan)
            .await
            .map_err(|e| e.to_string())?;
        if controlled_by_job(&p) && tracked(&p) {
            Ok(())
        } else {
            Err(format!("{:?}", p.metadata))
        }
    })
    .await;

    // Its labels gone, the pod no longer matches: the Job lets go of it.
    c.api::<Pod>()
        .patch(
            &orphan,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": null}})),
        )
        .await
        .unwrap();
    eventually("the non-matching pod released", || async {
        let p = c
            .api::<Pod>()
            .get(&orphan)
            .await
            .map_err(|e| e.to_string())?;
        if !controlled_by_job(&p) && !tracked(&p) {
            Ok(())
        } else {
            Err(format!("{:?}", p.metadata))
        }
    })
    .await;
}
