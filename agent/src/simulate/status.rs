//! The pod status a simulated kubelet reports, as pure functions of the pod, its
//! addresses and the time, shaped like upstream kubelet's status (conditions in its order,
//! a status per container, init containers completed).
//!
//! What the simulated containers do, decided per pod from its annotations:
//! - none: every container starts and becomes ready; the pod is Running and Ready.
//! - `kybern.io/simulate-ready: "false"`: Running, containers started but not ready, so the
//!   pod is not Ready.
//! - `kybern.io/simulate-exit-code: "N"`: every container exits once with N. If the
//!   restart policy restarts it (Always; OnFailure when N != 0) it is reported running
//!   again with restartCount 1 and lastState terminated with N; the pod stays Running.
//!   Otherwise it stays terminated and the pod is Succeeded (N = 0) or Failed.
//!   A simple model: no crash loop back-off, one restart only.

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, HostIP, Pod,
    PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::{EXIT_CODE_ANNOTATION, READY_ANNOTATION};

/// Now, to the second (what Time keeps), so a status built twice compares equal.
pub fn now() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// FNV-1a: stable across builds, so simulated IDs do not change between runs.
pub fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn hex64(seed: &str) -> String {
    (0..4)
        .map(|i| format!("{:016x}", fnv64(format!("{i}/{seed}").as_bytes())))
        .collect()
}

/// What the pod's containers do (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Running; `restarted_after` is the exit code of the one earlier run, if any.
    Running {
        ready: bool,
        restarted_after: Option<i32>,
    },
    /// Exited with this code and not restarted.
    Exited(i32),
}

pub fn outcome(pod: &Pod) -> Outcome {
    let annotations = pod.metadata.annotations.as_ref();
    let annotation = |key: &str| annotations.and_then(|a| a.get(key)).map(|v| v.trim());
    let ready = annotation(READY_ANNOTATION) != Some("false");
    let Some(code) = annotation(EXIT_CODE_ANNOTATION).and_then(|v| v.parse::<i32>().ok()) else {
        return Outcome::Running {
            ready,
            restarted_after: None,
        };
    };
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let restarts = policy == "Always" || (policy == "OnFailure" && code != 0);
    if restarts {
        Outcome::Running {
            ready,
            restarted_after: Some(code),
        }
    } else {
        Outcome::Exited(code)
    }
}

pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

pub fn uses_host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// Where the pod "runs".
pub struct Addresses {
    pub host_ip: String,
    pub pod_ip: String,
}

fn terminated(
    code: i32,
    started_at: &Time,
    finished_at: &Time,
    container_id: &str,
) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: code,
        reason: Some(if code == 0 { "Completed" } else { "Error" }.into()),
        started_at: Some(started_at.clone()),
        finished_at: Some(finished_at.clone()),
        container_id: Some(container_id.into()),
        ..Default::default()
    }
}

/// One container's status. Times already reported are kept, so rebuilding the status of
/// an unchanged pod gives the same status (and no write).
fn container_status(
    pod_uid: &str,
    name: &str,
    image: &str,
    outcome: Outcome,
    previous: Option<&ContainerStatus>,
    start: &Time,
    now: &Time,
) -> ContainerStatus {
    let prev_state = previous.and_then(|p| p.state.as_ref());
    let started_at = prev_state
        .and_then(|s| s.running.as_ref().and_then(|r| r.started_at.clone()))
        .or_else(|| {
            prev_state.and_then(|s| s.terminated.as_ref().and_then(|t| t.started_at.clone()))
        })
        .unwrap_or_else(|| start.clone());
    let finished_at = prev_state
        .and_then(|s| s.terminated.as_ref().and_then(|t| t.finished_at.clone()))
        .unwrap_or_else(|| now.clone());
    let restart_count = match outcome {
        Outcome::Running {
            restarted_after: Some(_),
            ..
        } => 1,
        _ => 0,
    };
    let id = |restart: i32| {
        format!(
            "simulated://{}",
            hex64(&format!("{pod_uid}/{name}/{restart}"))
        )
    };
    let container_id = id(restart_count);
    let (state, last_state, ready, started) = match outcome {
        Outcome::Running {
            ready,
            restarted_after,
        } => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(started_at.clone()),
                }),
                ..Default::default()
            },
            restarted_after.map(|code| ContainerState {
                terminated: Some(terminated(code, start, &started_at, &id(0))),
                ..Default::default()
            }),
            ready,
            true,
        ),
        Outcome::Exited(code) => (
            ContainerState {
                terminated: Some(terminated(code, &started_at, &finished_at, &container_id)),
                ..Default::default()
            },
            None,
            false,
            false,
        ),
    };
    ContainerStatus {
        name: name.into(),
        image: image.into(),
        image_id: format!("{image}@sha256:{}", hex64(image)),
        container_id: Some(container_id),
        ready,
        started: Some(started),
        restart_count,
        state: Some(state),
        last_state: Some(last_state.unwrap_or_default()),
        ..Default::default()
    }
}

