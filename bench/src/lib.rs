//! `kybern bench api`: a benchmark of the API server, with the same workload
//! shape as the upstream reference figures (kube-apiserver + etcd measured on
//! the same kind of machine), printed side by side with them.
//!
//! `kybern bench scheduler` (see `scheduler.rs`) does the same for the
//! scheduler: throughput and the scheduler process's own memory.
//!
//! # Running it
//!
//! ```text
//! cargo build --release
//! target/release/kybern bench api                       # both backends, fresh servers
//! target/release/kybern bench api --storage embedded
//! target/release/kybern bench api --kubeconfig K [--server-pid PID] [--data-dir DIR]
//! ```
//!
//! Without `--kubeconfig`, for each storage backend (`--storage
//! embedded|etcd|both`, default both) the benchmark starts its own `kybern
//! server` child (this same executable, a temp data dir, `--listen
//! 127.0.0.1:0`); for etcd it first starts `/usr/bin/etcd` on free loopback
//! ports with a temp data dir. Every child is stopped by pid when the backend
//! is done, and killed if anything fails (or on Ctrl-C). With `--kubeconfig`
//! it measures that server instead; RSS needs `--server-pid`, disk usage
//! needs `--data-dir`, and cold start is skipped.
//!
//! # Workload
//!
//! In a fresh namespace `bench-<random>`:
//!
//! 1. create `--objects` (2000) ConfigMaps of ~1 KiB data from
//!    `--concurrency` (8) clients, each client its own `kube::Client` and so
//!    its own connections: objects/s, p50/p99 latency;
//! 2. GET one object from one client (p50/p99, req/s), then random objects
//!    from 8 clients (req/s, p99);
//! 3. LIST all objects: consistent (no resourceVersion), resourceVersion=0,
//!    and a paginated walk with limit=500: p50/p99 of each;
//! 4. watch delivery: 1 and then 50 watchers opened from the list's
//!    resourceVersion, ~200 sequential updates of one object; per update and
//!    watcher, the time from the PUT response reaching the benchmark to the
//!    event reaching the watcher: p50/p99;
//! 5. PUT with resourceVersion of every object from 8 clients (updates/s,
//!    p99), then a JSON merge PATCH of every object (patches/s, p99);
//! 6. deletecollection, timed until a LIST comes back empty;
//! 7. server RSS (VmRSS of kybern, plus etcd's for the etcd backend) right
//!    after `ready` and after the run; disk usage (like `du`) of the data dir
//!    (etcd's data dir for etcd);
//! 8. cold start: launch to the `ready` line with a fresh data dir (median of
//!    `--starts`, 5) and with the existing data dir after the run (2000
//!    ConfigMaps recreated first so there is data to load);
//! 9. security (`api_security.rs`, `api_webhook.rs`, before the cold starts): create,
//!    GET and LIST as a non-admin user bound by a RoleBinding in a namespace with
//!    LimitRange, ResourceQuota and PodSecurity labels beside the same phases as the
//!    admin; then one client's creates without and with a loopback TLS validating
//!    webhook (the call's added latency). Before any server, `authz.rs` times the RBAC
//!    authorizer's decisions over 1,000 roles and 10,000 bindings.
//!
//! Results go to stdout as one table per backend, `figure | kybern | upstream
//! | ratio | target`, with ratios oriented so that >1 means kybern is better
//! (throughput: ours/theirs; latency, memory, disk, time: theirs/ours).
//! Progress goes to stderr. Nothing here asserts on timings: machines are
//! noisy (15–25 % between identical runs), so compare several runs.

mod api_security;
mod api_webhook;
mod authz;
mod deployment;
mod dns;
mod io;
mod node;
mod pods;
mod procs;
mod report;
mod scheduler;
mod services;
mod workload;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};

