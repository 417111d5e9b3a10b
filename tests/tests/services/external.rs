//! Traffic from outside the cluster (the outside client's namespace, 198.18.T.6, routed
//! through node 1): NodePorts and LoadBalancer ingress on both nodes, and what the
//! external traffic policy does to the client's address.

use crate::{server_pod, service, TwoNodes};

#[test]
fn an_outside_client_reaches_nodeport_and_loadbalancer_on_both_nodes() {
    let two = TwoNodes::start();
    two.apply(
        "web.yaml",
        &[
            server_pod("only", &two.nodes[1], "web"),
            service("np", "web", "  type: NodePort\n"),
            service("lb", "web", "  type: LoadBalancer\n"),
        ]
        .join("---\n"),
    );
    two.wait_pods_ready(&["only"]);
    let node_port = two.service_field("np", "{.spec.ports[0].nodePort}");
    let ingress = two.eventually("the LoadBalancer's ingress on both nodes", || {
        let out = two.run(&[
            "get",
            "service",
            "lb",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip}",
        ]);
        let mut ips: Vec<String> = out.split_whitespace().map(str::to_string).collect();
        ips.sort();
        (ips.len() == 2).then_some(ips).ok_or(out)
    });
    let mut nodes = [two.node_ip(0).to_string(), two.node_ip(1).to_string()];
    nodes.sort();
    assert_eq!(ingress, nodes, "ServiceLB announces every Ready node");
    let lb_port = two.service_field("lb", "{.spec.ports[0].port}");
    for node in 0..2 {
        let ip = two.node_ip(node);
        for (what, addr) in [
            ("NodePort", format!("{ip}:{node_port}")),
            ("LoadBalancer ingress", format!("{ip}:{lb_port}")),
        ] {
            let host = two.outside_gets(&addr, "/hostname");
            assert_eq!(host, "only", "{what} on node {} ({addr})", node + 1);
        }
    }
}

/// What the server sees as the client's address through a NodePort of the node without
/// the endpoint (ETP Cluster: forwarded and masqueraded) or with it (ETP Local).
fn remote_through_node_port(policy: &str, node: usize) -> (String, TwoNodes) {
    let two = TwoNodes::start();
    let spec = format!("  type: NodePort\n  externalTrafficPolicy: {policy}\n");
    two.apply(
        "web.yaml",
        &[
            server_pod("only", &two.nodes[1], "web"),
            service("np", "web", &spec),
        ]
        .join("---\n"),
    );
    two.wait_pods_ready(&["only"]);
    let node_port = two.service_field("np", "{.spec.ports[0].nodePort}");
    let addr = format!("{}:{node_port}", two.node_ip(node));
    let remote = two.outside_gets(&addr, "/remote");
    (remote, two)
}

#[test]
fn external_traffic_policy_local_keeps_the_client_address() {
    let (remote, two) = remote_through_node_port("Local", 1);
    let client = two.lab().outside_ip();
    assert!(
        remote.starts_with(&format!("{client}:")),
        "ETP Local: the endpoint sees the outside client {client}, got {remote}"
    );
}

#[test]
fn external_traffic_policy_cluster_shows_a_node_address() {
    // Through node 1, whose proxy forwards to node 2's pod and masquerades the source.
    let (remote, two) = remote_through_node_port("Cluster", 0);
    let client = two.lab().outside_ip();
    assert!(
        !remote.starts_with(&format!("{client}:")),
        "ETP Cluster: the source is masqueraded, not the client {client}: {remote}"
    );
    assert!(
        remote.starts_with(&format!("{}:", two.node_ip(0))),
        "ETP Cluster through node 1: node 1's address: {remote}"
    );
}
