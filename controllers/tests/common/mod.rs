//! The harness the controller integration tests share: the real apiserver in-process,
//! the ReplicaSet and Deployment loops, and a stand-in kubelet that marks every new pod
//! Running and Ready through `/status` (there are no nodes in these tests).

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use apiserver::server::{self, Config, Server};
use controllers::{deployment, replicaset, Context};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tempfile::TempDir;
use tokio::task::JoinHandle;

/// The apiserver, both controllers and the stand-in kubelet; tasks stop on drop.
pub struct Cluster {
    pub kubeconfig: PathBuf,
    pub client: Client,
    pub ns: String,
    tasks: Vec<JoinHandle<()>>,
    _server: Server,
    _dir: TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Cluster {
    pub async fn start(ns: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temp data dir");
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::new(dir.path())
        };
        let server = server::start(config)
            .await
            .expect("starting the apiserver in-process");
        let kubeconfig =
            Kubeconfig::read_from(&server.kubeconfig).expect("reading admin.kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .unwrap();
        let client = Client::try_from(config).unwrap();
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
        let ctx = Arc::new(Context::new(client.clone(), "test".into()));
        let mut tasks = Vec::new();
        for run in [replicaset::run, deployment::run] {
            let ctx = ctx.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = run(ctx).await {
                    eprintln!("loop ended: {e:#}");
                }
            }));
        }
        tasks.push(tokio::spawn(kubelet(client.clone(), ns.to_string())));
        Cluster {
            kubeconfig: server.kubeconfig.clone(),
            client,
            ns: ns.into(),
            tasks,
            _server: server,
            _dir: dir,
        }
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }
    pub fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.ns)
    }
    pub fn replica_sets(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn live_pods(&self) -> Vec<Pod> {
        let pods = self
            .pods()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        pods.into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }
}

/// Marks pods Running and Ready the way a kubelet would, one status patch each.
pub async fn kubelet(client: Client, ns: String) {
    let api: Api<Pod> = Api::namespaced(client, &ns);
    loop {
        if let Ok(list) = api.list(&ListParams::default()).await {
            for pod in list.items {
                let marked = pod
                    .metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key("never-ready"));
                let ready = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready"));
                if !marked && !ready && pod.metadata.deletion_timestamp.is_none() {
                    let _ = mark_ready(&api, &pod.name_any()).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn mark_ready(api: &Api<Pod>, name: &str) -> kube::Result<Pod> {
    let patch = json!({"status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": Timestamp::now().to_string()}],
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
}

pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        match check().await {
            Ok(()) => return,
            Err(state) if tokio::time::Instant::now() > deadline => {
                panic!("timed out waiting for {what}; last state: {state}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

pub fn deployment_manifest(name: &str, replicas: i32, image: &str) -> Deployment {
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
    .unwrap()
}

pub async fn wait_rolled_out(c: &Cluster, name: &str, replicas: i32) {
    eventually(
        &format!("{name} to have {replicas} updated, ready, available replicas"),
        || async {
            let d = c.deployments().get(name).await.map_err(|e| e.to_string())?;
            let s = d.status.clone().unwrap_or_default();
            let want = Some(replicas);
            let done = s.observed_generation == d.metadata.generation
                && s.replicas == want
                && s.updated_replicas == want
                && s.ready_replicas == want
                && s.available_replicas == want;
            if done {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await;
}

pub fn replica_set_manifest(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
        },
    }))
    .unwrap()
}

pub fn orphan(name: &str, app: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }))
    .unwrap()
}

pub fn owner_uid(pod: &Pod) -> Option<String> {
    pod.owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.clone())
}

/// Runs the real kubectl against the cluster's namespace: (success, stdout + stderr).
pub async fn kubectl(c: &Cluster, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .arg("-n")
        .arg(&c.ns)
        .args(args)
        .output()
        .await
        .expect("running kubectl (apt-get install kubectl)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The image of a ReplicaSet's first container.
pub fn image_of(rs: &ReplicaSet) -> Option<String> {
    rs.spec
        .as_ref()?
        .template
        .as_ref()?
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .clone()
}

/// (image, spec.replicas, revision) of every ReplicaSet, sorted by revision.
pub async fn replica_set_summary(c: &Cluster) -> Vec<(String, i32, i64)> {
    let rses = c
        .replica_sets()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let mut out: Vec<(String, i32, i64)> = rses
        .iter()
        .map(|rs| {
            let revision = rs
                .annotations()
                .get("deployment.kubernetes.io/revision")
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            (
                image_of(rs).unwrap_or_default(),
                rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
                revision,
            )
        })
        .collect();
    out.sort_by_key(|r| r.2);
    out
}

/// Merge-patches an object, retrying 409s: the in-process apiserver answers a patch
/// without resourceVersion with 409 when a controller wrote in between (upstream
/// retries such patches server-side; see the report on apiserver read_modify_write).
pub async fn merge_patch<K>(api: &Api<K>, name: &str, body: serde_json::Value)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for _ in 0..50 {
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(body.clone()))
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 409 => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            result => {
                result.unwrap();
                return;
            }
        }
    }
    panic!("patching {name} kept conflicting");
}
