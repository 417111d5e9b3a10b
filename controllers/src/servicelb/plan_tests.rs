use super::*;
use serde_json::json;

fn node(name: &str, ready: bool, addresses: &[(&str, &str)]) -> Node {
    let addresses: Vec<_> = addresses
        .iter()
        .map(|(t, a)| json!({"type": t, "address": a}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "status": {
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "addresses": addresses,
        },
    }))
    .unwrap()
}

fn service(spec: serde_json::Value) -> Service {
    serde_json::from_value(
        json!({"metadata": {"name": "lb", "namespace": "ns", "uid": "u"}, "spec": spec}),
    )
    .unwrap()
}

fn slice(endpoints: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(
        json!({"metadata": {"name": "s"}, "addressType": "IPv4", "endpoints": endpoints}),
    )
    .unwrap()
}

/// (name, spec, nodes, slices, ingress)
type Row<'a> = (
    &'a str,
    serde_json::Value,
    Vec<&'a Node>,
    Vec<EndpointSlice>,
    Vec<&'a str>,
);

#[test]
fn ingress_lists_the_eligible_nodes_addresses() {
    let a = node("a", true, &[("InternalIP", "10.0.0.2"), ("Hostname", "a")]);
    let b = node("b", true, &[("InternalIP", "10.0.0.1")]);
    let down = node("down", false, &[("InternalIP", "10.0.0.9")]);
    let ext = node(
        "ext",
        true,
        &[("InternalIP", "10.0.0.3"), ("ExternalIP", "203.0.113.5")],
    );
    let v6 = node("v6", true, &[("InternalIP", "fd00::1")]);
    let pod_on = |n: &str, ready: bool| json!({"addresses": ["10.42.0.1"], "nodeName": n, "conditions": {"ready": ready}, "targetRef": {"kind": "Pod", "name": "p"}});
    let cluster = json!({"type": "LoadBalancer", "ports": [{"port": 80}]});
    let local =
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]});
    let cases: Vec<Row<'_>> = vec![
        (
            "ready nodes' InternalIPs, sorted",
            cluster.clone(),
            vec![&a, &b, &down],
            vec![],
            vec!["10.0.0.1", "10.0.0.2"],
        ),
        (
            "ExternalIPs when a node has one",
            cluster.clone(),
            vec![&a, &ext],
            vec![],
            vec!["203.0.113.5"],
        ),
        (
            "no ready node, no ingress",
            cluster.clone(),
            vec![&down],
            vec![],
            vec![],
        ),
        (
            "IPv6 only for an IPv6 service",
            json!({"type": "LoadBalancer", "ipFamilies": ["IPv6"]}),
            vec![&a, &v6],
            vec![],
            vec!["fd00::1"],
        ),
        (
            "dual stack in the service's family order",
            json!({"type": "LoadBalancer", "ipFamilies": ["IPv6", "IPv4"]}),
            vec![&a, &v6],
            vec![],
            vec!["fd00::1", "10.0.0.2"],
        ),
        (
            "Local: only nodes with a ready pod endpoint",
            local.clone(),
            vec![&a, &b],
            vec![slice(json!([pod_on("a", true), pod_on("b", false)]))],
            vec!["10.0.0.2"],
        ),
        (
            "Local without endpoints: none",
            local.clone(),
            vec![&a, &b],
            vec![],
            vec![],
        ),
        (
            "Local ignores endpoints that are not pods",
            local,
            vec![&a],
            vec![slice(
                json!([{"addresses": ["192.0.2.1"], "nodeName": "a", "conditions": {"ready": true}}]),
            )],
            vec![],
        ),
    ];
    for (name, spec, nodes, slices, want) in cases {
        let slices: Vec<&EndpointSlice> = slices.iter().collect();
        assert_eq!(ingress_ips(&service(spec), &nodes, &slices), want, "{name}");
    }
}

#[test]
fn only_load_balancers_without_a_class_are_served() {
    let cases = [
        ("LoadBalancer", json!({"type": "LoadBalancer"}), true),
        (
            "with a class",
            json!({"type": "LoadBalancer", "loadBalancerClass": "example.com/lb"}),
            false,
        ),
        ("NodePort", json!({"type": "NodePort"}), false),
        ("ClusterIP", json!({}), false),
    ];
    for (name, spec, want) in cases {
        assert_eq!(serves(&service(spec)), want, "{name}");
    }
}

#[test]
fn the_younger_of_two_balancers_on_one_port_is_blocked() {
    let svc = |name: &str, created: &str, port: i32, protocol: &str| -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": name, "creationTimestamp": created},
            "spec": {"type": "LoadBalancer", "ports": [{"port": port, "protocol": protocol}]},
        }))
        .unwrap()
    };
    let old = svc("old", "2026-01-01T00:00:00Z", 80, "TCP");
    let young = svc("young", "2026-01-02T00:00:00Z", 80, "TCP");
    let udp = svc("udp", "2026-01-03T00:00:00Z", 80, "UDP");
    let all = [&old, &young, &udp];
    assert_eq!(
        port_holder(&young, &all).map(|s| s.name_any()),
        Some("old".into())
    );
    assert!(
        port_holder(&old, &all).is_none(),
        "the older keeps its port"
    );
    assert!(
        port_holder(&udp, &all).is_none(),
        "another protocol does not conflict"
    );
}

#[test]
fn ip_lists_in_events_read_as_go_prints_them() {
    assert_eq!(go_list(&[]), "[]");
    assert_eq!(
        go_list(&["10.0.0.1".into(), "10.0.0.2".into()]),
        "[10.0.0.1 10.0.0.2]"
    );
}
