//! `kybern bench dns`: the cluster DNS server at the scale on this machine.
//!
//! 1. fills the agent's shared store (`agent::services::ClusterState`) as its watches would:
//!    `--services` Services in namespace `bench` (`--headless` of them headless), each with
//!    one named port `http`/TCP and one EndpointSlice of `--endpoints` addresses (10 000 and
//!    5: 50 000 endpoints, the DNS data of 50 000 pods);
//! 2. binds the agent's DNS server (`agent::dns::Server`, the code `kybern agent` runs) on a
//!    loopback address in this process — the agent cannot yet run without pods and the
//!    proxy, so the process is the bench's own: its RSS before and after the fill is the
//!    store's and the server's share, printed beside CoreDNS's memory formula;
//! 3. writes a query file of cluster names (60 % Service A, 20 % `_http._tcp` SRV, 10 %
//!    headless A with 5 answers, 10 % NXDOMAIN) and runs `dnsperf` twice: saturating
//!    (`-q` outstanding queries, queries/s) and paced at `--paced-qps` with `-v`, whose
//!    per-query lines (`> NOERROR name A 0.000123`) give p50/p99 latency.
//!
//! Nothing here asserts on timings; everything is removed at the end.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use agent::dns::{DnsConfig, Server};
use agent::services::{
    ClusterState, Endpoint, Protocol, Service, ServiceKey, ServiceKind, ServicePort, Slice,
};
use anyhow::{bail, Context, Result};
use clap::Args;

use super::procs::{self, TempDir};
use super::report::{Report, Row, Samples, Target, Unit, MIB};

const NAMESPACE: &str = "bench";
const DOMAIN: &str = "cluster.local";

#[derive(Args)]
pub(crate) struct DnsArgs {
    /// Services in all (ClusterIP ones and `--headless` ones).
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// How many of the Services are headless.
    #[arg(long, default_value_t = 1_000)]
    headless: usize,
    /// Endpoints in each Service's EndpointSlice.
    #[arg(long, default_value_t = 5)]
    endpoints: usize,
    /// The loopback address the server listens on (a free port is chosen).
    #[arg(long, default_value = "127.0.77.10")]
    listen: Ipv4Addr,
    /// Seconds of each dnsperf run.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// dnsperf's outstanding queries in the saturating run (`-q`).
    #[arg(long, default_value_t = 500)]
    outstanding: u32,
    /// dnsperf threads (`-T`); the server shares the machine's cores with them.
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// dnsperf clients (`-c`: sockets, spread over the threads).
    #[arg(long, default_value_t = 8)]
    clients: u32,
    /// Queries per second of the paced (latency) run.
    #[arg(long, default_value_t = 20_000)]
    paced_qps: u32,
    /// Keep the temp dir (query file, dnsperf output).
    #[arg(long)]
    keep: bool,
}

/// CoreDNS's documented memory need: (pods + services) / 1000 + 54 MB.
fn coredns_mb(pods: usize, services: usize) -> f64 {
    (pods + services) as f64 / 1000.0 + 54.0
}

