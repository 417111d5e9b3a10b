//! The worker driven end to end without an apiserver or containerd: a fake runtime, a fake
//! network and the recording status sink.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::run;
use crate::network::fake::{Call as NetCall, FakeNetwork};
use crate::pods::admission::Verdict;
use crate::pods::image_manager::normalize;
use crate::pods::status::recording::{RecordingSink, Sent};
use crate::pods::{container_id, BackoffConfig, ClusterDns, PodContext};
use crate::runtime::fake::{Call, FakeRuntime};
use crate::runtime::{ImageInfo, Runtime};
use crate::volumes::VolumeHost;

const UID: &str = "0b7c6f2e-0000-4000-8000-00000000000a";

/// A client of an apiserver that holds nothing: every request is answered 404 in-process,
/// without any network. (The container environment looks up the `kubernetes` service.)
fn empty_apiserver() -> kube::Client {
    let service = tower::service_fn(|_req: http::Request<kube::client::Body>| async {
        let status = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": "NotFound", "code": 404, "message": "not found",
        });
        http::Response::builder()
            .status(404)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(status.to_string())))
    });
    kube::Client::new(service, "default")
}

fn image(reference: &str) -> ImageInfo {
    ImageInfo {
        name: normalize(reference),
        digest: "sha256:0a".into(),
        config: Default::default(),
    }
}

/// A pod of one container `c` running `image`.
fn pod(restart_policy: &str, image: &str, pull_policy: Option<&str>) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "default", "uid": UID, "resourceVersion": "1"},
        "spec": {
            "restartPolicy": restart_policy,
            // Service links would list services from the apiserver.
            "enableServiceLinks": false,
            "containers": [{
                "name": "c",
                "image": image,
                "imagePullPolicy": pull_policy,
                "command": ["sh", "-c", "true"],
            }],
        },
    }))
    .expect("a valid pod")
}

struct Harness {
    rt: Arc<FakeRuntime>,
    net: Arc<FakeNetwork>,
    sink: Arc<RecordingSink>,
    pod_tx: watch::Sender<Option<Arc<Pod>>>,
    worker: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// A worker for `pod` on a node whose runtime holds `images`.
    fn start(pod: Pod, images: &[&str]) -> Harness {
        let rt = FakeRuntime::new();
        for i in images {
            rt.add_image(image(i));
        }
        Harness::start_on(pod, rt)
    }

    /// A worker for `pod` on a node with runtime `rt`.
    fn start_on(pod: Pod, rt: FakeRuntime) -> Harness {
        Harness::start_admitted(pod, rt, None)
    }

    /// A worker for `pod` on a node with runtime `rt`, which `refused` at admission.
    fn start_admitted(pod: Pod, rt: FakeRuntime, refused: Option<Verdict>) -> Harness {
        let dir = tempfile::tempdir().expect("a temp dir");
        let rt = Arc::new(rt);
        let net = Arc::new(FakeNetwork::initialised("10.42.0.0/24"));
        let sink = Arc::new(RecordingSink::new());
        let ctx = Arc::new(PodContext {
            client: empty_apiserver(),
            node_name: "n1".into(),
            node_ip: "192.168.1.10".parse().expect("an address"),
            runtime: rt.clone(),
            network: net.clone(),
            volumes: VolumeHost {
                client: empty_apiserver(),
                pods_dir: dir.path().join("pods"),
                node_name: "n1".into(),
            },
            dns: ClusterDns::default(),
            logs_dir: dir.path().join("logs"),
            cgroup_parent: "/kybern-unit-test".into(),
            backoff: BackoffConfig::default(),
            static_pods_dir: None,
            sink: sink.clone(),
        });
        let (pod_tx, pod_rx) = watch::channel(Some(Arc::new(pod)));
        let worker = tokio::spawn(run(ctx, UID.into(), pod_rx, Vec::new(), refused));
        Harness {
            rt,
            net,
            sink,
            pod_tx,
            worker,
            _dir: dir,
        }
    }

