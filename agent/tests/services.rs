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
