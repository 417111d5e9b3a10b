//! `kybern bench pods` (root): pod startup latency on this machine with real containers.
//!
//! The benchmark:
//!
//! 1. starts `kybern server` (every control loop and the scheduler; fresh temp data dir,
//!    `--listen 127.0.0.1:0`);
//! 2. registers a node with a /24 of 10.42.0.0/16 that no route of the host uses, and starts
//!    `kybern agent` for it as its own process, on a private containerd under the temp dir,
//!    with a bridge of its own and the busybox test image imported (so the image is
//!    present, as the target assumes);
//! 3. for each batch size (`--batches`, 1, 10 and 30) creates that many pods at once
//!    (`sleep 3600`, no probes) and, through a watch opened before the creates, takes for
//!    each pod the time from its create request to the watch event showing it Ready;
//!    prints p50 and p99 per batch, then deletes the pods and waits until they are gone
//!    (a grace period of 1 s, so they are gone only once the agent removed their
//!    containers and the next batch starts on a quiet node);
//! 4. samples the agent's RSS while the largest batch runs, and its peak (VmHWM);
//! 5. stops the agent, runs `kybern agent --reset` (containers, sandboxes, bridge, the
//!    private containerd), and stops the server.
//!
//! Nothing here asserts on timings; compare several runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use tokio::sync::Mutex;

use super::node::RealNode;
use super::procs::{self, TempDir};
use super::report::{Report, Row, Samples, Target, Unit, MIB};

#[derive(Args)]
pub(crate) struct PodsArgs {
    /// Batch sizes: pods created at once, one batch after the other.
    #[arg(long, value_delimiter = ',', default_value = "1,10,30")]
    batches: Vec<usize>,
    /// Rounds of each batch (the figures pool every round's pods).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Keep the temp dir (data, logs).
    #[arg(long)]
    keep: bool,
}

pub(crate) async fn run(args: PodsArgs) -> Result<()> {
    let started = Instant::now();
    let progress = |what: &str| eprintln!("[{:>6.1}s] {what}", started.elapsed().as_secs_f64());
    println!("# kybern bench pods");
    println!();
    println!(
        "Pod startup on one real node (containerd, runc), {} cores, load average at start {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        super::loadavg()
    );
    let tmp = TempDir::new("pods", args.keep)?;
    let node = RealNode::start(&tmp, false, &progress).await?;
    let result = measure(&args, &node.client, node.agent.pid(), &progress).await;
    let peak = procs::peak_rss_bytes(node.agent.pid());
    node.stop().await;
    let (batches, rss_with_largest) = result.with_context(|| {
        format!(
            "see the logs in {} (run with --keep to keep them)",
            tmp.path.display()
        )
    })?;

    let mut report =
        Report::new("Pod startup: create to Ready, as seen through a watch (image present)");
    for (n, samples) in &batches {
        let mut p99 = Row::new(
            format!("{n} pod(s) at once: p99"),
            samples.p99_ms(),
            None,
            Unit::Ms,
        );
        if *n == 1 {
            p99 = p99.target(Target::Below(1000.0));
        }
        report.row(Row::new(
            format!("{n} pod(s) at once: p50"),
            samples.p50_ms(),
            None,
            Unit::Ms,
        ));
        report.row(p99);
    }
    let largest = batches.iter().map(|(n, _)| *n).max().unwrap_or(0);
    report.row(
        Row::new(
            format!("agent RSS with {largest} pods running"),
            rss_with_largest as f64 / MIB,
            None,
            Unit::MiB,
        )
        .target(Target::Below(50.0)),
    );
    report.row(Row::new(
        "agent peak RSS",
        peak? as f64 / MIB,
        None,
        Unit::MiB,
    ));
    report.note(format!(
        "{} round(s) per batch size; the agent runs as its own process with a private containerd and --eviction-hard nodefs.available<1%",
        args.rounds
    ));
    report.print();
    Ok(())
}