    /// Waits until the sink saw what `done` looks for; a hang fails the test after half a minute
    /// instead of blocking it forever.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Sent]) -> bool) {
        tokio::time::timeout(Duration::from_secs(30), self.sink.wait_for(done))
            .await
            .unwrap_or_else(|_| panic!("never saw {what}; sent: {:#?}", self.sink.sent()));
    }

    /// Waits until `done` holds, checking whenever the worker's tasks have had their turn.
    async fn wait_until(&self, what: &str, done: impl Fn() -> bool) {
        let polled = async {
            while !done() {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), polled)
            .await
            .unwrap_or_else(|_| panic!("never saw {what}"));
    }

    async fn wait_for_event(&self, reason: &str) {
        self.wait_for(reason, |sent| {
            sent.iter()
                .any(|s| matches!(s, Sent::Event { reason: r, .. } if r == reason))
        })
        .await;
    }

    /// Waits for a status write whose phase is `phase`, and returns it.
    async fn wait_for_phase(&self, phase: &str) -> PodStatus {
        let is = |s: &Sent| matches!(s, Sent::Status { status, .. } if status.phase.as_deref() == Some(phase));
        self.wait_for(&format!("phase {phase}"), |sent| sent.iter().any(is))
            .await;
        self.sink
            .statuses()
            .into_iter()
            .find(|s| s.phase.as_deref() == Some(phase))
            .expect("just seen")
    }

    fn creates(&self) -> Vec<String> {
        self.rt
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Create(id) => Some(id),
                _ => None,
            })
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.worker.abort();
    }
}

fn terminated(status: &PodStatus) -> (i32, Option<String>) {
    let t = status
        .container_statuses
        .as_ref()
        .expect("container statuses")[0]
        .state
        .as_ref()
        .and_then(|s| s.terminated.clone())
        .expect("a terminated container");
    (t.exit_code, t.reason)
}

fn waiting_reason(status: &PodStatus) -> Option<String> {
    status
        .container_statuses
        .as_ref()
        .expect("container statuses")[0]
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.clone())
}

#[tokio::test]
async fn a_pod_whose_container_exits_0_with_restart_policy_never_reports_succeeded() {
    let h = Harness::start(pod("Never", "busybox:1.36", None), &["busybox:1.36"]);
    h.wait_for_event("Started").await;
    let id = container_id(UID, "c", 0);
    h.rt.exit(&id, 0);
    let status = h.wait_for_phase("Succeeded").await;
    assert_eq!(terminated(&status), (0, Some("Completed".into())));
    assert_eq!(
        h.creates(),
        vec![id.clone()],
        "a succeeded container is not restarted"
    );
    // A finished pod gives back its address; its exited container stays for its logs.
    h.wait_until("the sandbox released", || {
        h.net.calls().contains(&NetCall::Teardown(UID.into()))
    })
    .await;
    assert!(h.rt.calls().iter().all(|c| *c != Call::Delete(id.clone())));
    let sent = h.sink.sent();
    assert!(
        sent.iter()
            .all(|s| !matches!(s, Sent::Status { uid, .. } if uid.as_deref() != Some(UID))),
        "every status write is for this pod's UID only: {sent:#?}"
    );
}

#[tokio::test]
async fn a_pod_whose_container_fails_with_restart_policy_never_reports_failed() {
    let h = Harness::start(pod("Never", "busybox:1.36", None), &["busybox:1.36"]);
    h.wait_for_event("Started").await;
    h.rt.exit(&container_id(UID, "c", 0), 3);
    let status = h.wait_for_phase("Failed").await;
    assert_eq!(terminated(&status), (3, Some("Error".into())));
    assert_eq!(h.creates().len(), 1);
}

