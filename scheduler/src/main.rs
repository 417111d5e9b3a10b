//! `kybern-scheduler`: the scheduler control loop alone, in a binary that links nothing
//! else (no apiserver, agent or other control loops), so a cluster that runs the
//! scheduler as its own process pays only for its code. It runs exactly what
//! `kybern controller scheduler` runs: `scheduler::LOOP` under its lease.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "kybern-scheduler",
    version,
    about = "kybern's scheduler as its own process (same code as `kybern controller scheduler`)"
)]
struct Cli {
    /// Kubeconfig to reach the API server with.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// A KubeSchedulerConfiguration file (plugin weights, scoring strategy,
    /// percentageOfNodesToScore).
    #[arg(long)]
    scheduler_config: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    // One thread, so one malloc arena. Memory freed at the top of the heap goes back at
    // 128 KiB instead of glibc's threshold that grows with the largest freed block, and
    // blocks from 64 KiB (a list page's body, a hash table of every pod) are mapped
    // apart and returned whole when freed. `kybern bench scheduler`, 3000 pods: peak
    // RSS 15.6 -> 14.9 MiB.
    controllers::runtime::reexec_with_malloc_settings(&[
        ("MALLOC_ARENA_MAX", "1"),
        ("MALLOC_TRIM_THRESHOLD_", "131072"),
        ("MALLOC_MMAP_THRESHOLD_", "65536"),
        ("MALLOC_TOP_PAD_", "0"),
    ]);
    // A level only (error, warn, info, debug, trace): EnvFilter's directive parser
    // compiles regular expressions at start-up, code and heap this process does not
    // otherwise need.
    let level = std::env::var("KYBERN_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::WARN);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = cli
        .scheduler_config
        .as_deref()
        .map(|p| {
            scheduler::config::SchedulerConfig::from_file(p)
                .with_context(|| format!("reading the scheduler configuration {}", p.display()))
        })
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let ctx =
            controllers::runtime::context_of(&cli.kubeconfig, controllers::runtime::SCHEDULER)
                .await?
                .with_setting(config);
        tokio::select! {
            () = controllers::runtime::run_one(scheduler::LOOP, ctx) => Ok(()),
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C"),
        }
    })
}
