//! `kybern bench scheduler`: scheduling throughput and the scheduler's own
//! memory, with the workload shape of the upstream kube-scheduler figures.
//!
//! For each size (`--nodes`/`--pods`, 1000 / 3000, then 5000 nodes / 10000
//! pods unless `--skip-large`) the benchmark:
//!
//! 1. starts `kybern server --disable scheduler,controllers` (fresh temp data
//!    dir, embedded storage, `--listen 127.0.0.1:0`);
//! 2. creates the Ready Node objects through the API from 16 clients (cpu 32,
//!    memory 128Gi, pods 110; status written through `nodes/status`);
//! 3. creates all the pods (10m cpu, 10Mi memory, no nodeName) from 16
//!    concurrent clients while no scheduler runs, so pod creation cannot be
//!    what limits the figure;
//! 4. starts the scheduler as a separate child, so the memory figures are the
//!    scheduler process's alone (not the apiserver's, not the benchmark's): the
//!    standalone `kybern-scheduler --kubeconfig <dir>/admin.kubeconfig` (the
//!    binary a user runs as the cluster's scheduler, like kube-scheduler; found
//!    next to this executable or in `target/release-small/`, see
//!    `--scheduler-binary`), and at the default size also `kybern controller
//!    scheduler` from the all-in-one binary (same scheduling code, a 25 MB
//!    executable), for comparison only;
//! 5. watches pods and reports (a) launch to the last pod seen with
//!    `spec.nodeName` set — upstream's "pods created first, then kube-scheduler
//!    started" row, which includes start-up, leader election and cache sync —
//!    and (b) the binding rate from the first to the last bound pod, the
//!    scheduler's steady throughput; plus the scheduler's peak RSS (VmHWM) and
//!    its RSS at the end (VmRSS).
//!
//! The large size runs by default; `--skip-large` leaves it out and
//! `--also-large` asks for it explicitly (it wins over `--skip-large`). Its
//! upstream figure (680 pods/s) comes from scheduler_perf with an in-process
//! apiserver on large machines, and there is no upstream memory figure for it,
//! so it is for scale only.
//!
//! Every child is killed by pid at the end, on error and on Ctrl-C (the
//! `Proc` values kill on drop). Nothing here asserts on timings.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{
    Container, Node, NodeCondition, NodeStatus, Pod, PodSpec, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;

use super::procs::{self, TempDir};
use super::report::{Report, Row, Target, Unit, MIB};
use super::workload;

#[derive(Args)]
pub(crate) struct SchedulerArgs {
    /// Ready Node objects for the default size.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Pods for the default size.
    #[arg(long, default_value_t = 3000)]
    pods: usize,
    /// Also run 5000 nodes / 10000 pods (the published scheduler_perf shape);
    /// the default, unless --skip-large.
    #[arg(long)]
    also_large: bool,
    /// Do not run the 5000 nodes / 10000 pods size.
    #[arg(long)]
    skip_large: bool,
    /// Concurrent creators (nodes and pods), each its own client.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Keep the temp dirs (data, logs).
    #[arg(long)]
    keep: bool,
    /// Which scheduler process to measure: the standalone `kybern-scheduler`, `kybern
    /// controller scheduler` from this all-in-one binary, or both (the all-in-one one
    /// at the default size only).
    #[arg(long, value_enum, default_value = "both")]
    binary: BinaryArg,
    /// The standalone scheduler executable (default: `kybern-scheduler` next to this
    /// executable, or in `target/release-small/`).
    #[arg(long, value_name = "PATH")]
    scheduler_binary: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BinaryArg {
    Standalone,
    AllInOne,
    Both,
}

/// The scheduler process a run measures.
enum Binary {
    /// `kybern-scheduler`: what the targets are for.
    Standalone(std::path::PathBuf),
    /// `kybern controller scheduler`, the same loop inside the all-in-one binary.
    AllInOne,
}

impl Binary {
    fn label(&self) -> &'static str {
        match self {
            Binary::Standalone(_) => "kybern-scheduler (standalone binary)",
            Binary::AllInOne => {
                "kybern controller scheduler (all-in-one kybern binary, not compared with targets)"
            }
        }
    }

    fn targeted(&self) -> bool {
        matches!(self, Binary::Standalone(_))
    }

    async fn start(&self, kubeconfig: &Path, log: &Path) -> Result<procs::Proc> {
        match self {
            Binary::Standalone(exe) => procs::start_scheduler(exe, kubeconfig, log).await,
            Binary::AllInOne => procs::start_controller(&["scheduler"], kubeconfig, log).await,
        }
    }
}