pub(crate) async fn run(args: DnsArgs) -> Result<()> {
    if args.headless > args.services {
        bail!("--headless cannot exceed --services");
    }
    if !args.listen.is_loopback() {
        bail!("--listen must be a loopback address: the bench sends its queries there");
    }
    let dnsperf = which("dnsperf").context("dnsperf is needed (apt-get install dnsperf)")?;
    let pods = args.services * args.endpoints;
    println!("# kybern bench dns");
    println!();
    println!(
        "{} Services ({} headless), {} endpoints, load average at start {}",
        args.services,
        args.headless,
        pods,
        super::loadavg()
    );
    let tmp = TempDir::new("dns", args.keep)?;
    let me = std::process::id();

    let rss_before = procs::rss_bytes(me)?;
    let state = fill(&args);
    let rss_filled = procs::rss_bytes(me)?;
    let resolv = tmp.path.join("resolv.conf");
    std::fs::write(&resolv, "").context("writing an empty resolv.conf")?;
    let config = DnsConfig {
        listen: args.listen,
        domain: DOMAIN.into(),
        upstreams: Vec::new(),
        resolv_conf: resolv,
    };
    let server = Server::bind(&config, 0, state.clone())
        .await
        .with_context(|| format!("binding the DNS server on {}", args.listen))?;
    let addr = server.local_addr();
    let serving = tokio::spawn(server.serve());
    let _stop = AbortOnDrop(serving);
    // The server indexes reverse names from the store in the background: wait for the last
    // endpoint's PTR, so memory is measured with the index built.
    let last = endpoint_ip(pods - 1);
    wait_for_ptr(addr, last).await?;
    let rss_after = procs::rss_bytes(me)?;

    let queries = tmp.path.join("queries.txt");
    std::fs::write(
        &queries,
        query_file(args.services - args.headless, args.headless),
    )
    .context("writing the query file")?;
    eprintln!("server on {addr}; saturating run of {} s", args.seconds);
    let perf = Dnsperf {
        program: dnsperf,
        netns: None,
        server: addr,
        queries,
        seconds: args.seconds,
        outstanding: args.outstanding,
        threads: args.threads,
        clients: args.clients,
        paced_qps: args.paced_qps,
    }
    .run()
    .await?;
    let DnsperfFigures {
        qps,
        codes,
        lost,
        latencies,
        paced_qps,
    } = perf;

    let coredns = coredns_mb(pods, args.services);
    let grown = rss_after.saturating_sub(rss_before) as f64 / MIB;
    let mut report = Report::new(format!(
        "cluster DNS, {} Services, {pods} endpoints",
        args.services
    ));
    report.row(
        Row::new("queries/s, saturating (dnsperf)", qps, None, Unit::PerSec)
            .target(Target::AtLeast(40_000.0)),
    );
    report.row(
        Row::new(
            format!("latency p50 at {paced_qps:.0} q/s"),
            latencies.p50_ms(),
            None,
            Unit::Ms,
        )
        .target(Target::Below(2.0)),
    );
    report.row(
        Row::new(
            format!("latency p99 at {paced_qps:.0} q/s"),
            latencies.p99_ms(),
            None,
            Unit::Ms,
        )
        .target(Target::Below(2.0)),
    );
    report.row(
        Row::new(
            "memory of the DNS data and server (RSS growth)",
            grown,
            Some(coredns),
            Unit::MiB,
        )
        .target(Target::Below(coredns / 4.0)),
    );
    report.row(Row::new(
        "  of which the store (Services, slices)",
        rss_filled.saturating_sub(rss_before) as f64 / MIB,
        None,
        Unit::MiB,
    ));
    report.row(Row::new(
        "  of which the server and its reverse index",
        rss_after.saturating_sub(rss_filled) as f64 / MIB,
        None,
        Unit::MiB,
    ));
    report.row(Row::new(
        "bench process RSS with the server (not an agent's)",
        rss_after as f64 / MIB,
        None,
        Unit::MiB,
    ));
    report.note(format!(
        "upstream memory: CoreDNS's formula (pods + services)/1000 + 54 MB = {coredns:.1} MB; \
         the target is a quarter of it, {:.1} MB (MB read as MiB)",
        coredns / 4.0
    ));
    report.note(
        "the server runs inside this bench process (`kybern agent` cannot yet run with pods \
         and the proxy disabled): memory is the growth of this process's RSS from before the \
         store was filled to after the server indexed it",
    );
    report.note(format!("saturating run: {lost}; response codes {codes}"));
    report.note(format!(
        "query mix: {}; dnsperf -T {} -c {}, {} s each run",
        query_mix(args.headless),
        args.threads,
        args.clients,
        args.seconds
    ));
    report.print();
    Ok(())
}

/// Two dnsperf runs against one server: saturating (`-q` outstanding queries, for
/// queries/s) and paced with `-v` (per-query latencies).
pub(crate) struct Dnsperf {
    pub program: std::path::PathBuf,
    /// Run inside this network namespace (`ip netns exec`), e.g. a pod's view.
    pub netns: Option<String>,
    pub server: SocketAddr,
    pub queries: std::path::PathBuf,
    pub seconds: u32,
    pub outstanding: u32,
    pub threads: u32,
    pub clients: u32,
    pub paced_qps: u32,
}

pub(crate) struct DnsperfFigures {
    pub qps: f64,
    /// dnsperf's "Response codes:" line of the saturating run.
    pub codes: String,
    /// dnsperf's "Queries lost:" line of the saturating run.
    pub lost: String,
    pub latencies: Samples,
    /// What the paced run reached.
    pub paced_qps: f64,
}

