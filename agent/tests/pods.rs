//! The pod lifecycle against the real apiserver in-process, with the recording runtime and
//! network fakes standing in for containerd and netlink: statuses, restarts and back-off,
//! init order, image pulls, graceful deletion and static pods, as the API shows them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::kubelet::{self, AgentConfig};
use agent::network::fake::FakeNetwork;
use agent::pods::{BackoffConfig, ClusterDns};
use agent::runtime::fake::{Call, FakeRuntime};
use agent::runtime::{ImageConfig, ImageInfo, Runtime};
use apiserver::server::{self, Config, Server};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::{json, Value};
use tempfile::TempDir;

const IMAGE: &str = "kybern.local/busybox:latest";
const NODE: &str = "fake-node";

struct Cluster {
    client: Client,
    runtime: Arc<FakeRuntime>,
    network: Arc<FakeNetwork>,
    agent: tokio::task::JoinHandle<()>,
    dir: TempDir,
    _server: Server,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.agent.abort();
    }
}

async fn cluster(static_pods: bool) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::new(dir.path().join("server"))
    };
    let server = server::start(config)
        .await
        .expect("starting the apiserver in-process");
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).unwrap();
    let client = Client::try_from(
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap(),
    )
    .unwrap();
    default_service_account(&client).await;
    let node: Node = serde_json::from_value(
        json!({"metadata": {"name": NODE}, "spec": {"podCIDR": "10.42.7.0/24"}}),
    )
    .unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
    let runtime = Arc::new(FakeRuntime::new());
    runtime.add_image(ImageInfo {
        name: IMAGE.into(),
        digest: "sha256:00".into(),
        config: ImageConfig {
            cmd: vec!["sh".into()],
            env: vec!["PATH=/bin".into()],
            ..Default::default()
        },
    });
    let network = Arc::new(FakeNetwork::new());
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let config = AgentConfig {
        node_name: NODE.into(),
        node_ip: "127.0.0.1".parse().unwrap(),
        data_dir: dir.path().join("agent"),
        labels: Default::default(),
        dns: ClusterDns::default(),
        net: Default::default(),
        runtime_version: "fake://1".into(),
        backoff: BackoffConfig {
            initial: Duration::from_millis(400),
            max: Duration::from_millis(1600),
        },
        static_pods_dir: static_pods.then_some(manifests),
        eviction: Default::default(),
        local_path_root: dir.path().join("storage"),
        node_api: None,
        io: None,
    };
    // The agent is the node, as a real one: the Node authorizer and NodeRestriction
    // decide what it may read and write.
    let node_client = kybern_testkit::User::new(
        &server.kubeconfig,
        &format!("system:node:{NODE}"),
        Some("system:nodes"),
    )
    .await
    .client;
    let agent = {
        let (client, runtime, network) = (
            node_client,
            runtime.clone() as Arc<dyn Runtime>,
            network.clone() as Arc<dyn agent::network::Network>,
        );
        tokio::spawn(async move {
            if let Err(e) = kubelet::run(client, config, runtime, network).await {
                panic!("the agent stopped: {e}");
            }
        })
    };
    Cluster {
        client,
        runtime,
        network,
        agent,
        dir,
        _server: server,
    }
}

impl Cluster {
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn create(&self, spec: Value) -> Pod {
        let pod: Pod = serde_json::from_value(spec).unwrap();
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .unwrap()
    }