/// Upstream kube-scheduler figures (see the reference document).
mod upstream {
    /// `--kube-api-qps=5000`, 1000 nodes, 3000 pods created while it runs.
    pub(super) const PODS_PER_S: f64 = 282.0;
    /// Published scheduler_perf minimum at 5000 nodes / 10k pods.
    pub(super) const LARGE_PODS_PER_S: f64 = 680.0;
    /// Pods created first, then kube-scheduler started: 3000 pods bound 10.7 s after launch.
    pub(super) const LAUNCH_PODS_PER_S: f64 = 3000.0 / 10.7;
    /// Peak RSS 108–174 MiB: the lower end, so the target is the stricter one.
    pub(super) const PEAK_RSS_MIB: f64 = 108.0;
    /// RSS after the run 104–150 MiB: the lower end.
    pub(super) const END_RSS_MIB: f64 = 104.0;
}

const CPU: &str = "32";
const MEMORY: &str = "128Gi";
const PODS_PER_NODE: &str = "110";

pub(crate) async fn run(args: SchedulerArgs) -> Result<()> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("# kybern bench scheduler");
    println!();
    println!(
        "Ready nodes of cpu {CPU} / memory {MEMORY} / pods {PODS_PER_NODE}, pods of 10m / 10Mi, \
         {} concurrent creators, {} cores, load average at start {}",
        args.concurrency,
        cores,
        super::loadavg()
    );
    let started = Instant::now();
    // Fail before any work when the standalone binary is missing.
    let standalone = match args.binary {
        BinaryArg::AllInOne => None,
        _ => Some(match &args.scheduler_binary {
            Some(p) => p.clone(),
            None => procs::find_scheduler_binary()?,
        }),
    };
    if let Some(p) = &standalone {
        println!("Standalone scheduler: {}", p.display());
    }
    let mut runs = Vec::new();
    for (nodes, pods, large) in [(args.nodes, args.pods, false), (5000, 10000, true)] {
        if large && args.skip_large && !args.also_large {
            continue;
        }
        if let Some(p) = &standalone {
            runs.push((nodes, pods, large, Binary::Standalone(p.clone())));
        }
        if args.binary == BinaryArg::AllInOne || (args.binary == BinaryArg::Both && !large) {
            runs.push((nodes, pods, large, Binary::AllInOne));
        }
    }
    for (nodes, pods, large, binary) in runs {
        let report = one_size(&args, nodes, pods, large, &binary, started).await?;
        report.print();
    }
    Ok(())
}

fn progress(started: Instant, scheduler: Option<u32>, what: &str) {
    let rss = match scheduler.map(procs::rss_bytes) {
        Some(Ok(b)) => format!(" [scheduler RSS {:.1} MiB]", b as f64 / MIB),
        _ => String::new(),
    };
    eprintln!("[{:>6.1}s] {what}{rss}", started.elapsed().as_secs_f64());
}

