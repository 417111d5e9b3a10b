//! `kybern bench services` (root): the service proxy at scale on this machine.
//!
//! 1. refuses to start when its ranges are routed (cluster CIDR 10.42.250.0/24, service
//!    CIDR 10.45.0.0/16, DNS 10.45.0.10) or its namespaces exist;
//! 2. starts `kybern server --disable controllers` with those ranges, registers node
//!    `bench-0` with podCIDR 10.42.250.0/24, and starts one `kybern agent` (its own private
//!    containerd, no pods) for it (bridge `kbb0`, proxy metrics on a loopback port);
//! 3. once the bridge is up: a network namespace `kbb-back` on the bridge holding the 230
//!    backend addresses 10.42.250.20-249 with the test server on :8080 (its `/local` names
//!    the address a connection arrived at, i.e. the endpoint DNAT chose), and a client
//!    namespace `kbb-cli` (10.42.250.10, a pod's view);
//! 4. **setup**: waits for the agent's first full proxy sync (its metric), then creates
//!    `--services` selector-less Services of one port, each with one EndpointSlice of 5
//!    endpoints from .20-.219 (16 clients at once);
//! 5. **change latency**, `--changes` times: a random Service's slice is replaced by one
//!    fresh endpoint from .220-.249; t0 is taken just before the PATCH, t1 when a client in
//!    `kbb-cli` (`testserver until`, a new connection every 1 ms) is first answered by the
//!    new address through the ClusterIP; p50/p99 of t1 - t0 (issue target at 10 000
//!    services: p99 < 100 ms);
//! 6. **cluster DNS from a pod's view**: `dnsperf` in `kbb-cli` against the agent's DNS
//!    address (10.45.0.10, served by the agent itself from the same watches), with
//!    `svc-<i>.bench.svc.cluster.local` A (70 %), `_http._tcp` SRV (20 %) and NXDOMAIN
//!    (10 %) questions: saturating queries/s, then p50/p99 at `--dns-paced-qps`;
//! 7. **full resync**: flushes the agent's table (`nft flush table ip kybern-kbb0`, as
//!    someone else might); the proxy's canary notices and rewrites everything, and the
//!    duration of that full sync (the agent's metric) is reported;
//! 8. the agent's RSS and peak (VmHWM) after all of it (target < 100 MiB at 10 000).
//!
//! When the agent reports no full sync (see its log), the bench says so and reports the
//! setup and the agent's memory only.
//! Everything is removed at the end (agent reset, namespaces, server); nothing here asserts
//! on timings.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;
use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

mod net;

use super::procs::{self, TempDir};
use super::report::{Report, Row, Samples, Target, Unit, MIB};
use net::{BenchNet, BACKENDS, CLIENT};

const CLUSTER_CIDR: &str = "10.42.250.0/24";
const SERVICE_CIDR: &str = "10.45.0.0/16";
const CLUSTER_DNS: &str = "10.45.0.10";
const NODE: &str = "bench-0";
const BRIDGE: &str = "kbb0";
const NAMESPACE: &str = "bench";

#[derive(Args)]
pub(crate) struct ServicesArgs {
    /// Selector-less Services to create (each with one slice of 5 endpoints).
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Endpoint changes to time.
    #[arg(long, default_value_t = 200)]
    changes: usize,
    /// Seconds of each dnsperf run against the agent's cluster DNS from the client
    /// namespace (0: no DNS figures).
    #[arg(long, default_value_t = 10)]
    dns_seconds: u32,
    /// Queries per second of the paced (latency) dnsperf run.
    #[arg(long, default_value_t = 20_000)]
    dns_paced_qps: u32,
    /// Keep the temp dir (data, logs).
    #[arg(long)]
    keep: bool,
}

