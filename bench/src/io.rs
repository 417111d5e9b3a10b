//! `kybern bench io` (root): pod I/O through the API server on one real node, measured with
//! the kube-rs client (no kubectl start-up in the figures).
//!
//! On a [`RealNode`] it runs four busybox pods and measures:
//!
//! 1. exec round trip: `echo hi` in a running container, from the request to the exit
//!    status (WebSocket through the API server to the node API), p50 and p99;
//! 2. log follow latency: a container prints the kernel's uptime (`/proc/uptime`, in
//!    hundredths of a second) ten times a second; a `logs -f` reader takes, for each line,
//!    the time from that stamp to reading it (the same kernel clock), p50 and p99, so
//!    within 10 ms;
//! 3. log streaming: a container writes numbered lines as fast as it can while a
//!    follower reads them for `--log-seconds`; MB/s read, and the lines lost (gaps in the
//!    numbering, which must be 0; the log rotates at 10 MiB on the way);
//! 4. port-forward: through a forwarded connection to an echo server in a pod (the test
//!    server's `echo` mode, 64 KiB reads; `--nc-echo` takes busybox's `nc -ll -e cat`
//!    instead, whose `cat` copies 4 KiB at a time), `--forward-mib` MiB of a pseudo-random
//!    pattern sent and read back intact (MB/s of the payload), once through the kube-rs
//!    client and once through `kubectl port-forward` (what users run: a local port, then
//!    kubectl's own client), and the set-up time of `--connections` new forwards (kube-rs:
//!    forward, one byte there and back), p99;
//! 5. the agent's RSS with `--pods` pods running.
//!
//! Nothing here asserts on timings; compare several runs.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, AttachParams, DeleteParams, LogParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::node::RealNode;
use super::procs::{self, TempDir};
use super::report::{Report, Row, Samples, Target, Unit, MIB};

#[derive(Args)]
pub(crate) struct IoArgs {
    /// Exec round trips measured.
    #[arg(long, default_value_t = 100)]
    execs: usize,
    /// How long each log measurement reads.
    #[arg(long, default_value_t = 5)]
    log_seconds: u64,
    /// Payload sent through one port-forward and read back.
    #[arg(long, default_value_t = 100)]
    forward_mib: usize,
    /// New port-forward connections timed.
    #[arg(long, default_value_t = 30)]
    connections: usize,
    /// Pods running when the agent's RSS is taken.
    #[arg(long, default_value_t = 30)]
    pods: usize,
    /// Echo through busybox's `nc -ll -e cat` rather than the test server (no build of the
    /// test server image).
    #[arg(long)]
    nc_echo: bool,
    /// Keep the temp dir (data, logs).
    #[arg(long)]
    keep: bool,
}

const NS: &str = "bench-io";
const ECHO_PORT: u16 = 9000;

pub(crate) async fn run(args: IoArgs) -> Result<()> {
    let started = Instant::now();
    let progress = |what: &str| eprintln!("[{:>6.1}s] {what}", started.elapsed().as_secs_f64());
    println!("# kybern bench io");
    println!();
    println!(
        "Pod I/O through the API server on one real node (containerd, runc), {} cores, load average at start {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        super::loadavg()
    );
    let tmp = TempDir::new("io", args.keep)?;
    let node = RealNode::start(&tmp, !args.nc_echo, &progress).await?;
    let result = measure(
        &args,
        &node.client,
        &node.kubeconfig,
        node.agent.pid(),
        &progress,
    )
    .await;
    node.stop().await;
    let figures = result.with_context(|| {
        format!(
            "see the logs in {} (run with --keep to keep them)",
            tmp.path.display()
        )
    })?;
    figures.print(&args);
    Ok(())
}

struct Figures {
    exec: Samples,
    log_latency: Samples,
    log_mb_per_s: f64,
    lines_read: u64,
    lines_lost: u64,
    forward_mb_per_s: f64,
    kubectl_forward_mb_per_s: f64,
    forward_setup: Samples,
    agent_rss: u64,
}