fn condition(
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    previous: &[PodCondition],
    now: &Time,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    // The transition time moves only when the status does.
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.map(Into::into),
        message,
        last_transition_time: Some(since),
        ..Default::default()
    }
}

/// The status to report for a pod that is not yet terminal.
pub fn desired_status(pod: &Pod, addresses: &Addresses, now: &Time) -> PodStatus {
    let previous = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let outcome = outcome(pod);
    let start = previous.start_time.clone().unwrap_or_else(|| now.clone());
    let prev_containers = previous.container_statuses.clone().unwrap_or_default();
    let prev_init = previous.init_container_statuses.clone().unwrap_or_default();
    let find = |list: &[ContainerStatus], name: &str| list.iter().find(|c| c.name == name).cloned();

    let containers: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| {
            let image = c.image.as_deref().unwrap_or("");
            container_status(
                uid,
                &c.name,
                image,
                outcome,
                find(&prev_containers, &c.name).as_ref(),
                &start,
                now,
            )
        })
        .collect();
    let init_containers: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            let image = c.image.as_deref().unwrap_or("");
            let prev = find(&prev_init, &c.name);
            // A sidecar (restartPolicy Always) keeps running; others ran to completion.
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            let init_outcome = if sidecar {
                Outcome::Running {
                    ready: true,
                    restarted_after: None,
                }
            } else {
                Outcome::Exited(0)
            };
            let mut status = container_status(
                uid,
                &c.name,
                image,
                init_outcome,
                prev.as_ref(),
                &start,
                now,
            );
            // Completed init containers count as ready upstream.
            status.ready = true;
            status
        })
        .collect();

    let phase = match outcome {
        Outcome::Exited(0) => "Succeeded",
        Outcome::Exited(_) => "Failed",
        Outcome::Running { .. } => "Running",
    };
    let terminal = phase != "Running";
    let unready: Vec<&str> = containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let (ready_reason, ready_message) = if phase == "Succeeded" {
        (Some("PodCompleted"), None)
    } else if unready.is_empty() {
        (None, None)
    } else {
        (
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let prev_conditions = previous.conditions.clone().unwrap_or_default();
    let ready = unready.is_empty() && !terminal;
    let mut conditions = vec![
        condition(
            "PodReadyToStartContainers",
            !terminal,
            None,
            None,
            &prev_conditions,
            now,
        ),
        condition("Initialized", true, None, None, &prev_conditions, now),
        condition(
            "Ready",
            ready,
            ready_reason,
            ready_message.clone(),
            &prev_conditions,
            now,
        ),
        condition(
            "ContainersReady",
            ready,
            ready_reason,
            ready_message,
            &prev_conditions,
            now,
        ),
        prev_conditions
            .iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "True")
            .cloned()
            .unwrap_or_else(|| condition("PodScheduled", true, None, None, &prev_conditions, now)),
    ];
    // Conditions others own (readiness gates, DisruptionTarget) stay as they are.
    const OURS: [&str; 5] = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ];
    conditions.extend(
        prev_conditions
            .iter()
            .filter(|c| !OURS.contains(&c.type_.as_str()))
            .cloned(),
    );

    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: Some(addresses.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: addresses.host_ip.clone(),
        }]),
        pod_ip: Some(addresses.pod_ip.clone()),
        pod_ips: Some(vec![PodIP {
            ip: addresses.pod_ip.clone(),
        }]),
        start_time: Some(start),
        container_statuses: Some(containers),
        init_container_statuses: (!init_containers.is_empty()).then_some(init_containers),
        ..Default::default()
    }
}

/// Whether reporting `desired` would change anything: compares only the fields the
/// simulator sets, so fields the apiserver or others add (qosClass) never cause a write.
pub fn needs_update(current: Option<&PodStatus>, desired: &PodStatus) -> bool {
    let current = serde_json::to_value(current.cloned().unwrap_or_default()).unwrap_or_default();
    let desired = serde_json::to_value(desired).unwrap_or_default();
    let Some(fields) = desired.as_object() else {
        return true;
    };
    fields.iter().any(|(k, v)| current.get(k) != Some(v))
}

/// For a pod being deleted: how long until the simulator removes it. The kubelet removes
/// a pod (delete with grace 0) once its containers stopped; simulated ones stop within the
/// grace period, and never later than `cap`. `None` when the pod is not being deleted.
pub fn termination_delay(pod: &Pod, now: Timestamp, cap: Duration) -> Option<Duration> {
    let deadline = pod.metadata.deletion_timestamp.as_ref()?.0;
    let grace = pod
        .metadata
        .deletion_grace_period_seconds
        .unwrap_or(0)
        .max(0);
    // deletionTimestamp = time of the request + grace, so the request came at deadline - grace.
    let requested = deadline.as_second() - grace;
    let wait = Duration::from_secs(grace as u64).min(cap);
    let remove_at_ms = requested as i128 * 1000 + wait.as_millis() as i128;
    let remaining_ms = remove_at_ms - now.as_millisecond() as i128;
    Some(Duration::from_millis(remaining_ms.max(0) as u64))
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
