//! The simulator against the real apiserver in-process on port 0, through a kube client
//! built from the admin.kubeconfig the server wrote.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use agent::simulate::{SimConfig, Simulator, EXIT_CODE_ANNOTATION};
use apiserver::server::{self, Config, Server};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::json;
use tempfile::TempDir;

struct Cluster {
    client: Client,
    _server: Server,
    _dir: TempDir,
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().expect("a temp data dir");
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::new(dir.path())
    };
    let server = server::start(config)
        .await
        .expect("starting the apiserver in-process");
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).expect("reading admin.kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable admin.kubeconfig");
    let client = Client::try_from(config).expect("a client");
    default_service_account(&client).await;
    Cluster {
        client,
        _server: server,
        _dir: dir,
    }
}

/// Three nodes, leases renewed every 200 ms, deleted pods removed within 200 ms.
fn test_config() -> SimConfig {
    SimConfig {
        lease_renew_interval: Duration::from_millis(200),
        max_termination_delay: Duration::from_millis(200),
        ..SimConfig::new(3)
    }
}

/// Polls `get` until `done` holds for its answer, or panics after 20 s with `what`.
async fn eventually<T, F, Fut>(what: &str, mut get: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
    T: std::fmt::Debug,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = get().await;
        if done(&value) {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}; last seen: {value:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates a pod (unscheduled) and binds it to `node` through pods/binding, as the
/// scheduler does.
async fn bound_pod(
    client: &Client,
    name: &str,
    node: &str,
    restart_policy: &str,
    annotations: serde_json::Value,
) -> Api<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": name, "annotations": annotations },
        "spec": {
            "restartPolicy": restart_policy,
            "initContainers": [{ "name": "setup", "image": "busybox" }],
            "containers": [{ "name": "app", "image": "busybox" }, { "name": "web", "image": "nginx" }],
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("creating the pod");
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": { "name": name },
        "target": { "apiVersion": "v1", "kind": "Node", "name": node },
    });
    let _: serde_json::Value = pods
        .create_subresource("binding", name, &PostParams::default(), &binding)
        .await
        .expect("binding the pod");
    pods
}

fn condition(pod: &Pod, type_: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

#[tokio::test]
async fn registering_three_nodes_gives_three_ready_nodes_with_leases_that_renew() {
    let cluster = cluster().await;
    let sim = Simulator::start(cluster.client.clone(), test_config())
        .await
        .expect("starting the simulator");
    let names: Vec<&str> = sim.nodes().iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["sim-0", "sim-1", "sim-2"]);

    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let list = nodes.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 3);
    for node in &list.items {
        let name = node.metadata.name.as_deref().unwrap();
        let status = node
            .status
            .as_ref()
            .unwrap_or_else(|| panic!("{name} has no status"));
        let ready = status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True", "{name}");
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"), "{name}");
        assert_eq!(
            node.metadata.labels.as_ref().unwrap()["kubernetes.io/hostname"],
            name
        );
        let info = status.node_info.as_ref().unwrap();
        assert!(
            info.kubelet_version.starts_with("v1."),
            "{name}: kubeletVersion {}",
            info.kubelet_version
        );
        assert_eq!(status.capacity.as_ref().unwrap()["pods"].0, "110", "{name}");
    }

    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), "kube-node-lease");
    let renew_time = |lease: &Lease| {
        lease
            .spec
            .as_ref()
            .and_then(|s| s.renew_time.clone())
            .map(|t| t.0)
    };
    let first = leases.get("sim-1").await.expect("sim-1 has a lease");
    let spec = first.spec.as_ref().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("sim-1"));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    let before = renew_time(&first).expect("a renewTime");
    eventually(
        "sim-1's lease to be renewed",
        || leases.get("sim-1"),
        |l| {
            l.as_ref()
                .ok()
                .and_then(renew_time)
                .is_some_and(|t| t > before)
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_pod_bound_to_sim_node_one_becomes_running_and_ready_with_an_address_in_its_slash_24() {
    let cluster = cluster().await;
    let sim = Simulator::start(cluster.client.clone(), test_config())
        .await
        .unwrap();
    let node = sim.nodes()[1].clone();
    let pods = bound_pod(&cluster.client, "web", &node.name, "Always", json!({})).await;

    let pod = eventually(
        "web to be Running and Ready",
        || pods.get("web"),
        |p| {
            p.as_ref().is_ok_and(|p| {
                phase(p) == Some("Running") && condition(p, "Ready").as_deref() == Some("True")
            })
        },
    )
    .await
    .unwrap();
    let status = pod.status.unwrap();
    let ip: Ipv4Addr = status.pod_ip.as_deref().unwrap().parse().unwrap();
    assert_eq!(node.pod_cidr(), "10.42.1.0/24");
    assert_eq!(
        ip.octets()[..3],
        [10, 42, 1],
        "podIP {ip} is in sim-1's /24"
    );
    assert_eq!(
        status.host_ip.as_deref(),
        Some(node.ip.to_string().as_str())
    );
    assert!(status.start_time.is_some());
    for t in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
        "PodScheduled",
    ] {
        let c = status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap_or_else(|| panic!("no {t}"));
        assert_eq!(c.status, "True", "{t}");
        assert!(c.last_transition_time.is_some(), "{t}");
    }
    let containers = status.container_statuses.unwrap();
    assert_eq!(containers.len(), 2);
    for c in &containers {
        assert!(
            c.ready && c.started == Some(true) && c.restart_count == 0,
            "{}",
            c.name
        );
        assert!(
            c.container_id
                .as_deref()
                .unwrap()
                .starts_with("simulated://"),
            "{}",
            c.name
        );
        assert!(c.state.as_ref().unwrap().running.is_some(), "{}", c.name);
    }
    let init = &status.init_container_statuses.unwrap()[0];
    assert_eq!(
        init.state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("Completed")
    );

    // Reported once: rebuilding the status of the written pod finds nothing to change.
    let written = pods.get("web").await.unwrap().metadata.resource_version;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        pods.get("web").await.unwrap().metadata.resource_version,
        written,
        "no further status writes"
    );

    // A second pod on the same node gets another address of the same /24.
    bound_pod(&cluster.client, "web-2", &node.name, "Always", json!({})).await;
    let other = eventually(
        "web-2 to get an address",
        || pods.get("web-2"),
        |p| {
            p.as_ref()
                .is_ok_and(|p| p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some())
        },
    )
    .await
    .unwrap();
    let other_ip: Ipv4Addr = other.status.unwrap().pod_ip.unwrap().parse().unwrap();
    assert_ne!(other_ip, ip);
    assert_eq!(other_ip.octets()[..3], [10, 42, 1]);
}