impl Figures {
    fn print(&self, args: &IoArgs) {
        let mut report = Report::new("Pod I/O through the API server (kube-rs client)");
        let ms = |name: &str, v: f64, target: Option<f64>| {
            let row = Row::new(name, v, None, Unit::Ms);
            match target {
                Some(t) => row.target(Target::Below(t)),
                None => row,
            }
        };
        report.row(ms("exec round trip: p50", self.exec.p50_ms(), None));
        report.row(ms("exec round trip: p99", self.exec.p99_ms(), Some(50.0)));
        report.row(ms(
            "log follow latency: p50",
            self.log_latency.p50_ms(),
            None,
        ));
        report.row(ms(
            "log follow latency: p99",
            self.log_latency.p99_ms(),
            Some(50.0),
        ));
        report.row(Row::new(
            "log streaming (follow)",
            self.log_mb_per_s,
            None,
            Unit::MBPerSec,
        ));
        report.row(
            Row::new(
                "log streaming: lines lost",
                self.lines_lost as f64,
                None,
                Unit::Count,
            )
            .target(Target::Below(1.0)),
        );
        report.row(
            Row::new(
                format!("port-forward, {} MiB echoed intact", args.forward_mib),
                self.forward_mb_per_s,
                None,
                Unit::MBPerSec,
            )
            .target(Target::AtLeast(300.0)),
        );
        report.row(
            Row::new(
                format!(
                    "kubectl port-forward, {} MiB echoed intact",
                    args.forward_mib
                ),
                self.kubectl_forward_mb_per_s,
                None,
                Unit::MBPerSec,
            )
            .target(Target::AtLeast(300.0)),
        );
        report.row(ms(
            "port-forward set-up: p50",
            self.forward_setup.p50_ms(),
            None,
        ));
        report.row(ms(
            "port-forward set-up: p99",
            self.forward_setup.p99_ms(),
            None,
        ));
        report.row(
            Row::new(
                format!("agent RSS with {} pods running", args.pods),
                self.agent_rss as f64 / MIB,
                None,
                Unit::MiB,
            )
            .target(Target::Below(50.0)),
        );
        report.note(format!(
            "{} exec(s); logs read for {} s each ({} lines in the streaming run); {} port-forward set-ups; echo server: {}",
            args.execs,
            args.log_seconds,
            self.lines_read,
            args.connections,
            if args.nc_echo {
                "busybox nc -e cat"
            } else {
                "testserver echo"
            }
        ));
        report.print();
    }
}

fn busybox_pod(name: &str, script: &str) -> Result<Pod> {
    pod(
        name,
        agent::images::test_images::BUSYBOX_IMAGE,
        &["sh", "-c", script],
    )
}

fn pod(name: &str, image: &str, command: &[&str]) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": command,
            }],
        },
    }))?)
}

async fn measure(
    args: &IoArgs,
    client: &kube::Client,
    kubeconfig: &std::path::Path,
    agent_pid: u32,
    progress: &dyn Fn(&str),
) -> Result<Figures> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}}))?,
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let scripts = [
        ("shell", "exec sleep 3600".to_string()),
        (
            "ticker",
            // The kernel's uptime: the same clock inside the container and here.
            "while :; do cat /proc/uptime; usleep 100000; done".to_string(),
        ),
    ];
    for (name, script) in &scripts {
        pods.create(&PostParams::default(), &busybox_pod(name, script)?)
            .await?;
    }
    let port = ECHO_PORT.to_string();
    let echo = if args.nc_echo {
        busybox_pod("echo", &format!("exec nc -ll -p {ECHO_PORT} -e cat"))?
    } else {
        use agent::images::test_images::TESTSERVER_IMAGE;
        pod("echo", TESTSERVER_IMAGE, &["/testserver", "echo", &port])?
    };
    pods.create(&PostParams::default(), &echo).await?;
    let scripts: Vec<_> = scripts.iter().map(|(n, _)| *n).chain(["echo"]).collect();
    for name in &scripts {
        wait_running(&pods, name).await?;
    }
    progress("pods running");

    let mut exec = Vec::new();
    for _ in 0..args.execs {
        exec.push(exec_once(&pods).await?);
    }
    let exec = Samples::new(exec);
    progress(&format!(
        "exec: p50 {:.1} ms, p99 {:.1} ms",
        exec.p50_ms(),
        exec.p99_ms()
    ));

    let log_latency = Samples::new(follow_latency(&pods, args.log_seconds).await?);
    progress(&format!(
        "log follow latency: p50 {:.1} ms, p99 {:.1} ms",
        log_latency.p50_ms(),
        log_latency.p99_ms()
    ));
    // The logger uses a core while it runs: only during its own measurement.
    pods.create(
        &PostParams::default(),
        &busybox_pod("logger", "i=0; while :; do echo $i; i=$((i+1)); done")?,
    )
    .await?;
    wait_running(&pods, "logger").await?;
    let (bytes, lines_read, lines_lost, took) = follow_throughput(&pods, args.log_seconds).await?;
    pods.delete("logger", &DeleteParams::default()).await?;
    let log_mb_per_s = bytes as f64 / 1e6 / took.as_secs_f64();
    progress(&format!(
        "log streaming: {log_mb_per_s:.1} MB/s, {lines_read} lines, {lines_lost} lost"
    ));

    let forward_mb_per_s = forward_throughput(&pods, args.forward_mib).await?;
    progress(&format!("port-forward: {forward_mb_per_s:.1} MB/s"));
    let kubectl_forward_mb_per_s = kubectl_forward_throughput(kubeconfig, args.forward_mib).await?;
    progress(&format!(
        "kubectl port-forward: {kubectl_forward_mb_per_s:.1} MB/s"
    ));
    let mut setup = Vec::new();
    for _ in 0..args.connections {
        setup.push(forward_setup(&pods).await?);
    }
    let forward_setup = Samples::new(setup);

    for i in scripts.len()..args.pods {
        pods.create(
            &PostParams::default(),
            &busybox_pod(&format!("idle-{i}"), "exec sleep 3600")?,
        )
        .await?;
    }
    for i in scripts.len()..args.pods {
        wait_running(&pods, &format!("idle-{i}")).await?;
    }
    let agent_rss = procs::rss_bytes(agent_pid)?;
    progress(&format!(
        "{} pods running: agent RSS {:.1} MiB",
        args.pods,
        agent_rss as f64 / MIB
    ));
    namespaces.delete(NS, &DeleteParams::default()).await?;
    Ok(Figures {
        exec,
        log_latency,
        log_mb_per_s,
        lines_read,
        lines_lost,
        forward_mb_per_s,
        kubectl_forward_mb_per_s,
        forward_setup,
        agent_rss,
    })
}

