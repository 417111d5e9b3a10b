//! Leader election through Leases: one of two candidates leads; when it dies the
//! other takes over once the lease lapses.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use controllers::leader::{Elector, LEASE_NAMESPACE};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use crate::common::InProcess;
use crate::eventually;

/// Clears the flag when the work's future is dropped.
struct Leading(Arc<AtomicBool>);

impl Drop for Leading {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// A candidate whose work marks it as leading until its future is dropped.
fn candidate(
    client: kube::Client,
    identity: &str,
) -> (tokio::task::JoinHandle<()>, Arc<AtomicBool>) {
    let leading = Arc::new(AtomicBool::new(false));
    let flag = leading.clone();
    let elector = Elector::new(client, "kybern-test", identity);
    let task = tokio::spawn(async move {
        elector
            .run(|| {
                let flag = flag.clone();
                async move {
                    flag.store(true, Ordering::SeqCst);
                    let _guard = Leading(flag);
                    std::future::pending::<()>().await
                }
            })
            .await
    });
    (task, leading)
}

#[tokio::test]
async fn one_of_two_candidates_leads_and_the_other_takes_over_when_it_dies() {
    let api = InProcess::start().await;
    let (a, a_leads) = candidate(api.client.clone(), "a");
    let (b, b_leads) = candidate(api.client.clone(), "b");
    let first = eventually("a leader", Duration::from_secs(10), || async {
        match (
            a_leads.load(Ordering::SeqCst),
            b_leads.load(Ordering::SeqCst),
        ) {
            (true, false) => Some("a"),
            (false, true) => Some("b"),
            (true, true) => panic!("both candidates lead"),
            (false, false) => None,
        }
    })
    .await;
    // Across a renewal (every 5 s) the follower still follows.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        !(a_leads.load(Ordering::SeqCst) && b_leads.load(Ordering::SeqCst)),
        "both candidates lead"
    );
    let lease = Api::<Lease>::namespaced(api.client.clone(), LEASE_NAMESPACE)
        .get("kybern-test")
        .await
        .unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(first));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert!(spec.renew_time.is_some());

    // The leader dies without releasing the lease.
    let (dead, survivor_leads) = if first == "a" {
        (a, &b_leads)
    } else {
        (b, &a_leads)
    };
    dead.abort();
    let died = Instant::now();
    eventually(
        "the other candidate to take over",
        Duration::from_secs(16),
        || async { survivor_leads.load(Ordering::SeqCst).then_some(()) },
    )
    .await;
    let took = died.elapsed();
    assert!(
        took <= Duration::from_millis(15_500),
        "takeover took {took:?}"
    );
    let lease = Api::<Lease>::namespaced(api.client.clone(), LEASE_NAMESPACE)
        .get("kybern-test")
        .await
        .unwrap();
    let spec = lease.spec.unwrap();
    assert_ne!(spec.holder_identity.as_deref(), Some(first));
    assert_eq!(spec.lease_transitions, Some(1));
}

#[tokio::test]
async fn a_leader_that_loses_its_lease_stops_its_work() {
    let api = InProcess::start().await;
    let (task, leads) = candidate(api.client.clone(), "a");
    eventually("a to lead", Duration::from_secs(10), || async {
        leads.load(Ordering::SeqCst).then_some(())
    })
    .await;
    // Someone else takes the lease by force (as if ours had lapsed).
    let leases = Api::<Lease>::namespaced(api.client.clone(), LEASE_NAMESPACE);
    let mut lease = leases.get("kybern-test").await.unwrap();
    lease.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
    lease.spec.as_mut().unwrap().renew_time =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            k8s_openapi::jiff::Timestamp::now(),
        ));
    leases
        .replace("kybern-test", &Default::default(), &lease)
        .await
        .unwrap();
    // Our work future is dropped at the next renewal (within 5 s); the task keeps
    // running as a follower and does not start the work again.
    eventually("the work to be dropped", Duration::from_secs(7), || async {
        (!leads.load(Ordering::SeqCst)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !leads.load(Ordering::SeqCst),
        "work restarted while another holds the lease"
    );
    assert!(!task.is_finished());
    let holder = leases
        .get("kybern-test")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert_eq!(holder.as_deref(), Some("intruder"));
    task.abort();
}
