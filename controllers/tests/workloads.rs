//! The ReplicaSet and Deployment loops against the real apiserver in-process, with a
//! stand-in kubelet that marks every new pod Running and Ready through `/status` (there
//! are no nodes in these tests).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deployment_rolls_out_scales_and_never_drops_below_its_availability() {
    let c = start("rollout").await;
    c.api::<Deployment>()
        .create(
            &PostParams::default(),
            &deployment_manifest("web", 3, "nginx:1"),
        )
        .await
        .unwrap();
    wait_rolled_out(&c, "web", 3).await;
    let d = c.api::<Deployment>().get("web").await.unwrap();
    let conditions: BTreeMap<String, String> = d
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| (c.type_, c.reason.unwrap_or_default()))
        .collect();
    assert_eq!(
        conditions.get("Available").map(String::as_str),
        Some("MinimumReplicasAvailable")
    );
    assert_eq!(
        conditions.get("Progressing").map(String::as_str),
        Some("NewReplicaSetAvailable")
    );

    // Watch availability through the whole image rollout: maxUnavailable 0 means at
    // least 3 ready pods at every moment; maxSurge 1 means never more than 4 pods.
    let (min_ready, max_pods) = (
        Arc::new(AtomicI32::new(i32::MAX)),
        Arc::new(AtomicI32::new(0)),
    );
    let monitor = {
        let (pods, min_ready, max_pods) = (c.api::<Pod>(), min_ready.clone(), max_pods.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(list) = pods.list(&ListParams::default()).await {
                    let live: Vec<&Pod> = list
                        .items
                        .iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .collect();
                    let ready = live
                        .iter()
                        .filter(|p| controllers::podcontrol::is_ready(p))
                        .count();
                    min_ready.fetch_min(i32::try_from(ready).unwrap(), Ordering::SeqCst);
                    max_pods.fetch_max(i32::try_from(live.len()).unwrap(), Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}});
    merge_patch(&c.api::<Deployment>(), "web", patch).await;
    wait_rolled_out(&c, "web", 3).await;
    eventually("the old replicaset to be scaled to 0", || async {
        let rses = c
            .api::<ReplicaSet>()
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
        let sizes: Vec<(String, i32, String)> = rses
            .iter()
            .map(|rs| {
                let revision = rs
                    .annotations()
                    .get("deployment.kubernetes.io/revision")
                    .cloned()
                    .unwrap_or_default();
                (
                    rs.name_any(),
                    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
                    revision,
                )
            })
            .collect();
        let image = |rs: &ReplicaSet| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .and_then(|t| t.spec.as_ref())
                .and_then(|s| s.containers[0].image.clone())
        };
        let old_empty = rses
            .iter()
            .filter(|rs| image(rs).as_deref() == Some("nginx:1"))
            .all(|rs| rs.spec.as_ref().and_then(|s| s.replicas) == Some(0));
        let revisions: Vec<&str> = sizes.iter().map(|s| s.2.as_str()).collect();
        let ok =
            rses.len() == 2 && old_empty && revisions.contains(&"1") && revisions.contains(&"2");
        if ok {
            Ok(())
        } else {
            Err(format!("{sizes:?}"))
        }
    })
    .await;
    monitor.abort();
    assert!(
        min_ready.load(Ordering::SeqCst) >= 3,
        "ready pods dropped to {} during the rollout",
        min_ready.load(Ordering::SeqCst)
    );
    assert!(
        max_pods.load(Ordering::SeqCst) <= 4,
        "{} pods existed at once (3 + maxSurge 1)",
        max_pods.load(Ordering::SeqCst)
    );
    for pod in c.live_pods().await {
        assert!(
            pod.name_any().starts_with("web-"),
            "{} is named <rs>-xxxxx",
            pod.name_any()
        );
        let owner = &pod.owner_references()[0];
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
    }

    merge_patch(
        &c.api::<Deployment>(),
        "web",
        json!({"spec": {"replicas": 5}}),
    )
    .await;
    wait_rolled_out(&c, "web", 5).await;
    assert_eq!(c.live_pods().await.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn matching_orphans_are_adopted_and_extras_deleted() {
    let c = start("adopt").await;
    c.api::<Pod>()
        .create(&PostParams::default(), &orphan("orphan-a", "db"))
        .await
        .unwrap();
    let rs = c
        .api::<ReplicaSet>()
        .create(&PostParams::default(), &replica_set_manifest("db", 1))
        .await
        .unwrap();
    let uid = rs.uid();
    eventually(
        "the orphan to be adopted instead of a new pod made",
        || async {
            let pods = c.live_pods().await;
            let summary: Vec<(String, Option<String>)> =
                pods.iter().map(|p| (p.name_any(), owner_uid(p))).collect();
            let ok = summary.len() == 1 && summary[0] == ("orphan-a".to_string(), uid.clone());
            if ok {
                Ok(())
            } else {
                Err(format!("{summary:?}"))
            }
        },
    )
    .await;
    c.api::<Pod>()
        .create(&PostParams::default(), &orphan("orphan-b", "db"))
        .await
        .unwrap();
    eventually(
        "the extra orphan to be adopted and one pod deleted",
        || async {
            let pods = c.live_pods().await;
            let owned = pods.iter().filter(|p| owner_uid(p) == uid).count();
            if pods.len() == 1 && owned == 1 {
                Ok(())
            } else {
                Err(format!("{} pods, {owned} owned", pods.len()))
            }
        },
    )
    .await;
    eventually(
        "the replicaset status to report 1 ready replica",
        || async {
            let s = c
                .api::<ReplicaSet>()
                .get("db")
                .await
                .map_err(|e| e.to_string())?
                .status
                .unwrap_or_default();
            let ok = s.replicas == 1
                && s.ready_replicas == Some(1)
                && s.available_replicas == Some(1)
                && s.observed_generation == Some(1);
            if ok {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pod_relabelled_out_of_the_selector_is_released_and_replaced() {
    let c = start("release").await;
    let rs = c
        .api::<ReplicaSet>()
        .create(&PostParams::default(), &replica_set_manifest("api", 2))
        .await
        .unwrap();
    let uid = rs.uid();
    eventually("two pods", || async {
        let n = c
            .live_pods()
            .await
            .iter()
            .filter(|p| owner_uid(p) == uid)
            .count();
        if n == 2 {
            Ok(())
        } else {
            Err(format!("{n} pods"))
        }
    })
    .await;
    let victim = c.live_pods().await[0].name_any();
    let relabel = json!({"metadata": {"labels": {"app": "debug"}}});
    merge_patch(&c.api::<Pod>(), &victim, relabel).await;
    eventually("the relabelled pod released and replaced", || async {
        let pods = c.live_pods().await;
        let released = pods
            .iter()
            .find(|p| p.name_any() == victim)
            .is_some_and(|p| owner_uid(p).is_none());
        let owned = pods
            .iter()
            .filter(|p| {
                owner_uid(p) == uid && p.labels().get("app").map(String::as_str) == Some("api")
            })
            .count();
        if released && owned == 2 {
            Ok(())
        } else {
            Err(format!("released={released} owned={owned}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_set_relabelled_out_of_the_deployment_is_released_and_replaced() {
    let c = start("rsrelease").await;
    let d = c
        .api::<Deployment>()
        .create(
            &PostParams::default(),
            &deployment_manifest("shop", 2, "nginx:1"),
        )
        .await
        .unwrap();
    wait_rolled_out(&c, "shop", 2).await;
    let owned_by_d = |rs: &ReplicaSet| {
        rs.owner_references()
            .iter()
            .any(|r| Some(&r.uid) == d.metadata.uid.as_ref())
    };
    let rss = c
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let old = rss
        .iter()
        .find(|rs| owned_by_d(rs))
        .expect("the deployment's ReplicaSet")
        .name_any();
    // The selector is app=shop: relabel the ReplicaSet (not its pods) out of it.
    merge_patch(
        &c.api::<ReplicaSet>(),
        &old,
        json!({"metadata": {"labels": {"app": "debug"}}}),
    )
    .await;
    eventually(
        "the relabelled ReplicaSet released and a new one rolled out",
        || async {
            let rss = c
                .api::<ReplicaSet>()
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items;
            let released = rss
                .iter()
                .any(|rs| rs.name_any() == old && rs.owner_references().is_empty());
            let replacement = rss.iter().any(|rs| rs.name_any() != old && owned_by_d(rs));
            if released && replacement {
                Ok(())
            } else {
                Err(format!("released={released} replacement={replacement}"))
            }
        },
    )
    .await;
}