#[tokio::test]
async fn the_exit_code_annotation_gives_succeeded_or_failed() {
    let cluster = cluster().await;
    let _sim = Simulator::start(cluster.client.clone(), test_config())
        .await
        .unwrap();
    let pods = bound_pod(
        &cluster.client,
        "ok",
        "sim-0",
        "Never",
        json!({ EXIT_CODE_ANNOTATION: "0" }),
    )
    .await;
    bound_pod(
        &cluster.client,
        "bad",
        "sim-2",
        "Never",
        json!({ EXIT_CODE_ANNOTATION: "3" }),
    )
    .await;
    bound_pod(
        &cluster.client,
        "retried",
        "sim-2",
        "OnFailure",
        json!({ EXIT_CODE_ANNOTATION: "3" }),
    )
    .await;

    eventually(
        "ok to succeed",
        || pods.get("ok"),
        |p| p.as_ref().is_ok_and(|p| phase(p) == Some("Succeeded")),
    )
    .await
    .unwrap();
    let bad = eventually(
        "bad to fail",
        || pods.get("bad"),
        |p| p.as_ref().is_ok_and(|p| phase(p) == Some("Failed")),
    )
    .await
    .unwrap();
    let exit = bad.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(exit.exit_code, 3);
    let retried = eventually(
        "retried to run again",
        || pods.get("retried"),
        |p| p.as_ref().is_ok_and(|p| phase(p) == Some("Running")),
    )
    .await
    .unwrap();
    assert_eq!(
        retried.status.unwrap().container_statuses.unwrap()[0].restart_count,
        1
    );
}

#[tokio::test]
async fn a_deleted_pod_disappears() {
    let cluster = cluster().await;
    let _sim = Simulator::start(cluster.client.clone(), test_config())
        .await
        .unwrap();
    let pods = bound_pod(&cluster.client, "doomed", "sim-2", "Always", json!({})).await;
    eventually(
        "doomed to run",
        || pods.get("doomed"),
        |p| p.as_ref().is_ok_and(|p| phase(p) == Some("Running")),
    )
    .await
    .unwrap();

    // Default grace (30 s): the apiserver only marks it; the node removes it.
    pods.delete("doomed", &DeleteParams::default())
        .await
        .expect("deleting");
    let gone = eventually(
        "doomed to be gone",
        || pods.get_opt("doomed"),
        |p| matches!(p, Ok(None)),
    )
    .await;
    assert!(gone.unwrap().is_none());
}

#[tokio::test]
async fn registering_again_does_not_duplicate_nodes() {
    let cluster = cluster().await;
    let first = Simulator::start(cluster.client.clone(), test_config())
        .await
        .unwrap();
    let uids: Vec<String> = first.nodes().iter().map(|n| n.uid.clone()).collect();
    drop(first);
    let again = Simulator::start(cluster.client.clone(), test_config())
        .await
        .expect("registering again");

    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let list = nodes.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 3);
    let again_uids: Vec<String> = again.nodes().iter().map(|n| n.uid.clone()).collect();
    assert_eq!(again_uids, uids, "the same Node objects, updated in place");
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), "kube-node-lease");
    assert_eq!(
        leases
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
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
