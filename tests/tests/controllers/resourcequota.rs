//! ResourceQuota end to end: the quota controller fills in `status`, the admission
//! plugin refuses what would exceed it with upstream's message and charges the rest,
//! and deletions give the usage back.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ResourceQuota};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use crate::{eventually, Cluster, InProcess};

async fn namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

/// Creates the quota and waits until the controller has counted it.
async fn quota(client: &kube::Client, ns: &str, name: &str, spec: Value) -> Api<ResourceQuota> {
    let quotas = Api::<ResourceQuota>::namespaced(client.clone(), ns);
    let q: ResourceQuota =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    quotas.create(&PostParams::default(), &q).await.unwrap();
    eventually("the quota counted", Duration::from_secs(10), || async {
        let q = quotas.get(name).await.unwrap();
        q.status.and_then(|s| s.used).filter(|u| !u.is_empty())
    })
    .await;
    quotas
}

async fn used(quotas: &Api<ResourceQuota>, name: &str) -> Value {
    let q = quotas.get(name).await.unwrap();
    serde_json::to_value(q.status.and_then(|s| s.used)).unwrap()
}

/// Creates ConfigMaps `cm0`..`cm<n-1>` in `ns` all at once; each one's result.
async fn create_configmaps_at_once(
    client: &kube::Client,
    ns: &str,
    n: usize,
) -> Vec<kube::Result<ConfigMap>> {
    let maps = Api::<ConfigMap>::namespaced(client.clone(), ns);
    let creates = (0..n).map(|i| {
        let maps = maps.clone();
        async move {
            let cm =
                serde_json::from_value(json!({"metadata": {"name": format!("cm{i}")}})).unwrap();
            maps.create(&PostParams::default(), &cm).await
        }
    });
    futures::future::join_all(creates).await
}

fn pod(name: &str, resources: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": resources}]}
    }))
    .unwrap()
}

fn forbidden_message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => s.message,
        other => panic!("expected a 403, got {other:?}"),
    }
}

#[tokio::test]
async fn a_quota_refuses_the_pod_that_would_exceed_it_and_used_follows_deletions() {
    let cluster = Cluster::start(&["resourcequota"]).await;
    let client = cluster.client();
    namespace(&client, "quota").await;
    let quotas = quota(&client, "quota", "q", json!({"hard": {"pods": "2"}})).await;
    assert_eq!(
        used(&quotas, "q").await,
        json!({"pods": "0"}),
        "nothing used yet"
    );

    let pods = Api::<Pod>::namespaced(client.clone(), "quota");
    for name in ["p1", "p2"] {
        pods.create(&PostParams::default(), &pod(name, json!({})))
            .await
            .unwrap();
    }
    assert_eq!(
        used(&quotas, "q").await,
        json!({"pods": "2"}),
        "admission charged both creates"
    );
    let refused = pods
        .create(&PostParams::default(), &pod("p3", json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        forbidden_message(refused),
        "pods \"p3\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
    );

    pods.delete("p1", &DeleteParams::default()).await.unwrap();
    eventually(
        "the deletion given back",
        Duration::from_secs(10),
        || async { (used(&quotas, "q").await == json!({"pods": "1"})).then_some(()) },
    )
    .await;
    pods.create(&PostParams::default(), &pod("p3", json!({})))
        .await
        .expect("the freed slot is taken");
}

#[tokio::test]
async fn concurrent_creates_cannot_both_take_the_last_slot() {
    let cluster = Cluster::start(&["resourcequota"]).await;
    let client = cluster.client();
    namespace(&client, "race").await;
    let quotas = quota(
        &client,
        "race",
        "one",
        json!({"hard": {"count/configmaps": "1"}}),
    )
    .await;
    let results = create_configmaps_at_once(&client, "race", 8).await;
    let created = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(created, 1, "exactly one create fits: {results:?}");
    for e in results.into_iter().filter_map(Result::err) {
        assert!(
            forbidden_message(e).contains("exceeded quota: one, requested: count/configmaps=1, used: count/configmaps=1, limited: count/configmaps=1"),
            "the others are refused by the quota"
        );
    }
    assert_eq!(used(&quotas, "one").await, json!({"count/configmaps": "1"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_under_a_roomy_quota_all_succeed_and_are_all_charged() {
    let cluster = Cluster::start(&["resourcequota"]).await;
    let client = cluster.client();
    namespace(&client, "roomy").await;
    let quotas = quota(
        &client,
        "roomy",
        "many",
        json!({"hard": {"count/configmaps": "1000"}}),
    )
    .await;
    let results = create_configmaps_at_once(&client, "roomy", 200).await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "a quota with room refuses nothing, not even with a conflict on itself: {} failed, first {:?}",
        failed.len(),
        failed.first()
    );
    eventually("all 200 charged", Duration::from_secs(10), || async {
        (used(&quotas, "many").await == json!({"count/configmaps": "200"})).then_some(())
    })
    .await;
}

/// Two quotas, the first roomy and the second nearly full, with no controller to recount
/// them: of concurrent creates only what the second has room for get in, and the first
/// quota gives back what it took from the ones the second refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn charges_a_later_quota_refuses_are_given_back_by_the_earlier_ones() {
    let api = InProcess::start().await;
    let client = api.client.clone();
    namespace(&client, "two").await;
    let quotas = Api::<ResourceQuota>::namespaced(client.clone(), "two");
    for (name, hard) in [("a-roomy", "100"), ("b-tight", "3")] {
        let hard = json!({"count/configmaps": hard});
        let q = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"hard": hard}}))
            .unwrap();
        quotas.create(&PostParams::default(), &q).await.unwrap();
        let status = json!({"status": {"hard": hard, "used": {"count/configmaps": "0"}}});
        quotas
            .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .unwrap();
    }
    let results = create_configmaps_at_once(&client, "two", 24).await;
    let created = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(created, 3, "the tight quota admits three: {results:?}");
    for e in results.into_iter().filter_map(Result::err) {
        assert!(
            forbidden_message(e).contains("exceeded quota: b-tight"),
            "the others are refused by the tight quota"
        );
    }
    for name in ["a-roomy", "b-tight"] {
        assert_eq!(
            used(&quotas, name).await,
            json!({"count/configmaps": "3"}),
            "{name} is charged only for what was created"
        );
    }
}

