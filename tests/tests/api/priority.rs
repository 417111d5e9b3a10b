//! The small built-in admission plugins through the API: Priority, the default
//! tolerations, DefaultStorageClass and StorageObjectInUseProtection.

use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

use crate::common::InProcess;

async fn namespace(server: &InProcess, ns: &str) {
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    Api::<Namespace>::all(server.client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
}

async fn priority_class(
    server: &InProcess,
    name: &str,
    value: i32,
    default: bool,
) -> kube::Result<PriorityClass> {
    let class: PriorityClass = serde_json::from_value(
        json!({"metadata": {"name": name}, "value": value, "globalDefault": default}),
    )
    .unwrap();
    Api::<PriorityClass>::all(server.client.clone())
        .create(&PostParams::default(), &class)
        .await
}

fn pod(name: &str, spec: Value) -> Pod {
    let mut spec = spec;
    spec["containers"] = json!([{"name": "app", "image": "busybox"}]);
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

async fn create(pods: &Api<Pod>, p: Pod) -> kube::Result<Value> {
    pods.create(&PostParams::default(), &p)
        .await
        .map(|p| serde_json::to_value(p).unwrap())
}

#[tokio::test]
async fn a_pods_priority_class_resolves_to_its_value() {
    let server = InProcess::start().await;
    namespace(&server, "prio").await;
    priority_class(&server, "high", 1000, false).await.unwrap();
    let pods = Api::<Pod>::namespaced(server.client.clone(), "prio");
    let cases = [
        ("a class of the user's", "high", 1000),
        (
            "the built-in cluster-critical class",
            "system-cluster-critical",
            2_000_000_000,
        ),
        (
            "the built-in node-critical class",
            "system-node-critical",
            2_000_001_000,
        ),
    ];
    for (i, (name, class, value)) in cases.into_iter().enumerate() {
        let created = create(
            &pods,
            pod(&format!("p{i}"), json!({"priorityClassName": class})),
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(created["spec"]["priority"], value, "{name}");
        assert_eq!(
            created["spec"]["preemptionPolicy"], "PreemptLowerPriority",
            "{name}"
        );
    }
    let plain = create(&pods, pod("plain", json!({}))).await.unwrap();
    assert_eq!(plain["spec"]["priority"], 0, "no class and no default is 0");

    let unknown = crate::status(
        pods.create(
            &PostParams::default(),
            &pod("lost", json!({"priorityClassName": "nope"})),
        )
        .await,
    );
    assert_eq!(
        (unknown.code, unknown.message.as_str()),
        (
            403,
            "pods \"lost\" is forbidden: no PriorityClass with name nope was found"
        )
    );
    let mismatched = crate::status(
        pods.create(
            &PostParams::default(),
            &pod("liar", json!({"priorityClassName": "high", "priority": 5})),
        )
        .await,
    );
    assert_eq!(
        mismatched.message,
        "pods \"liar\" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"
    );
}

#[tokio::test]
async fn the_global_default_class_applies_to_pods_without_one_and_stays_unique() {
    let server = InProcess::start().await;
    namespace(&server, "dflt").await;
    priority_class(&server, "normal", 100, true).await.unwrap();
    let second = crate::status(priority_class(&server, "other", 200, true).await);
    assert_eq!(
        (second.code, second.message.as_str()),
        (403, "priorityclasses.scheduling.k8s.io \"other\" is forbidden: PriorityClass normal is already marked as default. Only one default can exist")
    );
    let pods = Api::<Pod>::namespaced(server.client.clone(), "dflt");
    let created = create(&pods, pod("plain", json!({}))).await.unwrap();
    assert_eq!(created["spec"]["priorityClassName"], "normal");
    assert_eq!(created["spec"]["priority"], 100);
}

#[tokio::test]
async fn created_pods_tolerate_not_ready_and_unreachable_nodes_for_five_minutes() {
    let server = InProcess::start().await;
    namespace(&server, "tol").await;
    let pods = Api::<Pod>::namespaced(server.client.clone(), "tol");
    let created = create(
        &pods,
        pod("p", json!({"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}]})),
    )
    .await
    .unwrap();
    assert_eq!(
        created["spec"]["tolerations"],
        json!([
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ]),
        "the pod's own toleration stays; the missing one is added"
    );
}

#[tokio::test]
async fn claims_without_a_class_get_the_default_class_and_the_protection_finalizer() {
    let server = InProcess::start().await;
    namespace(&server, "pvc").await;
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": "fast", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "example.com/fast"
    }))
    .unwrap();
    Api::<StorageClass>::all(server.client.clone())
        .create(&PostParams::default(), &class)
        .await
        .unwrap();
    let claims = Api::<PersistentVolumeClaim>::namespaced(server.client.clone(), "pvc");
    let claim = |name: &str, class: Option<&str>| -> PersistentVolumeClaim {
        let mut spec = json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}});
        if let Some(c) = class {
            spec["storageClassName"] = json!(c);
        }
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
    };
    let cases = [
        ("no class gets the default", "plain", None, "fast"),
        ("an empty class stays empty", "static", Some(""), ""),
        ("a named class is kept", "named", Some("slow"), "slow"),
    ];
    for (name, claim_name, class, want) in cases {
        let created = claims
            .create(&PostParams::default(), &claim(claim_name, class))
            .await
            .unwrap();
        assert_eq!(
            created.spec.as_ref().unwrap().storage_class_name.as_deref(),
            Some(want),
            "{name}"
        );
        assert_eq!(
            created.metadata.finalizers,
            Some(vec!["kubernetes.io/pvc-protection".to_string()]),
            "{name}"
        );
    }
}
