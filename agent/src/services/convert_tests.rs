use serde_json::json;

use super::*;

fn svc(spec: serde_json::Value, status: serde_json::Value) -> core::Service {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": spec,
        "status": status,
    }))
    .unwrap()
}

fn converted(spec: serde_json::Value, status: serde_json::Value) -> Service {
    let (key, model) = service(&svc(spec, status)).expect("a named Service converts");
    assert_eq!(key, ServiceKey::new("shop", "web"));
    model
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

#[test]
fn services_convert_with_the_api_defaults() {
    struct Case {
        name: &'static str,
        spec: serde_json::Value,
        status: serde_json::Value,
        check: fn(&Service) -> bool,
    }
    let cases = [
        Case {
            name: "a plain ClusterIP Service with an unnamed port defaults to TCP",
            spec: json!({"clusterIP": "10.43.0.20", "ports": [{"port": 80}]}),
            status: json!({}),
            check: |s| {
                s.kind == ServiceKind::ClusterIp
                    && s.cluster_ip == Some(ip("10.43.0.20"))
                    && s.ports
                        == [ServicePort {
                            name: "".into(),
                            protocol: Protocol::Tcp,
                            port: 80,
                            node_port: None,
                        }]
                    && s.affinity_timeout.is_none()
                    && !s.external_local
                    && !s.internal_local
                    && !s.publish_not_ready
            },
        },
        Case {
            name: "a headless Service has no ClusterIP",
            spec: json!({"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 80}]}),
            status: json!({}),
            check: |s| s.cluster_ip.is_none() && s.is_headless(),
        },
        Case {
            name: "an ExternalName Service keeps its name and is not headless",
            spec: json!({"type": "ExternalName", "externalName": "db.example.org"}),
            status: json!({}),
            check: |s| {
                s.kind == ServiceKind::ExternalName("db.example.org".into())
                    && s.cluster_ip.is_none()
                    && !s.is_headless()
            },
        },
        Case {
            name: "a dual-stack Service keeps its IPv4 address even when IPv6 is primary",
            spec: json!({"clusterIP": "fd00::10", "clusterIPs": ["fd00::10", "10.43.0.21"]}),
            status: json!({}),
            check: |s| s.cluster_ip == Some(ip("10.43.0.21")),
        },
        Case {
            name: "ClientIP affinity without a timeout gets 10800 seconds",
            spec: json!({"clusterIP": "10.43.0.22", "sessionAffinity": "ClientIP"}),
            status: json!({}),
            check: |s| s.affinity_timeout == Some(10800),
        },
        Case {
            name: "ClientIP affinity keeps a given timeout",
            spec: json!({"clusterIP": "10.43.0.22", "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
            status: json!({}),
            check: |s| s.affinity_timeout == Some(60),
        },
        Case {
            name: "a NodePort Service with externalTrafficPolicy Local",
            spec: json!({"type": "NodePort", "clusterIP": "10.43.0.23",
                "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Local",
                "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]}),
            status: json!({}),
            check: |s| {
                s.kind == ServiceKind::NodePort
                    && s.external_local
                    && s.internal_local
                    && s.ports[0].node_port == Some(30053)
                    && s.ports[0].protocol == Protocol::Udp
                    && &*s.ports[0].name == "dns"
            },
        },
        Case {
            name: "externalTrafficPolicy Local means nothing to a ClusterIP Service without externalIPs",
            spec: json!({"clusterIP": "10.43.0.24", "externalTrafficPolicy": "Local"}),
            status: json!({}),
            check: |s| !s.external_local,
        },
        Case {
            name: "a LoadBalancer keeps its IPv4 ingress IPs but not those with ipMode Proxy",
            spec: json!({"type": "LoadBalancer", "clusterIP": "10.43.0.25",
                "loadBalancerSourceRanges": ["198.18.0.0/16", "198.19.0.7/32", "fd00::/64"],
                "externalIPs": ["198.18.9.9", "fd00::9"]}),
            status: json!({"loadBalancer": {"ingress": [
                {"ip": "198.18.7.1"}, {"ip": "198.18.7.2", "ipMode": "Proxy"},
                {"ip": "fd00::7"}, {"hostname": "lb.example.org"}]}}),
            check: |s| {
                s.lb_ingress == [ip("198.18.7.1")]
                    && s.external_ips == [ip("198.18.9.9")]
                    && s.lb_source_ranges
                        == [
                            Cidr::parse("198.18.0.0/16").unwrap(),
                            Cidr::parse_range("198.19.0.7/32").unwrap(),
                        ]
                    && !s.lb_class
            },
        },
        Case {
            name: "a LoadBalancer with a loadBalancerClass belongs to another controller",
            spec: json!({"type": "LoadBalancer", "clusterIP": "10.43.0.26",
                "loadBalancerClass": "example.org/lb"}),
            status: json!({}),
            check: |s| s.lb_class && s.kind == ServiceKind::LoadBalancer,
        },
        Case {
            name: "ingress IPs of a Service that is no longer a LoadBalancer are ignored",
            spec: json!({"clusterIP": "10.43.0.27"}),
            status: json!({"loadBalancer": {"ingress": [{"ip": "198.18.7.1"}]}}),
            check: |s| s.lb_ingress.is_empty(),
        },
        Case {
            name: "publishNotReadyAddresses is kept",
            spec: json!({"clusterIP": "None", "publishNotReadyAddresses": true}),
            status: json!({}),
            check: |s| s.publish_not_ready,
        },
    ];
    for case in cases {
        let model = converted(case.spec, case.status);
        assert!((case.check)(&model), "{}: got {model:?}", case.name);
    }
}

fn endpoint_slice(address_type: &str, endpoints: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": "web-abc", "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080}, {"name": "all"}],
    }))
    .unwrap()
}

#[test]
fn endpoint_conditions_take_the_api_defaults() {
    // (name, conditions, (ready, serving, terminating))
    let cases = [
        (
            "no conditions at all: ready and serving",
            json!(null),
            (true, true, false),
        ),
        (
            "only ready false: not serving either",
            json!({"ready": false}),
            (false, false, false),
        ),
        (
            "terminating but still serving",
            json!({"ready": false, "serving": true, "terminating": true}),
            (false, true, true),
        ),
        (
            "ready given, serving follows it",
            json!({"ready": true}),
            (true, true, false),
        ),
    ];
    for (name, conditions, want) in cases {
        let object = endpoint_slice(
            "IPv4",
            json!([{"addresses": ["10.42.1.7"], "conditions": conditions,
                "nodeName": "n1", "hostname": "web-0"}]),
        );
        let (key, model) = slice(&object).expect("an IPv4 slice converts");
        assert_eq!(key, ("shop".into(), "web-abc".into()), "{name}");
        assert_eq!(model.service, ServiceKey::new("shop", "web"), "{name}");
        let e = &model.endpoints[0];
        assert_eq!((e.ready, e.serving, e.terminating), want, "{name}");
        assert_eq!(e.ip, ip("10.42.1.7"), "{name}");
        assert_eq!(e.node.as_deref(), Some("n1"), "{name}");
        assert_eq!(e.hostname.as_deref(), Some("web-0"), "{name}");
        assert_eq!(
            model.ports,
            [("http".into(), Protocol::Tcp, 8080)],
            "{name}: a port without a number is skipped, TCP is the default"
        );
    }
}

#[test]
fn only_ipv4_slices_that_name_their_service_are_kept() {
    let endpoints = json!([{"addresses": ["fd00::7"]}]);
    assert!(
        slice(&endpoint_slice("IPv6", endpoints.clone())).is_none(),
        "IPv6 slice"
    );
    assert!(
        slice(&endpoint_slice("FQDN", endpoints)).is_none(),
        "FQDN slice"
    );
    let mut unlabelled = endpoint_slice("IPv4", json!([]));
    unlabelled.metadata.labels = None;
    assert!(
        slice(&unlabelled).is_none(),
        "a slice without the service-name label"
    );
}

#[test]
fn nodes_keep_their_ipv4_addresses_and_pod_cidrs() {
    let object: core::Node = serde_json::from_value(json!({
        "metadata": {"name": "n2"},
        "spec": {"podCIDR": "10.42.1.0/24", "podCIDRs": ["10.42.1.0/24", "fd00:1::/64"]},
        "status": {"addresses": [
            {"type": "InternalIP", "address": "198.18.0.2"},
            {"type": "InternalIP", "address": "fd00::2"},
            {"type": "ExternalIP", "address": "198.19.0.2"},
            {"type": "Hostname", "address": "n2"}]},
    }))
    .unwrap();
    let info = node(&object).unwrap();
    assert_eq!(&*info.name, "n2");
    assert_eq!(info.internal, [ip("198.18.0.2")]);
    assert_eq!(info.external, [ip("198.19.0.2")]);
    assert_eq!(info.pod_cidrs, [Cidr::parse("10.42.1.0/24").unwrap()]);

    let bare: core::Node = serde_json::from_value(json!({"metadata": {"name": "n3"}})).unwrap();
    let info = node(&bare).unwrap();
    assert!(
        info.internal.is_empty() && info.pod_cidrs.is_empty(),
        "a new node has neither"
    );
}

#[test]
fn service_cidrs_keep_their_ipv4_ranges() {
    let object: ServiceCIDR = serde_json::from_value(json!({
        "metadata": {"name": "kubernetes"},
        "spec": {"cidrs": ["10.43.0.0/16", "fd00:43::/112"]},
    }))
    .unwrap();
    assert_eq!(
        service_cidr(&object),
        Some((
            "kubernetes".into(),
            vec![Cidr::parse("10.43.0.0/16").unwrap()]
        ))
    );
}