use procs::TempDir;
use report::{Report, Row, Target, Unit, MIB};

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Benchmark the API server against the upstream reference figures.
    Api(ApiArgs),
    /// Benchmark the scheduler (throughput and its own memory) against kube-scheduler: the
    /// standalone `kybern-scheduler` (build it with `cargo build --profile release-small -p
    /// kybern-scheduler`) and, for comparison, `kybern controller scheduler`.
    Scheduler(scheduler::SchedulerArgs),
    /// Roll a large Deployment out on simulated nodes: times and the controllers' memory.
    Deployment(deployment::DeploymentArgs),
    /// Pod startup latency with real containers (root): create to Ready for 1, 10 and 30
    /// pods at once, and the agent's memory.
    Pods(pods::PodsArgs),
    /// Pod I/O through the API server with real containers (root): exec round trip, log
    /// follow latency and throughput, port-forward throughput and set-up, agent memory.
    Io(io::IoArgs),
    /// The service proxy at scale (root): N selector-less Services on one agent, the time
    /// from an endpoint change to traffic reaching the new endpoint, the agent's memory.
    Services(services::ServicesArgs),
    /// The cluster DNS server at scale: 10,000 Services and 50,000 endpoints, queries/s
    /// and latency under dnsperf, and its memory beside CoreDNS's.
    Dns(dns::DnsArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StorageChoice {
    Embedded,
    Etcd,
    Both,
}

#[derive(Args)]
struct ApiArgs {
    /// Benchmark the server this kubeconfig points at instead of starting servers.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Which storage backends to start servers with (without --kubeconfig).
    #[arg(long, value_enum, default_value = "both")]
    storage: StorageChoice,
    /// Number of ConfigMaps.
    #[arg(long, default_value_t = 2000)]
    objects: usize,
    /// Concurrent clients for create, PUT, PATCH and parallel GET.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// With --kubeconfig: the server's pid, to report its RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// With --kubeconfig: the server's data dir, to report its disk usage.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Launches per cold-start figure.
    #[arg(long, default_value_t = 5)]
    starts: usize,
    /// Timed GETs per GET figure.
    #[arg(long, default_value_t = 2000)]
    gets: usize,
    /// Timed LISTs (or paginated walks) per LIST figure.
    #[arg(long, default_value_t = 40)]
    lists: usize,
    /// Sequential updates per watch figure.
    #[arg(long, default_value_t = 200)]
    updates: usize,
    /// Keep the temp dirs (data, logs) of started servers.
    #[arg(long)]
    keep: bool,
}

pub async fn run(args: BenchArgs) -> Result<()> {
    match args.what {
        BenchCommand::Api(a) => {
            tokio::select! {
                r = api(a) => r,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; started processes are killed"),
            }
        }
        BenchCommand::Scheduler(a) => {
            tokio::select! {
                r = scheduler::run(a) => r,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; started processes are killed"),
            }
        }
        BenchCommand::Deployment(a) => {
            tokio::select! {
                r = deployment::run(a) => r,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; started processes are killed"),
            }
        }
        BenchCommand::Io(a) => {
            tokio::select! {
                r = io::run(a) => r,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; started processes are killed; run `kybern agent --reset --bridge kybbench0 --agent-dir DIR` for the node"),
            }
        }
        BenchCommand::Services(a) => {
            tokio::select! {
                r = services::run(a) => r,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; started processes are killed; run `kybern agent --reset --bridge kbb0 --agent-dir DIR` and `ip netns del kbb-back kbb-cli`"),
            }
        }
        BenchCommand::Dns(a) => {
            tokio::select! {
                r = dns::run(a) => r,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; dnsperf is stopped with the bench"),
            }
        }
        BenchCommand::Pods(a) => {
            tokio::select! {
                r = pods::run(a) => r,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; started processes are killed; run `kybern agent --reset --bridge kybbench0 --agent-dir DIR` for the node"),
            }
        }
    }
}

/// Upstream kube-apiserver + etcd figures (see the reference document).
mod upstream {
    pub(crate) const CREATE_PER_S: f64 = 824.0;
    pub(crate) const CREATE_P50: f64 = 8.7;
    pub(crate) const CREATE_P99: f64 = 24.7;
    pub(crate) const GET_P50: f64 = 1.09;
    pub(crate) const GET_P99: f64 = 3.1;
    pub(crate) const GET_PER_S: f64 = 863.0;
    pub(crate) const GET8_PER_S: f64 = 1883.0;
    pub(crate) const GET8_P99: f64 = 13.0;
    pub(crate) const LIST_P50: f64 = 62.6;
    pub(crate) const LIST_P99: f64 = 106.0;
    pub(crate) const LIST_RV0_P50: f64 = 33.6;
    pub(crate) const LIST_RV0_P99: f64 = 40.7;
    pub(crate) const LIST_PAGED_P50: f64 = 71.0;
    pub(crate) const LIST_PAGED_P99: f64 = 100.0;
    pub(crate) const WATCH1_P99: f64 = 1.55;
    pub(crate) const WATCH50_P50: f64 = 1.7;
    pub(crate) const WATCH50_P99: f64 = 9.4;
    pub(crate) const PUT_PER_S: f64 = 443.0;
    pub(crate) const PUT_P99: f64 = 44.6;
    pub(crate) const PATCH_PER_S: f64 = 647.0;
    pub(crate) const PATCH_P99: f64 = 32.2;
    pub(crate) const DELETECOLLECTION_S: f64 = 3.47;
    pub(crate) const RSS_IDLE_APISERVER: f64 = 238.0;
    pub(crate) const RSS_IDLE_TOTAL: f64 = 277.0;
    pub(crate) const RSS_RUN_APISERVER: f64 = 318.0;
    pub(crate) const RSS_RUN_TOTAL: f64 = 401.0;
    pub(crate) const DISK_MIB: f64 = 136.0;
    pub(crate) const COLD_FRESH_S: f64 = 2.9;
    /// Midpoint of 3.5–4.2 s.
    pub(crate) const COLD_EXISTING_S: f64 = 3.85;
}

/// Processes whose memory is reported.
#[derive(Default, Clone, Copy)]
struct Pids {
    server: Option<u32>,
    etcd: Option<u32>,
}

/// The server whose RSS the progress lines show (0: none).
static PROGRESS_PID: AtomicU32 = AtomicU32::new(0);

fn progress(started: Instant, what: &str) {
    let pid = PROGRESS_PID.load(Ordering::Relaxed);
    let rss = match procs::rss_bytes(pid) {
        Ok(b) if pid != 0 => format!(" [server RSS {:.1} MiB]", b as f64 / MIB),
        _ => String::new(),
    };
    eprintln!("[{:>6.1}s] {what}{rss}", started.elapsed().as_secs_f64());
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

async fn api(args: ApiArgs) -> Result<()> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("# kybern bench api");
    println!();
    println!(
        "{} objects of ~1 KiB, {} concurrent clients, {} cores, load average at start {}",
        args.objects,
        args.concurrency,
        cores,
        loadavg()
    );
    println!();
    authz::run();
    if let Some(kc) = args.kubeconfig.clone() {
        let mut report = Report::new(format!("server at {}", kc.display()));
        let pids = Pids {
            server: args.server_pid,
            etcd: None,
        };
        PROGRESS_PID.store(args.server_pid.unwrap_or(0), Ordering::Relaxed);
        let started = Instant::now();
        let cfg = workload::client_config(&kc).await?;
        if let Some(pid) = pids.server {
            let rss = procs::rss_bytes(pid)? as f64 / MIB;
            report.row(
                Row::new(
                    "RSS at bench start (not right after start)",
                    rss,
                    Some(upstream::RSS_IDLE_TOTAL),
                    Unit::MiB,
                )
                .target(Target::Ratio(5.0)),
            );
        }
        let ns = run_workload(&cfg, &args, &mut report, started).await?;
        if let Some(dir) = &args.data_dir {
            disk_row(&mut report, "data on disk after the run", dir)?;
        }
        let client = kube::Client::try_from(cfg.clone())?;
        if let Err(e) = workload::delete_namespace(&client, &ns).await {
            report.note(format!("cleanup: {e:#}"));
        }
        let mut more = Vec::new();
        match &args.data_dir {
            Some(dir) if dir.join("pki").join("ca.key").exists() => {
                more.push(api_security::run(&kc, dir, &args, started).await?);
            }
            _ => report.note(
                "RBAC and admission figures skipped: they need --data-dir with the server's CA (pki/ca.key)",
            ),
        }
        more.push(api_webhook::run(&cfg, args.gets / 4, args.keep, started).await?);
        report.note(format!("load average at the end: {}", loadavg()));
        report.print();
        for r in more {
            r.print();
        }
        return Ok(());
    }
    let backends: &[bool] = match args.storage {
        StorageChoice::Embedded => &[false],
        StorageChoice::Etcd => &[true],
        StorageChoice::Both => &[false, true],
    };
    for &etcd in backends {
        for report in spawned(&args, etcd).await? {
            report.print();
        }
    }
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn secs_list(v: &[Duration]) -> String {
    v.iter()
        .map(|d| format!("{:.3}", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn disk_row(report: &mut Report, label: &str, dir: &Path) -> Result<()> {
    let (allocated, apparent) = procs::disk_usage(dir)?;
    report.row(Row::new(
        label,
        allocated as f64 / MIB,
        Some(upstream::DISK_MIB),
        Unit::MiB,
    ));
    report.note(format!(
        "{label}: {} ({:.1} MiB allocated, {:.1} MiB apparent)",
        dir.display(),
        allocated as f64 / MIB,
        apparent as f64 / MIB
    ));
    Ok(())
}

fn rss_rows(
    report: &mut Report,
    when: &str,
    pids: Pids,
    up_total: f64,
    up_apiserver: f64,
) -> Result<()> {
    let Some(server) = pids.server else {
        return Ok(());
    };
    let ours = procs::rss_bytes(server)? as f64 / MIB;
    match pids.etcd {
        None => {
            report.row(
                Row::new(
                    format!("RSS {when} (kybern, vs apiserver+etcd)"),
                    ours,
                    Some(up_total),
                    Unit::MiB,
                )
                .target(Target::Ratio(5.0)),
            );
        }
        Some(etcd) => {
            let e = procs::rss_bytes(etcd)? as f64 / MIB;
            report.row(
                Row::new(
                    format!("RSS {when} (kybern + etcd)"),
                    ours + e,
                    Some(up_total),
                    Unit::MiB,
                )
                .target(Target::Ratio(5.0)),
            );
            report.row(Row::new(
                format!("RSS {when}, kybern alone (vs apiserver)"),
                ours,
                Some(up_apiserver),
                Unit::MiB,
            ));
            report.note(format!(
                "RSS {when}: kybern {ours:.1} MiB + etcd {e:.1} MiB"
            ));
        }
    }
    Ok(())
}

/// One backend with servers this benchmark starts.
async fn spawned(args: &ApiArgs, etcd: bool) -> Result<Vec<Report>> {
    let name = if etcd { "etcd" } else { "embedded" };
    let started = Instant::now();
    let mut report = Report::new(format!(
        "kybern server, {name} storage (upstream: kube-apiserver v1.28 + etcd 3.4)"
    ));
    let tmp = TempDir::new(name, args.keep)?;
    let server_log = tmp.path.join("server.log");
    let etcd_log = tmp.path.join("etcd.log");
    progress(started, &format!("{name}: temp dir {}", tmp.path.display()));

    // Cold starts with fresh data dirs.
    progress(
        started,
        &format!("{name}: cold start with a fresh data dir x{}", args.starts),
    );
    let mut fresh = Vec::new();
    let mut etcd_starts = Vec::new();
    for k in 0..args.starts {
        let e = if etcd {
            let e = procs::start_etcd(&tmp.sub(&format!("cold-etcd-{k}"))?, &etcd_log).await?;
            etcd_starts.push(e.startup);
            Some(e)
        } else {
            None
        };
        let dir = tmp.sub(&format!("cold-{k}"))?;
        let s = procs::start_server(&dir, e.as_ref().map(|e| e.url.as_str()), &server_log).await?;
        fresh.push(s.startup);
        s.proc.stop().await;
        if let Some(e) = e {
            e.proc.stop_with("-TERM", Duration::from_secs(10)).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(tmp.path.join(format!("cold-etcd-{k}")));
    }

    // The server (and etcd) for the run.
    progress(started, &format!("{name}: starting the server for the run"));
    let etcd_proc = if etcd {
        Some(procs::start_etcd(&tmp.sub("etcd")?, &etcd_log).await?)
    } else {
        None
    };
    let etcd_url = etcd_proc.as_ref().map(|e| e.url.clone());
    let data_dir = tmp.sub("data")?;
    let server = procs::start_server(&data_dir, etcd_url.as_deref(), &server_log).await?;
    progress(
        started,
        &format!(
            "{name}: ready at {} after {:.3} s",
            server.url,
            server.startup.as_secs_f64()
        ),
    );
    PROGRESS_PID.store(server.proc.pid(), Ordering::Relaxed);
    let pids = Pids {
        server: Some(server.proc.pid()),
        etcd: etcd_proc.as_ref().map(|e| e.proc.pid()),
    };
    rss_rows(
        &mut report,
        "idle right after ready",
        pids,
        upstream::RSS_IDLE_TOTAL,
        upstream::RSS_IDLE_APISERVER,
    )?;

    let kubeconfig = data_dir.join("admin.kubeconfig");
    let cfg = workload::client_config(&kubeconfig).await?;
    run_workload(&cfg, args, &mut report, started).await?;
    rss_rows(
        &mut report,
        "after the run",
        pids,
        upstream::RSS_RUN_TOTAL,
        upstream::RSS_RUN_APISERVER,
    )?;
    match &etcd_proc {
        None => disk_row(&mut report, "data on disk after the run", &data_dir)?,
        Some(_) => {
            disk_row(
                &mut report,
                "data on disk after the run (etcd dir)",
                &tmp.path.join("etcd"),
            )?;
            let (a, _) = procs::disk_usage(&data_dir)?;
            report.note(format!(
                "kybern's own data dir with etcd storage: {:.1} MiB",
                a as f64 / MIB
            ));
        }
    }

    // The security figures, after the main run's memory and disk figures.
    let security = api_security::run(&kubeconfig, &data_dir, args, started).await?;
    let webhook = api_webhook::run(&cfg, args.gets / 4, args.keep, started).await?;

    // Cold start with the existing data.
    progress(
        started,
        &format!(
            "{name}: recreating {} objects for the restart figure",
            args.objects
        ),
    );
    let keep_ns = format!("bench-keep-{}", procs::random_suffix(6));
    let cs = workload::clients(&cfg, args.concurrency)?;
    workload::create_namespace(&cs[0], &keep_ns).await?;
    let res = workload::create_objects(&cs, &keep_ns, args.objects).await;
    if let Some(n) = res.error_note("recreate for the restart figure") {
        report.note(n);
    }
    drop(cs);
    progress(
        started,
        &format!("{name}: cold start with the existing data x{}", args.starts),
    );
    PROGRESS_PID.store(0, Ordering::Relaxed);
    server.proc.stop().await;
    let mut existing = Vec::new();
    for _ in 0..args.starts {
        let s = procs::start_server(&data_dir, etcd_url.as_deref(), &server_log).await?;
        existing.push(s.startup);
        s.proc.stop().await;
    }
    if let Some(e) = etcd_proc {
        e.proc.stop_with("-TERM", Duration::from_secs(10)).await;
    }

    let fresh_med = median(fresh.clone());
    let mut row = Row::new(
        format!("cold start, fresh data dir (median of {})", fresh.len()),
        fresh_med.as_secs_f64(),
        Some(upstream::COLD_FRESH_S),
        Unit::Secs,
    );
    if !etcd {
        row = row.target(Target::Below(1.0));
    }
    report.row(row);
    let mut row = Row::new(
        format!("cold start, existing data (median of {})", existing.len()),
        median(existing.clone()).as_secs_f64(),
        Some(upstream::COLD_EXISTING_S),
        Unit::Secs,
    );
    if !etcd {
        row = row.target(Target::Below(1.0));
    }
    report.row(row);
    report.note(format!("cold starts, fresh (s): {}", secs_list(&fresh)));
    report.note(format!(
        "cold starts, existing data with {} ConfigMaps (s): {}",
        args.objects,
        secs_list(&existing)
    ));
    if etcd {
        report.note(format!(
            "cold starts with etcd: a fresh etcd was started (and healthy) before each fresh kybern start; \
             etcd launch to healthy took (s): {} — not included above",
            secs_list(&etcd_starts)
        ));
    }
    let problems = procs::log_problems(&server_log);
    if problems.is_empty() {
        report.note("server log: no warnings or errors");
    } else {
        report.note(format!(
            "server log: {} warning/error lines; first ones:",
            problems.len()
        ));
        for p in problems.iter().take(5) {
            report.note(format!("  {p}"));
        }
    }
    report.note(format!("load average at the end: {}", loadavg()));
    progress(started, &format!("{name}: done"));
    Ok(vec![report, security, webhook])
}

/// The request workload; returns the namespace it used (empty at the end).
async fn run_workload(
    cfg: &kube::Config,
    args: &ApiArgs,
    report: &mut Report,
    started: Instant,
) -> Result<String> {
    let n = args.objects;
    let clients = workload::clients(cfg, args.concurrency.max(1))?;
    let main = clients[0].clone();
    let ns = format!("bench-{}", procs::random_suffix(8));
    workload::create_namespace(&main, &ns).await?;
    workload::warm_up(&clients, &ns).await?;

    progress(
        started,
        &format!(
            "create {n} ConfigMaps in {ns} from {} clients",
            clients.len()
        ),
    );
    let res = workload::create_objects(&clients, &ns, n).await;
    report.row(
        Row::new(
            format!("create, {} clients", clients.len()),
            res.per_sec(),
            Some(upstream::CREATE_PER_S),
            Unit::PerSec,
        )
        .target(Target::Ratio(2.0)),
    );
    report.row(Row::new(
        "  create p50",
        res.latencies.p50_ms(),
        Some(upstream::CREATE_P50),
        Unit::Ms,
    ));
    report.row(
        Row::new(
            "  create p99",
            res.latencies.p99_ms(),
            Some(upstream::CREATE_P99),
            Unit::Ms,
        )
        .target(Target::Ratio(1.0)),
    );
    report.note(format!(
        "create: {} objects in {:.3} s",
        res.ok,
        res.wall.as_secs_f64()
    ));
    if let Some(e) = res.error_note("create") {
        report.note(e);
    }

    progress(started, &format!("GET one object x{}, 1 client", args.gets));
    let g = workload::get_one(&main, &ns, args.gets).await?;
    report.row(Row::new(
        "GET, 1 client, p50",
        g.p50_ms(),
        Some(upstream::GET_P50),
        Unit::Ms,
    ));
    report.row(
        Row::new(
            "GET, 1 client, p99",
            g.p99_ms(),
            Some(upstream::GET_P99),
            Unit::Ms,
        )
        .target(Target::Ratio(1.0)),
    );
    let get_rate = g.len() as f64 / g.total().as_secs_f64();
    report.note(format!(
        "GET, 1 client: p90 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms over {} GETs",
        report::ms(g.pct(90.0)),
        report::ms(g.pct(95.0)),
        report::ms(g.pct(99.0)),
        report::ms(g.pct(99.9)),
        report::ms(g.pct(100.0)),
        g.len()
    ));
    report.row(Row::new(
        "GET, 1 client, req/s",
        get_rate,
        Some(upstream::GET_PER_S),
        Unit::PerSec,
    ));

    progress(
        started,
        &format!(
            "GET random objects x{}, {} clients",
            args.gets * 2,
            clients.len()
        ),
    );
    let gp = workload::get_parallel(&clients, &ns, n, args.gets * 2).await;
    report.row(Row::new(
        format!("GET, {} clients, req/s", clients.len()),
        gp.per_sec(),
        Some(upstream::GET8_PER_S),
        Unit::PerSec,
    ));
    report.row(
        Row::new(
            format!("GET, {} clients, p99", clients.len()),
            gp.latencies.p99_ms(),
            Some(upstream::GET8_P99),
            Unit::Ms,
        )
        .target(Target::Ratio(1.0)),
    );
    if let Some(e) = gp.error_note("parallel GET") {
        report.note(e);
    }

    progress(started, &format!("LIST {n} objects"));
    let l = workload::list_phase(&main, &ns, n, args.lists).await?;
    report.row(Row::new(
        format!("LIST {n}, consistent, p50"),
        l.consistent.p50_ms(),
        Some(upstream::LIST_P50),
        Unit::Ms,
    ));
    report.row(
        Row::new(
            format!("LIST {n}, consistent, p99"),
            l.consistent.p99_ms(),
            Some(upstream::LIST_P99),
            Unit::Ms,
        )
        .target(Target::Ratio(1.0)),
    );
    report.row(Row::new(
        format!("LIST {n}, resourceVersion=0, p50"),
        l.rv0.p50_ms(),
        Some(upstream::LIST_RV0_P50),
        Unit::Ms,
    ));
    report.row(
        Row::new(
            format!("LIST {n}, resourceVersion=0, p99"),
            l.rv0.p99_ms(),
            Some(upstream::LIST_RV0_P99),
            Unit::Ms,
        )
        .target(Target::Ratio(1.0)),
    );
    report.row(Row::new(
        format!("LIST limit=500 walk ({} pages), p50", l.pages),
        l.paged.p50_ms(),
        Some(upstream::LIST_PAGED_P50),
        Unit::Ms,
    ));
    report.row(
        Row::new(
            format!("LIST limit=500 walk ({} pages), p99", l.pages),
            l.paged.p99_ms(),
            Some(upstream::LIST_PAGED_P99),
            Unit::Ms,
        )
        .target(Target::Ratio(1.0)),
    );
    report.note(format!(
        "LIST body {:.2} MiB; {} samples per LIST figure",
        l.body_bytes as f64 / MIB,
        l.consistent.len()
    ));
    for note in l.notes {
        report.note(note);
    }

    for watchers in [1usize, 50] {
        progress(
            started,
            &format!(
                "watch delivery, {watchers} watcher(s), {} updates",
                args.updates
            ),
        );
        let w = workload::watch_phase(cfg, &main, &ns, watchers, args.updates).await?;
        let label = if watchers == 1 {
            "1 watcher".to_string()
        } else {
            format!("{watchers} watchers")
        };
        let up50 = (watchers > 1).then_some(upstream::WATCH50_P50);
        let up99 = if watchers == 1 {
            upstream::WATCH1_P99
        } else {
            upstream::WATCH50_P99
        };
        report.row(Row::new(
            format!("watch delivery, {label}, p50"),
            w.latencies.p50_ms(),
            up50,
            Unit::Ms,
        ));
        report.row(
            Row::new(
                format!("watch delivery, {label}, p99"),
                w.latencies.p99_ms(),
                Some(up99),
                Unit::Ms,
            )
            .target(Target::Ratio(1.0)),
        );
        report.note(format!(
            "watch, {label}: from sending the PUT to the event at the watcher: p50 {:.2} ms, p99 {:.2} ms",
            w.from_request.p50_ms(),
            w.from_request.p99_ms()
        ));
        if w.early > 0 || w.missed > 0 || w.rv_mismatch > 0 {
            report.note(format!(
                "watch, {label}: {} of {} deliveries arrived before the PUT response (counted as 0), {} missed (10 s), {} with a resourceVersion different from the PUT response's",
                w.early,
                w.latencies.len() + w.missed,
                w.missed,
                w.rv_mismatch
            ));
        }
    }

    progress(
        started,
        &format!("PUT with resourceVersion x{n}, {} clients", clients.len()),
    );
    let (p, conflicts) = workload::put_phase(&clients, &ns).await?;
    report.row(Row::new(
        format!("PUT, {} clients", clients.len()),
        p.per_sec(),
        Some(upstream::PUT_PER_S),
        Unit::PerSec,
    ));
    report.row(
        Row::new(
            "  PUT p99",
            p.latencies.p99_ms(),
            Some(upstream::PUT_P99),
            Unit::Ms,
        )
        .target(Target::Ratio(1.0)),
    );
    if let Some(e) = p.error_note("PUT") {
        report.note(format!("{e} ({conflicts} conflicts)"));
    }

    progress(
        started,
        &format!("merge PATCH x{n}, {} clients", clients.len()),
    );
    let p = workload::patch_phase(&clients, &ns, n).await;
    report.row(Row::new(
        format!("merge PATCH, {} clients", clients.len()),
        p.per_sec(),
        Some(upstream::PATCH_PER_S),
        Unit::PerSec,
    ));
    report.row(
        Row::new(
            "  PATCH p99",
            p.latencies.p99_ms(),
            Some(upstream::PATCH_P99),
            Unit::Ms,
        )
        .target(Target::Ratio(1.0)),
    );
    if let Some(e) = p.error_note("PATCH") {
        report.note(e);
    }

    progress(started, &format!("deletecollection of {n}"));
    // (progress lines show the server's RSS, so its growth per phase is visible)
    let (call, empty) = workload::delete_phase(&main, &ns).await?;
    report.row(Row::new(
        format!("deletecollection of {n}, until the list is empty"),
        empty.as_secs_f64(),
        Some(upstream::DELETECOLLECTION_S),
        Unit::Secs,
    ));
    report.note(format!(
        "deletecollection call itself returned after {:.3} s",
        call.as_secs_f64()
    ));
    progress(started, "workload done");
    Ok(ns)
}