    /// Polls the pod (as JSON) until `done`, for up to 20 s.
    async fn pod_until(&self, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let pod = self
                .pods()
                .get_opt(name)
                .await
                .unwrap()
                .map(|p| serde_json::to_value(p).unwrap())
                .unwrap_or(Value::Null);
            if done(&pod) {
                return pod;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; pod: {pod:#}\ncalls: {:#?}",
                    self.runtime.calls()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The ID of the running container named `name` of pod `uid`, once there is one.
    async fn running_id(&self, pod: &str, container: &str) -> String {
        let p = self
            .pod_until(pod, &format!("{container} running"), |p| {
                statuses(p)
                    .iter()
                    .any(|s| s["name"] == container && s["state"]["running"].is_object())
            })
            .await;
        let s = statuses(&p)
            .into_iter()
            .find(|s| s["name"] == container)
            .unwrap();
        s["containerID"]
            .as_str()
            .unwrap()
            .trim_start_matches("containerd://")
            .to_string()
    }
}

fn statuses(pod: &Value) -> Vec<Value> {
    let mut all: Vec<Value> = pod["status"]["initContainerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    all.extend(
        pod["status"]["containerStatuses"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    all
}

fn condition(pod: &Value, type_: &str) -> String {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .map(|c| c["status"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

fn pod_spec(name: &str, restart: &str, containers: Value) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {"nodeName": NODE, "restartPolicy": restart, "terminationGracePeriodSeconds": 1, "containers": containers},
    })
}

fn container(name: &str) -> Value {
    json!({"name": name, "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_runs_and_reports_running_ready_and_its_ip() {
    let c = cluster(false).await;
    c.create(pod_spec("web", "Always", json!([container("main")])))
        .await;
    let p = c
        .pod_until("web", "Ready", |p| condition(p, "Ready") == "True")
        .await;
    assert_eq!(p["status"]["phase"], "Running");
    for t in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
    ] {
        assert!(!condition(&p, t).is_empty(), "{t} missing: {p:#}");
    }
    let ip = p["status"]["podIP"].as_str().unwrap();
    assert!(ip.starts_with("10.42.7."), "{ip}");
    assert_eq!(p["status"]["hostIP"], "127.0.0.1");
    let s = &statuses(&p)[0];
    assert_eq!(s["restartCount"], 0);
    assert_eq!(s["imageID"], "kybern.local/busybox@sha256:00");
    let id = s["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("containerd://");
    let cfg = c
        .runtime
        .config(id)
        .expect("the container exists in the runtime");
    assert_eq!(cfg.args, vec!["sleep", "3600"]);
    let sandbox = c
        .network
        .sandbox(p["metadata"]["uid"].as_str().unwrap())
        .expect("a sandbox");
    assert_eq!(
        cfg.netns_path.as_ref(),
        Some(&sandbox.netns),
        "the container joins the pod's network"
    );
    assert_eq!(cfg.uts_ns_path.as_ref(), Some(&sandbox.uts_ns));
    for dest in ["/etc/hosts", "/etc/resolv.conf", "/dev/termination-log"] {
        assert!(
            cfg.mounts.iter().any(|m| m.destination == dest),
            "{dest} mounted: {:?}",
            cfg.mounts
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_container_restarts_with_growing_back_off() {
    let c = cluster(false).await;
    c.create(pod_spec("crash", "Always", json!([container("main")])))
        .await;
    let mut messages = Vec::new();
    for round in 0..4 {
        let id = c.running_id("crash", "main").await;
        c.runtime.exit(&id, 3);
        let p = c
            .pod_until("crash", "the exit reported", |p| {
                let s = &statuses(p)[0];
                s["restartCount"].as_i64() >= Some(round)
                    && (s["state"]["waiting"]["reason"] == "CrashLoopBackOff"
                        || s["lastState"]["terminated"]["exitCode"] == 3
                        || s["state"]["terminated"]["exitCode"] == 3)
            })
            .await;
        let s = &statuses(&p)[0];
        if let Some(m) = s["state"]["waiting"]["message"].as_str() {
            messages.push(m.split_whitespace().nth(1).unwrap_or_default().to_string());
        }
        // Wait for the next run before failing it again.
        c.pod_until("crash", "restarted", |p| {
            statuses(p)[0]["restartCount"].as_i64() > Some(round)
        })
        .await;
    }
    let p = c.pods().get("crash").await.unwrap();
    let s = &p.status.unwrap().container_statuses.unwrap()[0];
    assert!(s.restart_count >= 4);
    let last = s.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (3, Some("Error")));
    // Back-off is at its 1.6 s cap by now: the next exit shows CrashLoopBackOff.
    let id = c.running_id("crash", "main").await;
    c.runtime.exit(&id, 3);
    let p = c
        .pod_until("crash", "CrashLoopBackOff", |p| {
            statuses(p)[0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        })
        .await;
    let message = statuses(&p)[0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Go prints 1.6 s as "1.6s", as the kubelet's message does.
    assert!(
        message.starts_with("back-off 1.6s restarting failed container=main pod=crash_default("),
        "{message}"
    );
    let _ = messages;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_one_after_the_other_before_the_app() {
    let c = cluster(false).await;
    let mut spec = pod_spec("init", "Always", json!([container("app")]));
    spec["spec"]["initContainers"] = json!([container("first"), container("second")]);
    c.create(spec).await;
    let first = c.running_id("init", "first").await;
    let p = c.pods().get("init").await.unwrap();
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["status"]["phase"], "Pending");
    assert_eq!(condition(&v, "Initialized"), "False");
    assert!(statuses(&v)
        .iter()
        .all(|s| s["name"] == "first" || !s["state"]["running"].is_object()));
    c.runtime.exit(&first, 0);
    let second = c.running_id("init", "second").await;
    c.runtime.exit(&second, 0);
    c.running_id("init", "app").await;
    let v = c
        .pod_until("init", "Initialized", |p| {
            condition(p, "Initialized") == "True"
        })
        .await;
    assert_eq!(
        v["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    let creates: Vec<String> = c
        .runtime
        .calls()
        .into_iter()
        .filter_map(|call| match call {
            Call::Create(id) => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(creates.len(), 3, "{creates:?}");
    assert_eq!(creates[0], first);
    assert_eq!(creates[1], second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_to_completion_with_never_and_a_failed_init_fails_the_pod() {
    let c = cluster(false).await;
    c.create(pod_spec("once", "Never", json!([container("main")])))
        .await;
    let id = c.running_id("once", "main").await;
    c.runtime.exit(&id, 0);
    let p = c
        .pod_until("once", "Succeeded", |p| p["status"]["phase"] == "Succeeded")
        .await;
    assert_eq!(condition(&p, "Ready"), "False");
    assert_eq!(
        statuses(&p)[0]["state"]["terminated"]["reason"],
        "Completed"
    );

    let mut spec = pod_spec("badinit", "Never", json!([container("app")]));
    spec["spec"]["initContainers"] = json!([container("setup")]);
    c.create(spec).await;
    let id = c.running_id("badinit", "setup").await;
    c.runtime.exit(&id, 1);
    let p = c
        .pod_until("badinit", "Failed", |p| p["status"]["phase"] == "Failed")
        .await;
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
        "PodInitializing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_pulled_by_policy_and_failures_back_off() {
    let c = cluster(false).await;
    let mut missing = container("main");
    missing["image"] = json!("127.0.0.1:5000/app:v1");
    c.create(pod_spec("pull", "Always", json!([missing]))).await;
    c.pod_until("pull", "ErrImagePull", |p| {
        statuses(p)
            .first()
            .is_some_and(|s| s["state"]["waiting"]["reason"] == "ErrImagePull")
    })
    .await;
    c.pod_until("pull", "ImagePullBackOff", |p| {
        statuses(p)
            .first()
            .is_some_and(|s| s["state"]["waiting"]["reason"] == "ImagePullBackOff")
    })
    .await;
    // The registry gets the image: the next retry pulls it and the pod runs.
    c.runtime.add_registry_image(
        "127.0.0.1:5000/app:v1",
        ImageInfo {
            name: "127.0.0.1:5000/app:v1".into(),
            digest: "sha256:11".into(),
            config: ImageConfig::default(),
        },
    );
    c.running_id("pull", "main").await;
    let pulls = c
        .runtime
        .calls()
        .into_iter()
        .filter(|call| matches!(call, Call::Pull(r, _) if r == "127.0.0.1:5000/app:v1"))
        .count();
    assert!(pulls >= 2, "pulled again after failing: {pulls}");

    let mut never = container("main");
    never["image"] = json!("kybern.local/absent:v1");
    never["imagePullPolicy"] = json!("Never");
    c.create(pod_spec("never", "Always", json!([never]))).await;
    c.pod_until("never", "ErrImageNeverPull", |p| {
        statuses(p)
            .first()
            .is_some_and(|s| s["state"]["waiting"]["reason"] == "ErrImageNeverPull")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_pod_stops_its_containers_and_removes_it() {
    let c = cluster(false).await;
    let created = c
        .create(pod_spec("bye", "Always", json!([container("main")])))
        .await;
    let uid = created.metadata.uid.unwrap();
    let id = c.running_id("bye", "main").await;
    c.pods()
        .delete("bye", &DeleteParams::default())
        .await
        .unwrap();
    c.pod_until("bye", "the pod gone from the API", |p| p.is_null())
        .await;
    let calls = c.runtime.calls();
    assert!(
        calls.contains(&Call::Kill(id.clone(), 15)),
        "SIGTERM first: {calls:?}"
    );
    assert!(calls.contains(&Call::Delete(id)), "{calls:?}");
    assert!(
        c.network.sandbox(&uid).is_none(),
        "the sandbox is torn down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pods_run_from_files_and_are_mirrored() {
    let c = cluster(true).await;
    let manifest = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n  namespace: kube-system\nspec:\n  containers:\n  - name: main\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n");
    std::fs::write(c.dir.path().join("manifests/etcd.yaml"), manifest).unwrap();
    let api: Api<Pod> = Api::namespaced(c.client.clone(), "kube-system");
    let name = format!("etcd-{NODE}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mirror = api.get_opt(&name).await.unwrap();
        let running = mirror
            .as_ref()
            .and_then(|m| m.status.as_ref())
            .and_then(|s| s.phase.as_deref())
            == Some("Running");
        if running {
            let m = mirror.unwrap();
            assert!(m
                .metadata
                .annotations
                .unwrap()
                .contains_key("kubernetes.io/config.mirror"));
            assert_eq!(m.metadata.owner_references.unwrap()[0].kind, "Node");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the mirror pod never showed Running: {mirror:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::remove_file(c.dir.path().join("manifests/etcd.yaml")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.get_opt(&name).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the mirror outlived its file");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `default` ServiceAccount the serviceaccount loop would make (this server runs no
/// loops), without automounted tokens: the ServiceAccount admission plugin refuses pods
/// of a missing account, and these tests' fake runtime has no use for the token volume.
async fn default_service_account(client: &Client) {
    let sa: k8s_openapi::api::core::v1::ServiceAccount = serde_json::from_value(
        json!({"metadata": {"name": "default"}, "automountServiceAccountToken": false}),
    )
    .unwrap();
    Api::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &sa)
        .await
        .expect("creating the default ServiceAccount");
}