#[tokio::test]
async fn a_compute_quota_requires_requests_and_sums_them() {
    let cluster = Cluster::start(&["resourcequota"]).await;
    let client = cluster.client();
    namespace(&client, "compute").await;
    let quotas = quota(
        &client,
        "compute",
        "cpu",
        json!({"hard": {"requests.cpu": "1", "limits.memory": "1Gi"}}),
    )
    .await;
    let pods = Api::<Pod>::namespaced(client.clone(), "compute");
    let refused = pods
        .create(&PostParams::default(), &pod("bare", json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        forbidden_message(refused),
        "pods \"bare\" is forbidden: failed quota: cpu: must specify limits.memory for: c; requests.cpu for: c"
    );
    let sized = json!({"requests": {"cpu": "600m"}, "limits": {"memory": "256Mi"}});
    pods.create(&PostParams::default(), &pod("a", sized.clone()))
        .await
        .unwrap();
    let refused = pods
        .create(&PostParams::default(), &pod("b", sized))
        .await
        .unwrap_err();
    assert_eq!(
        forbidden_message(refused),
        "pods \"b\" is forbidden: exceeded quota: cpu, requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1"
    );
    assert_eq!(
        used(&quotas, "cpu").await,
        json!({"limits.memory": "256Mi", "requests.cpu": "600m"})
    );
}

#[tokio::test]
async fn scoped_quotas_count_only_the_pods_in_their_scope() {
    let cluster = Cluster::start(&["resourcequota"]).await;
    let client = cluster.client();
    namespace(&client, "scoped").await;
    let quotas = quota(
        &client,
        "scoped",
        "besteffort",
        json!({"hard": {"pods": "1"}, "scopes": ["BestEffort"]}),
    )
    .await;
    let pods = Api::<Pod>::namespaced(client.clone(), "scoped");
    let sized = json!({"requests": {"cpu": "100m"}});
    for name in ["sized1", "sized2"] {
        pods.create(&PostParams::default(), &pod(name, sized.clone()))
            .await
            .expect("pods with requests are outside the BestEffort scope");
    }
    pods.create(&PostParams::default(), &pod("free1", json!({})))
        .await
        .unwrap();
    let refused = pods
        .create(&PostParams::default(), &pod("free2", json!({})))
        .await
        .unwrap_err();
    assert!(forbidden_message(refused).contains("exceeded quota: besteffort"));
    // A recount (the controller's) agrees with what admission charged.
    quotas
        .patch(
            "besteffort",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"hard": {"pods": "3"}}})),
        )
        .await
        .unwrap();
    eventually("the recount", Duration::from_secs(10), || async {
        let q = quotas.get("besteffort").await.unwrap();
        let status = serde_json::to_value(q.status).unwrap();
        (status["hard"]["pods"] == "3").then_some(status)
    })
    .await;
    assert_eq!(used(&quotas, "besteffort").await, json!({"pods": "1"}));
}