/// RssAnon and RssFile (kB) from /proc/<pid>/status.
fn rss_split(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find_map(|l| {
            l.strip_prefix(name)?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    Some((field("RssAnon:")?, field("RssFile:")?))
}

fn quantity(s: &str) -> Quantity {
    Quantity(s.to_string())
}

fn node_status() -> NodeStatus {
    let resources = [("cpu", CPU), ("memory", MEMORY), ("pods", PODS_PER_NODE)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), quantity(v)))
        .collect::<std::collections::BTreeMap<_, _>>();
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("KubeletReady".into()),
            message: Some("kybern bench scheduler".into()),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn pod(name: String) -> Pod {
    let requests = [("cpu", "10m"), ("memory", "10Mi")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), quantity(v)))
        .collect();
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some("registry.k8s.io/pause:3.9".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(requests),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn one_size(
    args: &SchedulerArgs,
    nodes: usize,
    pods: usize,
    large: bool,
    binary: &Binary,
    started: Instant,
) -> Result<Report> {
    let tag = format!("{nodes} nodes / {pods} pods");
    let mut report = Report::new(format!(
        "{}, {tag} (upstream: kube-scheduler v1.28, {})",
        binary.label(),
        if large {
            "published scheduler_perf minimum"
        } else {
            "--kube-api-qps=5000, same machine"
        }
    ));
    let tmp = TempDir::new("scheduler", args.keep)?;
    let data_dir = tmp.sub("data")?;
    let server_log = tmp.path.join("server.log");
    let sched_log = tmp.path.join("scheduler.log");
    progress(
        started,
        None,
        &format!("{tag}: temp dir {}", tmp.path.display()),
    );
    let server =
        procs::start_server_with(&data_dir, None, &server_log, "scheduler,controllers").await?;
    progress(
        started,
        None,
        &format!(
            "{tag}: server ready at {} (pid {})",
            server.url,
            server.proc.pid()
        ),
    );
    let kubeconfig = data_dir.join("admin.kubeconfig");
    let mut scheduler = None;
    let res = measure(
        args,
        binary,
        &kubeconfig,
        &sched_log,
        &mut scheduler,
        nodes,
        pods,
        large,
        started,
        &mut report,
    )
    .await;
    let Some(scheduler) = scheduler else {
        server.proc.stop().await;
        return Err(res
            .err()
            .unwrap_or_else(|| anyhow::anyhow!("the scheduler was never started")));
    };
    let spid = scheduler.pid();
    let end_rss = procs::rss_bytes(spid);
    let peak_rss = procs::peak_rss_bytes(spid);
    let split = rss_split(spid);
    let server_rss = procs::rss_bytes(server.proc.pid());
    scheduler.stop().await;
    server.proc.stop().await;
    res?;

    let (up_peak, up_end) = if large {
        (None, None)
    } else {
        (Some(upstream::PEAK_RSS_MIB), Some(upstream::END_RSS_MIB))
    };
    let peak = peak_rss? as f64 / MIB;
    let end = end_rss? as f64 / MIB;
    let mut row = Row::new("scheduler peak RSS (VmHWM)", peak, up_peak, Unit::MiB);
    if !large && binary.targeted() {
        row = row.target(Target::Ratio(10.0));
    }
    report.row(row);
    let mut row = Row::new("scheduler RSS at the end", end, up_end, Unit::MiB);
    if !large && binary.targeted() {
        row = row.target(Target::Ratio(10.0));
    }
    report.row(row);
    if large {
        report.note("no upstream memory figure at 5000 nodes / 10k pods");
    } else {
        report.note(
            "upstream RSS: 104–150 MiB at the end, 108–174 MiB peak; compared with the lower ends",
        );
    }
    if let Some((anon, file)) = split {
        report.note(format!(
            "scheduler RSS at the end = {:.1} MiB anonymous (heap, stacks) + {:.1} MiB file-backed \
             (pages of its executable and libc mapped in, shared with the page cache)",
            anon as f64 / 1024.0,
            file as f64 / 1024.0
        ));
    }
    if let Ok(b) = server_rss {
        report.note(format!(
            "kybern server RSS at the end (apiserver + storage, not compared): {:.1} MiB",
            b as f64 / MIB
        ));
    }
    for (name, log) in [("server", &server_log), ("scheduler", &sched_log)] {
        let problems = procs::log_problems(log);
        if problems.is_empty() {
            report.note(format!("{name} log: no warnings or errors"));
        } else {
            report.note(format!(
                "{name} log: {} warning/error lines; first ones:",
                problems.len()
            ));
            for p in problems.iter().take(3) {
                report.note(format!("  {p}"));
            }
        }
    }
    report.note(format!("load average at the end: {}", super::loadavg()));
    progress(started, None, &format!("{tag}: done"));
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &SchedulerArgs,
    binary: &Binary,
    kubeconfig: &Path,
    sched_log: &Path,
    slot: &mut Option<procs::Proc>,
    nodes: usize,
    pods: usize,
    large: bool,
    started: Instant,
    report: &mut Report,
) -> Result<()> {
    let cfg = workload::client_config(kubeconfig).await?;
    let clients = workload::clients(&cfg, args.concurrency.max(1))?;
    let main = clients[0].clone();
    workload::warm_up(&clients, "default").await?;

    progress(
        started,
        None,
        &format!(
            "creating {nodes} Ready nodes from {} clients",
            clients.len()
        ),
    );
    let status = Arc::new(serde_json::json!({ "status": node_status() }));
    let res = workload::parallel(&clients, nodes, move |c, i| {
        let status = status.clone();
        async move {
            let api: Api<Node> = Api::all(c);
            let name = format!("node-{i:05}");
            let node = Node {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    ..Default::default()
                },
                ..Default::default()
            };
            api.create(&PostParams::default(), &node).await?;
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&*status))
                .await?;
            Ok(())
        }
    })
    .await;
    if let Some(e) = res.error_note("node create") {
        bail!(e);
    }
    report.note(format!(
        "{nodes} nodes created (create + status) in {:.2} s",
        res.wall.as_secs_f64()
    ));

    // All pods exist before the scheduler starts: its figure is not bounded by
    // how fast one client can create pods.
    progress(
        started,
        None,
        &format!(
            "creating {pods} pods from {} clients (no scheduler running)",
            clients.len()
        ),
    );
    let created = workload::parallel(&clients, pods, move |c, i| async move {
        Api::<Pod>::namespaced(c, "default")
            .create(&PostParams::default(), &pod(format!("pod-{i:05}")))
            .await
            .map(|_| ())
    })
    .await;
    if let Some(e) = created.error_note("pod create") {
        bail!(e);
    }
    report.note(format!(
        "{pods} pods created before the scheduler started, in {:.2} s ({:.0}/s; create p50 {:.2} ms, p99 {:.2} ms)",
        created.wall.as_secs_f64(),
        created.per_sec(),
        created.latencies.p50_ms(),
        created.latencies.p99_ms(),
    ));

    // Count bound pods as a watcher sees them, from the first and last binding.
    let (tx, mut rx) = watch::channel(0usize);
    let counter = {
        let api: Api<Pod> = Api::namespaced(main.clone(), "default");
        tokio::spawn(async move {
            let mut seen = HashSet::new();
            let mut s = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
            let (mut first, mut last) = (None, None);
            loop {
                match s.try_next().await {
                    Ok(Some(Event::Apply(p) | Event::InitApply(p))) => {
                        if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
                            && seen.insert(p.metadata.name.clone().unwrap_or_default())
                        {
                            let now = Instant::now();
                            first.get_or_insert(now);
                            last = Some(now);
                            let _ = tx.send(seen.len());
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => eprintln!("  pod watch: {e} (the watcher retries)"),
                }
                if seen.len() >= pods {
                    break;
                }
            }
            first.zip(last)
        })
    };
    // Let the watch open (and list the pending pods) before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let t0 = Instant::now();
    let scheduler = slot.insert(binary.start(kubeconfig, sched_log).await?);
    let spid = scheduler.pid();
    progress(
        started,
        Some(spid),
        &format!("scheduler started (pid {spid})"),
    );
    // Progress while waiting; a hang guard (no new binding for 60 s), not a timed assertion.
    let mut last_count = 0;
    let mut last_change = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = rx.changed() => {}
            _ = ticker.tick() => {
                let n = *rx.borrow();
                progress(started, Some(spid), &format!("  {n}/{pods} bound"));
            }
        }
        let n = *rx.borrow();
        if n >= pods {
            break;
        }
        if n != last_count {
            last_count = n;
            last_change = Instant::now();
        } else if last_change.elapsed() > Duration::from_secs(60) {
            counter.abort();
            bail!("no pod bound for 60 s ({n}/{pods} bound)");
        }
        if let Some(st) = scheduler.exited() {
            counter.abort();
            bail!("the scheduler exited ({st}) with {n}/{pods} pods bound");
        }
    }
    let (first_bound, last_bound) = counter
        .await
        .context("pod watcher")?
        .context("no pod bound")?;
    let all = last_bound.duration_since(t0);
    let up = if large {
        upstream::LARGE_PODS_PER_S
    } else {
        upstream::PODS_PER_S
    };
    let binding = last_bound.duration_since(first_bound).as_secs_f64();
    let mut row = Row::new(
        format!("pods bound per second ({pods} pre-created pods, first to last binding)"),
        pods as f64 / binding,
        Some(up),
        Unit::PerSec,
    );
    if binary.targeted() {
        row = row.target(Target::Ratio(3.0));
    }
    report.row(row);
    report.row(Row::new(
        format!("pods bound per second (scheduler launch to all {pods} bound)"),
        pods as f64 / all.as_secs_f64(),
        if large {
            None
        } else {
            Some(upstream::LAUNCH_PODS_PER_S)
        },
        Unit::PerSec,
    ));
    report.row(Row::new(
        "  scheduler launch to last pod bound",
        all.as_secs_f64(),
        None,
        Unit::Secs,
    ));
    report.row(Row::new(
        "  scheduler launch to first pod bound (start-up, lease, cache sync)",
        first_bound.duration_since(t0).as_secs_f64(),
        None,
        Unit::Secs,
    ));
    if large {
        report.note(
            "upstream 680 pods/s is scheduler_perf's published minimum on large machines with an in-process apiserver; for scale only",
        );
    } else {
        report.note(
            "upstream on the same 2-core machine: 282–283 pods/s with pods created while it ran (creation was its limit); \
             pods created first, then kube-scheduler started: 3000 bound 10.7 s after launch (~280 pods/s)",
        );
    }
    progress(
        started,
        Some(spid),
        &format!("all {pods} pods bound after {:.2} s", all.as_secs_f64()),
    );
    Ok(())
}
