//! The servicelb loop on simulated nodes: `type: LoadBalancer` Services without a
//! class get the eligible nodes' addresses as their ingress, follow the nodes, and say
//! so in events; other Services are left alone.

use k8s_openapi::api::core::v1::{Event, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, Patch, PatchParams};
use kube::Api;
use kybern_testkit::fixtures::create_from as create;
use kybern_testkit::{eventually, Cluster};
use serde_json::json;

async fn ingress(c: &Cluster, name: &str) -> Result<Vec<String>, String> {
    let svc = c
        .api::<Service>()
        .get(name)
        .await
        .map_err(|e| e.to_string())?;
    Ok(controllers::servicelb::current_ips(&svc))
}

async fn wait_ingress(c: &Cluster, name: &str, want: &[String]) {
    eventually(&format!("{name}'s ingress to be {want:?}"), || async {
        let got = ingress(c, name).await?;
        (got == want).then_some(()).ok_or(format!("{got:?}"))
    })
    .await;
}

async fn wait_event(c: &Cluster, service: &str, reason: &str, message: &str) {
    eventually(
        &format!("{reason} event on {service}: {message}"),
        || async {
            let events = c
                .api::<Event>()
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items;
            events
                .iter()
                .any(|e| {
                    e.involved_object.name.as_deref() == Some(service)
                        && e.reason.as_deref() == Some(reason)
                        && e.message.as_deref() == Some(message)
                })
                .then_some(())
                .ok_or(format!(
                    "{:?}",
                    events
                        .iter()
                        .map(|e| (&e.reason, &e.message))
                        .collect::<Vec<_>>()
                ))
        },
    )
    .await;
}

fn node_ips(c: &Cluster) -> Vec<(String, String)> {
    c.sim
        .as_ref()
        .unwrap()
        .nodes()
        .iter()
        .map(|n| (n.name.clone(), n.ip.to_string()))
        .collect()
}

async fn patch_node_status(c: &Cluster, node: &str, status: serde_json::Value) {
    Api::<Node>::all(c.client.clone())
        .patch_status(
            node,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await
        .unwrap();
}

fn lb(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"metadata": {"name": name}, "spec": spec})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_balancers_ingress_follows_the_ready_nodes() {
    let c = Cluster::start("servicelb-nodes", &["servicelb"], 2).await;
    let nodes = node_ips(&c);
    let (n0, ip0) = nodes[0].clone();
    let (n1, ip1) = nodes[1].clone();
    create(
        &c.api::<Service>(),
        lb(
            "web",
            json!({"type": "LoadBalancer", "ports": [{"port": 80}]}),
        ),
    )
    .await;
    wait_ingress(&c, "web", &[ip0.clone(), ip1.clone()]).await;
    wait_event(
        &c,
        "web",
        "UpdatedLoadBalancer",
        &format!("Updated LoadBalancer with new IPs: [] -> [{ip0} {ip1}]"),
    )
    .await;

    let not_ready = json!({"conditions": [{"type": "Ready", "status": "False", "reason": "Test"}]});
    patch_node_status(&c, &n1, not_ready.clone()).await;
    wait_ingress(&c, "web", std::slice::from_ref(&ip0)).await;

    // A node with an ExternalIP: only ExternalIPs are listed.
    let addresses = json!({"addresses": [
        {"type": "InternalIP", "address": ip0},
        {"type": "ExternalIP", "address": "203.0.113.7"},
    ]});
    patch_node_status(&c, &n0, addresses).await;
    wait_ingress(&c, "web", &["203.0.113.7".to_string()]).await;

    patch_node_status(&c, &n0, not_ready).await;
    wait_ingress(&c, "web", &[]).await;
    wait_event(
        &c,
        "web",
        "UnAvailableLoadBalancer",
        "There are no available nodes for LoadBalancer",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_load_balancers_without_a_class_get_nodes_and_one_port_has_one_owner() {
    let c = Cluster::start("servicelb-which", &["servicelb"], 2).await;
    let nodes = node_ips(&c);
    let all: Vec<String> = nodes.iter().map(|(_, ip)| ip.clone()).collect();
    // A ready pod endpoint on the second node only, for the Local service.
    create(
        &c.api::<EndpointSlice>(),
        json!({
            "metadata": {"name": "local-1", "labels": {"kubernetes.io/service-name": "local"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.42.1.5"], "nodeName": nodes[1].0, "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": "p", "namespace": "servicelb-which"}}],
            "ports": [{"port": 8080}],
        }),
    )
    .await;
    // (name, spec, ingress)
    let cases = [
        (
            "plain",
            json!({"type": "LoadBalancer", "ports": [{"port": 80}]}),
            all.clone(),
        ),
        (
            "classed",
            json!({"type": "LoadBalancer", "loadBalancerClass": "example.com/lb", "ports": [{"port": 81}]}),
            vec![],
        ),
        (
            "nodeport",
            json!({"type": "NodePort", "ports": [{"port": 82}]}),
            vec![],
        ),
        (
            "local",
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 83}]}),
            vec![nodes[1].1.clone()],
        ),
        (
            "younger-on-80",
            json!({"type": "LoadBalancer", "ports": [{"port": 80}]}),
            vec![],
        ),
    ];
    for (name, spec, _) in &cases {
        create(&c.api::<Service>(), lb(name, spec.clone())).await;
    }
    // Created last: once it has its ingress, the loop has seen every row.
    create(
        &c.api::<Service>(),
        lb(
            "sentinel",
            json!({"type": "LoadBalancer", "ports": [{"port": 99}]}),
        ),
    )
    .await;
    wait_ingress(&c, "sentinel", &all).await;
    for (name, _, want) in &cases {
        wait_ingress(&c, name, want).await;
    }
    wait_event(
        &c,
        "younger-on-80",
        "UnAvailableLoadBalancer",
        "There are no available nodes for LoadBalancer",
    )
    .await;

    // The older one stops being a load balancer: its ingress goes and the port is free.
    let to_cluster_ip = json!({"spec": {"type": "ClusterIP"}});
    c.api::<Service>()
        .patch(
            "plain",
            &PatchParams::default(),
            &Patch::Merge(&to_cluster_ip),
        )
        .await
        .unwrap();
    wait_ingress(&c, "plain", &[]).await;
    wait_ingress(&c, "younger-on-80", &all).await;
}
