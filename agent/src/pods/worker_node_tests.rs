//! What upstream's node end-to-end tests expect of a pod's worker: subPathExpr mounts, a
//! world-writable termination log, activeDeadlineSeconds, and a pod refused at admission.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::{Harness, UID};
use crate::pods::admission::Verdict;
use crate::pods::container_id;
use crate::pods::status::recording::Sent;
use crate::runtime::fake::{Call, FakeRuntime};

/// A pod of one long-running container `c`, with the spec's fields `extra` replaced.
fn pod_with(extra: serde_json::Value) -> Pod {
    let mut pod = serde_json::json!({
        "metadata": {"name": "p", "namespace": "default", "uid": UID, "resourceVersion": "1"},
        "spec": {
            "restartPolicy": "Always",
            "enableServiceLinks": false,
            "containers": [{
                "name": "c",
                "image": "busybox:1.36",
                "command": ["sleep", "3600"],
            }],
        },
    });
    if let serde_json::Value::Object(fields) = extra {
        for (k, v) in fields {
            pod["spec"][k] = v;
        }
    }
    serde_json::from_value(pod).expect("a valid pod")
}

#[tokio::test]
async fn a_sub_path_expr_mount_is_expanded_from_the_containers_env() {
    let pod = pod_with(serde_json::json!({
        "volumes": [{"name": "work", "emptyDir": {}}],
        "containers": [{
            "name": "c",
            "image": "busybox:1.36",
            "command": ["sleep", "3600"],
            "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "volumeMounts": [{"name": "work", "mountPath": "/work", "subPathExpr": "logs/$(POD_NAME)"}],
        }],
    }));
    let h = Harness::start(pod, &["busybox:1.36"]);
    h.wait_for_event("Started").await;
    let config = h.rt.config(&container_id(UID, "c", 0)).expect("created");
    let work = config
        .mounts
        .iter()
        .find(|m| m.destination == "/work")
        .expect("the /work mount");
    assert!(
        work.source.ends_with("work/logs/p") && work.source.is_dir(),
        "the volume's logs/p: {}",
        work.source.display()
    );
}

#[tokio::test]
async fn the_termination_log_is_writable_by_any_container_user() {
    let h = Harness::start(pod_with(serde_json::json!({})), &["busybox:1.36"]);
    h.wait_for_event("Started").await;
    let config = h.rt.config(&container_id(UID, "c", 0)).expect("created");
    let log = config
        .mounts
        .iter()
        .find(|m| m.destination == "/dev/termination-log")
        .expect("the termination log mount");
    let mode = std::fs::metadata(&log.source)
        .expect("the termination log exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o666, "mode {mode:o}");
}

#[tokio::test]
async fn a_pod_past_its_active_deadline_is_stopped_and_fails_with_deadline_exceeded() {
    // Started on the node an hour ago; the deadline set later (it may be lowered) is long
    // past, so no time needs to pass in the test.
    let mut pod = pod_with(serde_json::json!({}));
    pod.status = Some(
        serde_json::from_value(serde_json::json!({"startTime": "2020-01-01T00:00:00Z"}))
            .expect("a valid status"),
    );
    let h = Harness::start(pod.clone(), &["busybox:1.36"]);
    h.wait_for_event("Started").await;
    let id = container_id(UID, "c", 0);
    pod.spec.as_mut().expect("a spec").active_deadline_seconds = Some(60);
    h.pod_tx.send_replace(Some(Arc::new(pod)));
    h.wait_for_event("DeadlineExceeded").await;
    h.wait_for("the container's exit in a Failed status", |sent| {
        sent.iter().any(|s| {
            matches!(s, Sent::Status { status, .. } if status.phase.as_deref() == Some("Failed")
                && status.container_statuses.as_ref().is_some_and(|c| c[0].state.as_ref().is_some_and(|s| s.terminated.is_some())))
        })
    })
    .await;
    let status = h
        .sink
        .statuses()
        .into_iter()
        .rfind(|s| s.phase.as_deref() == Some("Failed"))
        .expect("just seen");
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        status.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
    assert!(
        h.rt.calls().contains(&Call::Kill(id, 15)),
        "{:?}",
        h.rt.calls()
    );
    assert_eq!(h.creates().len(), 1, "a failed pod is not restarted");
}

#[tokio::test]
async fn a_pod_refused_at_admission_reports_failed_and_never_runs() {
    let refused = Verdict::rejected(
        "NodePorts",
        "Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports",
    );
    let h = Harness::start_admitted(
        pod_with(serde_json::json!({})),
        FakeRuntime::new(),
        Some(refused),
    );
    let status = h.wait_for_phase("Failed").await;
    assert_eq!(status.reason.as_deref(), Some("NodePorts"));
    assert_eq!(
        status.message.as_deref(),
        Some("Pod was rejected: Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports")
    );
    assert_eq!(status.container_statuses, None);
    assert!(h.creates().is_empty());
    assert!(h.net.calls().is_empty(), "no sandbox: {:?}", h.net.calls());
}