async fn wait_running(pods: &Api<Pod>, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pod = pods.get(name).await?;
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if phase == "Running" {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("pod {name} not Running within 120 s (phase {phase:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One `echo hi`: from the request to its exit status.
async fn exec_once(pods: &Api<Pod>) -> Result<Duration> {
    let start = Instant::now();
    let mut attached = pods
        .exec(
            "shell",
            ["echo", "hi"],
            &AttachParams::default().stdout(true).stderr(false),
        )
        .await
        .context("exec")?;
    let mut out = String::new();
    if let Some(mut stdout) = attached.stdout() {
        stdout.read_to_string(&mut out).await?;
    }
    let status = attached
        .take_status()
        .context("no status channel")?
        .await
        .context("no exit status")?;
    let took = start.elapsed();
    if out != "hi\n" || status.status.as_deref() != Some("Success") {
        bail!("exec answered {out:?} with status {status:?}");
    }
    Ok(took)
}

/// The kernel's uptime in seconds (`/proc/uptime`, hundredths of a second).
fn uptime() -> Option<f64> {
    std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// For each line the ticker prints while the follower reads: clock to read.
async fn follow_latency(pods: &Api<Pod>, seconds: u64) -> Result<Vec<Duration>> {
    let params = LogParams {
        follow: true,
        tail_lines: Some(0),
        ..Default::default()
    };
    let mut lines = pods.log_stream("ticker", &params).await?.lines();
    let mut out = Vec::new();
    let mut other = None;
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(5), lines.try_next()).await?
        else {
            bail!("the ticker's log ended or stalled");
        };
        other.get_or_insert_with(|| line.clone());
        let now = uptime().context("reading /proc/uptime")?;
        if let Some(stamp) = line
            .split_whitespace()
            .next()
            .and_then(|s| s.parse::<f64>().ok())
        {
            out.push(Duration::from_secs_f64((now - stamp).max(0.0)));
        }
    }
    if out.is_empty() {
        bail!("no clock lines read from the ticker's log; its first line: {other:?}");
    }
    Ok(out)
}

/// Follows the logger from its current end: (bytes, lines, lines lost, time).
async fn follow_throughput(pods: &Api<Pod>, seconds: u64) -> Result<(u64, u64, u64, Duration)> {
    let params = LogParams {
        follow: true,
        tail_lines: Some(0),
        ..Default::default()
    };
    let start = Instant::now();
    let mut stream = pods.log_stream("logger", &params).await?.lines();
    let (mut bytes, mut lines, mut lost) = (0u64, 0u64, 0u64);
    let mut last: Option<u64> = None;
    let end = start + Duration::from_secs(seconds);
    while Instant::now() < end {
        let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await?
        else {
            bail!("the logger's log ended or stalled");
        };
        bytes += line.len() as u64 + 1;
        lines += 1;
        let Ok(n) = line.trim().parse::<u64>() else {
            bail!("the logger's log has a line that is not its number: {line:?}");
        };
        if let Some(prev) = last {
            lost += n.saturating_sub(prev + 1);
        }
        last = Some(n);
    }
    Ok((bytes, lines, lost, start.elapsed()))
}

/// A pseudo-random byte pattern (xorshift), so a dropped or repeated chunk shows.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Sends `mib` MiB through a forward to the echo server and reads them back: MB/s.
///
/// The echo is compared with the pattern as it comes, a buffer at a time, so the figure
/// holds no copy of the payload and no page faults of a second 100 MiB buffer (both cost
/// this process, which shares the cores with the server and the agent, a tenth of the time).
async fn forward_throughput(pods: &Api<Pod>, mib: usize) -> Result<f64> {
    let mut forwarder = pods.portforward("echo", &[ECHO_PORT]).await?;
    let stream = forwarder
        .take_stream(ECHO_PORT)
        .context("no stream for the forwarded port")?;
    let rate = echo_throughput(stream, mib).await;
    forwarder.abort();
    rate
}

/// The same through `kubectl port-forward` to a local port: kubectl as the user runs
/// it (its start-up is before the timed window).
async fn kubectl_forward_throughput(kubeconfig: &std::path::Path, mib: usize) -> Result<f64> {
    use tokio::io::AsyncBufReadExt as _;
    let mut kubectl = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["-n", NS, "port-forward", "pod/echo"])
        .arg(format!(":{ECHO_PORT}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting kubectl port-forward (is kubectl installed?)")?;
    let mut lines = tokio::io::BufReader::new(kubectl.stdout.take().context("no stdout")?).lines();
    // "Forwarding from 127.0.0.1:41234 -> 9000"
    let port = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            let port = line
                .strip_prefix("Forwarding from 127.0.0.1:")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|p| p.parse::<u16>().ok());
            if let Some(port) = port {
                return Ok(port);
            }
        }
        bail!("kubectl port-forward ended without a local port")
    })
    .await
    .context("kubectl port-forward printed no local port within 30 s")??;
    // Drained, or kubectl dies of SIGPIPE at its next line.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let rate = echo_throughput(stream, mib).await;
    let _ = kubectl.start_kill();
    let _ = kubectl.wait().await;
    rate
}

