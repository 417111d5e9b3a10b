//! Typed fixtures: the builders of `controllers::fixtures` (`Node::test("n1")`,
//! `Pod::test("p")` and their options), manifests of the workload kinds, and creating
//! nodes and pods the way a kubelet and a user would.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

pub use controllers::fixtures::*;

/// A RollingUpdate Deployment of `replicas` pods of `image` (one surge, none
/// unavailable), selecting `app: NAME`.
pub fn deployment(name: &str, replicas: i32, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
        },
    }))
    .expect("a valid Deployment")
}

/// A ReplicaSet of `replicas` nginx pods selecting `app: NAME`.
pub fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
        },
    }))
    .expect("a valid ReplicaSet")
}

/// A pod labelled `app: APP` that no controller owns.
pub fn orphan_pod(name: &str, app: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }))
    .expect("a valid Pod")
}

/// Creates the node, then sets its status (allocatable, conditions) through
/// `nodes/status`, as a kubelet would.
pub async fn create_node(client: &Client, node: &Node) {
    let api: Api<Node> = Api::all(client.clone());
    let name = node.metadata.name.clone().expect("the node has a name");
    api.create(&PostParams::default(), node)
        .await
        .expect("creating node");
    let status = json!({"status": node.status});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("setting node status");
}

/// Creates an object of any kind from a JSON manifest through `api`; the created object.
pub async fn create_from<K>(api: &Api<K>, manifest: serde_json::Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(manifest).expect("a manifest of the kind");
    api.create(&PostParams::default(), &object)
        .await
        .expect("creating the object")
}

/// Creates the pod (in its namespace, `default` without one), without the uid a fixture
/// may carry.
pub async fn create_pod(client: &Client, pod: &Pod) {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut pod = pod.clone();
    pod.metadata.uid = None;
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .expect("creating pod");
}
