//! The ReplicaSet and Deployment loops against the real apiserver in-process, with a
//! stand-in kubelet that marks every new pod Running and Ready through `/status` (there
//! are no nodes in these tests).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicI32, Ordering};
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
struct Cluster {
    client: Client,
    ns: String,
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
    async fn start(ns: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temp data dir");
        let config = Config { listen: "127.0.0.1:0".parse().unwrap(), ..Config::new(dir.path()) };
        let server = server::start(config).await.expect("starting the apiserver in-process");
        let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).expect("reading admin.kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
        let client = Client::try_from(config).unwrap();
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.unwrap();
        let ctx = Arc::new(Context { client: client.clone(), identity: "test".into() });
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
        Cluster { client, ns: ns.into(), tasks, _server: server, _dir: dir }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }
    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.ns)
    }
    fn replica_sets(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn live_pods(&self) -> Vec<Pod> {
        let pods = self.pods().list(&ListParams::default()).await.unwrap().items;
        pods.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
    }
}

/// Marks pods Running and Ready the way a kubelet would, one status patch each.
async fn kubelet(client: Client, ns: String) {
    let api: Api<Pod> = Api::namespaced(client, &ns);
    loop {
        if let Ok(list) = api.list(&ListParams::default()).await {
            for pod in list.items {
                let marked = pod.metadata.labels.as_ref().is_some_and(|l| l.contains_key("never-ready"));
                let ready = pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready"));
                if !marked && !ready && pod.metadata.deletion_timestamp.is_none() {
                    let _ = mark_ready(&api, &pod.name_any()).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn mark_ready(api: &Api<Pod>, name: &str) -> kube::Result<Pod> {
    let patch = json!({"status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": Timestamp::now().to_string()}],
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch)).await
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        match check().await {
            Ok(()) => return,
            Err(state) if tokio::time::Instant::now() > deadline => panic!("timed out waiting for {what}; last state: {state}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn deployment_manifest(name: &str, replicas: i32, image: &str) -> Deployment {
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

async fn wait_rolled_out(c: &Cluster, name: &str, replicas: i32) {
    eventually(&format!("{name} to have {replicas} updated, ready, available replicas"), || async {
        let d = c.deployments().get(name).await.map_err(|e| e.to_string())?;
        let s = d.status.clone().unwrap_or_default();
        let want = Some(replicas);
        let done = s.observed_generation == d.metadata.generation
            && s.replicas == want
            && s.updated_replicas == want
            && s.ready_replicas == want
            && s.available_replicas == want;
        if done { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deployment_rolls_out_scales_and_never_drops_below_its_availability() {
    let c = Cluster::start("rollout").await;
    c.deployments().create(&PostParams::default(), &deployment_manifest("web", 3, "nginx:1")).await.unwrap();
    wait_rolled_out(&c, "web", 3).await;
    let d = c.deployments().get("web").await.unwrap();
    let conditions: BTreeMap<String, String> = d.status.unwrap().conditions.unwrap().into_iter().map(|c| (c.type_, c.reason.unwrap_or_default())).collect();
    assert_eq!(conditions.get("Available").map(String::as_str), Some("MinimumReplicasAvailable"));
    assert_eq!(conditions.get("Progressing").map(String::as_str), Some("NewReplicaSetAvailable"));

    // Watch availability through the whole image rollout: maxUnavailable 0 means at
    // least 3 ready pods at every moment; maxSurge 1 means never more than 4 pods.
    let (min_ready, max_pods) = (Arc::new(AtomicI32::new(i32::MAX)), Arc::new(AtomicI32::new(0)));
    let monitor = {
        let (pods, min_ready, max_pods) = (c.pods(), min_ready.clone(), max_pods.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(list) = pods.list(&ListParams::default()).await {
                    let live: Vec<&Pod> = list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
                    let ready = live.iter().filter(|p| controllers::podcontrol::is_ready(p)).count();
                    min_ready.fetch_min(i32::try_from(ready).unwrap(), Ordering::SeqCst);
                    max_pods.fetch_max(i32::try_from(live.len()).unwrap(), Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}});
    c.deployments().patch("web", &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
    wait_rolled_out(&c, "web", 3).await;
    eventually("the old replicaset to be scaled to 0", || async {
        let rses = c.replica_sets().list(&ListParams::default()).await.map_err(|e| e.to_string())?.items;
        let sizes: Vec<(String, i32, String)> = rses
            .iter()
            .map(|rs| {
                let revision = rs.annotations().get("deployment.kubernetes.io/revision").cloned().unwrap_or_default();
                (rs.name_any(), rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0), revision)
            })
            .collect();
        let image = |rs: &ReplicaSet| rs.spec.as_ref().and_then(|s| s.template.as_ref()).and_then(|t| t.spec.as_ref()).and_then(|s| s.containers[0].image.clone());
        let old_empty = rses.iter().filter(|rs| image(rs).as_deref() == Some("nginx:1")).all(|rs| rs.spec.as_ref().and_then(|s| s.replicas) == Some(0));
        let revisions: Vec<&str> = sizes.iter().map(|s| s.2.as_str()).collect();
        let ok = rses.len() == 2 && old_empty && revisions.contains(&"1") && revisions.contains(&"2");
        if ok { Ok(()) } else { Err(format!("{sizes:?}")) }
    })
    .await;
    monitor.abort();
    assert!(min_ready.load(Ordering::SeqCst) >= 3, "ready pods dropped to {} during the rollout", min_ready.load(Ordering::SeqCst));
    assert!(max_pods.load(Ordering::SeqCst) <= 4, "{} pods existed at once (3 + maxSurge 1)", max_pods.load(Ordering::SeqCst));
    for pod in c.live_pods().await {
        assert!(pod.name_any().starts_with("web-"), "{} is named <rs>-xxxxx", pod.name_any());
        let owner = &pod.owner_references()[0];
        assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
    }

    c.deployments().patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 5}}))).await.unwrap();
    wait_rolled_out(&c, "web", 5).await;
    assert_eq!(c.live_pods().await.len(), 5);
}

fn replica_set_manifest(name: &str, replicas: i32) -> ReplicaSet {
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

fn orphan(name: &str, app: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }))
    .unwrap()
}

fn owner_uid(pod: &Pod) -> Option<String> {
    pod.owner_references().iter().find(|o| o.controller == Some(true)).map(|o| o.uid.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn matching_orphans_are_adopted_and_extras_deleted() {
    let c = Cluster::start("adopt").await;
    c.pods().create(&PostParams::default(), &orphan("orphan-a", "db")).await.unwrap();
    let rs = c.replica_sets().create(&PostParams::default(), &replica_set_manifest("db", 1)).await.unwrap();
    let uid = rs.uid();
    eventually("the orphan to be adopted instead of a new pod made", || async {
        let pods = c.live_pods().await;
        let summary: Vec<(String, Option<String>)> = pods.iter().map(|p| (p.name_any(), owner_uid(p))).collect();
        let ok = summary.len() == 1 && summary[0] == ("orphan-a".to_string(), uid.clone());
        if ok { Ok(()) } else { Err(format!("{summary:?}")) }
    })
    .await;
    c.pods().create(&PostParams::default(), &orphan("orphan-b", "db")).await.unwrap();
    eventually("the extra orphan to be adopted and one pod deleted", || async {
        let pods = c.live_pods().await;
        let owned = pods.iter().filter(|p| owner_uid(p) == uid).count();
        if pods.len() == 1 && owned == 1 { Ok(()) } else { Err(format!("{} pods, {owned} owned", pods.len())) }
    })
    .await;
    eventually("the replicaset status to report 1 ready replica", || async {
        let s = c.replica_sets().get("db").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        let ok = s.replicas == 1 && s.ready_replicas == Some(1) && s.available_replicas == Some(1) && s.observed_generation == Some(1);
        if ok { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pod_relabelled_out_of_the_selector_is_released_and_replaced() {
    let c = Cluster::start("release").await;
    let rs = c.replica_sets().create(&PostParams::default(), &replica_set_manifest("api", 2)).await.unwrap();
    let uid = rs.uid();
    eventually("two pods", || async {
        let n = c.live_pods().await.iter().filter(|p| owner_uid(p) == uid).count();
        if n == 2 { Ok(()) } else { Err(format!("{n} pods")) }
    })
    .await;
    let victim = c.live_pods().await[0].name_any();
    let relabel = json!({"metadata": {"labels": {"app": "debug"}}});
    c.pods().patch(&victim, &PatchParams::default(), &Patch::Merge(relabel)).await.unwrap();
    eventually("the relabelled pod released and replaced", || async {
        let pods = c.live_pods().await;
        let released = pods.iter().find(|p| p.name_any() == victim).is_some_and(|p| owner_uid(p).is_none());
        let owned = pods.iter().filter(|p| owner_uid(p) == uid && p.labels().get("app").map(String::as_str) == Some("api")).count();
        if released && owned == 2 { Ok(()) } else { Err(format!("released={released} owned={owned}")) }
    })
    .await;
}
