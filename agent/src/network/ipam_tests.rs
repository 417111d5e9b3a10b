use std::collections::HashSet;
use std::net::Ipv4Addr;

use super::{Cidr, Ipam};
use crate::network::Error;

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

#[test]
fn cidrs_parse_to_network_gateway_and_broadcast() {
    struct Case {
        name: &'static str,
        text: &'static str,
        network: &'static str,
        gateway: &'static str,
        broadcast: &'static str,
    }
    let cases = [
        Case {
            name: "a node's /24",
            text: "10.42.0.0/24",
            network: "10.42.0.0",
            gateway: "10.42.0.1",
            broadcast: "10.42.0.255",
        },
        Case {
            name: "host bits are masked off",
            text: "10.42.3.77/24",
            network: "10.42.3.0",
            gateway: "10.42.3.1",
            broadcast: "10.42.3.255",
        },
        Case {
            name: "the smallest usable network",
            text: "192.168.5.4/30",
            network: "192.168.5.4",
            gateway: "192.168.5.5",
            broadcast: "192.168.5.7",
        },
    ];
    for case in cases {
        let cidr = Cidr::parse(case.text).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(cidr.network(), ip(case.network), "{}", case.name);
        assert_eq!(cidr.gateway(), ip(case.gateway), "{}", case.name);
        assert_eq!(cidr.broadcast(), ip(case.broadcast), "{}", case.name);
    }
}

#[test]
fn malformed_or_too_small_cidrs_are_refused() {
    for (name, text) in [
        ("no prefix", "10.42.0.0"),
        ("not an address", "10.42.0/24"),
        ("prefix too long for a pod", "10.42.0.0/31"),
        ("prefix out of range", "10.42.0.0/33"),
        ("IPv6", "fd00::/64"),
        ("empty", ""),
    ] {
        assert!(
            matches!(Cidr::parse(text), Err(Error::BadCidr(_))),
            "{name}: {text:?} was accepted"
        );
    }
}

#[test]
fn reserved_addresses_are_never_handed_to_pods() {
    struct Case {
        name: &'static str,
        cidr: &'static str,
        expected: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "a /30 has exactly one pod address",
            cidr: "10.0.0.0/30",
            expected: &["10.0.0.2"],
        },
        Case {
            name: "a /29 skips network, gateway and broadcast",
            cidr: "10.0.0.8/29",
            expected: &[
                "10.0.0.10",
                "10.0.0.11",
                "10.0.0.12",
                "10.0.0.13",
                "10.0.0.14",
            ],
        },
    ];
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path().join("ipam"));
        let cidr = Cidr::parse(case.cidr).unwrap();
        let mut got = Vec::new();
        for n in 0..case.expected.len() {
            let uid = format!("pod-{n}");
            got.push(
                ipam.reserve(&cidr, &uid)
                    .unwrap_or_else(|e| panic!("{}: {e}", case.name)),
            );
        }
        let expected: Vec<Ipv4Addr> = case.expected.iter().map(|t| ip(t)).collect();
        assert_eq!(got, expected, "{}", case.name);
        assert!(
            matches!(
                ipam.reserve(&cidr, "one-too-many"),
                Err(Error::Exhausted(_))
            ),
            "{}: a pod got an address beyond the pod range",
            case.name
        );
    }
}

#[test]
fn reservations_are_unique_and_stable_per_pod() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = Ipam::new(dir.path().to_path_buf());
    let cidr = Cidr::parse("10.42.0.64/26").unwrap(); // 64 - 3 = 61 pod addresses
    let mut seen = HashSet::new();
    for n in 0..61 {
        let uid = format!("pod-{n}");
        let got = ipam.reserve(&cidr, &uid).unwrap();
        assert!(seen.insert(got), "{got} was handed out twice");
        assert_eq!(ipam.reserve(&cidr, &uid).unwrap(), got, "{uid} asked again");
        assert_eq!(ipam.lookup(&uid).unwrap(), Some(got), "{uid} looked up");
    }
    assert!(
        matches!(ipam.reserve(&cidr, "pod-61"), Err(Error::Exhausted(c)) if c == "10.42.0.64/26")
    );
}

#[test]
fn reservations_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cidr = Cidr::parse("10.42.0.0/24").unwrap();
    let first = Ipam::new(dir.path().to_path_buf());
    let a = first.reserve(&cidr, "pod-a").unwrap();
    let b = first.reserve(&cidr, "pod-b").unwrap();
    drop(first);

    let again = Ipam::new(dir.path().to_path_buf());
    assert_eq!(
        again.reserve(&cidr, "pod-a").unwrap(),
        a,
        "pod-a after restart"
    );
    assert_eq!(
        again.lookup("pod-b").unwrap(),
        Some(b),
        "pod-b after restart"
    );
    let c = again.reserve(&cidr, "pod-c").unwrap();
    assert!(c != a && c != b, "a new pod got {c}, already held");
    assert_eq!(
        again.reservations().unwrap(),
        vec![
            (a, "pod-a".into()),
            (b, "pod-b".into()),
            (c, "pod-c".into())
        ]
    );
}

#[test]
fn freed_addresses_are_reused_only_after_the_rest_of_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = Ipam::new(dir.path().to_path_buf());
    let cidr = Cidr::parse("10.0.0.0/29").unwrap(); // pods get .2 to .6
    for uid in ["a", "b", "c"] {
        ipam.reserve(&cidr, uid).unwrap();
    }
    ipam.release("a").unwrap();
    ipam.release("a").unwrap(); // releasing twice is fine
    assert_eq!(ipam.lookup("a").unwrap(), None);

    // Round-robin from the last reserved (.4): .5 and .6 come before the freed .2, and
    // after wrapping, the still-held .3 and .4 are skipped.
    let order: Vec<Ipv4Addr> = ["d", "e", "f"]
        .iter()
        .map(|u| ipam.reserve(&cidr, u).unwrap())
        .collect();
    assert_eq!(order, vec![ip("10.0.0.5"), ip("10.0.0.6"), ip("10.0.0.2")]);
    assert!(matches!(ipam.reserve(&cidr, "g"), Err(Error::Exhausted(_))));
}

#[test]
fn a_reservation_outside_a_changed_cidr_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = Ipam::new(dir.path().to_path_buf());
    let old = Cidr::parse("10.42.0.0/24").unwrap();
    let new = Cidr::parse("10.42.7.0/24").unwrap();
    assert_eq!(ipam.reserve(&old, "pod").unwrap(), ip("10.42.0.2"));
    assert_eq!(ipam.reserve(&new, "pod").unwrap(), ip("10.42.7.2"));
    assert_eq!(
        ipam.reservations().unwrap(),
        vec![(ip("10.42.7.2"), "pod".into())]
    );
}

#[test]
fn uids_that_are_not_one_path_component_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = Ipam::new(dir.path().to_path_buf());
    let cidr = Cidr::parse("10.42.0.0/24").unwrap();
    for uid in ["", ".", "..", "../x", "a/b", ".claim-x"] {
        assert!(
            matches!(ipam.reserve(&cidr, uid), Err(Error::InvalidUid(_))),
            "{uid:?} was accepted"
        );
    }
}
