//! Recreate, proportional scaling mid-rollout, the progress deadline, and history
//! cleanup, against the real apiserver with both loops running.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{ListParams, PostParams};
use serde_json::json;

async fn patch(c: &Cluster, name: &str, body: serde_json::Value) {
    merge_patch(&c.api::<Deployment>(), name, body).await;
}

fn set_image(image: &str) -> serde_json::Value {
    json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})
}

fn progressing_reason(d: &Deployment) -> Option<String> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Progressing")?
        .reason
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recreate_never_runs_old_and_new_pods_together() {
    let c = start("recreate").await;
    let mut d = deployment_manifest("batch", 2, "worker:1");
    d.spec.as_mut().unwrap().strategy =
        serde_json::from_value(json!({"type": "Recreate"})).unwrap();
    c.api::<Deployment>()
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    wait_rolled_out(&c, "batch", 2).await;

    let mixed = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (pods, mixed) = (c.api::<Pod>(), mixed.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(list) = pods.list(&ListParams::default()).await {
                    let images: std::collections::BTreeSet<String> = list
                        .items
                        .iter()
                        .filter_map(|p| p.spec.as_ref()?.containers[0].image.clone())
                        .collect();
                    if images.len() > 1 {
                        mixed.store(true, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    patch(&c, "batch", set_image("worker:2")).await;
    wait_rolled_out(&c, "batch", 2).await;
    monitor.abort();
    assert!(
        !mixed.load(Ordering::SeqCst),
        "old and new pods ran side by side"
    );
    let summary = replica_set_summary(&c).await;
    assert_eq!(
        summary,
        vec![
            ("worker:1".to_string(), 0, 1),
            ("worker:2".to_string(), 2, 2)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scaling_mid_rollout_keeps_the_old_to_new_ratio() {
    let c = start("proportional").await;
    let mut d = deployment_manifest("web", 10, "nginx:1");
    d.spec.as_mut().unwrap().strategy = serde_json::from_value(
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}}),
    )
    .unwrap();
    c.api::<Deployment>()
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    wait_rolled_out(&c, "web", 10).await;

    // New pods never become ready, so the rollout stalls: the new RS grows to 3 (surge),
    // old shrinks to 8 (unavailable 2), new grows to 5 (13 pods max), then nothing moves.
    let stall = json!({"spec": {"template": {
        "metadata": {"labels": {"app": "web", "never-ready": "true"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:2"}]},
    }}});
    patch(&c, "web", stall).await;
    eventually("the rollout to stall at old 8 / new 5", || async {
        let s = replica_set_summary(&c).await;
        let sizes: Vec<i32> = s.iter().map(|r| r.1).collect();
        if sizes == vec![8, 5] {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;

    // 10 -> 15 with maxSurge 3: 18 pods allowed. old round(8*18/13) = 11, new round(5*18/13) = 7.
    patch(&c, "web", json!({"spec": {"replicas": 15}})).await;
    eventually("proportional sizes old 11 / new 7", || async {
        let s = replica_set_summary(&c).await;
        let sizes: Vec<i32> = s.iter().map(|r| r.1).collect();
        if sizes == vec![11, 7] {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stuck_rollout_exceeds_its_progress_deadline() {
    let c = start("deadline").await;
    let mut d = deployment_manifest("stuck", 1, "nginx:1");
    let spec = d.spec.as_mut().unwrap();
    spec.progress_deadline_seconds = Some(2);
    spec.template
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert("never-ready".into(), "true".into());
    c.api::<Deployment>()
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    eventually("Progressing=False ProgressDeadlineExceeded", || async {
        let d = c
            .api::<Deployment>()
            .get("stuck")
            .await
            .map_err(|e| e.to_string())?;
        let reason = progressing_reason(&d);
        if reason.as_deref() == Some("ProgressDeadlineExceeded") {
            Ok(())
        } else {
            Err(format!("{reason:?}"))
        }
    })
    .await;
    let (ok, out) = kubectl(
        &c,
        &["rollout", "status", "deployment/stuck", "--timeout=10s"],
    )
    .await;
    assert!(
        !ok && out.contains("exceeded its progress deadline"),
        "rollout status: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn old_replica_sets_beyond_the_history_limit_are_deleted() {
    let c = start("history").await;
    let mut d = deployment_manifest("web", 1, "nginx:1");
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    c.api::<Deployment>()
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    wait_rolled_out(&c, "web", 1).await;
    for image in ["nginx:2", "nginx:3"] {
        patch(&c, "web", set_image(image)).await;
        wait_rolled_out(&c, "web", 1).await;
    }
    eventually(
        "only the new replicaset and one old one to remain",
        || async {
            let s = replica_set_summary(&c).await;
            let want = vec![("nginx:2".to_string(), 0, 2), ("nginx:3".to_string(), 1, 3)];
            if s == want {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await;
}
