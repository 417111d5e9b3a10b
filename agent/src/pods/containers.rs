//! A container's side effects on the runtime and the host, as the kubelet's
//! kuberuntime_container does them: the runtime config of a run (mounts, namespaces, log
//! file, cgroup), waiting for its exit, the stop signal then SIGKILL after the grace
//! period, removal, and the termination record (exit reason, OOM kill, termination message,
//! start time kept for a restarted agent).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::actions::Kind;
use super::state::{self, Terminated};
use super::wake::Wake;
use super::{config, container_id, labels, PodContext};
use crate::network::Sandbox;
use crate::runtime::{ContainerConfig, ExitStatus, ImageInfo, Mount, TaskState};

/// The longest termination message kept, as upstream.
const MAX_TERMINATION_MESSAGE: usize = 4096;

/// Now, to the second, as status timestamps are.
pub(super) fn now() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// A Unix time in seconds as a status timestamp.
pub(super) fn time_at(seconds: i64) -> Option<Time> {
    Timestamp::from_second(seconds).ok().map(Time)
}

/// What one run of a container is made of, besides its spec.
pub(super) struct RunRequest<'a> {
    pub(super) pod: &'a Pod,
    pub(super) uid: &'a str,
    pub(super) spec: &'a Container,
    pub(super) kind: Kind,
    pub(super) attempt: u32,
    pub(super) image: &'a ImageInfo,
    pub(super) env: Vec<String>,
    /// The volume mounts; the pod's files and the termination log are added.
    pub(super) mounts: Vec<Mount>,
    /// The pod's sandbox; `None` on the host network.
    pub(super) sandbox: Option<&'a Sandbox>,
}

/// The runtime config of a run: its ID, image, mounts, labels, cgroup, log file and the
/// namespaces it joins (the sandbox's, or the host's on the host network).
pub(super) fn container_config(ctx: &PodContext, run: RunRequest<'_>) -> ContainerConfig {
    let RunRequest {
        pod,
        uid,
        spec,
        kind,
        attempt,
        image,
        env,
        mut mounts,
        sandbox,
    } = run;
    let id = container_id(uid, &spec.name, attempt);
    mounts.extend(pod_mounts(ctx, uid, spec, &id));
    let mut cfg: ContainerConfig = config::base(pod, spec, &image.config, env);
    cfg.id = id.clone();
    cfg.image = image.name.clone();
    cfg.mounts = mounts;
    cfg.labels = labels(pod, &spec.name, attempt, kind);
    cfg.cgroup_path = format!("{}/{}/{}", ctx.cgroup_parent, uid, id);
    let log_dir = pod_logs_dir(ctx, pod, uid).join(&spec.name);
    if let Err(e) = std::fs::create_dir_all(&log_dir) {
        tracing::warn!(error = %e, "creating the log directory");
    }
    // The kubelet keeps the logs of the current and the previous instance only.
    crate::logs::remove_older_logs(&log_dir, attempt);
    cfg.log_path = Some(log_dir.join(format!("{attempt}.log")));
    cfg.stdin = spec.stdin.unwrap_or(false);
    cfg.stdin_once = spec.stdin_once.unwrap_or(false);
    cfg.tty = spec.tty.unwrap_or(false);
    match sandbox {
        Some(sb) => {
            cfg.netns_path = Some(sb.netns.clone());
            cfg.ipc_ns_path = Some(sb.ipc_ns.clone());
            cfg.uts_ns_path = Some(sb.uts_ns.clone());
        }
        None => {
            cfg.netns_path = Some("/proc/1/ns/net".into());
            cfg.uts_ns_path = Some("/proc/1/ns/uts".into());
            if pod.spec.as_ref().and_then(|s| s.host_ipc).unwrap_or(false) {
                cfg.ipc_ns_path = Some("/proc/1/ns/ipc".into());
            }
        }
    }
    cfg
}

/// `<logs_dir>/<namespace>_<name>_<uid>`: the pod's container logs.
pub(super) fn pod_logs_dir(ctx: &PodContext, pod: &Pod, uid: &str) -> PathBuf {
    ctx.logs_dir.join(format!(
        "{}_{}_{}",
        pod.namespace().unwrap_or_default(),
        pod.name_any(),
        uid
    ))
}

