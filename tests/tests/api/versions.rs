//! Kinds served in two versions with different fields: each version reads and writes
//! the same objects in its own form (autoscaling/v1 and v2 HorizontalPodAutoscalers).

use k8s_openapi::api::autoscaling::{v1, v2};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::common::InProcess;

fn target() -> serde_json::Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"})
}

#[tokio::test]
async fn an_autoscaler_written_in_either_version_reads_the_same_in_both() {
    let s = InProcess::start().await;
    let old: Api<v1::HorizontalPodAutoscaler> = Api::namespaced(s.client.clone(), "default");
    let new: Api<v2::HorizontalPodAutoscaler> = Api::namespaced(s.client.clone(), "default");

    // Written through v1 as kubectl writes (strict field validation): v2 sees its CPU
    // target as a metric, with the defaults.
    let create = http::Request::post(
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers?fieldValidation=Strict",
    )
    .header("content-type", "application/json")
    .body(
        serde_json::to_vec(&json!({
            "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "from-v1"},
            "spec": {"scaleTargetRef": target(), "maxReplicas": 3, "targetCPUUtilizationPercentage": 50}
        }))
        .unwrap(),
    )
    .unwrap();
    let created: serde_json::Value = s.client.request(create).await.unwrap();
    assert_eq!(created["apiVersion"], "autoscaling/v1");
    assert_eq!(created["spec"]["minReplicas"], 1);
    assert_eq!(created["spec"]["targetCPUUtilizationPercentage"], 50);
    assert_eq!(
        created["status"],
        json!({"currentReplicas": 0, "desiredReplicas": 0})
    );
    let as_v2 = serde_json::to_value(new.get("from-v1").await.unwrap()).unwrap();
    assert_eq!(
        as_v2["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}])
    );
    assert_eq!(as_v2["spec"]["minReplicas"], 1);

    // Written through v2 with what v1 cannot say: v1 carries it in annotations, and an
    // update through v1 keeps it.
    let v2_hpa: v2::HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "from-v2"},
        "spec": {
            "scaleTargetRef": target(), "maxReplicas": 4,
            "metrics": [{"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 5}}
        }
    }))
    .unwrap();
    let stored =
        serde_json::to_value(new.create(&PostParams::default(), &v2_hpa).await.unwrap()).unwrap();
    assert_eq!(
        stored["spec"]["behavior"]["scaleUp"]["selectPolicy"], "Max",
        "a behavior given is filled in"
    );
    let mut through_v1 = old.get("from-v2").await.unwrap();
    assert_eq!(
        through_v1
            .spec
            .as_ref()
            .unwrap()
            .target_cpu_utilization_percentage,
        None
    );
    let annotations = through_v1.metadata.annotations.clone().unwrap_or_default();
    assert!(
        annotations.contains_key("autoscaling.alpha.kubernetes.io/metrics")
            && annotations.contains_key("autoscaling.alpha.kubernetes.io/behavior"),
        "{annotations:?}"
    );
    through_v1.spec.as_mut().unwrap().max_replicas = 6;
    old.replace("from-v2", &PostParams::default(), &through_v1)
        .await
        .unwrap();
    let after = serde_json::to_value(new.get("from-v2").await.unwrap()).unwrap();
    assert_eq!(after["spec"]["maxReplicas"], 6);
    assert_eq!(after["spec"]["metrics"], stored["spec"]["metrics"]);
    assert_eq!(after["spec"]["behavior"], stored["spec"]["behavior"]);
    assert!(
        after["metadata"].get("annotations").is_none(),
        "the v1 annotations are not stored: {after}"
    );

    // Lists convert each item.
    let listed = old.list(&ListParams::default()).await.unwrap();
    let targets: Vec<_> = listed
        .items
        .iter()
        .map(|h| h.spec.as_ref().unwrap().target_cpu_utilization_percentage)
        .collect();
    assert_eq!(targets, vec![Some(50), None]);
}

#[tokio::test]
async fn a_v1_autoscaler_whose_annotations_make_an_invalid_v2_object_is_refused() {
    let s = InProcess::start().await;
    let old: Api<v1::HorizontalPodAutoscaler> = Api::namespaced(s.client.clone(), "default");
    let new: Api<v2::HorizontalPodAutoscaler> = Api::namespaced(s.client.clone(), "default");
    let bad_metric = json!([{"type": "Resource", "resource": {"name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": "lots"}}}]);
    let hpa: v1::HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "bad", "annotations": {
            "autoscaling.alpha.kubernetes.io/metrics": bad_metric.to_string()}},
        "spec": {"scaleTargetRef": target(), "maxReplicas": 3}
    }))
    .unwrap();
    let status = crate::status(old.create(&PostParams::default(), &hpa).await);
    assert_eq!(
        (status.code, status.reason.as_str()),
        (422, "Invalid"),
        "{status:?}"
    );
    assert!(
        status.message.contains("averageUtilization"),
        "{}",
        status.message
    );
    assert_eq!(crate::code(new.get("bad").await), 404, "nothing was stored");
    // The v2 readers (the HPA loop's list) still decode everything there is.
    new.list(&ListParams::default()).await.unwrap();
}
