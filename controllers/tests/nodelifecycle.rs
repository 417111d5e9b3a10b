//! Nodes over their life: node IPAM gives new nodes a free /24, and the node lifecycle
//! loop (run with a grace period of seconds) marks nodes whose simulator stopped
//! Unknown, taints them, marks their pods not ready and evicts those whose
//! tolerationSeconds run out, then lifts the taints when the node is back.

use std::time::Duration;

use controllers::nodelifecycle::{self, Config};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use kybern_testkit::{eventually, Cluster};
use serde_json::json;

/// Aborts a spawned task when the test ends, pass or fail.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn ready_status(node: &Node) -> Option<(String, Option<String>)> {
    let c = node
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone()))
}

fn taint_keys(node: &Node) -> Vec<String> {
    let mut keys: Vec<String> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .iter()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect();
    keys.sort();
    keys
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn create_pod(c: &Cluster, name: &str, tolerations: serde_json::Value) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], "tolerations": tolerations},
    }))
    .unwrap();
    c.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_nodes_become_unknown_tainted_and_their_pods_are_evicted() {
    let mut c = Cluster::start("lifecycle", &["scheduler"], 2).await;
    let config = Config {
        grace_period: Duration::from_secs(3),
        monitor_period: Duration::from_millis(300),
        eviction_rate: 100.0,
        eviction_burst: 10,
    };
    let client = c.client.clone();
    let _lifecycle = AbortOnDrop(tokio::spawn(async move {
        if let Err(e) = nodelifecycle::run_with(client, config).await {
            eprintln!("nodelifecycle ended: {e}");
        }
    }));
    let unreachable = |secs: Option<i64>| json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": secs}]);
    create_pod(&c, "short", unreachable(Some(2))).await;
    create_pod(&c, "forever", unreachable(None)).await;
    create_pod(&c, "defaulted", json!([])).await;
    let defaulted = c.api::<Pod>().get("defaulted").await.unwrap();
    let tolerations = defaulted.spec.unwrap().tolerations.unwrap_or_default();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let t = tolerations
            .iter()
            .find(|t| t.key.as_deref() == Some(key))
            .unwrap_or_else(|| panic!("no default toleration for {key}"));
        assert_eq!(
            (t.effect.as_deref(), t.toleration_seconds),
            (Some("NoExecute"), Some(300)),
            "{key}"
        );
    }
    eventually("the pods running and ready", || async {
        let pods = c
            .api::<Pod>()
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
        (pods.len() == 3 && pods.iter().all(pod_ready))
            .then_some(())
            .ok_or(format!(
                "{:?}",
                pods.iter().map(|p| &p.status).collect::<Vec<_>>()
            ))
    })
    .await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    let healthy = nodes.get("sim-0").await.unwrap();
    assert_eq!(ready_status(&healthy).map(|s| s.0).as_deref(), Some("True"));
    assert!(
        taint_keys(&healthy).is_empty(),
        "a healthy node is not tainted: {:?}",
        taint_keys(&healthy)
    );

    // The kubelets stop: no more lease renewals.
    drop(c.sim.take());
    let want_taints = vec![
        "node.kubernetes.io/unreachable:NoExecute".to_string(),
        "node.kubernetes.io/unreachable:NoSchedule".to_string(),
    ];
    eventually("both nodes Unknown and tainted unreachable", || async {
        let list = nodes
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
        let ok = list.len() == 2
            && list.iter().all(|n| {
                ready_status(n) == Some(("Unknown".into(), Some("NodeStatusUnknown".into())))
                    && taint_keys(n) == want_taints
            });
        ok.then_some(()).ok_or(format!(
            "{:?}",
            list.iter()
                .map(|n| (n.name_any(), ready_status(n), taint_keys(n)))
                .collect::<Vec<_>>()
        ))
    })
    .await;
    let node = nodes.get("sim-0").await.unwrap();
    let ready = node
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    // `kubectl describe node` tells the story.
    let described = c.kubectl(&["describe", "node", "sim-0"]);
    for line in [
        "Node sim-0 event: Registered Node sim-0 in Controller",
        "Node sim-0 status is now: NodeNotReady",
    ] {
        assert!(
            described.contains(line),
            "{line:?} missing from:\n{described}"
        );
    }

    eventually(
        "the pod tolerating 2 s evicted, every pod not ready",
        || async {
            let pods = c
                .api::<Pod>()
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?
                .items;
            let short_gone = pods
                .iter()
                .find(|p| p.name_any() == "short")
                .is_none_or(|p| p.metadata.deletion_timestamp.is_some());
            (short_gone && !pods.iter().any(pod_ready))
                .then_some(())
                .ok_or(format!(
                    "{:?}",
                    pods.iter()
                        .map(|p| (
                            p.name_any(),
                            p.metadata.deletion_timestamp.is_some(),
                            pod_ready(p)
                        ))
                        .collect::<Vec<_>>()
                ))
        },
    )
    .await;
    // Tolerating for ever, or for the default 300 s: still there.
    for name in ["forever", "defaulted"] {
        let pod = c.api::<Pod>().get(name).await.unwrap();
        assert!(
            pod.metadata.deletion_timestamp.is_none(),
            "{name} was evicted"
        );
    }

    // The kubelets are back: leases renewed, Ready posted; the taints go.
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-node-lease");
    let renewer = AbortOnDrop(tokio::spawn(async move {
        loop {
            for name in ["sim-0", "sim-1"] {
                let patch = json!({"spec": {"renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(Timestamp::now())}});
                let _ = leases
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }));
    for name in ["sim-0", "sim-1"] {
        let now = Timestamp::now().to_string();
        let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .unwrap();
    }
    eventually("the taints lifted from both nodes", || async {
        let list = nodes
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
        list.iter()
            .all(|n| taint_keys(n).is_empty())
            .then_some(())
            .ok_or(format!(
                "{:?}",
                list.iter().map(taint_keys).collect::<Vec<_>>()
            ))
    })
    .await;
    drop(renewer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_nodes_get_a_free_pod_cidr_and_freed_ones_are_reused() {
    // The two simulated nodes hold 10.42.0.0/24 and 10.42.1.0/24 already.
    let c = Cluster::start("nodeipam", &["nodeipam"], 2).await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    let create = |name: &'static str| {
        let nodes = nodes.clone();
        async move {
            let node: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
            nodes.create(&PostParams::default(), &node).await.unwrap();
        }
    };
    let cidr_of = |name: &'static str, want: &'static str| {
        let nodes = nodes.clone();
        async move {
            let node = nodes.get(name).await.map_err(|e| e.to_string())?;
            let spec = node.spec.unwrap_or_default();
            (spec.pod_cidr.as_deref() == Some(want)
                && spec.pod_cidrs == Some(vec![want.to_string()]))
            .then_some(())
            .ok_or(format!("{spec:?}"))
        }
    };
    create("bare-a").await;
    eventually("bare-a gets the first free /24", || {
        cidr_of("bare-a", "10.42.2.0/24")
    })
    .await;
    create("bare-b").await;
    eventually("bare-b gets the next", || cidr_of("bare-b", "10.42.3.0/24")).await;
    for sim in ["sim-0", "sim-1"] {
        let spec = nodes.get(sim).await.unwrap().spec.unwrap();
        assert_eq!(
            spec.pod_cidr,
            Some(format!("10.42.{}.0/24", &sim[4..])),
            "a node's own podCIDR is left alone"
        );
    }
    nodes
        .delete("bare-a", &DeleteParams::default())
        .await
        .unwrap();
    eventually("bare-a gone", || async {
        nodes
            .get_opt("bare-a")
            .await
            .map_err(|e| e.to_string())?
            .map_or(Ok(()), |_| Err("still there".into()))
    })
    .await;
    create("bare-c").await;
    eventually("bare-c reuses bare-a's /24", || {
        cidr_of("bare-c", "10.42.2.0/24")
    })
    .await;
}