/// /etc/hosts, /etc/resolv.conf, /etc/hostname and the termination log.
fn pod_mounts(ctx: &PodContext, uid: &str, spec: &Container, id: &str) -> Vec<Mount> {
    let dir = ctx.pod_dir(uid);
    let mut mounts = Vec::new();
    let explicit: BTreeSet<&str> = spec
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    for (file, dest) in [
        ("etc-hosts", "/etc/hosts"),
        ("resolv.conf", "/etc/resolv.conf"),
        ("hostname", "/etc/hostname"),
    ] {
        if !explicit.contains(dest) {
            mounts.push(Mount {
                destination: dest.into(),
                source: dir.join(file),
                readonly: false,
            });
        }
    }
    let path = spec
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into());
    let log = termination_log(ctx, uid, &spec.name, id);
    if let Some(parent) = log.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    // World-writable (0666, as the kubelet makes it), so a container running as any user
    // can leave its message; the umask would otherwise make it 0644 and root's alone.
    let created = std::fs::write(&log, b"").and_then(|()| {
        std::fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o666))
    });
    if let Err(e) = &created {
        tracing::warn!(error = %e, path = %log.display(), "creating the termination log");
    }
    if created.is_ok() && !path.is_empty() {
        mounts.push(Mount {
            destination: path,
            source: log,
            readonly: false,
        });
    }
    mounts
}

