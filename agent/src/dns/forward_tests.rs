//! The forwarder against a fake upstream resolver on loopback that counts the questions it
//! is asked.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use tokio::net::UdpSocket;

use super::{Forwarder, TIMEOUT};

/// A UDP resolver on loopback answering every question with 192.0.2.7; `.1` counts them.
async fn counting_upstream() -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let seen = asked.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            seen.fetch_add(1, Ordering::SeqCst);
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut r = Message::response(q.metadata.id, q.metadata.op_code);
            r.add_queries(q.queries.iter().cloned());
            let name = q.queries[0].name().clone();
            r.add_answer(Record::from_rdata(
                name,
                300,
                RData::A(A::new(192, 0, 2, 7)),
            ));
            let _ = udp.send_to(&r.to_bytes().unwrap(), peer).await;
        }
    });
    (addr, asked, task)
}

fn question(id: u16, name: &str) -> Message {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m
}

#[tokio::test]
async fn identical_questions_missing_the_cache_at_once_are_asked_upstream_once() {
    let (addr, asked, task) = counting_upstream().await;
    let fwd = Forwarder::new(vec![addr], TIMEOUT);
    // All twenty are under way before any reply can arrive: `join_all` starts each in turn
    // before it waits for any of them.
    let questions: Vec<Message> = (0..20)
        .map(|id| question(id, "Example.ORG."))
        .chain((100..105).map(|id| question(id, "example.net.")))
        .collect();
    let replies = futures::future::join_all(questions.iter().map(|q| fwd.resolve(q))).await;
    task.abort();
    for (q, r) in questions.iter().zip(&replies) {
        assert_eq!(
            r.metadata.id, q.metadata.id,
            "each asker gets its own id back"
        );
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            r.queries, q.queries,
            "each asker gets its own question back"
        );
        assert_eq!(
            r.answers
                .iter()
                .map(|a| a.data.to_string())
                .collect::<Vec<_>>(),
            vec!["192.0.2.7"],
            "every asker gets the upstream's answer"
        );
    }
    assert_eq!(
        asked.load(Ordering::SeqCst),
        2,
        "one upstream question per distinct question (names compare case-insensitively)"
    );
}

#[tokio::test]
async fn a_question_asked_again_after_its_flight_landed_comes_from_the_cache() {
    let (addr, asked, task) = counting_upstream().await;
    let fwd = Forwarder::new(vec![addr], TIMEOUT);
    let first = fwd.resolve(&question(1, "example.org.")).await;
    let second = fwd.resolve(&question(2, "example.org.")).await;
    task.abort();
    assert_eq!(first.answers.len(), 1);
    assert_eq!(second.answers.len(), 1);
    assert_eq!(second.metadata.id, 2);
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "the second came from the cache"
    );
}
