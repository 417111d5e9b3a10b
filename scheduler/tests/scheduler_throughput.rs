//! A quick manual throughput run, not a timed assertion: 1000 Ready nodes (32 cpu,
//! 128Gi, 110 pods) and 3000 small pods created through the API while the scheduler
//! runs, the shape of docs' reference figures. Prints pods bound per second.
//!
//! cargo test --release -p controllers --test scheduler_throughput -- --ignored --nocapture

use std::sync::Arc;
use std::time::{Duration, Instant};

use controllers::fixtures::{NodeFixture, PodFixture};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::watcher::{self, Event};
use kube::Api;
use kybern_testkit::fixtures::{create_node, create_pod};
use kybern_testkit::InProcess;
use scheduler::config::SchedulerConfig;
use scheduler::Scheduler;

const NODES: usize = 1000;
const PODS: usize = 3000;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "manual throughput run"]
async fn binds_3000_pods_on_1000_nodes_while_they_are_created() {
    run(true).await;
}

/// The scheduler starts after all pods exist: start-up, cache sync and scheduling alone.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "manual throughput run"]
async fn binds_3000_existing_pods_on_1000_nodes_from_start() {
    run(false).await;
}

async fn run(scheduler_first: bool) {
    let cluster = InProcess::start().await;
    let client = cluster.client.clone();
    futures::stream::iter(0..NODES)
        .for_each_concurrent(16, |i| {
            let client = client.clone();
            async move {
                let n = Node::test(&format!("node-{i}"))
                    .cpu("32")
                    .memory("128Gi")
                    .pods(110);
                create_node(&client, &n).await;
            }
        })
        .await;
    if scheduler_first {
        tokio::spawn(Scheduler::new(client.clone(), SchedulerConfig::default()).run());
    }

    // Count bindings as a watcher sees them.
    let bound = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = {
        let (client, bound) = (client.clone(), bound.clone());
        tokio::spawn(async move {
            let api: Api<Pod> = Api::namespaced(client, "default");
            let mut seen = std::collections::HashSet::new();
            let mut s = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
            while let Some(ev) = s.try_next().await.unwrap() {
                if let Event::Apply(p) | Event::InitApply(p) = ev {
                    if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
                        && seen.insert(p.metadata.name.clone().unwrap())
                    {
                        bound.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let t0 = Instant::now();
    futures::stream::iter(0..PODS)
        .for_each_concurrent(16, |i| {
            let client = client.clone();
            async move {
                create_pod(
                    &client,
                    &Pod::test(&format!("pod-{i}")).requests("10m", "10Mi"),
                )
                .await;
            }
        })
        .await;
    let created = t0.elapsed();
    let t0 = if scheduler_first {
        t0
    } else {
        tokio::spawn(Scheduler::new(client.clone(), SchedulerConfig::default()).run());
        Instant::now()
    };
    while bound.load(std::sync::atomic::Ordering::Relaxed) < PODS {
        assert!(t0.elapsed() < Duration::from_secs(300), "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = t0.elapsed();
    counter.abort();
    println!(
        "{PODS} pods on {NODES} nodes (scheduler first: {scheduler_first}): created in {:.2}s, \
         all bound after {:.2}s → {:.0} pods/s",
        created.as_secs_f64(),
        all.as_secs_f64(),
        PODS as f64 / all.as_secs_f64()
    );
}
