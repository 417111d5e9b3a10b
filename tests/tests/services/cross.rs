//! Pods on two nodes reach each other, directly and through Services and their DNS names
//! (host-gw routes between the nodes, the proxy on both, the DNS server on both).

use crate::{server_pod, service, TwoNodes};

#[test]
fn pods_on_each_node_reach_pods_and_services_on_the_other() {
    let two = TwoNodes::start();
    two.apply(
        "pods.yaml",
        &[
            server_pod("one", &two.nodes[0], "one"),
            server_pod("two", &two.nodes[1], "two"),
            service("web-one", "one", ""),
            service("web-two", "two", ""),
        ]
        .join("---\n"),
    );
    let ips = two.wait_pods_ready(&["one", "two"]);
    let cluster_ips = [
        two.service_field("web-one", "{.spec.clusterIP}"),
        two.service_field("web-two", "{.spec.clusterIP}"),
    ];
    let names = ["one", "two"];
    for (from, to) in [(0, 1), (1, 0)] {
        let (client, target) = (names[from], names[to]);
        let ways = [
            ("pod IP", format!("{}:8080", ips[to])),
            ("ClusterIP", format!("{}:80", cluster_ips[to])),
            (
                "service name",
                format!("web-{target}.default.svc.cluster.local:80"),
            ),
            ("short service name", format!("web-{target}:80")),
        ];
        for (way, addr) in ways {
            let host = two.pod_gets(client, &addr, "/hostname");
            assert_eq!(host, target, "{client} -> {target} by {way} ({addr})");
        }
        // The server sees the client pod's own address: no NAT between pods.
        let remote = two.pod_gets(client, &format!("{}:80", cluster_ips[to]), "/remote");
        assert!(
            remote.starts_with(&format!("{}:", ips[from])),
            "{client} -> {target} through the ClusterIP keeps the pod's source: {remote}"
        );
    }
}
