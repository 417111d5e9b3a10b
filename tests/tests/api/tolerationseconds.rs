//! DefaultTolerationSeconds as upstream's admission plugin: a created pod tolerates its
//! node being not ready or unreachable for five minutes, and the mutating webhooks, which
//! run after the built-in plugins, already see those tolerations.

use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use serde_json::{json, Value};

use crate::common::webhook::{admission_response, Reply, WebhookServer};
use crate::common::Cluster;
use crate::webhooks::mutating;

fn not_ready_and_unreachable(tolerations: &Value) -> Vec<(String, i64)> {
    tolerations
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["effect"] == "NoExecute")
        .map(|t| {
            (
                t["key"].as_str().unwrap_or_default().to_string(),
                t["tolerationSeconds"].as_i64().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_mutating_webhook_sees_the_default_tolerations_of_a_created_pod() {
    let c = Cluster::builder("toleration-seconds").start().await;
    let hook =
        WebhookServer::start(|_, review| Reply::Json(admission_response(review, true, json!({}))))
            .await;
    mutating(
        &c,
        json!([{
            "name": "pods.example.com",
            "clientConfig": hook.client_config("/pods"),
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        }]),
    )
    .await;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    let created = c
        .api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .expect("creating the pod");
    let want = vec![
        ("node.kubernetes.io/not-ready".to_string(), 300),
        ("node.kubernetes.io/unreachable".to_string(), 300),
    ];
    let stored = serde_json::to_value(&created.spec.unwrap().tolerations).unwrap();
    assert_eq!(not_ready_and_unreachable(&stored), want, "the stored pod");
    let requests = hook.requests();
    assert_eq!(requests.len(), 1, "one call: {requests:?}");
    let seen = &requests[0].1["request"]["object"]["spec"]["tolerations"];
    assert_eq!(
        not_ready_and_unreachable(seen),
        want,
        "the pod the webhook saw"
    );
}
