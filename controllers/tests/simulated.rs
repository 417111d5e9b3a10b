//! Workloads on `kybern agent --simulate` nodes: the scheduler places the pods of a
//! Deployment on simulated nodes, which report them Running and Ready, so the
//! Deployment becomes available exactly as it would on real nodes.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kybern_testkit::{eventually, Cluster};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_becomes_available_on_simulated_nodes() {
    let c = Cluster::start("simdeploy", &["replicaset", "deployment", "scheduler"], 3).await;
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 6,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }))
    .unwrap();
    c.api::<Deployment>()
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    eventually("6 available replicas", || async {
        let d = c
            .api::<Deployment>()
            .get("web")
            .await
            .map_err(|e| e.to_string())?;
        let s = d.status.unwrap_or_default();
        (s.available_replicas == Some(6))
            .then_some(())
            .ok_or(format!("{s:?}"))
    })
    .await;
    let pods = c
        .api::<Pod>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let nodes: std::collections::BTreeSet<_> = pods
        .iter()
        .map(|p| {
            p.spec
                .as_ref()
                .unwrap()
                .node_name
                .clone()
                .expect("every pod is bound")
        })
        .collect();
    // Placement itself is the scheduler tests' business (here the scheduler may start
    // before it has seen every node); every pod is on a simulated node.
    assert!(
        nodes.iter().all(|n| n.starts_with("sim-")),
        "pods on {nodes:?}"
    );
    for p in &pods {
        let status = p.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(
            status
                .pod_ip
                .as_deref()
                .is_some_and(|ip| ip.starts_with("10.42.")),
            "{status:?}"
        );
    }
}