#[tokio::test]
async fn a_container_that_fails_under_on_failure_restarts_then_backs_off() {
    let h = Harness::start(pod("OnFailure", "busybox:1.36", None), &["busybox:1.36"]);
    h.wait_for_event("Started").await;
    h.rt.exit(&container_id(UID, "c", 0), 1);
    // The first restart is immediate, as the kubelet's.
    h.wait_for("a second run", |sent| {
        sent.iter()
            .filter(|s| matches!(s, Sent::Event { reason, .. } if reason == "Started"))
            .count()
            == 2
    })
    .await;
    assert_eq!(
        h.creates(),
        vec![container_id(UID, "c", 0), container_id(UID, "c", 1)]
    );
    h.rt.exit(&container_id(UID, "c", 1), 1);
    h.wait_for_event("BackOff").await;
    h.wait_for("CrashLoopBackOff", |sent| {
        sent.iter().any(|s| {
            matches!(s, Sent::Status { status, .. } if waiting_reason(status).as_deref() == Some("CrashLoopBackOff"))
        })
    })
    .await;
    assert_eq!(h.creates().len(), 2, "no third run inside the back-off");
}

#[tokio::test]
async fn a_deleted_pods_containers_are_stopped_then_the_pod_is_removed() {
    let mut p = pod("Always", "busybox:1.36", None);
    let h = Harness::start(p.clone(), &["busybox:1.36"]);
    h.wait_for_event("Started").await;
    let id = container_id(UID, "c", 0);
    p.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    p.metadata.deletion_grace_period_seconds = Some(30);
    h.pod_tx.send_replace(Some(Arc::new(p)));
    h.wait_for("the pod's removal", |sent| {
        sent.iter().any(|s| matches!(s, Sent::Delete { .. }))
    })
    .await;
    let calls = h.rt.calls();
    let kill = calls
        .iter()
        .position(|c| *c == Call::Kill(id.clone(), 15))
        .unwrap_or_else(|| panic!("the container got SIGTERM: {calls:?}"));
    let delete = calls
        .iter()
        .position(|c| *c == Call::Delete(id.clone()))
        .unwrap_or_else(|| panic!("the container was removed: {calls:?}"));
    assert!(kill < delete, "stopped before removed: {calls:?}");
    assert!(h.rt.list_containers().await.unwrap().is_empty());
    assert!(h.net.calls().contains(&NetCall::Teardown(UID.into())));
    assert_eq!(
        h.sink.sent().last(),
        Some(&Sent::Delete {
            pod: "p".into(),
            uid: UID.into()
        }),
        "removing the pod is the last thing the worker does"
    );
}

#[tokio::test]
async fn an_absent_image_is_pulled_then_started() {
    let rt = FakeRuntime::new();
    rt.add_registry_image(&normalize("app:v1"), image("app:v1"));
    let h = Harness::start_on(pod("Always", "app:v1", None), rt);
    h.wait_for_event("Started").await;
    let pulls: Vec<Call> =
        h.rt.calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Pull(..)))
            .collect();
    assert_eq!(pulls, vec![Call::Pull(normalize("app:v1"), None)]);
    let reasons = h.sink.event_reasons();
    assert_eq!(
        reasons,
        vec!["Pulling", "Pulled", "Created", "Started"],
        "events in order"
    );
}

#[tokio::test]
async fn an_absent_image_with_pull_policy_never_waits_and_is_never_pulled() {
    let h = Harness::start(pod("Always", "app:v1", Some("Never")), &[]);
    h.wait_for_event("ErrImageNeverPull").await;
    h.wait_for("ErrImageNeverPull status", |sent| {
        sent.iter().any(|s| {
            matches!(s, Sent::Status { status, .. } if waiting_reason(status).as_deref() == Some("ErrImageNeverPull"))
        })
    })
    .await;
    assert!(
        h.rt.calls().iter().all(|c| !matches!(c, Call::Pull(..))),
        "never pulled"
    );
    assert!(h.creates().is_empty());
}

#[path = "worker_node_tests.rs"]
mod node;