pub(crate) async fn run(args: ServicesArgs) -> Result<()> {
    let started = Instant::now();
    let progress = |what: &str| eprintln!("[{:>6.1}s] {what}", started.elapsed().as_secs_f64());
    refuse_if_in_use()?;
    println!("# kybern bench services");
    println!();
    println!(
        "{} selector-less Services with 5 endpoints each on one agent, load average at start {}",
        args.services,
        super::loadavg()
    );
    let tmp = TempDir::new("services", args.keep)?;
    let exe = std::env::current_exe().context("finding the kybern executable")?;
    let data_dir = tmp.sub("data")?;
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.arg("server")
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--listen", "127.0.0.1:0", "--disable", "controllers"])
        .args([
            "--cluster-cidr",
            CLUSTER_CIDR,
            "--service-cidr",
            SERVICE_CIDR,
        ])
        .args(["--cluster-dns", CLUSTER_DNS]);
    let server = procs::start_server_cmd(cmd, &tmp.path.join("server.log")).await?;
    progress(&format!("server ready at {}", server.url));
    let kubeconfig = data_dir.join("admin.kubeconfig");
    let client = kube::Client::try_from(super::workload::client_config(&kubeconfig).await?)?;
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": NODE},
        "spec": {"podCIDR": CLUSTER_CIDR, "podCIDRs": [CLUSTER_CIDR]},
    }))?;
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .context("registering the node")?;
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let agent_dir = tmp.path.join("agent");
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.args(["agent", "--kubeconfig"])
        .arg(&kubeconfig)
        .args([
            "--node-name",
            NODE,
            "--node-ip",
            "127.0.0.1",
            "--bridge",
            BRIDGE,
        ])
        .args(["--node-api-listen", "none"])
        .args([
            "--cluster-cidr",
            CLUSTER_CIDR,
            "--service-cidr",
            SERVICE_CIDR,
        ])
        .args(["--cluster-dns", CLUSTER_DNS])
        .args(["--proxy-metrics-bind-address", &metrics.to_string()])
        .arg("--agent-dir")
        .arg(&agent_dir);
    let agent = procs::spawn(cmd, "kybern agent", &tmp.path.join("agent.log"))?;
    progress(&format!("agent started (pid {})", agent.pid()));

    let result = measure(&args, &client, metrics, &tmp, &progress).await;
    let rss = procs::rss_bytes(agent.pid()).ok();
    let peak = procs::peak_rss_bytes(agent.pid()).ok();
    agent.stop().await;
    let reset = tokio::process::Command::new(&exe)
        .args(["agent", "--reset", "--bridge", BRIDGE, "--agent-dir"])
        .arg(&agent_dir)
        .status()
        .await;
    if !reset.is_ok_and(|s| s.success()) {
        eprintln!(
            "kybern agent --reset failed; run it by hand: kybern agent --reset --bridge {BRIDGE} --agent-dir {}",
            agent_dir.display()
        );
    }
    server.proc.stop().await;
    let figures = result.with_context(|| {
        format!(
            "see the logs in {} (run with --keep to keep them)",
            tmp.path.display()
        )
    })?;

    let mut report = Report::new("Service proxy at scale (one agent, nftables)");
    if let Some(setup) = figures.setup {
        report.row(Row::new(
            format!("create {} Services + slices", args.services),
            setup.as_secs_f64(),
            None,
            Unit::Secs,
        ));
    }
    match &figures.proxy {
        None => report.note(
            "the agent's proxy reported no full sync within 5 minutes (see agent.log; --keep keeps it), so no change latency",
        ),
        Some(proxy) => {
            match proxy.resync {
                Some(secs) => report.row(Row::new(
                    format!("full resync of {} Services after a flush", args.services),
                    secs,
                    None,
                    Unit::Secs,
                )),
                None => report.note("no full resync came within 5 minutes of flushing the table"),
            }
            report.row(
                Row::new(
                    "endpoint change to traffic: p50",
                    proxy.latency.p50_ms(),
                    None,
                    Unit::Ms,
                )
                .target(Target::Below(100.0)),
            );
            report.row(
                Row::new(
                    "endpoint change to traffic: p99",
                    proxy.latency.p99_ms(),
                    None,
                    Unit::Ms,
                )
                .target(Target::Below(100.0)),
            );
        }
    }
    for (figure, bytes) in [("agent RSS after the run", rss), ("agent peak RSS", peak)] {
        if let Some(bytes) = bytes {
            report.row(
                Row::new(figure, bytes as f64 / MIB, None, Unit::MiB).target(Target::Below(100.0)),
            );
        }
    }
    report.note("targets are the issue's for 10 000 services");
    report.print();
    if let Some(proxy) = &figures.proxy {
        print_dns(&args, &proxy.dns);
    }
    Ok(())
}

