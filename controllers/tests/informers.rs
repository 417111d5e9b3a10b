//! Shared informers against the real apiserver: loops of one process asking for the
//! same kind read one cache and each see every change, deletions included; a label
//! selector gets a cache of its own.

use std::sync::Arc;
use std::time::Duration;

use controllers::runtime::informers::{Informers, Touched};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kybern_testkit::Cluster;
use serde_json::json;

fn pod(name: &str, app: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap()
}

/// The next change to the pod named `name`, skipping others; fails the test after a
/// minute without one.
async fn next_for(
    events: &mut (impl Stream<Item = Touched<Pod>> + Unpin),
    name: &str,
) -> Touched<Pod> {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let t = events.next().await.expect("the change stream ended");
            if t.clone().object().metadata.name.as_deref() == Some(name) {
                return t;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no change to {name} within a minute"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loops_asking_for_the_same_kind_share_one_cache_and_each_see_deletions() {
    let c = Cluster::start("informshare", &[], 0).await;
    let informers = Informers::new(c.client.clone());
    let (one, two) = (informers.all::<Pod>(), informers.all::<Pod>());
    tokio::join!(one.synced(), two.synced());
    let mut first = Box::pin(one.events());
    let mut second = Box::pin(two.events());

    c.api::<Pod>()
        .create(&PostParams::default(), &pod("p", "x"))
        .await
        .unwrap();
    for events in [&mut first, &mut second] {
        assert!(matches!(next_for(events, "p").await, Touched::Applied(_)));
    }
    let key = ObjectRef::new("p").within(&c.ns);
    let (a, b) = (one.store().get(&key), two.store().get(&key));
    assert!(
        matches!((&a, &b), (Some(a), Some(b)) if Arc::ptr_eq(a, b)),
        "both handles read the same cached object: {a:?} {b:?}"
    );

    c.api::<Pod>()
        .delete("p", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    for events in [&mut first, &mut second] {
        // A graceful deletion may first show as an update; the deletion follows.
        loop {
            if let Touched::Deleted(_) = next_for(events, "p").await {
                break;
            }
        }
    }
    assert!(one.store().get(&key).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_selector_gets_a_cache_of_its_own() {
    let c = Cluster::start("informselect", &[], 0).await;
    for (name, app) in [("web", "web"), ("db", "db")] {
        c.api::<Pod>()
            .create(&PostParams::default(), &pod(name, app))
            .await
            .unwrap();
    }
    let informers = Informers::new(c.client.clone());
    let all = informers.all::<Pod>();
    let web = informers.get::<Pod>(watcher::Config::default().labels("app=web"));
    tokio::join!(all.synced(), web.synced());
    let names = |pods: Vec<Arc<Pod>>| {
        let mut n: Vec<String> = pods
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(c.ns.as_str()))
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(all.store().state()), ["db", "web"]);
    assert_eq!(names(web.store().state()), ["web"]);
}
