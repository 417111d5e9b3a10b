//! Full and partial syncs against the recording fake: what each transaction says, stale
//! chains deleted later, full syncs after failures and after the table was flushed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fake::FakeNftables;
use super::render_tests::{ctx, example, ready, slice};
use super::sync::{SyncKind, Syncer, STALE_DELAY};
use crate::services::{ClusterState, ServiceKey, Slice};

/// A synced store holding the example Services `names` with their endpoints.
fn state(names: &[&str]) -> Arc<ClusterState> {
    let state = ClusterState::new();
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for name in names {
        let (service, endpoints) = example(name);
        let key = ServiceKey::new("default", name);
        if !endpoints.is_empty() {
            let s: Slice = (*slice(&key, endpoints)).clone();
            slices.push((("default".to_string(), format!("{name}-abc")), s));
        }
        services.push((key, service));
    }
    state.replace_services(services);
    state.replace_slices(slices);
    state.replace_nodes(vec![]);
    state.replace_service_cidrs(vec![]);
    state
}

fn web() -> ServiceKey {
    ServiceKey::new("default", "web")
}

#[tokio::test]
async fn an_endpoint_turning_unready_rewrites_only_its_service_and_deletes_its_chain_later() {
    let nft = Arc::new(FakeNftables::new());
    let state = state(&["web", "np"]);
    let mut syncer = Syncer::new(nft.clone(), "kybern");
    let now = Instant::now();
    let report = syncer
        .sync(&state, &Default::default(), ctx(), now)
        .await
        .unwrap();
    assert_eq!(report.kind, SyncKind::Full);

    let mut unready = ready("10.42.1.7", "n2");
    unready.ready = false;
    unready.serving = false;
    let s: Slice = (*slice(&web(), vec![ready("10.42.0.5", "n1"), unready])).clone();
    state.set_slice("default", "web-abc", Some(s));
    let changed = [web()].into_iter().collect();
    let report = syncer.sync(&state, &changed, ctx(), now).await.unwrap();
    assert_eq!(report.kind, SyncKind::Partial);
    let svc = "service-SUSTUHLJ-default/web/tcp/http";
    let ep5 = "endpoint-WKF2J3BI-default/web/tcp/http__10.42.0.5/8080";
    let ep7 = "endpoint-R4AVLYLO-default/web/tcp/http__10.42.1.7/8080";
    let want = format!(
        "add chain ip kybern {svc}\n\
         flush chain ip kybern {svc}\n\
         add chain ip kybern {ep5}\n\
         flush chain ip kybern {ep5}\n\
         add rule ip kybern {svc} ip daddr 10.43.12.34 tcp dport 80 ip saddr != 10.42.0.0/16 jump mark-for-masquerade\n\
         add rule ip kybern {svc} goto {ep5}\n\
         add rule ip kybern {ep5} ip saddr 10.42.0.5 jump mark-for-masquerade\n\
         add rule ip kybern {ep5} meta l4proto tcp dnat to 10.42.0.5:8080\n\
         flush chain ip kybern {ep7}\n"
    );
    assert_eq!(nft.transactions().last().unwrap(), &want);
    assert!(nft.chains("kybern").contains(&ep7.to_string()));

    assert_eq!(syncer.next_deletion(), Some(now + STALE_DELAY));
    syncer.delete_stale(now).await.unwrap();
    assert_eq!(
        nft.transactions().len(),
        2,
        "nothing is deleted before a second"
    );
    syncer.delete_stale(now + STALE_DELAY).await.unwrap();
    assert_eq!(
        nft.transactions().last().unwrap(),
        &format!("delete chain ip kybern {ep7}\n")
    );
    assert!(!nft.chains("kybern").contains(&ep7.to_string()));
}

