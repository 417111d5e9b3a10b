//! Shared harness for the scheduler's integration tests: the real apiserver in-process
//! on port 0, a kube client from its admin kubeconfig, and helpers to create Ready nodes.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use apiserver::server::{self, Config, Server};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use tempfile::TempDir;

pub struct Cluster {
    pub server: Server,
    pub client: Client,
    _dir: TempDir,
}

pub async fn start() -> Cluster {
    let dir = tempfile::tempdir().expect("temp data dir");
    let server = server::start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::new(dir.path())
    })
    .await
    .expect("starting the apiserver in-process");
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).expect("admin.kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("usable kubeconfig");
    let client = Client::try_from(config).expect("client");
    Cluster {
        server,
        client,
        _dir: dir,
    }
}

/// Creates the node, then sets its status (allocatable, Ready) through nodes/status, as
/// a kubelet would.
pub async fn create_node(client: &Client, node: &Node) {
    let api: Api<Node> = Api::all(client.clone());
    let name = node.metadata.name.clone().unwrap();
    api.create(&PostParams::default(), node)
        .await
        .expect("creating node");
    let status = serde_json::json!({"status": node.status});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("setting node status");
}

pub async fn create_pod(client: &Client, pod: &Pod) {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut pod = pod.clone();
    pod.metadata.uid = None;
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .expect("creating pod");
}

/// Polls `f` until it returns Some or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