#[tokio::test]
async fn a_containers_stdin_stdin_once_and_tty_reach_its_runtime_config() {
    let mut p = pod("Never", "busybox:1.36", None);
    let c = &mut p.spec.as_mut().expect("a spec").containers[0];
    (c.stdin, c.stdin_once, c.tty) = (Some(true), Some(true), Some(true));
    let h = Harness::start(p, &["busybox:1.36"]);
    h.wait_for_event("Started").await;
    let config = h.rt.config(&container_id(UID, "c", 0)).expect("created");
    assert!(
        config.stdin && config.stdin_once && config.tty,
        "{config:?}"
    );
}

/// `pod` with ephemeral containers `names` added, as `kubectl debug` adds them (stdin and
/// a tty, the first app container as the target).
fn with_ephemeral(mut pod: Pod, names: &[&str]) -> Pod {
    let spec = pod.spec.as_mut().expect("a spec");
    spec.ephemeral_containers = Some(
        names
            .iter()
            .map(|name| k8s_openapi::api::core::v1::EphemeralContainer {
                name: name.to_string(),
                image: Some("busybox:1.36".into()),
                command: Some(vec!["sh".into()]),
                stdin: Some(true),
                tty: Some(true),
                target_container_name: Some("c".into()),
                ..Default::default()
            })
            .collect(),
    );
    pod
}

fn ephemeral_state(
    status: &PodStatus,
    name: &str,
) -> Option<k8s_openapi::api::core::v1::ContainerState> {
    status
        .ephemeral_container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)?
        .state
        .clone()
}

fn started_events(sent: &[Sent], field_path: &str) -> usize {
    sent.iter()
        .filter(|s| matches!(s, Sent::Event { reason, field_path: Some(fp), .. } if reason == "Started" && fp == field_path))
        .count()
}

#[tokio::test]
async fn an_ephemeral_container_added_to_a_running_pod_runs_once_in_its_sandbox() {
    let p = pod("Always", "busybox:1.36", None);
    let h = Harness::start(p.clone(), &["busybox:1.36"]);
    h.wait_for_event("Started").await;
    h.pod_tx
        .send_replace(Some(Arc::new(with_ephemeral(p.clone(), &["debugger"]))));
    h.wait_for("the debugger running", |sent| {
        sent.iter().any(|s| matches!(s, Sent::Status { status, .. } if ephemeral_state(status, "debugger").is_some_and(|s| s.running.is_some())))
    })
    .await;
    assert_eq!(
        started_events(&h.sink.sent(), "spec.ephemeralContainers{debugger}"),
        1
    );

    let debugger = container_id(UID, "debugger", 0);
    let app =
        h.rt.config(&container_id(UID, "c", 0))
            .expect("the app container");
    let config = h.rt.config(&debugger).expect("the debugger created");
    assert_eq!(
        (&config.netns_path, &config.ipc_ns_path, &config.uts_ns_path),
        (&app.netns_path, &app.ipc_ns_path, &app.uts_ns_path),
        "the debugger joins the pod's sandbox"
    );
    assert!(
        config.stdin && config.tty,
        "its own stdin and tty: {config:?}"
    );
    assert_eq!(
        config
            .labels
            .get(crate::pods::LABEL_CONTAINER_NAME)
            .map(String::as_str),
        Some("debugger"),
        "the node API finds it by name"
    );
    let log = config.log_path.expect("a log");
    assert!(
        log.ends_with(format!("default_p_{UID}/debugger/0.log")),
        "its log lives beside the other containers': {log:?}"
    );

    // It ends; restartPolicy Always does not bring it back.
    h.rt.exit(&debugger, 0);
    h.wait_for("the debugger terminated", |sent| {
        sent.iter().any(|s| matches!(s, Sent::Status { status, .. } if ephemeral_state(status, "debugger").is_some_and(|s| s.terminated.is_some())))
    })
    .await;
    // A second debugger makes the worker run a pass; it starts that one only.
    h.pod_tx.send_replace(Some(Arc::new(with_ephemeral(
        p,
        &["debugger", "debugger2"],
    ))));
    h.wait_for("the second debugger started", |sent| {
        started_events(sent, "spec.ephemeralContainers{debugger2}") == 1
    })
    .await;
    let creates = h.creates();
    assert_eq!(
        creates.iter().filter(|id| **id == debugger).count(),
        1,
        "an ephemeral container is never restarted: {creates:?}"
    );
    assert!(
        !creates.contains(&container_id(UID, "debugger", 1)),
        "{creates:?}"
    );

    let status = h.sink.statuses().pop().expect("a status");
    let statuses = status
        .ephemeral_container_statuses
        .clone()
        .expect("ephemeral statuses");
    let first = &statuses[0];
    let t = first
        .state
        .as_ref()
        .and_then(|s| s.terminated.clone())
        .expect("terminated");
    assert_eq!(
        (
            first.name.as_str(),
            t.exit_code,
            t.reason.as_deref(),
            first.ready,
            first.restart_count
        ),
        ("debugger", 0, Some("Completed"), false, 0)
    );
    assert_eq!(first.container_id, Some(format!("containerd://{debugger}")));
    assert_eq!(
        status.phase.as_deref(),
        Some("Running"),
        "ephemeral containers leave the phase be"
    );
    assert_eq!(
        status.container_statuses.as_ref().expect("statuses").len(),
        1,
        "ephemeral containers are not among the pod's containers"
    );
}

