//! Services through kubectl: the `kubernetes` Service, ClusterIPs from 10.43.0.0/16 and
//! NodePorts from 30000-32767, each held by one Service at a time.

use std::net::Ipv4Addr;

use crate::common::Backend;
use crate::{path_str, Cluster};

fn node_port_service(name: &str, node_port: Option<u16>) -> String {
    let port = match node_port {
        Some(p) => format!("{{port: 80, nodePort: {p}}}"),
        None => "{port: 80}".into(),
    };
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  type: NodePort\n  selector: {{app: {name}}}\n  ports: [{port}]\n")
}

#[tokio::test]
async fn services_get_a_cluster_ip_and_a_node_port_held_by_one_service_at_a_time() {
    let c = Cluster::start(Backend::Embedded).await;
    let k = c.kubectl();
    let kubernetes = k.run(&[
        "get",
        "svc",
        "kubernetes",
        "-o",
        "jsonpath={.spec.clusterIP} {.spec.ports[0].port}",
    ]);
    assert_eq!(kubernetes, "10.43.0.1 443");

    let first = c.manifest("first.yaml", &node_port_service("first", Some(30080)));
    let second = c.manifest("second.yaml", &node_port_service("second", Some(30080)));
    let any = c.manifest("any.yaml", &node_port_service("any", None));
    k.run(&["create", "-f", path_str(&first)]);
    k.run(&["create", "-f", path_str(&any)]);

    let fields = k.run(&[
        "get",
        "svc",
        "any",
        "-o",
        "jsonpath={.spec.clusterIP} {.spec.ports[0].nodePort}",
    ]);
    let (ip, port) = fields.split_once(' ').unwrap();
    let ip: Ipv4Addr = ip.parse().unwrap_or_else(|_| panic!("{fields}"));
    assert_eq!(ip.octets()[..2], [10, 43], "{ip} is in 10.43.0.0/16");
    let port: u16 = port.parse().unwrap();
    assert!((30000..=32767).contains(&port), "{port}");
    assert_ne!(port, 30080, "an allocated port is never handed out twice");

    let refused = k.output(&["create", "-v=6", "-f", path_str(&second)]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("422 Unprocessable Entity"), "{stderr}");
    assert!(
        stderr.contains(
            "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        ),
        "{stderr}"
    );

    k.run(&["delete", "svc", "first"]);
    k.run(&["create", "-f", path_str(&second)]);
    assert_eq!(
        k.run(&[
            "get",
            "svc",
            "second",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}"
        ]),
        "30080"
    );
}