/// The DNS part: dnsperf from a pod's network namespace against the running agent.
fn print_dns(args: &ServicesArgs, dns: &std::result::Result<super::dns::DnsperfFigures, String>) {
    let mut report = Report::new(format!(
        "cluster DNS from a pod's network namespace (the same agent, {} Services, {} endpoints)",
        args.services,
        args.services * 5
    ));
    match dns {
        Err(why) => report.note(format!("no DNS figures: {why}")),
        Ok(d) => {
            report.row(
                Row::new("queries/s, saturating (dnsperf)", d.qps, None, Unit::PerSec)
                    .target(Target::AtLeast(40_000.0)),
            );
            for (label, ms) in [("p50", d.latencies.p50_ms()), ("p99", d.latencies.p99_ms())] {
                report.row(
                    Row::new(
                        format!("latency {label} at {:.0} q/s", d.paced_qps),
                        ms,
                        None,
                        Unit::Ms,
                    )
                    .target(Target::Below(2.0)),
                );
            }
            report.note(format!(
                "saturating run: {}; response codes {}",
                d.lost, d.codes
            ));
            report.note(format!(
                "query mix: {}; dnsperf -T 1 -c 8 in the client namespace, which reaches \
                 10.45.0.10 through the node's bridge as a pod does; the agent's memory above \
                 includes its DNS server (`kybern bench dns` isolates the DNS share)",
                super::dns::query_mix(0)
            ));
        }
    }
    report.print();
}

struct Figures {
    /// None when the proxy never ran, so nothing was created.
    setup: Option<Duration>,
    proxy: Option<ProxyFigures>,
}

struct ProxyFigures {
    /// Seconds of the full sync after the flush, from
    /// `kybern_proxy_sync_duration_seconds{kind="full"}`; None when none came.
    resync: Option<f64>,
    latency: Samples,
    /// dnsperf's figures, or why there are none.
    dns: std::result::Result<super::dns::DnsperfFigures, String>,
}

async fn measure(
    args: &ServicesArgs,
    client: &kube::Client,
    metrics: std::net::SocketAddr,
    tmp: &TempDir,
    progress: &dyn Fn(&str),
) -> Result<Figures> {
    wait_for_bridge().await?;
    let testserver = agent::images::test_images::build_testserver(&tmp.path)
        .context("building the test server (needs cargo)")?;
    let net = BenchNet::create(&testserver, &tmp.path.join("backends.log"))?;
    progress("backend and client namespaces ready");

    let agent_log = tmp.path.join("agent.log");
    let Some(first) = wait_full_syncs(metrics, 1, &agent_log, progress).await? else {
        drop(net);
        return Ok(Figures {
            setup: None,
            proxy: None,
        });
    };
    progress(&format!("proxy running (first full sync {:.3} s)", first.1));

    let started = Instant::now();
    let cluster_ips = create_services(client, args.services).await?;
    let setup = started.elapsed();
    progress(&format!("{} services created in {setup:?}", args.services));
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let mut latencies = Vec::with_capacity(args.changes);
    for change in 0..args.changes {
        let i = fastrand::usize(..cluster_ips.len());
        let fresh = format!("10.42.250.{}", 220 + change % 30);
        let target = format!("{}:80", cluster_ips[i]);
        let mut poller = net.client_command(&testserver, &["until", &target, &fresh]);
        let mut child = poller
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().context("poller stdout")?).lines();
        lines.next_line().await?; // "polling"
        let t0 = SystemTime::now();
        let patch = json!({"endpoints": [{"addresses": [fresh], "conditions": {"ready": true}}]});
        slices
            .patch(
                &format!("svc-{i}-1"),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        let seen = lines.next_line().await?.unwrap_or_default();
        let Some(ns) = seen
            .strip_prefix("seen ")
            .and_then(|n| n.trim().parse::<u128>().ok())
        else {
            bail!("change {change}: svc-{i} never answered from {fresh} ({seen:?})");
        };
        let t0 = t0.duration_since(UNIX_EPOCH)?.as_nanos();
        latencies.push(Duration::from_nanos(ns.saturating_sub(t0) as u64));
    }
    let dns = match args.dns_seconds {
        0 => Err("skipped (--dns-seconds 0)".to_string()),
        seconds => dns_from_client(args, seconds, args.services, tmp, progress).await,
    };
    drop(net);
    let resync = resync_after_flush(metrics, &agent_log, progress).await?;
    Ok(Figures {
        setup: Some(setup),
        proxy: Some(ProxyFigures {
            resync,
            latency: Samples::new(latencies),
            dns,
        }),
    })
}

