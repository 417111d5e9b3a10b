//! Golden nft text for the design's five example Services (web, np, empty, sticky, edge)
//! on node n1, and the base part.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::nft::Transaction;
use super::render::{base, service_rules, Context, ServiceRules};
use crate::network::ipam::Cidr;
use crate::services::{Endpoint, Protocol, Service, ServiceKey, ServiceKind, ServicePort, Slice};

pub(super) fn ctx() -> Context {
    Context {
        node: "n1".into(),
        cluster_cidr: Cidr::parse("10.42.0.0/16").unwrap(),
        service_cidrs: vec![Cidr::parse("10.43.0.0/16").unwrap()],
        cluster_dns: "10.43.0.10".parse().unwrap(),
        nodeport_ips: vec!["198.18.7.1".parse().unwrap()],
    }
}

/// A Service with one TCP port `http` 80, built up by the fixture methods.
pub(super) fn svc(ip: &str) -> Service {
    Service {
        kind: ServiceKind::ClusterIp,
        cluster_ip: Some(ip.parse().unwrap()),
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: None,
        }],
        external_ips: vec![],
        lb_ingress: vec![],
        lb_source_ranges: vec![],
        affinity_timeout: None,
        external_local: false,
        internal_local: false,
        publish_not_ready: false,
        lb_class: false,
    }
}

pub(super) fn node_port(mut s: Service, kind: ServiceKind, port: u16) -> Service {
    s.kind = kind;
    s.ports[0].node_port = Some(port);
    s
}

pub(super) fn ready(ip: &str, node: &str) -> Endpoint {
    Endpoint {
        ip: ip.parse().unwrap(),
        ready: true,
        serving: true,
        terminating: false,
        node: Some(node.into()),
        hostname: None,
    }
}

/// One slice of `key` with port `http` → 8080.
pub(super) fn slice(key: &ServiceKey, endpoints: Vec<Endpoint>) -> Arc<Slice> {
    Arc::new(Slice {
        service: key.clone(),
        ports: vec![("http".into(), Protocol::Tcp, 8080)],
        endpoints,
    })
}

fn text(rules: &ServiceRules) -> String {
    let mut tx = Transaction::new("kybern");
    rules.write(&mut tx);
    tx.text().to_string()
}

fn render(name: &str, service: &Service, endpoints: Vec<Endpoint>) -> String {
    let key = ServiceKey::new("default", name);
    let slices = if endpoints.is_empty() {
        vec![]
    } else {
        vec![slice(&key, endpoints)]
    };
    text(&service_rules(&ctx(), &key, service, &slices))
}

/// The example Services of the design, by name.
pub(super) fn example(name: &str) -> (Service, Vec<Endpoint>) {
    match name {
        "web" => (
            svc("10.43.12.34"),
            vec![ready("10.42.0.5", "n1"), ready("10.42.1.7", "n2")],
        ),
        "np" => (
            node_port(svc("10.43.20.1"), ServiceKind::NodePort, 30080),
            vec![ready("10.42.0.6", "n1")],
        ),
        "empty" => (svc("10.43.30.3"), vec![]),
        "sticky" => {
            let mut s = svc("10.43.40.4");
            s.affinity_timeout = Some(10800);
            (s, vec![ready("10.42.0.8", "n1"), ready("10.42.1.9", "n2")])
        }
        "edge" => {
            let mut s = node_port(svc("10.43.50.5"), ServiceKind::LoadBalancer, 30500);
            s.external_local = true;
            s.lb_ingress = vec![Ipv4Addr::new(198, 18, 7, 1)];
            (
                s,
                vec![ready("10.42.0.10", "n1"), ready("10.42.1.11", "n2")],
            )
        }
        other => panic!("no example {other}"),
    }
}

#[test]
fn each_example_service_renders_to_its_golden_nft_text() {
    let cases = [
        ("web", include_str!("testdata/web.nft")),
        ("np", include_str!("testdata/np.nft")),
        ("empty", include_str!("testdata/empty.nft")),
        ("sticky", include_str!("testdata/sticky.nft")),
        ("edge", include_str!("testdata/edge.nft")),
    ];
    for (name, want) in cases {
        let (service, endpoints) = example(name);
        let got = render(name, &service, endpoints);
        if std::env::var_os("KYBERN_BLESS").is_some() {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/proxy/testdata");
            std::fs::write(format!("{dir}/{name}.nft"), &got).unwrap();
            continue;
        }
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn the_base_part_renders_to_its_golden_nft_text() {
    let mut tx = Transaction::new("kybern");
    base(&ctx(), &mut tx, false);
    if std::env::var_os("KYBERN_BLESS").is_some() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/proxy/testdata");
        std::fs::write(format!("{dir}/base.nft"), tx.text()).unwrap();
        return;
    }
    assert_eq!(tx.text(), include_str!("testdata/base.nft"));
}

#[test]
fn headless_external_name_and_cluster_dns_services_get_no_rules() {
    let mut headless = svc("10.43.1.1");
    headless.cluster_ip = None;
    let mut external = svc("10.43.1.1");
    external.cluster_ip = None;
    external.kind = ServiceKind::ExternalName("outside.test".into());
    let dns = svc("10.43.0.10");
    for (name, service) in [
        ("headless", headless),
        ("external name", external),
        ("cluster DNS", dns),
    ] {
        let got = render(name, &service, vec![ready("10.42.0.5", "n1")]);
        assert_eq!(got, "", "{name}");
    }
}

#[test]
fn the_cluster_dns_address_passes_the_unallocated_cluster_ip_drop() {
    let mut tx = Transaction::new("kybern");
    base(&ctx(), &mut tx, false);
    let text = tx.text();
    let pass = text
        .find("add rule ip kybern cluster-ips-check ip daddr 10.43.0.10 return")
        .expect("a return rule for the DNS address");
    let drop = text
        .find("add rule ip kybern cluster-ips-check ip daddr { 10.43.0.0/16 } drop")
        .expect("the drop rule");
    assert!(pass < drop, "{text}");
}

#[test]
fn internal_traffic_policy_local_without_local_endpoints_drops_cluster_ip_traffic() {
    let mut s = svc("10.43.12.34");
    s.internal_local = true;
    let got = render("web", &s, vec![ready("10.42.1.7", "n2")]);
    assert!(
        got.contains("add element ip kybern no-endpoint-services { 10.43.12.34 . tcp . 80 comment \"default/web:http\" : drop }"),
        "{got}"
    );
    assert!(!got.contains("add chain"), "{got}");
}
