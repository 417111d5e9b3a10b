//! The cluster DNS server over real UDP and TCP sockets on loopback, with a fake upstream
//! resolver on loopback for names outside the cluster zone.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agent::dns::{DnsConfig, Server};
use agent::services::{ClusterState, Endpoint, Protocol, Service, ServiceKey, ServiceKind, Slice};
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// A guard against a hang, not a measurement.
const PATIENCE: Duration = Duration::from_secs(20);

fn headless(ready: usize) -> (Service, Slice) {
    let service = Service {
        kind: ServiceKind::ClusterIp,
        cluster_ip: None,
        ports: vec![],
        external_ips: vec![],
        lb_ingress: vec![],
        lb_source_ranges: vec![],
        affinity_timeout: None,
        external_local: false,
        internal_local: false,
        publish_not_ready: false,
        lb_class: false,
    };
    let slice = Slice {
        service: ServiceKey::new("shop", "big"),
        ports: vec![("web".into(), Protocol::Tcp, 80)],
        endpoints: (0..ready)
            .map(|i| Endpoint {
                ip: Ipv4Addr::new(10, 42, 3, i as u8),
                ready: true,
                serving: true,
                terminating: false,
                node: None,
                hostname: None,
            })
            .collect(),
    };
    (service, slice)
}

/// A cluster with one headless Service `big.shop` of `ready` endpoints.
fn state(ready: usize) -> Arc<ClusterState> {
    let state = ClusterState::new();
    let (service, slice) = headless(ready);
    state.set_service(ServiceKey::new("shop", "big"), Some(service));
    state.set_slice("shop", "big-1", Some(slice));
    state
}

async fn start(
    upstreams: Vec<SocketAddr>,
    resolv_conf: &std::path::Path,
    ready: usize,
) -> (SocketAddr, Vec<SocketAddr>, tokio::task::JoinHandle<()>) {
    let config = DnsConfig {
        listen: Ipv4Addr::new(127, 0, 0, 1),
        domain: "cluster.local".into(),
        upstreams,
        resolv_conf: resolv_conf.to_path_buf(),
    };
    let server = Server::bind(&config, 0, state(ready)).await.unwrap();
    let addr = server.local_addr();
    let ups = server.upstreams().to_vec();
    let task = tokio::spawn(async move {
        let _ = server.serve().await;
    });
    (addr, ups, task)
}

fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

async fn udp(server: SocketAddr, q: &Message) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&q.to_bytes().unwrap(), server)
        .await
        .unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(PATIENCE, socket.recv_from(&mut buf))
        .await
        .expect("a UDP reply")
        .unwrap();
    let reply = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(
        reply.metadata.id, q.metadata.id,
        "the reply carries the question's id"
    );
    reply
}

async fn tcp(server: SocketAddr, questions: &[Message]) -> Vec<Message> {
    let mut stream = TcpStream::connect(server).await.unwrap();
    // Pipelined: every question before the first reply is read.
    for q in questions {
        let bytes = q.to_bytes().unwrap();
        stream
            .write_all(&(bytes.len() as u16).to_be_bytes())
            .await
            .unwrap();
        stream.write_all(&bytes).await.unwrap();
    }
    let mut out = Vec::new();
    for _ in questions {
        let len = tokio::time::timeout(PATIENCE, stream.read_u16())
            .await
            .expect("a TCP reply")
            .unwrap();
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await.unwrap();
        out.push(Message::from_vec(&buf).unwrap());
    }
    out
}

/// How a fake upstream behaves.
#[derive(Clone, Copy)]
enum Upstream {
    /// Answers every A question with 192.0.2.1, TTL 300.
    Answers,
    /// Never answers.
    Silent,
    /// Over UDP says "truncated"; over TCP answers with 192.0.2.2.
    TruncatesUdp,
}

struct Fake {
    addr: SocketAddr,
    udp_seen: Arc<AtomicUsize>,
    tcp_seen: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn upstream_reply(q: &Message, ip: [u8; 4], truncated: bool) -> Message {
    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
    r.metadata.recursion_available = true;
    r.add_queries(q.queries.iter().cloned());
    if truncated {
        r.metadata.truncation = true;
    } else {
        let name = q.queries[0].name().clone();
        r.add_answer(Record::from_rdata(name, 300, RData::A(A(ip.into()))));
    }
    r
}

async fn fake(behaviour: Upstream) -> Fake {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let udp = UdpSocket::bind(addr).await.unwrap();
    let (udp_seen, tcp_seen) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let seen = udp_seen.clone();
    let t1 = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                return;
            };
            seen.fetch_add(1, Ordering::SeqCst);
            let q = Message::from_vec(&buf[..n]).unwrap();
            let r = match behaviour {
                Upstream::Silent => continue,
                Upstream::Answers => upstream_reply(&q, [192, 0, 2, 1], false),
                Upstream::TruncatesUdp => upstream_reply(&q, [192, 0, 2, 2], true),
            };
            let _ = udp.send_to(&r.to_bytes().unwrap(), peer).await;
        }
    });
    let seen = tcp_seen.clone();
    let t2 = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = tcp.accept().await else {
                return;
            };
            seen.fetch_add(1, Ordering::SeqCst);
            let len = s.read_u16().await.unwrap();
            let mut buf = vec![0u8; usize::from(len)];
            s.read_exact(&mut buf).await.unwrap();
            let q = Message::from_vec(&buf).unwrap();
            let bytes = upstream_reply(&q, [192, 0, 2, 2], false)
                .to_bytes()
                .unwrap();
            s.write_all(&(bytes.len() as u16).to_be_bytes())
                .await
                .unwrap();
            s.write_all(&bytes).await.unwrap();
        }
    });
    Fake {
        addr,
        udp_seen,
        tcp_seen,
        tasks: vec![t1, t2],
    }
}

