//! What the rules do to packets, traced through the whole ruleset of the design's five
//! example Services on node n1 (198.18.7.1): where each packet can end up and whether it
//! carries the masquerade mark.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::fake_trace::{trace, End, From, Packet, Ruleset};
use super::nft::Transaction;
use super::render::{base, service_rules};
use super::render_tests::{ctx, example, slice};
use crate::services::ServiceKey;

fn ruleset() -> Ruleset {
    let mut tx = Transaction::new("kybern");
    base(&ctx(), &mut tx, true);
    for name in ["web", "np", "empty", "sticky", "edge"] {
        let (service, endpoints) = example(name);
        let key = ServiceKey::new("default", name);
        let slices = if endpoints.is_empty() {
            vec![]
        } else {
            vec![slice(&key, endpoints)]
        };
        service_rules(&ctx(), &key, &service, &slices).write(&mut tx);
    }
    Ruleset::load(tx.text())
}

fn pkt(saddr: &str, daddr: &str, proto: &'static str, dport: u16) -> Packet {
    Packet {
        saddr: saddr.parse().unwrap(),
        daddr: daddr.parse().unwrap(),
        proto,
        dport,
        local_source: false,
        affinity: BTreeSet::new(),
    }
}

fn pass(to: &str, masquerade: bool) -> End {
    End::Pass {
        to: to.parse().unwrap(),
        masquerade,
    }
}

/// name, packet, where it comes from, every way it may end.
type Row = (&'static str, Packet, From, Vec<End>);

#[test]
fn packets_end_where_kube_proxy_would_send_them() {
    let r = ruleset();
    let local: Vec<Ipv4Addr> = vec![[198, 18, 7, 1].into(), [10, 43, 0, 10].into()];
    let mut from_host = pkt("198.18.7.1", "198.18.7.1", "tcp", 80);
    from_host.local_source = true;
    let mut sticky = pkt("10.42.0.99", "10.43.40.4", "tcp", 80);
    sticky
        .affinity
        .insert("affinity-4V5YEUO7-default/sticky/tcp/http__10.42.1.9/8080".into());
    let cases: Vec<Row> = vec![
        (
            "a pod reaches both endpoints of a ClusterIP, unmarked",
            pkt("10.42.0.99", "10.43.12.34", "tcp", 80),
            From::Outside,
            vec![pass("10.42.0.5:8080", false), pass("10.42.1.7:8080", false)],
        ),
        (
            "a client outside the cluster CIDR is masqueraded to a ClusterIP",
            pkt("198.18.7.9", "10.43.12.34", "tcp", 80),
            From::Outside,
            vec![pass("10.42.0.5:8080", true), pass("10.42.1.7:8080", true)],
        ),
        (
            "an endpoint reaching itself through its service is marked (hairpin)",
            pkt("10.42.0.5", "10.43.12.34", "tcp", 80),
            From::Outside,
            vec![pass("10.42.0.5:8080", true), pass("10.42.1.7:8080", false)],
        ),
        (
            "a NodePort with external policy Cluster is masqueraded",
            pkt("198.18.7.9", "198.18.7.1", "tcp", 30080),
            From::Outside,
            vec![pass("10.42.0.6:8080", true)],
        ),
        (
            "external policy Local sends outside clients to this node's endpoint, unmarked",
            pkt("198.18.7.9", "198.18.7.1", "tcp", 80),
            From::Outside,
            vec![pass("10.42.0.10:8080", false)],
        ),
        (
            "external policy Local NodePort likewise",
            pkt("198.18.7.9", "198.18.7.1", "tcp", 30500),
            From::Outside,
            vec![pass("10.42.0.10:8080", false)],
        ),
        (
            "pods short-circuit external policy Local to every endpoint",
            pkt("10.42.0.99", "198.18.7.1", "tcp", 80),
            From::Outside,
            vec![
                pass("10.42.0.10:8080", false),
                pass("10.42.1.11:8080", false),
            ],
        ),
        (
            "this host short-circuits external policy Local, masqueraded",
            from_host,
            From::ThisHost,
            vec![pass("10.42.0.10:8080", true), pass("10.42.1.11:8080", true)],
        ),
        (
            "the affinity set is consulted before the random pick",
            sticky,
            From::Outside,
            vec![pass("10.42.1.9:8080", false)],
        ),
        (
            "a Service without endpoints is rejected",
            pkt("10.42.0.99", "10.43.30.3", "tcp", 80),
            From::Outside,
            vec![End::Reject],
        ),
        (
            "a Service without endpoints is rejected for this host too",
            pkt("198.18.7.1", "10.43.30.3", "tcp", 80),
            From::ThisHost,
            vec![End::Reject],
        ),
        (
            "an unallocated ClusterIP is dropped",
            pkt("10.42.0.99", "10.43.99.99", "tcp", 80),
            From::Outside,
            vec![End::Drop],
        ),
        (
            "a port a ClusterIP does not serve is rejected",
            pkt("10.42.0.99", "10.43.12.34", "tcp", 81),
            From::Outside,
            vec![End::Reject],
        ),
        (
            "the cluster DNS address passes from this host",
            pkt("198.18.7.1", "10.43.0.10", "udp", 53),
            From::ThisHost,
            vec![pass("10.43.0.10:53", false)],
        ),
        (
            "the cluster DNS address passes from pods",
            pkt("10.42.0.99", "10.43.0.10", "udp", 53),
            From::Outside,
            vec![pass("10.43.0.10:53", false)],
        ),
    ];
    for (name, packet, from, want) in cases {
        let got = trace(&r, packet, from, &local);
        let want: BTreeSet<End> = want.into_iter().collect();
        assert_eq!(got, want, "{name}");
    }
}
