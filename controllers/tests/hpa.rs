//! The HorizontalPodAutoscaler loop with no metrics API: it still keeps its target's
//! replicas within [minReplicas, maxReplicas] through `/scale`, and says in its
//! conditions why it does nothing more.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kybern_testkit::fixtures::deployment;
use kybern_testkit::{eventually, Cluster};
use serde_json::json;

fn condition(hpa: &HorizontalPodAutoscaler, type_: &str) -> Option<(String, String)> {
    let c = hpa
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone().unwrap_or_default()))
}

async fn replicas(c: &Cluster) -> Option<i32> {
    let d = c.api::<Deployment>().get("web").await.ok()?;
    d.spec?.replicas
}

/// A change to the autoscaler brings a sync at once instead of after the 15 s period.
async fn nudge(c: &Cluster, n: u32) {
    c.api::<HorizontalPodAutoscaler>()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"test/nudge": n.to_string()}}})),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autoscaler_without_metrics_keeps_its_target_within_min_and_max() {
    let c = Cluster::start("hpa", &["horizontalpodautoscaling"], 0).await;
    c.api::<Deployment>()
        .create(&PostParams::default(), &deployment("web", 1, "nginx"))
        .await
        .unwrap();
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2,
            "maxReplicas": 4,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 50}}}],
        },
    }))
    .unwrap();
    c.api::<HorizontalPodAutoscaler>()
        .create(&PostParams::default(), &hpa)
        .await
        .unwrap();

    eventually("scaled up to minReplicas", || async {
        let hpa = c
            .api::<HorizontalPodAutoscaler>()
            .get("web")
            .await
            .map_err(|e| e.to_string())?;
        let s = hpa.status.clone().unwrap_or_default();
        let done =
            replicas(&c).await == Some(2) && s.desired_replicas == 2 && s.last_scale_time.is_some();
        done.then_some(()).ok_or(format!("{s:?}"))
    })
    .await;
    let events = c.api::<Event>().list(&ListParams::default()).await.unwrap();
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("SuccessfulRescale")
                && e.message.as_deref()
                    == Some(
                        "New size: 2; reason: Current number of replicas below Spec.MinReplicas"
                    )),
        "{:?}",
        events.items.iter().map(|e| &e.message).collect::<Vec<_>>()
    );

    // Within range, the next sync finds no metric to act on.
    eventually("ScalingActive False for want of a metric", || async {
        let hpa = c
            .api::<HorizontalPodAutoscaler>()
            .get("web")
            .await
            .map_err(|e| e.to_string())?;
        let s = hpa.status.clone().unwrap_or_default();
        let done = s.current_replicas == Some(2)
            && condition(&hpa, "ScalingActive")
                == Some(("False".into(), "FailedGetResourceMetric".into()))
            && condition(&hpa, "AbleToScale") == Some(("True".into(), "SucceededGetScale".into()));
        done.then_some(()).ok_or(format!("{s:?}"))
    })
    .await;
    assert_eq!(
        replicas(&c).await,
        Some(2),
        "no metric, no change within range"
    );

    c.kubectl(&["scale", "deployment", "web", "--replicas=9"]);
    nudge(&c, 1).await;
    eventually("scaled down to maxReplicas", || async {
        let got = replicas(&c).await;
        (got == Some(4)).then_some(()).ok_or(format!("{got:?}"))
    })
    .await;
}
