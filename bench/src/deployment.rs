//! `kybern bench deployment`: how fast the workload controllers roll a large
//! Deployment out on simulated nodes, and how much memory they need for it.
//!
//! The benchmark:
//!
//! 1. starts `kybern server --disable controllers,scheduler` (fresh temp data
//!    dir, embedded storage, `--listen 127.0.0.1:0`): the API server alone;
//! 2. starts the loops as separate children, so each figure is one process's
//!    own: the controller process runs every loop `kybern server` runs except
//!    the scheduler (`kybern controller --disable scheduler`; with
//!    `--workload-loops-only`, just `kybern controller replicaset deployment`),
//!    then `kybern controller scheduler` and `kybern agent --simulate N`
//!    (`--nodes`, 100 Ready nodes that move bound pods to Running and Ready
//!    without containers). `--binary PATH` runs these children and the server
//!    from another `kybern` build (to measure main's code with this benchmark);
//! 3. creates a Deployment of `--replicas` (1000) pods (RollingUpdate, upstream
//!    defaults of 25 % surge and 25 % unavailable) and times it from the create
//!    to the status reporting every replica updated, ready and available;
//! 4. changes the image and times from the patch to the same all-updated,
//!    all-available status (the rolling update);
//! 5. reports both times and the peak RSS (VmHWM) of the controller process,
//!    the scheduler, the simulator and the API server.
//!
//! With `--in-server`, `kybern server` runs every loop and the scheduler itself, as
//! it does by default, and the one figure for it is the whole server's.
//!
//! Upstream publishes no figure for this shape, so there are no ratios. Every
//! child is killed by pid at the end, on error and on Ctrl-C. Nothing here
//! asserts on timings.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::procs::{self, Proc, TempDir};
use super::report::{Report, Row, Unit, MIB};
use super::workload;

#[derive(Args)]
pub(crate) struct DeploymentArgs {
    /// Simulated nodes.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Replicas of the Deployment.
    #[arg(long, default_value_t = 1000)]
    replicas: i32,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Keep the temp dirs (data, logs).
    #[arg(long)]
    keep: bool,
    /// The `kybern` binary to run the server, controllers, scheduler and simulator
    /// from; this executable when not given.
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Run only the replicaset and deployment loops in the controller process
    /// instead of every loop `kybern server` runs (minus the scheduler).
    #[arg(long)]
    workload_loops_only: bool,
    /// Run every loop and the scheduler inside `kybern server` (its default), and
    /// measure that one process instead of separate controller and scheduler processes.
    #[arg(long, conflicts_with = "workload_loops_only")]
    in_server: bool,
}

const NAMESPACE: &str = "default";
const NAME: &str = "bench";

pub(crate) async fn run(args: DeploymentArgs) -> Result<()> {
    let started = Instant::now();
    let progress = |what: &str| eprintln!("[{:>6.1}s] {what}", started.elapsed().as_secs_f64());
    println!("# kybern bench deployment");
    println!();
    println!(
        "A Deployment of {} replicas on {} simulated nodes, {} cores, load average at start {}",
        args.replicas,
        args.nodes,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        super::loadavg()
    );
    let tmp = TempDir::new("deployment", args.keep)?;
    let data_dir = tmp.sub("data")?;
    progress(&format!("temp dir {}", tmp.path.display()));
    let exe = match &args.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("finding the kybern executable")?,
    };
    progress(&format!("children run {}", exe.display()));
    // `none` names no part: the server then runs every loop and the scheduler.
    let disable = if args.in_server {
        "none"
    } else {
        "controllers,scheduler"
    };
    let server =
        procs::start_server_from(&exe, &data_dir, None, &tmp.path.join("server.log"), disable)
            .await?;
    progress(&format!(
        "server ready at {} (pid {})",
        server.url,
        server.proc.pid()
    ));
    let kubeconfig = data_dir.join("admin.kubeconfig");
    let loops: &[&str] = if args.workload_loops_only {
        &["replicaset", "deployment"]
    } else {
        &["--disable", "scheduler"]
    };
    let (controllers, scheduler) = if args.in_server {
        (None, None)
    } else {
        let controllers = procs::start_controller_from(
            &exe,
            loops,
            &kubeconfig,
            &tmp.path.join("controllers.log"),
        )?;
        let scheduler = procs::start_controller_from(
            &exe,
            &["scheduler"],
            &kubeconfig,
            &tmp.path.join("scheduler.log"),
        )?;
        (Some(controllers), Some(scheduler))
    };
    let agent = start_simulator(&exe, args.nodes, &kubeconfig, &tmp.path.join("agent.log"))?;
    progress(&format!(
        "loops {}, {} simulated nodes (pid {}) started",
        match (&controllers, &scheduler) {
            (Some(c), Some(s)) =>
                format!("in pid {} and the scheduler in pid {}", c.pid(), s.pid()),
            _ => "and the scheduler inside the server".to_string(),
        },
        args.nodes,
        agent.pid()
    ));

    let res = measure(&args, &kubeconfig, &progress).await;
    let peak = |p: Option<&Proc>| p.map(|p| procs::peak_rss_bytes(p.pid()));
    let peaks = [
        peak(controllers.as_ref()),
        peak(scheduler.as_ref()),
        peak(Some(&agent)),
        peak(Some(&server.proc)),
    ];
    for p in [controllers, scheduler, Some(agent), Some(server.proc)]
        .into_iter()
        .flatten()
    {
        p.stop().await;
    }
    let (ready, rolled) = res.with_context(|| {
        format!(
            "see the logs in {} (run with --keep to keep them)",
            tmp.path.display()
        )
    })?;

    let mut report = Report::new(format!(
        "Deployment of {} replicas on {} simulated nodes",
        args.replicas, args.nodes
    ));
    report.row(Row::new(
        "create to all replicas ready and available",
        ready.as_secs_f64(),
        None,
        Unit::Secs,
    ));
    report.row(Row::new(
        "rolling update to a new image, to all available",
        rolled.as_secs_f64(),
        None,
        Unit::Secs,
    ));
    let controller_row = if args.workload_loops_only {
        "controller process peak RSS (replicaset + deployment)"
    } else {
        "controller process peak RSS (every loop but the scheduler)"
    };
    let server_row = if args.in_server {
        "kybern server peak RSS (API server, every loop and the scheduler)"
    } else {
        "API server peak RSS"
    };
    let names = [
        controller_row,
        "scheduler peak RSS",
        "simulated nodes (kybern agent --simulate) peak RSS",
        server_row,
    ];
    for (name, peak) in names.into_iter().zip(peaks) {
        if let Some(peak) = peak {
            report.row(Row::new(name, peak? as f64 / MIB, None, Unit::MiB));
        }
    }
    report.note("upstream publishes no figure for this shape; times are wall-clock on this machine, one run");
    report.print();
    Ok(())
}