async fn measure(
    args: &PodsArgs,
    client: &kube::Client,
    agent_pid: u32,
    progress: &dyn Fn(&str),
) -> Result<(Vec<(usize, Samples)>, u64)> {
    let mut out = Vec::new();
    let mut rss_largest = 0;
    let largest = args.batches.iter().copied().max().unwrap_or(0);
    for &n in &args.batches {
        let mut all = Vec::new();
        for round in 0..args.rounds {
            let ns = format!("bench-{n}-{round}");
            let times = batch(client, &ns, n).await?;
            if n == largest {
                rss_largest = rss_largest.max(procs::rss_bytes(agent_pid)?);
            }
            all.extend(times);
            cleanup(client, &ns).await?;
        }
        let samples = Samples::new(all);
        progress(&format!(
            "{n} pod(s) at once: p50 {:.0} ms, p99 {:.0} ms",
            samples.p50_ms(),
            samples.p99_ms()
        ));
        out.push((n, samples));
    }
    Ok((out, rss_largest))
}

/// Creates `n` pods at once in a fresh namespace; returns each one's create-to-Ready time.
async fn batch(client: &kube::Client, ns: &str, n: usize) -> Result<Vec<Duration>> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await?;
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let ready: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    // The watch is open before the first create.
    let list = api.list(&ListParams::default()).await?;
    let mut rv = list.metadata.resource_version.unwrap_or_default();
    let mut events = api
        .watch(&WatchParams::default().timeout(290), &rv)
        .await
        .context("watching pods")?
        .boxed();
    let creates = futures::future::try_join_all((0..n).map(|i| {
        let (api, sent) = (api.clone(), sent.clone());
        async move {
            let name = format!("p{i}");
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {
                    // Graceful (not immediate) deletion: the namespace is gone only once the agent
                    // has stopped and removed the containers, so each round starts on a quiet node.
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "main", "image": agent::images::test_images::BUSYBOX_IMAGE,
                        "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}],
                },
            }))?;
            sent.lock().await.insert(name, Instant::now());
            api.create(&PostParams::default(), &pod).await.context("creating a pod")?;
            anyhow::Ok(())
        }
    }));
    let watching = async {
        let deadline = Instant::now() + Duration::from_secs(300);
        while ready.lock().await.len() < n {
            let next = tokio::time::timeout_at(deadline.into(), events.try_next()).await;
            let Ok(next) = next else {
                bail!(
                    "pods not Ready within 300 s ({} of {n})",
                    ready.lock().await.len()
                )
            };
            match next.context("watching pods")? {
                // The server ended the watch: resume where it stopped, as a client does.
                None => {
                    events = api
                        .watch(&WatchParams::default().timeout(290), &rv)
                        .await
                        .context("watching pods")?
                        .boxed()
                }
                Some(WatchEvent::Added(pod) | WatchEvent::Modified(pod)) => {
                    rv = pod.metadata.resource_version.clone().unwrap_or_default();
                    let is_ready = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                    if is_ready {
                        ready
                            .lock()
                            .await
                            .entry(pod.metadata.name.unwrap_or_default())
                            .or_insert_with(Instant::now);
                    }
                }
                Some(WatchEvent::Bookmark(b)) => rv = b.metadata.resource_version,
                Some(WatchEvent::Deleted(_)) => {}
                Some(WatchEvent::Error(e)) => bail!(
                    "the pod watch failed: {} ({} {})",
                    e.message,
                    e.code,
                    e.reason
                ),
            }
        }
        anyhow::Ok(())
    };
    let (created, watched) = tokio::join!(creates, watching);
    created?;
    watched?;
    let sent = sent.lock().await;
    let ready = ready.lock().await;
    Ok(ready
        .iter()
        .filter_map(|(name, at)| sent.get(name).map(|s| at.duration_since(*s)))
        .collect())
}

async fn cleanup(client: &kube::Client, ns: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete(ns, &DeleteParams::default()).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while namespaces.get_opt(ns).await?.is_some() {
        if Instant::now() > deadline {
            bail!("namespace {ns} not gone within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
