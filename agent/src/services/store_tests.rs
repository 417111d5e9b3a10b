use std::net::Ipv4Addr;

use super::*;
use crate::services::model::{Endpoint, Protocol, ServiceKind, ServicePort};

fn service(ip: [u8; 4]) -> Service {
    Service {
        kind: ServiceKind::ClusterIp,
        cluster_ip: Some(Ipv4Addr::from(ip)),
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

fn slice(service: &ServiceKey, ip: [u8; 4]) -> Slice {
    Slice {
        service: service.clone(),
        ports: vec![("http".into(), Protocol::Tcp, 8080)],
        endpoints: vec![Endpoint {
            ip: Ipv4Addr::from(ip),
            ready: true,
            serving: true,
            terminating: false,
            node: Some("n1".into()),
            hostname: None,
        }],
    }
}

fn sync_all(state: &ClusterState) {
    state.replace_services(vec![]);
    state.replace_slices(vec![]);
    state.replace_nodes(vec![]);
    state.replace_service_cidrs(vec![]);
}

#[test]
fn a_subscriber_is_told_synced_only_after_every_kind_was_listed() {
    let state = ClusterState::new();
    let sub = state.subscribe();
    state.replace_services(vec![]);
    state.replace_slices(vec![]);
    state.replace_nodes(vec![]);
    assert_eq!(sub.take(), None);
    state.replace_service_cidrs(vec![]);
    let changes = sub.take().unwrap();
    assert!(changes.synced && changes.became_synced);
    assert_eq!(sub.take(), None, "became_synced is said once");
}

#[test]
fn a_late_subscriber_still_gets_its_first_full_sync() {
    let state = ClusterState::new();
    sync_all(&state);
    let sub = state.subscribe();
    assert!(sub.take().unwrap().became_synced);
}

#[test]
fn each_subscriber_accumulates_its_own_changes() {
    let state = ClusterState::new();
    sync_all(&state);
    let proxy = state.subscribe();
    let dns = state.subscribe();
    proxy.take();
    dns.take();
    let web = ServiceKey::new("default", "web");
    let db = ServiceKey::new("default", "db");
    state.set_service(web.clone(), Some(service([10, 43, 0, 5])));
    assert_eq!(
        proxy.take().unwrap().services,
        [web.clone()].into_iter().collect()
    );
    state.set_slice("default", "db-abc", Some(slice(&db, [10, 42, 0, 7])));
    let seen = dns.take().unwrap().services;
    assert_eq!(seen, [web.clone(), db.clone()].into_iter().collect());
    assert_eq!(proxy.take().unwrap().services, [db].into_iter().collect());
}

#[test]
fn an_unchanged_object_tells_nobody() {
    let state = ClusterState::new();
    sync_all(&state);
    let sub = state.subscribe();
    sub.take();
    let web = ServiceKey::new("default", "web");
    state.set_service(web.clone(), Some(service([10, 43, 0, 5])));
    state.set_slice("default", "web-1", Some(slice(&web, [10, 42, 0, 7])));
    sub.take();
    state.set_service(web.clone(), Some(service([10, 43, 0, 5])));
    state.set_slice("default", "web-1", Some(slice(&web, [10, 42, 0, 7])));
    assert_eq!(sub.take(), None);
}

#[test]
fn a_slice_moving_to_another_service_touches_both() {
    let state = ClusterState::new();
    sync_all(&state);
    let sub = state.subscribe();
    let a = ServiceKey::new("ns", "a");
    let b = ServiceKey::new("ns", "b");
    state.set_slice("ns", "s", Some(slice(&a, [10, 42, 0, 7])));
    sub.take();
    state.set_slice("ns", "s", Some(slice(&b, [10, 42, 0, 7])));
    assert_eq!(
        sub.take().unwrap().services,
        [a.clone(), b.clone()].into_iter().collect()
    );
    assert!(state.slices(&a).is_empty());
    assert_eq!(state.slices(&b).len(), 1);
}

#[test]
fn a_relist_removes_what_it_no_longer_holds() {
    let state = ClusterState::new();
    let web = ServiceKey::new("default", "web");
    let db = ServiceKey::new("default", "db");
    state.replace_services(vec![
        (web.clone(), service([10, 43, 0, 5])),
        (db.clone(), service([10, 43, 0, 6])),
    ]);
    state.replace_slices(vec![(
        ("default".into(), "web-1".into()),
        slice(&web, [10, 42, 0, 7]),
    )]);
    state.replace_nodes(vec![]);
    state.replace_service_cidrs(vec![]);
    let sub = state.subscribe();
    sub.take();
    state.replace_services(vec![(web.clone(), service([10, 43, 0, 5]))]);
    state.replace_slices(vec![]);
    assert_eq!(
        sub.take().unwrap().services,
        [db.clone(), web.clone()].into_iter().collect()
    );
    assert!(state.service(&db).is_none());
    assert!(state.slices(&web).is_empty());
}

#[tokio::test]
async fn next_waits_for_a_change_and_wakes_on_it() {
    let state = ClusterState::new();
    sync_all(&state);
    let mut sub = state.subscribe();
    sub.next().await;
    let waiter = tokio::spawn(async move { sub.next().await });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    state.set_node(
        "n2",
        Some(NodeInfo {
            name: "n2".into(),
            internal: vec![Ipv4Addr::new(198, 18, 0, 2)],
            external: vec![],
            pod_cidrs: vec![],
        }),
    );
    let changes = waiter.await.unwrap();
    assert!(changes.nodes && changes.synced && !changes.became_synced);
}

#[test]
fn with_service_reads_a_service_and_its_slices_in_name_order() {
    let state = ClusterState::new();
    let key = ServiceKey::new("shop", "web");
    state.set_service(key.clone(), Some(service([10, 43, 0, 5])));
    state.set_slice("shop", "web-b", Some(slice(&key, [10, 42, 0, 2])));
    state.set_slice("shop", "web-a", Some(slice(&key, [10, 42, 0, 1])));
    let seen = state.with_service("shop", "web", |svc, slices| {
        let ips: Vec<Ipv4Addr> = slices
            .iter()
            .flat_map(|s| s.endpoints.iter().map(|e| e.ip))
            .collect();
        (svc.cluster_ip, ips)
    });
    assert_eq!(
        seen,
        Some((
            Some(Ipv4Addr::new(10, 43, 0, 5)),
            vec![Ipv4Addr::new(10, 42, 0, 1), Ipv4Addr::new(10, 42, 0, 2)]
        ))
    );
    assert_eq!(state.with_service("shop", "nope", |_, _| ()), None);
    state.set_slice("shop", "web-a", None);
    let left = state.with_service("shop", "web", |_, slices| slices.iter().count());
    assert_eq!(left, Some(1), "a deleted slice is no longer read");
}

#[test]
fn slices_share_the_stores_copies_of_service_keys_and_node_names() {
    let state = ClusterState::new();
    let key = ServiceKey::new("shop", "web");
    state.set_service(key.clone(), Some(service([10, 43, 0, 5])));
    // Each slice arrives with its own freshly decoded strings, as from a watch.
    state.set_slice(
        "shop",
        "web-a",
        Some(slice(&ServiceKey::new("shop", "web"), [10, 42, 0, 1])),
    );
    state.set_slice(
        "shop",
        "web-b",
        Some(slice(&ServiceKey::new("shop", "web"), [10, 42, 0, 2])),
    );
    let slices = state.slices(&key);
    let node = |s: &Slice| s.endpoints[0].node.clone().unwrap();
    assert!(
        Arc::ptr_eq(&node(&slices[0]), &node(&slices[1])),
        "one copy of the node name"
    );
    assert!(
        Arc::ptr_eq(&slices[0].service.name, &slices[1].service.name),
        "one copy of the Service's key"
    );
    assert_eq!(&*node(&slices[0]), "n1");
}
