//! The pod printer: Ready, Status (kubectl's reason logic), Restarts and the wide columns.

use serde_json::{json, Value};

use super::{age, age_col, arr, c, get, int, name, name_col, parse_rfc3339, s, wide, ColumnDef};

pub(super) fn columns() -> Vec<ColumnDef> {
    vec![
        name_col(),
        c("Ready", "string", "Ready containers out of all containers."),
        c(
            "Status",
            "string",
            "Summary of the pod's and its containers' state.",
        ),
        c(
            "Restarts",
            "string",
            "Container restarts, with the time of the last one.",
        ),
        age_col(),
        wide("IP", "string", "Primary pod IP."),
        wide("Node", "string", "Node the pod is bound to."),
        wide("Nominated Node", "string", "Node nominated by preemption."),
        wide(
            "Readiness Gates",
            "string",
            "Readiness gates that are true out of all gates.",
        ),
    ]
}

fn condition_true(conds: &[Value], ty: &str) -> bool {
    conds
        .iter()
        .any(|c| s(c, &["type"]) == ty && s(c, &["status"]) == "True")
}

fn is_restartable_init(spec: &Value, name: &str) -> bool {
    arr(spec, &["initContainers"])
        .iter()
        .any(|c| s(c, &["name"]) == name && s(c, &["restartPolicy"]) == "Always")
}

fn terminated_at(status: &Value) -> Option<i64> {
    get(status, &["lastState", "terminated", "finishedAt"])
        .and_then(Value::as_str)
        .and_then(parse_rfc3339)
}

fn terminated_reason(t: &Value, prefix: &str) -> String {
    let reason = s(t, &["reason"]);
    if !reason.is_empty() {
        return format!("{prefix}{reason}");
    }
    let signal = int(t, &["signal"]);
    if signal != 0 {
        format!("{prefix}Signal:{signal}")
    } else {
        format!("{prefix}ExitCode:{}", int(t, &["exitCode"]))
    }
}

/// Ready count, status reason and restart text of a pod, as kubectl shows them.
pub(crate) fn pod_summary(pod: &Value, now: i64) -> (String, String, String) {
    let spec = get(pod, &["spec"]).cloned().unwrap_or(Value::Null);
    let status = get(pod, &["status"]).cloned().unwrap_or(Value::Null);
    let conditions = arr(&status, &["conditions"]);
    let init_specs = arr(&spec, &["initContainers"]);

    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut total = arr(&spec, &["containers"]).len() as i64;
    total += init_specs
        .iter()
        .filter(|c| s(c, &["restartPolicy"]) == "Always")
        .count() as i64;
    let mut ready = 0i64;
    let mut last_restart: Option<i64> = None;
    let mut last_sidecar_restart: Option<i64> = None;

    let phase = s(&status, &["phase"]);
    let mut reason = phase.to_string();
    if !s(&status, &["reason"]).is_empty() {
        reason = s(&status, &["reason"]).to_string();
    }
    if conditions
        .iter()
        .any(|c| s(c, &["type"]) == "PodScheduled" && s(c, &["reason"]) == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }

    let mut initializing = false;
    for (i, cs) in arr(&status, &["initContainerStatuses"]).iter().enumerate() {
        let count = int(cs, &["restartCount"]);
        restarts += count;
        if let Some(t) = terminated_at(cs) {
            last_restart = last_restart.max(Some(t));
        }
        let restartable = is_restartable_init(&spec, s(cs, &["name"]));
        if restartable {
            sidecar_restarts += count;
            if let Some(t) = terminated_at(cs) {
                last_sidecar_restart = last_sidecar_restart.max(Some(t));
            }
        }
        let terminated = get(cs, &["state", "terminated"]);
        let waiting_reason = s(cs, &["state", "waiting", "reason"]);
        if terminated.is_some_and(|t| int(t, &["exitCode"]) == 0) {
            continue;
        }
        if restartable && get(cs, &["started"]).and_then(Value::as_bool) == Some(true) {
            if get(cs, &["ready"]).and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            reason = terminated_reason(t, "Init:");
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(conditions, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for cs in arr(&status, &["containerStatuses"]).iter().rev() {
            restarts += int(cs, &["restartCount"]);
            if let Some(t) = terminated_at(cs) {
                last_restart = last_restart.max(Some(t));
            }
            let waiting_reason = s(cs, &["state", "waiting", "reason"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = get(cs, &["state", "terminated"]) {
                reason = terminated_reason(t, "");
            } else if get(cs, &["ready"]).and_then(Value::as_bool) == Some(true)
                && get(cs, &["state", "running"]).is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(conditions, "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    let deleting = get(pod, &["metadata", "deletionTimestamp"]).is_some();
    if deleting && s(&status, &["reason"]) == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }

    let restarts_text = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", super::human_duration(now - t)),
        _ => restarts.to_string(),
    };
    (format!("{ready}/{total}"), reason, restarts_text)
}

pub(super) fn none_if_empty(v: &str) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v.to_string()
    }
}

pub(super) fn cells(pod: &Value, now: i64) -> Vec<Value> {
    let (ready, reason, restarts) = pod_summary(pod, now);
    let mut ip = arr(pod, &["status", "podIPs"])
        .first()
        .map(|p| s(p, &["ip"]))
        .unwrap_or("");
    if ip.is_empty() {
        ip = s(pod, &["status", "podIP"]);
    }
    let gates = arr(pod, &["spec", "readinessGates"]);
    let gates_text = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conds = arr(pod, &["status", "conditions"]);
        let ok = gates
            .iter()
            .filter(|g| {
                let ty = s(g, &["conditionType"]);
                conds
                    .iter()
                    .find(|c| s(c, &["type"]) == ty)
                    .is_some_and(|c| s(c, &["status"]) == "True")
            })
            .count();
        format!("{ok}/{}", gates.len())
    };
    vec![
        name(pod),
        json!(ready),
        json!(reason),
        json!(restarts),
        age(pod, now),
        json!(none_if_empty(ip)),
        json!(none_if_empty(s(pod, &["spec", "nodeName"]))),
        json!(none_if_empty(s(pod, &["status", "nominatedNodeName"]))),
        json!(gates_text),
    ]
}