/// dnsperf in the client namespace against the agent's cluster DNS address; an error
/// becomes the reason there are no figures (the proxy's figures still count).
async fn dns_from_client(
    args: &ServicesArgs,
    seconds: u32,
    services: usize,
    tmp: &TempDir,
    progress: &dyn Fn(&str),
) -> std::result::Result<super::dns::DnsperfFigures, String> {
    let Some(program) = super::dns::which("dnsperf") else {
        return Err("dnsperf is not installed (apt-get install dnsperf)".into());
    };
    let queries = tmp.path.join("queries.txt");
    std::fs::write(&queries, super::dns::query_file(services, 0))
        .map_err(|e| format!("writing {}: {e}", queries.display()))?;
    progress(&format!(
        "dnsperf from {CLIENT} against {CLUSTER_DNS}: {seconds} s saturating, then paced"
    ));
    super::dns::Dnsperf {
        program,
        netns: Some(CLIENT.to_string()),
        server: std::net::SocketAddr::new(CLUSTER_DNS.parse().expect("an address"), 53),
        queries,
        seconds,
        outstanding: 500,
        threads: 1,
        clients: 8,
        paced_qps: args.dns_paced_qps,
    }
    .run()
    .await
    .map_err(|e| format!("{e:#}"))
}

/// Flushes the agent's table as an outsider might and returns how long the full sync
/// that restores it took (seconds, the agent's metric), or None when none came within
/// a minute.
async fn resync_after_flush(
    metrics: std::net::SocketAddr,
    agent_log: &std::path::Path,
    progress: &dyn Fn(&str),
) -> Result<Option<f64>> {
    let before = full_syncs(metrics).await?;
    let table = format!("kybern-{BRIDGE}");
    let status = std::process::Command::new("nft")
        .args(["flush", "table", "ip", &table])
        .status()
        .context("running nft")?;
    if !status.success() {
        bail!("nft flush table ip {table} failed");
    }
    progress(&format!(
        "flushed table {table}; waiting for the proxy's canary"
    ));
    let Some(after) = wait_full_syncs(metrics, before.0 + 1, agent_log, progress).await? else {
        return Ok(None);
    };
    let took = after.1 - before.1;
    progress(&format!("full resync: {took:.3} s"));
    Ok(Some(took))
}