impl Dnsperf {
    fn command(&self) -> tokio::process::Command {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut cmd = tokio::process::Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(&self.program);
                cmd
            }
            None => tokio::process::Command::new(&self.program),
        };
        cmd.arg("-s")
            .arg(self.server.ip().to_string())
            .arg("-p")
            .arg(self.server.port().to_string())
            .arg("-d")
            .arg(&self.queries)
            .arg("-l")
            .arg(self.seconds.to_string())
            .arg("-T")
            .arg(self.threads.to_string())
            .arg("-c")
            .arg(self.clients.max(self.threads).to_string());
        cmd
    }

    pub(crate) async fn run(&self) -> Result<DnsperfFigures> {
        let mut cmd = self.command();
        cmd.arg("-q").arg(self.outstanding.to_string());
        let saturated = run_dnsperf(cmd).await?;
        let qps = summary_number(&saturated, "Queries per second:")?;
        let codes = summary_line(&saturated, "Response codes:").unwrap_or_default();
        let lost = summary_line(&saturated, "Queries lost:").unwrap_or_default();

        eprintln!("paced run at {} q/s", self.paced_qps);
        let mut cmd = self.command();
        cmd.arg("-Q").arg(self.paced_qps.to_string()).arg("-v");
        let paced = run_dnsperf(cmd).await?;
        let latencies = Samples::new(per_query_latencies(&paced));
        if latencies.len() == 0 {
            bail!("dnsperf -v printed no per-query latencies");
        }
        let paced_qps = summary_number(&paced, "Queries per second:")?;
        Ok(DnsperfFigures {
            qps,
            codes,
            lost,
            latencies,
            paced_qps,
        })
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The i-th endpoint's address: 10.42.0.0/16 from .0.1 on (65 535 addresses).
fn endpoint_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 42, 0, 1)) + i as u32)
}

/// The i-th Service's ClusterIP: 10.45.0.0/16 from .0.20 on.
fn cluster_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 45, 0, 20)) + i as u32)
}

fn is_headless(args: &DnsArgs, i: usize) -> bool {
    i >= args.services - args.headless
}

fn service_name(args: &DnsArgs, i: usize) -> String {
    if is_headless(args, i) {
        format!("hl-{i}")
    } else {
        format!("svc-{i}")
    }
}

/// Fills a store as the agent's watches would: fresh strings per object (a watch decodes
/// each object on its own), every kind listed once so the store counts as synced.
fn fill(args: &DnsArgs) -> Arc<ClusterState> {
    let state = ClusterState::new();
    let mut services = Vec::with_capacity(args.services);
    let mut slices = Vec::with_capacity(args.services);
    for i in 0..args.services {
        let name = service_name(args, i);
        let headless = is_headless(args, i);
        let key = ServiceKey::new(NAMESPACE, &name);
        services.push((
            key.clone(),
            Service {
                kind: ServiceKind::ClusterIp,
                cluster_ip: (!headless).then(|| cluster_ip(i)),
                ports: vec![ServicePort {
                    name: "http".into(),
                    protocol: Protocol::Tcp,
                    port: 80,
                    node_port: None,
                }],
                external_ips: Vec::new(),
                lb_ingress: Vec::new(),
                lb_source_ranges: Vec::new(),
                affinity_timeout: None,
                external_local: false,
                internal_local: false,
                publish_not_ready: false,
                lb_class: false,
            },
        ));
        let endpoints = (0..args.endpoints)
            .map(|e| Endpoint {
                ip: endpoint_ip(i * args.endpoints + e),
                ready: true,
                serving: true,
                terminating: false,
                node: Some(format!("node-{}", (i + e) % 50).into()),
                // StatefulSet pods behind headless Services have hostnames.
                hostname: headless.then(|| format!("{name}-{e}").into()),
            })
            .collect();
        slices.push((
            (NAMESPACE.to_string(), format!("{name}-abcde")),
            Slice {
                service: key,
                ports: vec![("http".into(), Protocol::Tcp, 8080)],
                endpoints,
            },
        ));
    }
    state.replace_services(services);
    state.replace_slices(slices);
    state.replace_nodes(Vec::new());
    state.replace_service_cidrs(Vec::new());
    state
}

