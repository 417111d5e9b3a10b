//! The scheduler on simulated nodes: ten nodes from agent::simulate with small
//! capacities, labels and a taint set through the API; a mix of pods lands exactly where
//! kube-scheduler would put them and ends Running on its node, and pods that fit nowhere
//! get upstream's PodScheduled condition and message.

// The one simulated-cluster harness, shared with controllers' tests.

use std::collections::{BTreeMap, BTreeSet};

use agent::simulate::SimConfig;
use controllers::fixtures::PodFixture;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use kybern_testkit::{eventually, Cluster};
use scheduler::config::SchedulerConfig;
use scheduler::Scheduler;
use serde_json::json;

const NS: &str = "sched-sim";

fn in_ns(mut p: Pod) -> Pod {
    p.metadata.namespace = Some(NS.into());
    p.metadata.uid = None;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_land_where_upstream_puts_them_and_run_on_simulated_nodes() {
    let mut config = SimConfig::new(10);
    config.cpu = "2".into();
    config.memory = "4Gi".into();
    // The scheduler starts later, once the nodes carry their labels and taints, so no
    // pod is placed against a node it has not seen labelled yet.
    let cluster = Cluster::start_with(NS, &[], Some(config)).await;
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    eventually("10 simulated nodes registered", || {
        let nodes = nodes.clone();
        async move {
            let n = nodes
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            (n.items.len() == 10)
                .then_some(())
                .ok_or(format!("{} nodes", n.items.len()))
        }
    })
    .await;
    // sim-0, sim-1: ssd; sim-2: gpu, tainted; sim-3..sim-9: the general pool.
    for i in 0..10 {
        let name = format!("sim-{i}");
        let patch = match i {
            0 | 1 => json!({"metadata": {"labels": {"disk": "ssd"}}}),
            2 => json!({
                "metadata": {"labels": {"gpu": "true"}},
                "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}
            }),
            _ => json!({"metadata": {"labels": {"pool": "general"}}}),
        };
        nodes
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
    tokio::spawn(Scheduler::new(cluster.client.clone(), SchedulerConfig::default()).run());

    let mut pods = vec![
        Pod::test("on-ssd")
            .node_selector("disk", "ssd")
            .requests("500m", "1Gi"),
        Pod::test("on-gpu").node_selector("gpu", "true").toleration(
            "dedicated",
            "Equal",
            "gpu",
            "NoSchedule",
        ),
        // Wants the gpu node but does not tolerate its taint.
        Pod::test("gpu-untolerated").node_selector("gpu", "true"),
        // 3 cpu fits no 2-cpu node.
        Pod::test("too-big").requests("3", "1Gi"),
    ];
    // 1500m each: exactly one per 2-cpu node of the pool.
    for i in 0..7 {
        pods.push(
            Pod::test(&format!("general-{i}"))
                .node_selector("pool", "general")
                .requests("1500m", "100Mi"),
        );
    }
    let api: Api<Pod> = cluster.api();
    for p in pods {
        api.create(&PostParams::default(), &in_ns(p)).await.unwrap();
    }

    let placed_now = |api: Api<Pod>| async move {
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let placed: BTreeMap<String, (String, String)> = list
            .items
            .iter()
            .filter_map(|p| {
                let node = p.spec.as_ref()?.node_name.clone()?;
                let phase = p.status.as_ref()?.phase.clone().unwrap_or_default();
                Some((p.metadata.name.clone()?, (node, phase)))
            })
            .collect();
        Ok::<_, String>(placed)
    };
    eventually("9 pods Running on their nodes", || {
        let api = api.clone();
        async move {
            let placed = placed_now(api).await?;
            let running = placed
                .values()
                .filter(|(_, phase)| phase == "Running")
                .count();
            (running == 9).then_some(()).ok_or(format!("{placed:?}"))
        }
    })
    .await;
    let placed = placed_now(api.clone()).await.unwrap();
    let node = |name: &str| placed[name].0.as_str();
    assert!(
        ["sim-0", "sim-1"].contains(&node("on-ssd")),
        "nodeSelector: {placed:?}"
    );
    assert_eq!(node("on-gpu"), "sim-2", "selector + toleration: {placed:?}");
    let general: BTreeSet<&str> = (0..7).map(|i| node(&format!("general-{i}"))).collect();
    let pool: BTreeSet<String> = (3..10).map(|i| format!("sim-{i}")).collect();
    assert_eq!(
        general,
        pool.iter().map(String::as_str).collect(),
        "one 1500m pod per 2-cpu pool node"
    );
    assert!(
        !placed.contains_key("gpu-untolerated") && !placed.contains_key("too-big"),
        "{placed:?}"
    );

    let cases = [
        (
            "gpu-untolerated",
            "0/10 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, \
             9 node(s) didn't match Pod's node affinity/selector. preemption: 0/10 nodes are available: \
             10 Preemption is not helpful for scheduling..",
        ),
        (
            "too-big",
            "0/10 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 9 Insufficient cpu. \
             preemption: 0/10 nodes are available: 1 Preemption is not helpful for scheduling, \
             9 No preemption victims found for incoming pod..",
        ),
    ];
    for (name, want) in cases {
        eventually(&format!("PodScheduled=False on {name}"), || {
            let api = api.clone();
            async move {
                let p = api.get(name).await.map_err(|e| e.to_string())?;
                let c = p
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|c| c.type_ == "PodScheduled")
                    .ok_or("no PodScheduled condition")?;
                let got = (c.status.as_str(), c.reason.as_deref(), c.message.as_deref());
                (got == ("False", Some("Unschedulable"), Some(want)))
                    .then_some(())
                    .ok_or(format!("{got:?}"))
            }
        })
        .await;
    }
}