/// Starts `kybern agent --simulate N --kubeconfig K` as its own process.
fn start_simulator(exe: &Path, nodes: usize, kubeconfig: &Path, log: &Path) -> Result<Proc> {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["agent", "--simulate", &nodes.to_string(), "--kubeconfig"])
        .arg(kubeconfig);
    procs::spawn(cmd, "kybern agent --simulate", log)
}

async fn measure(
    args: &DeploymentArgs,
    kubeconfig: &Path,
    progress: &dyn Fn(&str),
) -> Result<(Duration, Duration)> {
    let client = kube::Client::try_from(workload::client_config(kubeconfig).await?)?;
    let timeout = Duration::from_secs(args.timeout);
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for(timeout, "the simulated nodes to register", || async {
        let n = nodes.list(&ListParams::default()).await?.items.len();
        Ok((n >= args.nodes).then_some(()).ok_or(format!("{n} nodes")))
    })
    .await?;
    progress(&format!(
        "{} nodes registered; creating the Deployment",
        args.nodes
    ));

    let api: Api<Deployment> = Api::namespaced(client, NAMESPACE);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": NAME},
        "spec": {
            "replicas": args.replicas,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": {"app": NAME}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1",
                    "resources": {"requests": {"cpu": "10m", "memory": "10Mi"}}}]},
            },
        },
    }))?;
    let t = Instant::now();
    api.create(&PostParams::default(), &d)
        .await
        .context("creating the Deployment")?;
    rolled_out(&api, args.replicas, timeout, progress).await?;
    let ready = t.elapsed();
    progress(&format!(
        "all {} replicas available after {:.1} s; changing the image",
        args.replicas,
        ready.as_secs_f64()
    ));

    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}});
    let t = Instant::now();
    api.patch(NAME, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .context("changing the image")?;
    rolled_out(&api, args.replicas, timeout, progress).await?;
    let rolled = t.elapsed();
    progress(&format!(
        "rolling update complete after {:.1} s",
        rolled.as_secs_f64()
    ));
    Ok((ready, rolled))
}

/// Waits for the Deployment's status to show the current generation with every
/// replica updated, ready and available, and no old ones left.
async fn rolled_out(
    api: &Api<Deployment>,
    replicas: i32,
    timeout: Duration,
    progress: &dyn Fn(&str),
) -> Result<()> {
    let last_report = std::cell::Cell::new(Instant::now());
    wait_for(timeout, "the rollout", || async {
        let d = api.get(NAME).await?;
        let s = d.status.unwrap_or_default();
        let want = Some(replicas);
        let done = s.observed_generation == d.metadata.generation
            && s.replicas == want
            && s.updated_replicas == want
            && s.available_replicas == want
            && s.unavailable_replicas.unwrap_or(0) == 0;
        let state = format!(
            "replicas {} updated {} ready {} available {}",
            s.replicas.unwrap_or(0),
            s.updated_replicas.unwrap_or(0),
            s.ready_replicas.unwrap_or(0),
            s.available_replicas.unwrap_or(0)
        );
        if !done && last_report.get().elapsed() > Duration::from_secs(5) {
            progress(&state);
            last_report.set(Instant::now());
        }
        Ok(done.then_some(()).ok_or(state))
    })
    .await
}

/// Polls `check` every 50 ms until it is Ok(Ok), or fails after `timeout`
/// with the last state it reported.
async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Result<(), String>, kube::Error>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match check().await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(state)) => last = state,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("timed out after {timeout:?} waiting for {what}; last: {last}")
}