#[tokio::test]
async fn a_service_losing_its_endpoints_is_rejected_and_its_chains_go() {
    let nft = Arc::new(FakeNftables::new());
    let state = state(&["web"]);
    let mut syncer = Syncer::new(nft.clone(), "kybern");
    let now = Instant::now();
    syncer
        .sync(&state, &Default::default(), ctx(), now)
        .await
        .unwrap();
    state.set_slice("default", "web-abc", None);
    let changed = [web()].into_iter().collect();
    syncer.sync(&state, &changed, ctx(), now).await.unwrap();
    let tx = nft.transactions().last().unwrap().clone();
    assert!(
        tx.contains("delete element ip kybern service-ips { 10.43.12.34 . tcp . 80 }\n"),
        "{tx}"
    );
    assert!(
        tx.contains("add element ip kybern no-endpoint-services { 10.43.12.34 . tcp . 80 comment \"default/web:http\" : goto reject-chain }\n"),
        "{tx}"
    );
    assert!(
        tx.contains("flush chain ip kybern service-SUSTUHLJ-default/web/tcp/http\n"),
        "{tx}"
    );
    syncer
        .delete_stale(now + Duration::from_secs(2))
        .await
        .unwrap();
    assert!(
        !nft.chains("kybern")
            .iter()
            .any(|c| c.contains("default/web/")),
        "{:?}",
        nft.chains("kybern")
    );
}

#[tokio::test]
async fn a_failed_sync_is_followed_by_a_full_one() {
    let nft = Arc::new(FakeNftables::new());
    let state = state(&["web"]);
    let mut syncer = Syncer::new(nft.clone(), "kybern");
    let now = Instant::now();
    syncer
        .sync(&state, &Default::default(), ctx(), now)
        .await
        .unwrap();
    nft.fail_next(1);
    let changed = [web()].into_iter().collect();
    state.set_slice("default", "web-abc", None);
    assert!(syncer.sync(&state, &changed, ctx(), now).await.is_err());
    let report = syncer
        .sync(&state, &Default::default(), ctx(), now)
        .await
        .unwrap();
    assert_eq!(report.kind, SyncKind::Full);
}

/// What happens to the table behind the proxy's back.
type Damage = fn(&FakeNftables);

#[tokio::test]
async fn a_flushed_or_deleted_table_fails_the_canary_until_a_full_sync() {
    let cases: [(&str, Damage); 2] = [
        ("flushed", |nft| nft.flush_table("kybern")),
        ("deleted", |nft| nft.delete_table("kybern")),
    ];
    for (name, damage) in cases {
        let nft = Arc::new(FakeNftables::new());
        let state = state(&["web"]);
        let mut syncer = Syncer::new(nft.clone(), "kybern");
        let now = Instant::now();
        syncer
            .sync(&state, &Default::default(), ctx(), now)
            .await
            .unwrap();
        assert!(syncer.canary_ok().await.unwrap(), "{name}: after the sync");
        damage(&nft);
        assert!(
            !syncer.canary_ok().await.unwrap(),
            "{name}: after the damage"
        );
        syncer.want_full();
        let report = syncer
            .sync(&state, &Default::default(), ctx(), now)
            .await
            .unwrap();
        assert_eq!(report.kind, SyncKind::Full, "{name}");
        assert!(
            syncer.canary_ok().await.unwrap(),
            "{name}: after the resync"
        );
    }
}

#[tokio::test]
async fn a_second_full_sync_flushes_and_later_deletes_chains_no_service_uses() {
    let nft = Arc::new(FakeNftables::new());
    let state = state(&["web", "np"]);
    let mut syncer = Syncer::new(nft.clone(), "kybern");
    let now = Instant::now();
    syncer
        .sync(&state, &Default::default(), ctx(), now)
        .await
        .unwrap();
    state.set_service(ServiceKey::new("default", "np"), None);
    syncer.want_full();
    syncer
        .sync(&state, &Default::default(), ctx(), now)
        .await
        .unwrap();
    let tx = nft.transactions().last().unwrap().clone();
    assert!(
        tx.contains("flush chain ip kybern external-ASNVMIOD-default/np/tcp/http\n"),
        "{tx}"
    );
    syncer.delete_stale(now + STALE_DELAY).await.unwrap();
    assert!(
        !nft.chains("kybern")
            .iter()
            .any(|c| c.contains("default/np/")),
        "{:?}",
        nft.chains("kybern")
    );
}

