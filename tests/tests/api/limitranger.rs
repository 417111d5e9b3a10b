//! The LimitRanger admission plugin through the API: a namespace's LimitRange gives
//! created pods their default requests and limits, and refuses pods and claims
//! outside its bounds with upstream's messages.

use k8s_openapi::api::core::v1::{LimitRange, Namespace, PersistentVolumeClaim, Pod};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

use crate::common::InProcess;

async fn namespace_with_limits(server: &InProcess, ns: &str, limits: Value) {
    let client = server.client.clone();
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let range: LimitRange =
        serde_json::from_value(json!({"metadata": {"name": "limits"}, "spec": {"limits": limits}}))
            .unwrap();
    Api::<LimitRange>::namespaced(client, ns)
        .create(&PostParams::default(), &range)
        .await
        .unwrap();
}

fn pod(name: &str, resources: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "busybox", "resources": resources}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn limit_range_defaults_appear_on_created_pods() {
    let server = InProcess::start().await;
    namespace_with_limits(
        &server,
        "defaults",
        json!([{"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"cpu": "100m", "memory": "128Mi"}}]),
    )
    .await;
    let pods = Api::<Pod>::namespaced(server.client.clone(), "defaults");
    pods.create(&PostParams::default(), &pod("plain", json!({})))
        .await
        .unwrap();
    let stored = serde_json::to_value(pods.get("plain").await.unwrap()).unwrap();
    assert_eq!(
        stored["spec"]["containers"][0]["resources"],
        json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}})
    );
    assert_eq!(
        stored["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app"
    );
    assert_eq!(
        stored["status"]["qosClass"], "Burstable",
        "the QoS class counts the defaults"
    );
}

#[tokio::test]
async fn pods_and_claims_outside_a_limit_range_are_refused() {
    let server = InProcess::start().await;
    namespace_with_limits(
        &server,
        "bounds",
        json!([
            {"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "1"}},
            {"type": "PersistentVolumeClaim", "max": {"storage": "2Gi"}}
        ]),
    )
    .await;
    let pods = Api::<Pod>::namespaced(server.client.clone(), "bounds");
    let cases = [
        (
            "a limit above max",
            pod("big", json!({"requests": {"cpu": "500m"}, "limits": {"cpu": "2"}})),
            "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2",
        ),
        (
            "a request below min",
            pod("small", json!({"requests": {"cpu": "50m"}, "limits": {"cpu": "500m"}})),
            "pods \"small\" is forbidden: minimum cpu usage per Container is 100m, but request is 50m",
        ),
    ];
    for (name, p, want) in cases {
        let status = crate::status(pods.create(&PostParams::default(), &p).await);
        assert_eq!(
            (status.code, status.message.as_str()),
            (403, want),
            "{name}"
        );
    }
    pods.create(&PostParams::default(), &pod("defaulted", json!({})))
        .await
        .expect("max and min become the defaults, which fit");

    let claims = Api::<PersistentVolumeClaim>::namespaced(server.client.clone(), "bounds");
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "huge"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}
    }))
    .unwrap();
    let status = crate::status(claims.create(&PostParams::default(), &claim).await);
    assert_eq!(
        status.message,
        "persistentvolumeclaims \"huge\" is forbidden: maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"
    );
}