/// Sends `mib` MiB of the pattern through `stream` to the echo server and reads them
/// back: MB/s of the payload.
///
/// The echo is compared with the pattern as it comes, a buffer at a time, so the figure
/// holds no copy of the payload and no page faults of a second 100 MiB buffer (both cost
/// this process, which shares the cores with the server and the agent, a tenth of the time).
async fn echo_throughput<S>(stream: S, mib: usize) -> Result<f64>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let payload = std::sync::Arc::new(pattern(mib * 1024 * 1024));
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buf = vec![0u8; 256 * 1024];
    let start = Instant::now();
    let sent = payload.clone();
    let writing = tokio::spawn(async move {
        for chunk in sent.chunks(64 * 1024) {
            writer.write_all(chunk).await?;
        }
        writer.flush().await?;
        Ok::<_, std::io::Error>(writer)
    });
    let (mut at, mut intact) = (0, true);
    while at < payload.len() {
        let want = buf.len().min(payload.len() - at);
        let n = reader
            .read(&mut buf[..want])
            .await
            .context("reading the echo back")?;
        if n == 0 {
            bail!("the echo ended after {at} of {} bytes", payload.len());
        }
        intact &= buf[..n] == payload[at..at + n];
        at += n;
    }
    let took = start.elapsed();
    drop(writing.await??);
    if !intact {
        bail!("the bytes echoed through the port-forward differ from those sent");
    }
    Ok(payload.len() as f64 / 1e6 / took.as_secs_f64())
}

/// A new forward, one byte there and back.
async fn forward_setup(pods: &Api<Pod>) -> Result<Duration> {
    let start = Instant::now();
    let mut forwarder = pods.portforward("echo", &[ECHO_PORT]).await?;
    let mut stream = forwarder
        .take_stream(ECHO_PORT)
        .context("no stream for the forwarded port")?;
    stream.write_all(b"x").await?;
    let mut one = [0u8; 1];
    stream.read_exact(&mut one).await?;
    let took = start.elapsed();
    drop(stream);
    forwarder.abort();
    Ok(took)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_is_not_periodic_within_a_chunk() {
        let p = pattern(256 * 1024);
        let chunk = 64 * 1024;
        assert_ne!(&p[..chunk], &p[chunk..2 * chunk]);
        assert_eq!(pattern(1000), pattern(1000));
    }
}