/// Creates `n` selector-less Services `svc-<i>` (port 80 -> 8080) and their slices
/// `svc-<i>-1` of 5 endpoints from .20-.219, 16 at a time; their ClusterIPs by index.
async fn create_services(client: &kube::Client, n: usize) -> Result<Vec<String>> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let (services, slices) = (Arc::new(services), Arc::new(slices));
    stream::iter(0..n)
        .map(|i| {
            let (services, slices) = (services.clone(), slices.clone());
            async move {
                let svc: Service = serde_json::from_value(json!({
                    "metadata": {"name": format!("svc-{i}")},
                    "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
                }))?;
                let created = services.create(&PostParams::default(), &svc).await?;
                let endpoints: Vec<_> = (0..5)
                    .map(|k| json!({"addresses": [format!("10.42.250.{}", 20 + (i * 5 + k) % 200)], "conditions": {"ready": true}}))
                    .collect();
                let slice: EndpointSlice = serde_json::from_value(json!({
                    "metadata": {"name": format!("svc-{i}-1"), "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
                    "addressType": "IPv4",
                    "endpoints": endpoints,
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                }))?;
                slices.create(&PostParams::default(), &slice).await?;
                let ip = created.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
                anyhow::Ok(ip)
            }
        })
        .buffered(16)
        .try_collect()
        .await
}

/// The agent's full-sync count and summed duration (seconds) from its metrics.
async fn full_syncs(metrics: std::net::SocketAddr) -> Result<(u64, f64)> {
    let text = http_get(metrics).await?;
    let count = metric(
        &text,
        "kybern_proxy_sync_duration_seconds_count{kind=\"full\"}",
    );
    let sum = metric(
        &text,
        "kybern_proxy_sync_duration_seconds_sum{kind=\"full\"}",
    );
    Ok((count.unwrap_or(0.0) as u64, sum.unwrap_or(0.0)))
}

/// Waits until the agent reports at least `count` full syncs and returns its figures, or
/// None when the agent's log says its proxy stopped or they do not come within 5 minutes.
async fn wait_full_syncs(
    metrics: std::net::SocketAddr,
    count: u64,
    agent_log: &std::path::Path,
    progress: &dyn Fn(&str),
) -> Result<Option<(u64, f64)>> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        if let Ok(figures) = full_syncs(metrics).await {
            if figures.0 >= count {
                return Ok(Some(figures));
            }
        }
        let log = std::fs::read_to_string(agent_log).unwrap_or_default();
        if log.contains("the service proxy stopped") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    progress(&format!(
        "no full sync reported at http://{metrics}/metrics"
    ));
    Ok(None)
}

/// A sample's value in Prometheus text format.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

/// A plain HTTP/1.1 GET of `/metrics` (the agent's metrics listener is plain HTTP).
async fn http_get(addr: std::net::SocketAddr) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
        .await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body)
}

/// Waits until the agent has made its bridge (it does once the node has its podCIDR).
async fn wait_for_bridge() -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let up = std::process::Command::new("ip")
            .args(["link", "show", BRIDGE])
            .output()
            .is_ok_and(|o| o.status.success());
        if up {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the agent made no bridge {BRIDGE} within 60 s")
}

fn refuse_if_in_use() -> Result<()> {
    let routes = std::process::Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .context("running ip route")?;
    let routes = String::from_utf8_lossy(&routes.stdout);
    if routes.contains("10.42.250.") || routes.contains("10.45.") {
        bail!("10.42.250.0/24 or 10.45.0.0/16 is routed on this host; is another bench running?");
    }
    let netns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()?;
    let netns = String::from_utf8_lossy(&netns.stdout);
    if netns.contains(BACKENDS) || netns.contains(CLIENT) {
        bail!("network namespace {BACKENDS} or {CLIENT} exists; is another bench running?");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_reads_one_series_of_the_text_format() {
        let text = "# HELP x\nkybern_proxy_sync_duration_seconds_sum{kind=\"partial\"} 0.5\nkybern_proxy_sync_duration_seconds_sum{kind=\"full\"} 1.25\n";
        let cases = [
            (
                "full",
                "kybern_proxy_sync_duration_seconds_sum{kind=\"full\"}",
                Some(1.25),
            ),
            (
                "partial",
                "kybern_proxy_sync_duration_seconds_sum{kind=\"partial\"}",
                Some(0.5),
            ),
            ("absent", "kybern_proxy_sync_failures_total", None),
        ];
        for (name, series, want) in cases {
            assert_eq!(metric(text, series), want, "{name}");
        }
    }
}