#[tokio::test]
async fn the_sync_loop_resyncs_when_this_node_s_address_changes() {
    use super::conntrack::{Conntrack, Error as ConntrackError, Flow};
    use super::metrics::Metrics;
    use super::{run_with, Parts, ProxyConfig};
    use crate::network::ipam::Cidr;
    use crate::services::NodeInfo;

    struct NoConntrack;
    #[async_trait::async_trait]
    impl Conntrack for NoConntrack {
        async fn clear(&self, _: &Flow) -> Result<(), ConntrackError> {
            Ok(())
        }
    }
    let node = |ip: [u8; 4]| NodeInfo {
        name: "n1".into(),
        internal: vec![ip.into()],
        external: vec![],
        pod_cidrs: vec![],
    };
    let nft = Arc::new(FakeNftables::new());
    let state = state(&["web"]);
    state.replace_nodes(vec![node([198, 18, 7, 1])]);
    let config = ProxyConfig {
        node_name: "n1".into(),
        cluster_cidr: Cidr::parse("10.42.0.0/16").unwrap(),
        service_cidr: Cidr::parse("10.43.0.0/16").unwrap(),
        cluster_dns: "10.43.0.10".parse().unwrap(),
        nft_table: "kybern".into(),
        metrics: None,
    };
    let parts = Parts {
        nft: nft.clone(),
        conntrack: Arc::new(NoConntrack),
        metrics: Metrics::default(),
        canary_period: Duration::from_secs(3600),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(run_with(config, state.clone(), tx, parts));
    rx.await.expect("the first full sync");
    assert!(nft.transactions()[0].contains("add element ip kybern nodeport-ips { 198.18.7.1 }\n"));

    state.replace_nodes(vec![node([198, 18, 7, 2])]);
    let mut seen = false;
    for _ in 0..200 {
        if nft
            .transactions()
            .iter()
            .any(|t| t.contains("add element ip kybern nodeport-ips { 198.18.7.2 }\n"))
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    assert!(seen, "{:#?}", nft.transactions().len());
}

#[tokio::test]
async fn a_partial_sync_a_second_after_a_flush_also_deletes_the_flushed_chains() {
    let nft = Arc::new(FakeNftables::new());
    let state = state(&["web", "np"]);
    let mut syncer = Syncer::new(nft.clone(), "kybern");
    let now = Instant::now();
    syncer
        .sync(&state, &Default::default(), ctx(), now)
        .await
        .unwrap();
    let changed = [web()].into_iter().collect();
    let only = |ip: &str| (*slice(&web(), vec![ready(ip, "n1")])).clone();
    state.set_slice("default", "web-abc", Some(only("10.42.0.5")));
    syncer.sync(&state, &changed, ctx(), now).await.unwrap();
    let ep7 = "endpoint-R4AVLYLO-default/web/tcp/http__10.42.1.7/8080";
    assert!(nft.chains("kybern").contains(&ep7.to_string()));

    // Another change half a second later: the flushed chain is not due yet.
    state.set_slice("default", "web-abc", Some(only("10.42.0.6")));
    let half = now + STALE_DELAY / 2;
    syncer.sync(&state, &changed, ctx(), half).await.unwrap();
    let tx = nft.transactions().last().unwrap().clone();
    assert!(!tx.contains("delete chain"), "{tx}");

    // A third change after the delay deletes what is due in the same transaction.
    state.set_slice("default", "web-abc", Some(only("10.42.0.7")));
    let later = now + STALE_DELAY;
    syncer.sync(&state, &changed, ctx(), later).await.unwrap();
    let tx = nft.transactions().last().unwrap().clone();
    assert!(
        tx.contains(&format!("delete chain ip kybern {ep7}\n")),
        "{tx}"
    );
    assert!(!nft.chains("kybern").contains(&ep7.to_string()));
    assert_eq!(
        syncer.next_deletion(),
        Some(half + STALE_DELAY),
        "the chain flushed at the second change is still waiting"
    );
}