/// dnsperf's input: 20,000 `name type` lines for Services `svc-0..` (`plain` of them)
/// then `hl-..` (`headless` of them) in namespace `bench`, in the mix [`query_mix`]
/// names, shuffled. `bench services` asks the same questions of its ClusterIP Services.
pub(crate) fn query_file(plain: usize, headless: usize) -> String {
    let mut rng = fastrand::Rng::with_seed(16);
    let mut lines: Vec<String> = (0..20_000)
        .map(|n| match n % 10 {
            0..=5 => format!(
                "svc-{}.{NAMESPACE}.svc.{DOMAIN} A",
                rng.usize(..plain.max(1))
            ),
            6 | 7 => format!(
                "_http._tcp.svc-{}.{NAMESPACE}.svc.{DOMAIN} SRV",
                rng.usize(..plain.max(1))
            ),
            8 if headless > 0 => format!(
                "hl-{}.{NAMESPACE}.svc.{DOMAIN} A",
                plain + rng.usize(..headless)
            ),
            8 => format!(
                "svc-{}.{NAMESPACE}.svc.{DOMAIN} A",
                rng.usize(..plain.max(1))
            ),
            _ => format!("missing-{n}.{NAMESPACE}.svc.{DOMAIN} A"),
        })
        .collect();
    rng.shuffle(&mut lines);
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The mix [`query_file`] writes, as the reports print it.
pub(crate) fn query_mix(headless: usize) -> &'static str {
    if headless > 0 {
        "60 % Service A, 20 % SRV, 10 % headless A (5 records), 10 % NXDOMAIN"
    } else {
        "70 % Service A, 20 % SRV, 10 % NXDOMAIN"
    }
}

/// Asks for the PTR of `ip` until an answer carries a record.
async fn wait_for_ptr(server: SocketAddr, ip: Ipv4Addr) -> Result<()> {
    let o = ip.octets();
    let name = format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0]);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let mut buf = vec![0u8; 4096];
    for attempt in 0..200u16 {
        socket
            .send_to(&raw_query(attempt, &name, 12), server)
            .await?;
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(100), socket.recv_from(&mut buf)).await
        {
            // ANCOUNT is bytes 6-7 of the header.
            if n >= 12 && u16::from_be_bytes([buf[6], buf[7]]) > 0 {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the DNS server never answered the PTR of {ip}")
}

/// A one-question query in wire format (RFC 1035 4.1).
fn raw_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

async fn run_dnsperf(mut cmd: tokio::process::Command) -> Result<String> {
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = cmd.output().await.context("running dnsperf")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "dnsperf failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            text
        );
    }
    Ok(text)
}

/// The rest of a summary line ("  Queries per second:   41234.5").
fn summary_line(output: &str, label: &str) -> Option<String> {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(|rest| rest.trim().to_string())
}

fn summary_number(output: &str, label: &str) -> Result<f64> {
    let line = summary_line(output, label)
        .with_context(|| format!("no {label:?} in dnsperf's output:\n{output}"))?;
    line.split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .with_context(|| format!("reading {label:?} from {line:?}"))
}

/// dnsperf -v prints one line per answered query: `> NOERROR name type 0.000123` (seconds).
fn per_query_latencies(output: &str) -> Vec<Duration> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("> "))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .collect()
}

pub(crate) fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The share of each kind of question in a query file, in percent.
    fn shares(file: &str) -> [usize; 4] {
        let mut counts = [0usize; 4];
        for line in file.lines() {
            let i = if line.starts_with("missing-") {
                3
            } else if line.starts_with("hl-") {
                2
            } else if line.ends_with(" SRV") {
                1
            } else {
                0
            };
            counts[i] += 1;
        }
        counts.map(|c| c * 100 / file.lines().count())
    }

    #[test]
    fn query_file_asks_the_mix_the_report_prints() {
        let cases = [
            ("without headless services", 100, 0, [70, 20, 0, 10]),
            ("with headless services", 90, 10, [60, 20, 10, 10]),
        ];
        for (name, plain, headless, want) in cases {
            let file = query_file(plain, headless);
            assert_eq!(file.lines().count(), 20_000, "{name}");
            assert_eq!(shares(&file), want, "{name}: {}", query_mix(headless));
        }
    }
}