/// Waits for the container's exit in the background and wakes the worker with it.
pub(super) fn spawn_waiter(ctx: &Arc<PodContext>, wake: &mpsc::UnboundedSender<Wake>, id: &str) {
    let (ctx, wake, id) = (ctx.clone(), wake.clone(), id.to_string());
    tokio::spawn(async move {
        loop {
            match ctx.runtime.wait(&id).await {
                Ok(status) => {
                    let _ = wake.send(Wake::Exited { id, status });
                    return;
                }
                Err(e) if e.is_not_found() => return,
                Err(e) => {
                    tracing::warn!(container = %id, error = %e, "waiting for a container; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}

/// Sends the stop signal, then SIGKILL at `deadline` if it still runs; waits for the exit.
pub(super) async fn terminate(ctx: &PodContext, id: &str, deadline: Instant, signal: u32) {
    if ctx.runtime.kill(id, signal).await.is_err() {
        return;
    }
    if tokio::time::timeout_at(deadline, ctx.runtime.wait(id))
        .await
        .is_ok()
    {
        return;
    }
    let _ = ctx.runtime.kill(id, 9).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), ctx.runtime.wait(id)).await;
}

/// [`terminate`] in the background; the exit reaches the worker through its waiter.
pub(super) fn stop_container(ctx: &Arc<PodContext>, id: String, grace: Duration, signal: u32) {
    let ctx = ctx.clone();
    tokio::spawn(async move { terminate(&ctx, &id, Instant::now() + grace, signal).await });
}

/// SIGTERM, unless the container's lifecycle names another stop signal.
pub(super) fn stop_signal(spec: &Container) -> u32 {
    match spec
        .lifecycle
        .as_ref()
        .and_then(|l| l.stop_signal.as_deref())
    {
        Some("SIGKILL") => 9,
        Some("SIGINT") => 2,
        Some("SIGQUIT") => 3,
        Some("SIGHUP") => 1,
        Some("SIGUSR1") => 10,
        Some("SIGUSR2") => 12,
        _ => 15,
    }
}

/// Removes a container (killing it first if it still runs).
pub(super) async fn remove_container(ctx: &PodContext, id: &str) {
    if let Ok(TaskState::Running { .. }) = ctx.runtime.task_state(id).await {
        let _ = ctx.runtime.kill(id, 9).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), ctx.runtime.wait(id)).await;
    }
    if let Err(e) = ctx.runtime.delete(id).await {
        tracing::warn!(container = %id, error = %e, "deleting a container");
    }
}

/// The terminated state of a run that ended with `status`.
pub(super) fn terminated_from(
    status: &ExitStatus,
    started_at: Option<Time>,
    id: &str,
    oom: bool,
) -> Terminated {
    let code = status.code as i32;
    Terminated {
        exit_code: code,
        reason: state::exit_reason(code, oom).into(),
        message: None,
        started_at,
        finished_at: Some(
            status
                .exited_at
                .and_then(|(s, _)| time_at(s))
                .unwrap_or_else(now),
        ),
        container_id: Some(format!("containerd://{id}")),
    }
}

/// Whether the kernel's OOM killer ended a process of the container's cgroup (v1's
/// memory.oom_control or v2's memory.events), read before the task is deleted.
pub(super) fn oom_killed(ctx: &PodContext, uid: &str, id: &str) -> bool {
    let rel = format!(
        "{}/{}/{}",
        ctx.cgroup_parent.trim_start_matches('/'),
        uid,
        id
    );
    let candidates = [
        Path::new("/sys/fs/cgroup/memory")
            .join(&rel)
            .join("memory.oom_control"),
        Path::new("/sys/fs/cgroup").join(&rel).join("memory.events"),
    ];
    candidates.iter().any(|path| {
        std::fs::read_to_string(path).is_ok_and(|text| {
            text.lines().any(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    })
}

fn termination_log(ctx: &PodContext, uid: &str, container: &str, id: &str) -> PathBuf {
    ctx.pod_dir(uid).join("containers").join(container).join(id)
}

/// When a container started, kept beside its termination log. containerd's task API has
/// no start time (the kubelet's CRI runtime keeps one with each container), and a restarted
/// agent that adopts the container must report the same startedAt as before.
fn start_record(ctx: &PodContext, uid: &str, container: &str, id: &str) -> PathBuf {
    termination_log(ctx, uid, container, id).with_extension("started")
}

/// Keeps the start time of a run for a restarted agent.
pub(super) fn record_start(ctx: &PodContext, uid: &str, container: &str, id: &str, at: &Time) {
    if let Err(e) = std::fs::write(
        start_record(ctx, uid, container, id),
        at.0.as_second().to_string(),
    ) {
        tracing::warn!(container = %id, error = %e, "recording the start time; a restarted agent will report the creation time");
    }
}

/// The start time a previous agent recorded for a run, if any.
pub(super) fn recorded_start(
    ctx: &PodContext,
    uid: &str,
    container: &str,
    id: &str,
) -> Option<Time> {
    std::fs::read_to_string(start_record(ctx, uid, container, id))
        .ok()
        .and_then(|s| s.trim().parse().ok().and_then(time_at))
}

/// The termination message: the file the container wrote, else (FallbackToLogsOnError and
/// a failure) the end of its log, as upstream.
pub(super) fn termination_message(
    ctx: &PodContext,
    pod: &Pod,
    spec: &Container,
    uid: &str,
    id: &str,
    exit_code: i32,
) -> Option<String> {
    let file = std::fs::read(termination_log(ctx, uid, &spec.name, id)).unwrap_or_default();
    let text =
        String::from_utf8_lossy(&file[..file.len().min(MAX_TERMINATION_MESSAGE)]).into_owned();
    if !text.is_empty() {
        return Some(text);
    }
    if spec.termination_message_policy.as_deref() == Some("FallbackToLogsOnError") && exit_code != 0
    {
        let attempt = id.rsplit('-').next().unwrap_or("0");
        let log = pod_logs_dir(ctx, pod, uid)
            .join(&spec.name)
            .join(format!("{attempt}.log"));
        let data = std::fs::read(log).unwrap_or_default();
        return log_tail_message(&data);
    }
    None
}

/// The end of a container's CRI log as its termination message: the text of its last 80
/// records, at most the last 2048 bytes of it (the kubelet's limits).
fn log_tail_message(log: &[u8]) -> Option<String> {
    let lines: Vec<&[u8]> = log.split_inclusive(|b| *b == b'\n').collect();
    let mut text = Vec::new();
    for line in &lines[lines.len().saturating_sub(80)..] {
        if let Ok(record) = crate::logs::cri::parse_line(line) {
            text.extend_from_slice(&record.text);
            if record.full {
                text.push(b'\n');
            }
        }
    }
    let text = String::from_utf8_lossy(&text);
    let tail = text.trim_end_matches('\n');
    let cut = tail.len().saturating_sub(2048);
    let start = (cut..tail.len())
        .find(|i| tail.is_char_boundary(*i))
        .unwrap_or(tail.len());
    Some(tail[start..].to_string()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_termination_message_is_the_text_at_the_end_of_the_log() {
        let mut log = String::new();
        for i in 0..100 {
            log.push_str(&format!("2026-01-01T00:00:00Z stdout F line {i}\n"));
        }
        log.push_str("2026-01-01T00:00:01Z stderr P fa\n2026-01-01T00:00:01Z stderr F iled\n");
        let message = log_tail_message(log.as_bytes()).expect("a message");
        assert!(
            message.starts_with("line 22\n") && message.ends_with("line 99\nfailed"),
            "the text of the last 80 records, partial ones joined: {message:?}"
        );
        assert_eq!(log_tail_message(b""), None);
    }
}