fn addresses(m: &Message) -> Vec<String> {
    m.answers.iter().map(|r| r.data.to_string()).collect()
}

#[tokio::test]
async fn cluster_names_are_answered_over_udp_and_tcp_and_large_answers_move_to_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _, task) = start(vec![], &dir.path().join("none"), 100).await;
    let q = query("big.shop.svc.cluster.local.", RecordType::A, None);
    let cut = udp(server, &q).await;
    assert!(
        cut.metadata.truncation && cut.answers.is_empty(),
        "100 records do not fit 512 bytes: TC"
    );
    let q = query("big.shop.svc.cluster.local.", RecordType::A, Some(4096));
    let cut = udp(server, &q).await;
    assert!(
        cut.metadata.truncation,
        "100 records do not fit 1232 bytes either"
    );
    assert_eq!(
        cut.edns.map(|e| e.max_payload()),
        Some(1232),
        "EDNS is echoed"
    );
    let replies = tcp(
        server,
        &[
            query("big.shop.svc.cluster.local.", RecordType::A, None),
            query("dns-version.cluster.local.", RecordType::TXT, None),
        ],
    )
    .await;
    assert_eq!(replies[0].answers.len(), 100, "over TCP every record");
    assert!(!replies[0].metadata.truncation);
    assert_eq!(
        addresses(&replies[1]),
        ["1.0.1"],
        "a second question on the same connection"
    );
    let small = udp(
        server,
        &query("nope.shop.svc.cluster.local.", RecordType::A, None),
    )
    .await;
    assert_eq!(small.metadata.response_code, ResponseCode::NXDomain);
    task.abort();
}

#[tokio::test]
async fn outside_names_are_forwarded_and_cached_for_at_most_thirty_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let up = fake(Upstream::Answers).await;
    let (server, _, task) = start(vec![up.addr], &dir.path().join("none"), 1).await;
    let first = udp(server, &query("www.example.test.", RecordType::A, None)).await;
    assert_eq!(addresses(&first), ["192.0.2.1"], "answered by the upstream");
    assert!(
        first.answers[0].ttl <= 30,
        "TTL capped at 30 s: {}",
        first.answers[0].ttl
    );
    assert!(first.metadata.recursion_available && !first.metadata.authoritative);
    let again = udp(server, &query("WWW.example.test.", RecordType::A, None)).await;
    assert_eq!(addresses(&again), ["192.0.2.1"]);
    assert_eq!(
        up.udp_seen.load(Ordering::SeqCst),
        1,
        "the second question (any case) came from the cache"
    );
    let over_tcp = tcp(server, &[query("other.example.test.", RecordType::A, None)]).await;
    assert_eq!(
        addresses(&over_tcp[0]),
        ["192.0.2.1"],
        "forwarded from a TCP client too"
    );
    task.abort();
}

#[tokio::test]
async fn a_silent_upstream_is_skipped_and_a_truncated_reply_is_asked_again_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let silent = fake(Upstream::Silent).await;
    let truncating = fake(Upstream::TruncatesUdp).await;
    let (server, _, task) = start(
        vec![silent.addr, truncating.addr],
        &dir.path().join("none"),
        1,
    )
    .await;
    let reply = udp(server, &query("www.example.test.", RecordType::A, None)).await;
    assert_eq!(
        addresses(&reply),
        ["192.0.2.2"],
        "the second upstream answered over TCP"
    );
    assert_eq!(
        silent.udp_seen.load(Ordering::SeqCst),
        1,
        "the first upstream was asked first"
    );
    assert_eq!(
        truncating.tcp_seen.load(Ordering::SeqCst),
        1,
        "TC led to a TCP retry"
    );
    // The upstream that answered is asked first from now on.
    let reply = udp(server, &query("two.example.test.", RecordType::A, None)).await;
    assert_eq!(addresses(&reply), ["192.0.2.2"]);
    assert_eq!(
        silent.udp_seen.load(Ordering::SeqCst),
        1,
        "the silent upstream was not asked again"
    );
    task.abort();
}

#[tokio::test]
async fn with_no_upstream_answering_outside_names_get_servfail() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _, task) = start(vec![], &dir.path().join("none"), 1).await;
    let reply = udp(server, &query("www.example.test.", RecordType::A, None)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    task.abort();
}

#[tokio::test]
async fn upstreams_come_from_resolv_conf_without_the_served_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    std::fs::write(
        &path,
        "search lan\nnameserver 127.0.0.1\nnameserver 127.0.0.53\n",
    )
    .unwrap();
    let (_, upstreams, task) = start(vec![], &path, 1).await;
    assert_eq!(
        upstreams,
        [SocketAddr::from(([127, 0, 0, 53], 53))],
        "the agent's own address (127.0.0.1:53 here) would loop"
    );
    task.abort();
    let explicit: SocketAddr = "127.0.0.9:5353".parse().unwrap();
    let (_, upstreams, task) = start(vec![explicit], &path, 1).await;
    assert_eq!(upstreams, [explicit], "--dns-upstream replaces resolv.conf");
    task.abort();
}