#[tokio::test]
async fn a_running_ephemeral_container_is_killed_with_its_pod() {
    let mut p = with_ephemeral(pod("Always", "busybox:1.36", None), &["debugger"]);
    let h = Harness::start(p.clone(), &["busybox:1.36"]);
    h.wait_for("the debugger started", |sent| {
        started_events(sent, "spec.ephemeralContainers{debugger}") == 1
    })
    .await;
    p.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    p.metadata.deletion_grace_period_seconds = Some(30);
    h.pod_tx.send_replace(Some(Arc::new(p)));
    h.wait_for("the pod's removal", |sent| {
        sent.iter().any(|s| matches!(s, Sent::Delete { .. }))
    })
    .await;
    let debugger = container_id(UID, "debugger", 0);
    let calls = h.rt.calls();
    assert!(
        calls.contains(&Call::Kill(debugger.clone(), 15)),
        "stopped: {calls:?}"
    );
    assert!(
        calls.contains(&Call::Delete(debugger)),
        "removed: {calls:?}"
    );
    assert!(h.rt.list_containers().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_ephemeral_container_with_a_target_joins_the_targets_pid_namespace() {
    // `with_ephemeral` names the app container "c" as the target; "solo" has none.
    let mut p = with_ephemeral(pod("Always", "busybox:1.36", None), &["debugger", "solo"]);
    let solo = &mut p
        .spec
        .as_mut()
        .expect("a spec")
        .ephemeral_containers
        .as_mut()
        .expect("ephemeral")[1];
    solo.target_container_name = None;
    let h = Harness::start(p, &["busybox:1.36"]);
    h.wait_for("both debuggers started", |sent| {
        started_events(sent, "spec.ephemeralContainers{debugger}") == 1
            && started_events(sent, "spec.ephemeralContainers{solo}") == 1
    })
    .await;
    let app = container_id(UID, "c", 0);
    let Ok(crate::runtime::TaskState::Running { pid }) = h.rt.task_state(&app).await else {
        panic!("the app container runs");
    };
    let config = |name: &str| h.rt.config(&container_id(UID, name, 0)).expect("created");
    assert_eq!(
        config("debugger").pid_ns_path,
        Some(format!("/proc/{pid}/ns/pid").into()),
        "the target's PID namespace, through its process"
    );
    assert_eq!(
        config("solo").pid_ns_path,
        None,
        "a PID namespace of its own"
    );
    assert_eq!(config("c").pid_ns_path, None, "the app container's own");
}
