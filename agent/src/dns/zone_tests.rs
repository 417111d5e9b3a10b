//! The cluster zone per section of the Kubernetes DNS specification and per CoreDNS name
//! shape, asked through the request handler (no sockets).

use std::net::Ipv4Addr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

use super::super::handler::{self, Outcome};
use super::Zone;
use crate::services::{
    ClusterState, Endpoint, Protocol, Service, ServiceKey, ServiceKind, ServicePort, Slice,
};

fn service(kind: ServiceKind, ip: Option<[u8; 4]>, ports: &[(&str, Protocol, u16)]) -> Service {
    Service {
        kind,
        cluster_ip: ip.map(Ipv4Addr::from),
        ports: ports
            .iter()
            .map(|(name, protocol, port)| ServicePort {
                name: (*name).into(),
                protocol: *protocol,
                port: *port,
                node_port: None,
            })
            .collect(),
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

fn endpoint(ip: [u8; 4], ready: bool, hostname: Option<&str>) -> Endpoint {
    Endpoint {
        ip: ip.into(),
        ready,
        serving: ready,
        terminating: false,
        node: None,
        hostname: hostname.map(Into::into),
    }
}

/// web (ClusterIP, ports http/TCP 80 and dns/UDP 53), nginx (headless StatefulSet: web-0,
/// web-1 ready, web-2 not ready), pub (headless, publishNotReadyAddresses, one not-ready
/// endpoint without hostname), empty (headless, no endpoints), ext (ExternalName), all in
/// namespace shop.
fn state() -> Arc<ClusterState> {
    let state = ClusterState::new();
    let mut publish = service(ServiceKind::ClusterIp, None, &[("", Protocol::Tcp, 80)]);
    publish.publish_not_ready = true;
    state.replace_services(vec![
        (
            ServiceKey::new("shop", "web"),
            service(
                ServiceKind::ClusterIp,
                Some([10, 43, 12, 34]),
                &[("http", Protocol::Tcp, 80), ("dns", Protocol::Udp, 53)],
            ),
        ),
        (
            ServiceKey::new("shop", "nginx"),
            service(ServiceKind::ClusterIp, None, &[("web", Protocol::Tcp, 80)]),
        ),
        (ServiceKey::new("shop", "pub"), publish),
        (
            ServiceKey::new("shop", "empty"),
            service(ServiceKind::ClusterIp, None, &[("web", Protocol::Tcp, 80)]),
        ),
        (
            ServiceKey::new("shop", "ext"),
            service(
                ServiceKind::ExternalName("db.example.test".into()),
                None,
                &[],
            ),
        ),
    ]);
    state.replace_slices(vec![
        (
            ("shop".into(), "web-abc".into()),
            Slice {
                service: ServiceKey::new("shop", "web"),
                ports: vec![("http".into(), Protocol::Tcp, 8080)],
                endpoints: vec![endpoint([10, 42, 0, 5], true, None)],
            },
        ),
        (
            ("shop".into(), "nginx-abc".into()),
            Slice {
                service: ServiceKey::new("shop", "nginx"),
                ports: vec![("web".into(), Protocol::Tcp, 8080)],
                endpoints: vec![
                    endpoint([10, 42, 0, 10], true, Some("web-0")),
                    endpoint([10, 42, 1, 11], true, Some("web-1")),
                    endpoint([10, 42, 1, 12], false, Some("web-2")),
                ],
            },
        ),
        (
            ("shop".into(), "pub-abc".into()),
            Slice {
                service: ServiceKey::new("shop", "pub"),
                ports: vec![("".into(), Protocol::Tcp, 80)],
                endpoints: vec![endpoint([10, 42, 2, 20], false, None)],
            },
        ),
    ]);
    state.replace_nodes(vec![]);
    state.replace_service_cidrs(vec![]);
    state
}

fn zone() -> Zone {
    let zone = Zone::new("cluster.local", Ipv4Addr::new(10, 43, 0, 10), state()).unwrap();
    zone.refresh_all();
    zone
}

fn request(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

fn ask(zone: &Zone, name: &str, qtype: RecordType) -> Outcome {
    handler::answer(zone, request(name, qtype))
}

fn reply(zone: &Zone, name: &str, qtype: RecordType) -> Message {
    match ask(zone, name, qtype) {
        Outcome::Reply(m) => m,
        other => panic!("{name} {qtype}: not answered from the zone: {other:?}"),
    }
}

fn render(records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = records
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect();
    out.sort();
    out
}

#[test]
fn names_of_the_cluster_zone_answer_as_the_dns_specification_says() {
    let zone = zone();
    use RecordType::{A, AAAA, PTR, SRV, TXT};
    let cases: &[(&str, &str, RecordType, ResponseCode, &[&str])] = &[
        ("2.3.1: a ClusterIP service has an A record", "web.shop.svc.cluster.local.", A, ResponseCode::NoError,
            &["web.shop.svc.cluster.local. A 10.43.12.34"]),
        ("names are compared without case and answered as asked", "WEB.Shop.svc.Cluster.Local.", A, ResponseCode::NoError,
            &["WEB.Shop.svc.Cluster.Local. A 10.43.12.34"]),
        ("2.3.1: an IPv4 service has no AAAA (NODATA)", "web.shop.svc.cluster.local.", AAAA, ResponseCode::NoError, &[]),
        ("2.3.2: a named port has an SRV record to the service", "_http._tcp.web.shop.svc.cluster.local.", SRV, ResponseCode::NoError,
            &["_http._tcp.web.shop.svc.cluster.local. SRV 0 100 80 web.shop.svc.cluster.local."]),
        ("2.3.2: the port's protocol is part of the name", "_dns._udp.web.shop.svc.cluster.local.", SRV, ResponseCode::NoError,
            &["_dns._udp.web.shop.svc.cluster.local. SRV 0 100 53 web.shop.svc.cluster.local."]),
        ("2.3.2: a port name with the wrong protocol does not exist", "_http._udp.web.shop.svc.cluster.local.", SRV, ResponseCode::NXDomain, &[]),
        ("the service name alone lists every port as SRV", "web.shop.svc.cluster.local.", SRV, ResponseCode::NoError,
            &["web.shop.svc.cluster.local. SRV 0 50 53 web.shop.svc.cluster.local.", "web.shop.svc.cluster.local. SRV 0 50 80 web.shop.svc.cluster.local."]),
        ("2.3.3: a ClusterIP has a PTR record", "34.12.43.10.in-addr.arpa.", PTR, ResponseCode::NoError,
            &["34.12.43.10.in-addr.arpa. PTR web.shop.svc.cluster.local."]),
        ("2.4.1: a headless service has an A record per ready endpoint", "nginx.shop.svc.cluster.local.", A, ResponseCode::NoError,
            &["nginx.shop.svc.cluster.local. A 10.42.0.10", "nginx.shop.svc.cluster.local. A 10.42.1.11"]),
        ("2.4.1: publishNotReadyAddresses shows not-ready endpoints", "pub.shop.svc.cluster.local.", A, ResponseCode::NoError,
            &["pub.shop.svc.cluster.local. A 10.42.2.20"]),
        ("2.4.1: a headless service without ready endpoints does not exist", "empty.shop.svc.cluster.local.", A, ResponseCode::NXDomain, &[]),
        ("2.4.1: an endpoint's hostname has an A record", "web-0.nginx.shop.svc.cluster.local.", A, ResponseCode::NoError,
            &["web-0.nginx.shop.svc.cluster.local. A 10.42.0.10"]),
        ("a not-ready endpoint's hostname does not exist", "web-2.nginx.shop.svc.cluster.local.", A, ResponseCode::NXDomain, &[]),
        ("an endpoint without hostname is named by its dashed address", "10-42-2-20.pub.shop.svc.cluster.local.", A, ResponseCode::NoError,
            &["10-42-2-20.pub.shop.svc.cluster.local. A 10.42.2.20"]),
        ("endpoint names work under ClusterIP services too", "10-42-0-5.web.shop.svc.cluster.local.", A, ResponseCode::NoError,
            &["10-42-0-5.web.shop.svc.cluster.local. A 10.42.0.5"]),
        ("2.4.2: a headless named port has an SRV record per endpoint", "_web._tcp.nginx.shop.svc.cluster.local.", SRV, ResponseCode::NoError,
            &["_web._tcp.nginx.shop.svc.cluster.local. SRV 0 50 8080 web-0.nginx.shop.svc.cluster.local.", "_web._tcp.nginx.shop.svc.cluster.local. SRV 0 50 8080 web-1.nginx.shop.svc.cluster.local."]),
        ("2.4.3: an endpoint address has a PTR record to its hostname", "10.0.42.10.in-addr.arpa.", PTR, ResponseCode::NoError,
            &["10.0.42.10.in-addr.arpa. PTR web-0.nginx.shop.svc.cluster.local."]),
        ("2.5: an ExternalName service is a CNAME", "ext.shop.svc.cluster.local.", RecordType::CNAME, ResponseCode::NoError,
            &["ext.shop.svc.cluster.local. CNAME db.example.test."]),
        ("2.6: pod names resolve to their dashed address", "10-42-0-7.shop.pod.cluster.local.", A, ResponseCode::NoError,
            &["10-42-0-7.shop.pod.cluster.local. A 10.42.0.7"]),
        ("a pod name that is not an address does not exist", "10-42-0.shop.pod.cluster.local.", A, ResponseCode::NXDomain, &[]),
        ("2.2: dns-version names the schema", "dns-version.cluster.local.", TXT, ResponseCode::NoError,
            &["dns-version.cluster.local. TXT 1.0.1"]),
        ("a missing service does not exist", "nope.shop.svc.cluster.local.", A, ResponseCode::NXDomain, &[]),
        ("a name in no known shape does not exist", "a.b.c.d.e.f.svc.cluster.local.", A, ResponseCode::NXDomain, &[]),
        ("another branch of the zone does not exist", "web.shop.cluster.local.", A, ResponseCode::NXDomain, &[]),
        ("the zone apex exists without an A record", "cluster.local.", A, ResponseCode::NoError, &[]),
        ("svc and a namespace under it are empty non-terminals", "shop.svc.cluster.local.", A, ResponseCode::NoError, &[]),
        ("_tcp under a service is an empty non-terminal", "_tcp.web.shop.svc.cluster.local.", A, ResponseCode::NoError, &[]),
    ];
    for (name, qname, qtype, rcode, want) in cases {
        let m = reply(&zone, qname, *qtype);
        assert_eq!(m.metadata.response_code, *rcode, "{name}");
        assert!(
            m.metadata.authoritative,
            "{name}: answers of the zone are authoritative"
        );
        assert_eq!(render(&m.answers), *want, "{name}");
        if want.is_empty() {
            let soa = render(&m.authorities);
            assert_eq!(soa.len(), 1, "{name}: NXDOMAIN and NODATA carry the SOA");
            assert!(
                soa[0].starts_with(
                    "cluster.local. SOA ns.dns.cluster.local. hostmaster.cluster.local."
                ),
                "{name}: {soa:?}"
            );
        }
    }
}

#[test]
fn srv_answers_carry_the_targets_addresses() {
    let zone = zone();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "a ClusterIP service's SRV adds its ClusterIP",
            "_http._tcp.web.shop.svc.cluster.local.",
            &["web.shop.svc.cluster.local. A 10.43.12.34"],
        ),
        (
            "a headless service's SRV adds each endpoint",
            "_web._tcp.nginx.shop.svc.cluster.local.",
            &[
                "web-0.nginx.shop.svc.cluster.local. A 10.42.0.10",
                "web-1.nginx.shop.svc.cluster.local. A 10.42.1.11",
            ],
        ),
    ];
    for (name, qname, want) in cases {
        let m = reply(&zone, qname, RecordType::SRV);
        assert_eq!(render(&m.additionals), *want, "{name}");
    }
}

#[test]
fn names_outside_the_zone_and_unknown_addresses_are_forwarded() {
    let zone = zone();
    for (name, qname, qtype) in [
        ("a name outside the zone", "example.test.", RecordType::A),
        (
            "an address no service or endpoint has",
            "9.9.9.10.in-addr.arpa.",
            RecordType::PTR,
        ),
    ] {
        assert!(
            matches!(ask(&zone, qname, qtype), Outcome::Forward(_)),
            "{name}"
        );
    }
}

#[test]
fn an_external_name_is_resolved_after_its_cname_for_address_questions() {
    let zone = zone();
    match ask(&zone, "ext.shop.svc.cluster.local.", RecordType::A) {
        Outcome::Chase(chase) => {
            let (mut reply, target) = (chase.reply, chase.target);
            assert_eq!(target.to_ascii(), "db.example.test.");
            assert_eq!(
                render(&reply.answers),
                ["ext.shop.svc.cluster.local. CNAME db.example.test."]
            );
            // The target's records (here as an upstream would give them) follow the CNAME.
            let target_a = Record::from_rdata(
                target.clone(),
                30,
                hickory_proto::rr::RData::A(Ipv4Addr::new(192, 0, 2, 7).into()),
            );
            handler::append_chase(&mut reply, ResponseCode::NoError, vec![target_a]);
            assert_eq!(
                render(&reply.answers),
                [
                    "db.example.test. A 192.0.2.7",
                    "ext.shop.svc.cluster.local. CNAME db.example.test.",
                ]
            );
            assert_eq!(
                reply.answers[0].record_type(),
                RecordType::CNAME,
                "CNAME first"
            );
        }
        other => panic!("not chased: {other:?}"),
    }
}

#[test]
fn reverse_names_follow_store_changes() {
    let zone = zone();
    let state = zone.state().clone();
    let key = ServiceKey::new("shop", "web");
    state.set_service(key.clone(), None);
    zone.refresh([&key]);
    assert!(
        matches!(
            ask(&zone, "34.12.43.10.in-addr.arpa.", RecordType::PTR),
            Outcome::Forward(_)
        ),
        "a deleted service's ClusterIP has no PTR record any more"
    );
    let m = reply(&zone, "10.0.42.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(
        render(&m.answers),
        ["10.0.42.10.in-addr.arpa. PTR web-0.nginx.shop.svc.cluster.local."],
        "other services' names stay"
    );
}

#[test]
fn header_rules_follow_the_rfcs() {
    let zone = zone();
    let mut two = request("web.shop.svc.cluster.local.", RecordType::A);
    two.add_query(Query::query(Name::from_ascii("x.").unwrap(), RecordType::A));
    let mut notify = request("web.shop.svc.cluster.local.", RecordType::A);
    notify.metadata.op_code = OpCode::Notify;
    let mut badvers = request("web.shop.svc.cluster.local.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_version(1);
    badvers.set_edns(edns);
    for (name, req, rcode) in [
        (
            "two questions are a format error",
            two,
            ResponseCode::FormErr,
        ),
        (
            "opcodes other than QUERY are not implemented",
            notify,
            ResponseCode::NotImp,
        ),
        (
            "EDNS versions above 0 get BADVERS",
            badvers,
            ResponseCode::BADVERS,
        ),
    ] {
        let id = req.metadata.id;
        let Outcome::Reply(m) = handler::answer(&zone, req) else {
            panic!("{name}")
        };
        assert_eq!(m.metadata.response_code, rcode, "{name}");
        assert_eq!(m.metadata.id, id, "{name}");
    }
    let (outcome, _) = handler::handle(&zone, &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff]);
    let Outcome::Reply(m) = outcome else {
        panic!("undecodable")
    };
    assert_eq!(
        (m.metadata.id, m.metadata.response_code),
        (0x1234, ResponseCode::FormErr),
        "an undecodable question with a header gets FORMERR"
    );
    let m = reply(&zone, "web.shop.svc.cluster.local.", RecordType::A);
    assert!(
        m.metadata.recursion_available && m.metadata.recursion_desired,
        "RA set, RD echoed"
    );
    assert!(m.edns.is_none(), "no OPT without one in the request");
}

#[test]
fn edns_is_echoed_and_sets_the_udp_size() {
    let zone = zone();
    let mut req = request("web.shop.svc.cluster.local.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    req.set_edns(edns);
    let (outcome, limit) = handler::handle(&zone, &req.to_bytes().unwrap());
    let Outcome::Reply(m) = outcome else {
        panic!("not answered")
    };
    assert_eq!(
        m.edns.as_ref().map(|e| e.max_payload()),
        Some(1232),
        "our payload size in the OPT"
    );
    assert_eq!(limit, 1232, "UDP replies are capped at our payload size");
    let (_, limit) = handler::handle(&zone, &request("x.", RecordType::A).to_bytes().unwrap());
    assert_eq!(limit, 512, "without EDNS, 512 bytes");
}

#[test]
fn replies_larger_than_the_limit_are_truncated_to_the_question() {
    let state = ClusterState::new();
    let key = ServiceKey::new("shop", "big");
    state.set_service(
        key.clone(),
        Some(service(
            ServiceKind::ClusterIp,
            None,
            &[("web", Protocol::Tcp, 80)],
        )),
    );
    state.set_slice(
        "shop",
        "big-1",
        Some(Slice {
            service: key,
            ports: vec![("web".into(), Protocol::Tcp, 80)],
            endpoints: (0..60)
                .map(|i| endpoint([10, 42, 3, i], true, None))
                .collect(),
        }),
    );
    let zone = Zone::new("cluster.local", Ipv4Addr::new(10, 43, 0, 10), state).unwrap();
    let m = reply(&zone, "big.shop.svc.cluster.local.", RecordType::A);
    let full = handler::encode(&m, 65535);
    assert!(full.len() > 512, "60 A records do not fit 512 bytes");
    for (name, limit) in [("at 512 bytes", 512), ("at an EDNS size", 900)] {
        let cut = Message::from_vec(&handler::encode(&m, limit)).unwrap();
        assert!(cut.metadata.truncation, "{name}: TC set");
        assert!(cut.answers.is_empty(), "{name}: no records");
        assert_eq!(cut.queries.len(), 1, "{name}: the question stays");
    }
    let whole = Message::from_vec(&handler::encode(&m, 65535)).unwrap();
    assert!(
        !whole.metadata.truncation && whole.answers.len() == 60,
        "over TCP all 60 records"
    );
}

#[test]
fn an_address_behind_two_services_has_a_name_under_each_until_one_goes() {
    let zone = zone();
    let state = zone.state().clone();
    let other = ServiceKey::new("shop", "other");
    state.set_service(
        other.clone(),
        Some(service(ServiceKind::ClusterIp, Some([10, 43, 9, 9]), &[])),
    );
    state.set_slice(
        "shop",
        "other-1",
        Some(Slice {
            service: other.clone(),
            ports: vec![],
            endpoints: vec![endpoint([10, 42, 0, 10], true, None)],
        }),
    );
    zone.refresh([&other]);
    let m = reply(&zone, "10.0.42.10.in-addr.arpa.", RecordType::PTR);
    let mut names = render(&m.answers);
    names.sort();
    assert_eq!(
        names,
        [
            "10.0.42.10.in-addr.arpa. PTR 10-42-0-10.other.shop.svc.cluster.local.",
            "10.0.42.10.in-addr.arpa. PTR web-0.nginx.shop.svc.cluster.local.",
        ]
    );
    state.set_service(other.clone(), None);
    zone.refresh([&other]);
    let m = reply(&zone, "10.0.42.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(
        render(&m.answers),
        ["10.0.42.10.in-addr.arpa. PTR web-0.nginx.shop.svc.cluster.local."],
        "the other Service's name left with it"
    );
    assert!(
        matches!(
            ask(&zone, "9.9.43.10.in-addr.arpa.", RecordType::PTR),
            Outcome::Forward(_)
        ),
        "its ClusterIP is no longer ours"
    );
}
