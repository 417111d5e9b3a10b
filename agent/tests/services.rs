//! The agent's watches of Services, EndpointSlices, Nodes and ServiceCIDRs against the real
//! apiserver in-process: the shared store follows creates, updates and deletes.

use std::sync::Arc;

use agent::network::ipam::Cidr;
use agent::services::{watch, ClusterState, ServiceKey};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use kybern_testkit::{eventually, Cluster};
use serde_json::json;

fn object<K: serde::de::DeserializeOwned>(value: serde_json::Value) -> K {
    serde_json::from_value(value).unwrap()
}

#[tokio::test]
async fn the_store_follows_services_slices_nodes_and_service_cidrs() {
    let cluster = Cluster::builder("watch").start().await;
    let client = cluster.client.clone();
    let services: Api<Service> = cluster.api();
    let slices: Api<EndpointSlice> = cluster.api();
    let nodes: Api<Node> = Api::all(client.clone());
    let cidrs: Api<ServiceCIDR> = Api::all(client.clone());
    let create = PostParams::default();

    // One of each before the watch starts (the initial list) ...
    services
        .create(
            &create,
            &object(json!({"metadata": {"name": "web"},
                "spec": {"ports": [{"name": "http", "port": 80}]}})),
        )
        .await
        .unwrap();
    slices
        .create(
            &create,
            &object(json!({"metadata": {"name": "web-1",
                    "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.42.1.7"], "nodeName": "n2"}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})),
        )
        .await
        .unwrap();
    nodes
        .create(
            &create,
            &object(json!({"metadata": {"name": "n2"}, "spec": {"podCIDR": "10.42.1.0/24"}})),
        )
        .await
        .unwrap();

    let state = ClusterState::new();
    let changes = state.subscribe();
    let watches = watch::spawn(client.clone(), state.clone());
    let _abort = AbortOnDrop(watches);
    let web = ServiceKey::new("watch", "web");

    let seen = |state: &Arc<ClusterState>| {
        format!(
            "synced {}, web {:?}, slices {:?}, nodes {:?}, cidrs {:?}",
            state.is_synced(),
            state.service(&web),
            state.slices(&web),
            state.nodes(),
            state.service_cidrs()
        )
    };
    eventually("the initial lists in the store", || {
        let listed = state.is_synced()
            && state.service(&web).is_some_and(|s| s.cluster_ip.is_some())
            && state.slices(&web).len() == 1
            && state.node("n2").is_some_and(|n| n.pod_cidrs.len() == 1);
        let seen = seen(&state);
        async move { listed.then_some(()).ok_or(seen) }
    })
    .await;
    let first = changes
        .take()
        .expect("the subscriber hears of the initial lists");
    assert!(
        first.became_synced,
        "the first change after the lists is the sync: {first:?}"
    );

    // ... then changes through the watch.
    slices
        .patch(
            "web-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"endpoints": [{"addresses": ["10.42.1.7"],
                "conditions": {"ready": false}}]})),
        )
        .await
        .unwrap();
    cidrs
        .create(
            &create,
            &object(json!({"metadata": {"name": "extra"}, "spec": {"cidrs": ["10.44.0.0/16"]}})),
        )
        .await
        .unwrap();
    nodes.delete("n2", &DeleteParams::default()).await.unwrap();
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    let extra = Cidr::parse("10.44.0.0/16").unwrap();
    eventually("the changes in the store", || {
        let followed = state.service(&web).is_none()
            && state
                .slices(&web)
                .first()
                .is_some_and(|s| !s.endpoints[0].ready)
            && state.node("n2").is_none()
            && state.service_cidrs().contains(&extra);
        let seen = seen(&state);
        async move { followed.then_some(()).ok_or(seen) }
    })
    .await;
    let later = changes.take().expect("the subscriber hears of the changes");
    assert!(
        later.services.contains(&web) && later.nodes && later.service_cidrs,
        "{later:?}"
    );
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The agent with fakes for containerd and netlink, the proxy and DNS server off (they
/// would program this host), peer routes on: what it does to the node network, in order.
#[tokio::test]
async fn the_agent_routes_cluster_ranges_away_first_then_follows_peers_once_its_bridge_exists() {
    use agent::kubelet::{self, AgentConfig, Disabled, NetConfig};
    use agent::network::fake::{Call, FakeNetwork};
    use agent::network::{HostRouting, PeerRoute};
    use agent::runtime::fake::FakeRuntime;

    let cluster = Cluster::builder("wiring").start().await;
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let create = PostParams::default();
    for (name, cidr, ip) in [
        ("own", "10.42.7.0/24", "198.18.0.7"),
        ("peer", "10.42.8.0/24", "198.18.0.8"),
    ] {
        nodes
            .create(
                &create,
                &object(
                    json!({"metadata": {"name": name}, "spec": {"podCIDR": cidr},
                    "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}),
                ),
            )
            .await
            .unwrap();
    }
    // Node status is written through /status; the create above drops it.
    nodes
        .patch_status(
            "peer",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"addresses": [
                {"type": "InternalIP", "address": "198.18.0.8"}]}})),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cidr = |t: &str| Cidr::parse(t).unwrap();
    let net = NetConfig {
        cluster_cidr: cidr("10.42.0.0/16"),
        service_cidr: cidr("10.43.0.0/16"),
        disabled: Disabled {
            proxy: true,
            dns: true,
            peer_routes: false,
        },
        ..NetConfig::default()
    };
    let config = AgentConfig {
        node_name: "own".into(),
        node_ip: "198.18.0.7".parse().unwrap(),
        data_dir: dir.path().join("agent"),
        labels: Default::default(),
        dns: Default::default(),
        net,
        runtime_version: "fake://1".into(),
        backoff: agent::pods::BackoffConfig {
            initial: std::time::Duration::from_millis(400),
            max: std::time::Duration::from_millis(1600),
        },
        static_pods_dir: None,
        eviction: Default::default(),
        local_path_root: dir.path().join("storage"),
        node_api: None,
        io: None,
    };
    let network = Arc::new(FakeNetwork::new());
    let _agent = AbortOnDrop({
        let (client, network) = (cluster.client.clone(), network.clone());
        tokio::spawn(async move {
            if let Err(e) =
                kubelet::run(client, config, Arc::new(FakeRuntime::new()), network).await
            {
                panic!("the agent stopped: {e}");
            }
        })
    });
    let peer = PeerRoute {
        pod_cidr: "10.42.8.0/24".into(),
        node_ip: "198.18.0.8".parse().unwrap(),
    };
    eventually("a route to the peer's pods", || {
        let routes = network.peer_routes();
        let done = routes == [peer.clone()];
        async move { done.then_some(()).ok_or(format!("{routes:?}")) }
    })
    .await;
    let calls = network.calls();
    let safety = HostRouting {
        unreachable: vec![cidr("10.43.0.0/16"), cidr("10.42.0.0/16")],
        local_service_cidrs: vec![],
    };
    assert_eq!(
        calls.first(),
        Some(&Call::SyncHostRouting(safety)),
        "the safety routes come before anything else: {calls:?}"
    );
    let init = calls
        .iter()
        .position(|c| *c == Call::Init("10.42.7.0/24".into()))
        .expect("the bridge is made");
    let with_host_rule = Call::SyncHostRouting(HostRouting {
        unreachable: vec![cidr("10.43.0.0/16"), cidr("10.42.0.0/16")],
        local_service_cidrs: vec![cidr("10.43.0.0/16")],
    });
    let host_rule = calls
        .iter()
        .position(|c| *c == with_host_rule)
        .expect("host sockets get their way to the service range");
    assert!(
        init < host_rule,
        "the host rule needs the bridge: {calls:?}"
    );
    assert!(
        !calls.iter().any(|c| matches!(c, Call::AddLocalAddress(_))),
        "no DNS address when DNS is off: {calls:?}"
    );

    nodes
        .delete("peer", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the departed peer's route removed", || {
        let routes = network.peer_routes();
        async move { routes.is_empty().then_some(()).ok_or(format!("{routes:?}")) }
    })
    .await;
}
