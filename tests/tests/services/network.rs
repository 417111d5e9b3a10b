//! The two-node network alone (no cluster): what the service tests stand on.

use std::process::Command;
use std::sync::Arc;

use kybern_testkit::netlab::{self, Claim, NetLab};

use crate::require_root;

/// `ip route get ADDR` in `ns` (None: the host): a route lookup, no packet sent.
fn route_get(ns: Option<&str>, addr: &str) -> Result<String, String> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    let out = cmd.args(["route", "get", addr]).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

/// A line over TCP from inside `cmd`'s namespace to a listener of this test in the host.
fn says_hello(mut cmd: Command, to: std::net::SocketAddr) -> bool {
    cmd.args([
        "bash",
        "-c",
        &format!("echo hello > /dev/tcp/{}/{}", to.ip(), to.port()),
    ])
    .status()
    .is_ok_and(|s| s.success())
}

#[test]
fn the_two_node_network_connects_its_namespaces_through_the_host_only_and_leaves_nothing() {
    require_root();
    let lab = NetLab::create();
    let t = lab.t();

    // The namespaces reach the host's end of their links, and the test's listener sees them
    // with their own addresses (no NAT in between).
    let listener = std::net::TcpListener::bind((lab.node1_ip(), 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    for (name, cmd, from) in [
        ("node 2", lab.in_node2("env"), lab.node2_ip()),
        ("outside client", lab.in_outside("env"), lab.outside_ip()),
        ("fake upstream", lab.in_upstream("env"), lab.upstream_ip()),
    ] {
        assert!(says_hello(cmd, addr), "{name} reaches {addr}");
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), from, "{name} is seen at its own address");
    }

    // Nothing leaves the machine: no namespace has a route but its lab range, the host refuses
    // lab addresses that are not one of its links (a lookup, no packet sent).
    let outside_machine = "192.0.2.1";
    assert!(
        route_get(Some(&lab.node2_ns()), outside_machine).is_err(),
        "node 2 has no default route"
    );
    assert!(
        route_get(Some(&lab.upstream_ns()), outside_machine).is_err(),
        "the upstream has no default route"
    );
    assert!(
        route_get(Some(&lab.outside_ns()), outside_machine).is_err(),
        "the outside client has no default route"
    );
    let stray = format!("198.18.{t}.200");
    assert!(
        route_get(None, &stray).is_err(),
        "the guard route refuses {stray} in the host"
    );
    let via = route_get(Some(&lab.node2_ns()), &lab.outside_ip().to_string()).unwrap();
    assert!(
        via.contains(&format!("via {}", lab.node1_ip())),
        "node 2 reaches the outside client through node 1: {via}"
    );

    assert!(!netlab::leftovers(t).is_empty(), "the lab is there");
    let claim = lab.held_claim();
    drop(lab);
    netlab::assert_nothing_left(claim.t());
}

#[test]
fn the_fake_upstream_answers_in_its_namespace_and_records_the_questions() {
    require_root();
    let lab = NetLab::create();
    let dir = tempfile::tempdir().unwrap();
    let testserver = agent::images::test_images::build_testserver(dir.path()).unwrap();
    let log = dir.path().join("questions");
    let upstream = lab
        .in_upstream(&testserver)
        .args([
            "fake-dns",
            "53",
            &format!("outside.test={}", crate::OUTSIDE_TEST),
        ])
        .stdout(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _upstream = kybern_testkit::ChildGuard(upstream);
    // A query for outside.test (id 7, RD) from the host to the upstream's address.
    let mut query = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend_from_slice(b"\x07outside\x04test\x00\x00\x01\x00\x01");
    let socket = std::net::UdpSocket::bind((lab.node1_ip(), 0)).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let mut reply = [0u8; 512];
    // Resent until the server is up: it binds a moment after the spawn.
    let n = (0..50)
        .find_map(|_| {
            socket.send_to(&query, (lab.upstream_ip(), 53)).unwrap();
            socket.recv(&mut reply).ok()
        })
        .expect("an answer from the fake upstream");
    assert_eq!(&reply[n - 4..n], &[192, 0, 2, 80], "outside.test's address");
    let questions = std::fs::read_to_string(&log).unwrap();
    assert!(questions.contains("outside.test 1"), "{questions}");
}

#[test]
fn the_two_node_network_is_removed_when_its_test_panics() {
    require_root();
    let claim = std::panic::catch_unwind(|| {
        let lab = NetLab::create();
        std::panic::panic_any(lab.held_claim());
    })
    .unwrap_err()
    .downcast::<Arc<Claim>>()
    .expect("the test's claim as the panic's payload");
    netlab::assert_nothing_left(claim.t());
}

#[test]
fn nothing_is_left_after_the_cluster_stops() {
    let two = crate::TwoNodes::start();
    two.apply(
        "web.yaml",
        &[
            crate::server_pod("a", &two.nodes[0], "web"),
            crate::server_pod("b", &two.nodes[1], "web"),
            crate::service("web", "web", "  type: NodePort\n"),
        ]
        .join("---\n"),
    );
    two.wait_pods_ready(&["a", "b"]);
    crate::stop_and_assert_nothing_left(two);
}
