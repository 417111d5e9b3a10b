//! PodDisruptionBudgets end to end in one process: the disruption loop keeps their
//! status, the API server's `pods/eviction` spends it, and the real `kubectl drain`
//! evicts what a budget allows and retries the rest.

mod common;

use common::*;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{EvictParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use kybern_testkit::client_without_retries;
use serde_json::json;

const BUDGET_MESSAGE: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn budget(name: &str, app: &str, rule: serde_json::Value) -> PodDisruptionBudget {
    let mut spec = json!({"selector": {"matchLabels": {"app": app}}});
    spec.as_object_mut()
        .unwrap()
        .extend(rule.as_object().unwrap().clone());
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

async fn create_budget(c: &Cluster, pdb: &PodDisruptionBudget) {
    c.api::<PodDisruptionBudget>()
        .create(&PostParams::default(), pdb)
        .await
        .unwrap();
}

/// Waits until the budget's status, for its current generation, reads
/// (currentHealthy, desiredHealthy, expectedPods, disruptionsAllowed).
async fn wait_budget(c: &Cluster, name: &str, want: (i32, i32, i32, i32)) {
    eventually(&format!("budget {name} at {want:?}"), || async {
        let pdb = c
            .api::<PodDisruptionBudget>()
            .get(name)
            .await
            .map_err(|e| e.to_string())?;
        let s = pdb.status.clone().unwrap_or_default();
        let got = (
            s.current_healthy,
            s.desired_healthy,
            s.expected_pods,
            s.disruptions_allowed,
        );
        (got == want && s.observed_generation == pdb.metadata.generation)
            .then_some(())
            .ok_or(format!("{s:?}"))
    })
    .await;
}

async fn create_pods(c: &Cluster, app: &str, names: &[&str]) {
    for name in names {
        c.api::<Pod>()
            .create(&PostParams::default(), &orphan(name, app))
            .await
            .unwrap();
    }
}

/// Evicts `name` and returns the server's first answer (kube-rs would retry a 429).
async fn evict(c: &Cluster, name: &str) -> Result<(), Box<kube::core::Status>> {
    let client = client_without_retries(&c.kubeconfig).await;
    let pods: Api<Pod> = Api::namespaced(client, &c.ns);
    match pods.evict(name, &EvictParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) => Err(s),
        Err(e) => panic!("evicting {name}: {e}"),
    }
}

async fn is_gone_or_deleting(c: &Cluster, name: &str) -> bool {
    match c.api::<Pod>().get_opt(name).await.unwrap() {
        None => true,
        Some(p) => p.metadata.deletion_timestamp.is_some(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_spends_the_budget_and_is_refused_with_429_once_it_is_spent() {
    let c = Cluster::builder("evict")
        .loops(&["disruption"])
        .ready_pods()
        .start()
        .await;
    create_pods(&c, "web", &["web-0", "web-1", "web-2"]).await;
    create_budget(&c, &budget("web", "web", json!({"minAvailable": 2}))).await;
    wait_budget(&c, "web", (3, 2, 3, 1)).await;

    evict(&c, "web-0").await.expect("one disruption is allowed");
    assert!(is_gone_or_deleting(&c, "web-0").await, "web-0 is evicted");
    let pdb = c.api::<PodDisruptionBudget>().get("web").await.unwrap();
    let s = pdb.status.unwrap();
    assert_eq!(s.disruptions_allowed, 0, "the eviction spent the budget");
    // The loop sees web-0 gone: two pods, both needed.
    wait_budget(&c, "web", (2, 2, 2, 0)).await;

    let refused = evict(&c, "web-1").await.expect_err("no disruption left");
    assert_eq!(refused.code, 429, "{refused:?}");
    assert_eq!(refused.reason, "TooManyRequests", "{refused:?}");
    assert_eq!(refused.message, BUDGET_MESSAGE, "{refused:?}");
    let causes = refused
        .details
        .as_ref()
        .map(|d| d.causes.clone())
        .unwrap_or_default();
    assert_eq!(causes.len(), 1, "{refused:?}");
    assert_eq!(causes[0].reason, "DisruptionBudget");
    assert_eq!(
        causes[0].message,
        "The disruption budget web needs 2 healthy pods and has 2 currently"
    );
    assert!(!is_gone_or_deleting(&c, "web-1").await, "web-1 stays");

    // A pod no budget selects goes at once, and so does one that is not running.
    create_pods(&c, "other", &["lonely"]).await;
    evict(&c, "lonely").await.expect("no budget selects it");
    assert!(is_gone_or_deleting(&c, "lonely").await);
    let mut pending = orphan("web-pending", "web");
    pending.labels_mut().insert("never-ready".into(), "".into());
    c.api::<Pod>()
        .create(&PostParams::default(), &pending)
        .await
        .unwrap();
    evict(&c, "web-pending")
        .await
        .expect("a Pending pod disrupts nothing");
    assert!(is_gone_or_deleting(&c, "web-pending").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_with_two_budgets_cannot_be_evicted() {
    let c = Cluster::builder("evict-two")
        .loops(&["disruption"])
        .ready_pods()
        .start()
        .await;
    create_pods(&c, "web", &["web-0", "web-1"]).await;
    create_budget(&c, &budget("a", "web", json!({"minAvailable": 1}))).await;
    // Both pods Running and Ready (a Pending pod would go without any budget check).
    wait_budget(&c, "a", (2, 1, 2, 1)).await;
    create_budget(&c, &budget("b", "web", json!({"minAvailable": 0}))).await;
    let refused = evict(&c, "web-0").await.expect_err("two budgets");
    assert_eq!(refused.code, 500, "{refused:?}");
    assert_eq!(
        refused.message,
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );
    assert!(!is_gone_or_deleting(&c, "web-0").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_over_a_deployment_counts_the_deployments_replicas() {
    let c = Cluster::builder("budget-scale")
        .loops(&["replicaset", "deployment", "disruption"])
        .ready_pods()
        .start()
        .await;
    c.api::<Deployment>()
        .create(
            &PostParams::default(),
            &deployment_manifest("web", 4, "nginx"),
        )
        .await
        .unwrap();
    // 25% of 4 may be unavailable (1), so 3 must stay healthy.
    create_budget(&c, &budget("web", "web", json!({"maxUnavailable": "25%"}))).await;
    wait_budget(&c, "web", (4, 3, 4, 1)).await;
}

/// The node with the most pods of `app`, and how many it has.
async fn busiest_node(c: &Cluster, app: &str) -> (String, usize) {
    let pods = c
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap();
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for p in pods.items {
        if let Some(node) = p.spec.and_then(|s| s.node_name) {
            *per_node.entry(node).or_default() += 1;
        }
    }
    per_node
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .expect("pods are scheduled")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_drain_evicts_what_the_budget_allows_and_retries_the_rest() {
    let c = Cluster::builder("drain")
        .loops(&["replicaset", "deployment", "scheduler", "disruption"])
        .simulated_nodes(2)
        .start()
        .await;
    c.api::<Deployment>()
        .create(
            &PostParams::default(),
            &deployment_manifest("web", 4, "nginx"),
        )
        .await
        .unwrap();
    create_budget(&c, &budget("web", "web", json!({"maxUnavailable": 1}))).await;
    wait_rolled_out(&c, "web", 4).await;
    wait_budget(&c, "web", (4, 3, 4, 1)).await;
    // Four pods on two nodes: one node has at least two, so draining it needs two
    // evictions while the budget allows one at a time.
    let (node, on_node) = busiest_node(&c, "web").await;
    assert!(on_node >= 2, "{node} runs {on_node} pods");

    let (ok, out) = kubectl(
        &c,
        &["drain", &node, "--ignore-daemonsets", "--timeout=90s"],
    )
    .await;
    assert!(ok, "kubectl drain failed:\n{out}");
    assert!(
        out.contains(BUDGET_MESSAGE) && out.contains("will retry after 5s"),
        "a second eviction waited for the budget:\n{out}"
    );
    assert!(out.contains(&format!("node/{node} drained")), "{out}");
    assert_eq!(
        out.matches("evicted").count(),
        on_node,
        "every pod of the node was evicted:\n{out}"
    );

    let cordoned = Api::<Node>::all(c.client.clone()).get(&node).await.unwrap();
    assert_eq!(
        cordoned.spec.and_then(|s| s.unschedulable),
        Some(true),
        "drain cordons the node"
    );
    wait_rolled_out(&c, "web", 4).await;
    let (other, n) = busiest_node(&c, "web").await;
    assert_ne!(other, node, "the pods moved off the drained node");
    assert_eq!(n, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_without_pods_says_so_in_one_event_that_counts_repeats() {
    use k8s_openapi::api::core::v1::Event;
    use kube::api::{Patch, PatchParams};
    let c = Cluster::builder("budget-events")
        .loops(&["disruption"])
        .start()
        .await;
    create_budget(&c, &budget("web", "nobody", json!({"minAvailable": 1}))).await;
    for n in 0..3 {
        // Each change brings a sync, and each sync finds no pods again.
        let nudge = json!({"metadata": {"annotations": {"test/nudge": n.to_string()}}});
        c.api::<PodDisruptionBudget>()
            .patch("web", &PatchParams::default(), &Patch::Merge(nudge))
            .await
            .unwrap();
        eventually("the sync after a nudge", || async {
            let events = c.api::<Event>().list(&ListParams::default()).await.unwrap();
            let counts: Vec<i32> = events
                .items
                .iter()
                .filter(|e| e.reason.as_deref() == Some("NoPods"))
                .map(|e| e.count.unwrap_or(0))
                .collect();
            (counts.len() == 1 && counts[0] >= n + 2)
                .then_some(())
                .ok_or(format!("NoPods events with counts {counts:?}"))
        })
        .await;
    }
    let events = c.api::<Event>().list(&ListParams::default()).await.unwrap();
    let e = events
        .items
        .iter()
        .find(|e| e.reason.as_deref() == Some("NoPods"))
        .unwrap();
    assert_eq!(e.message.as_deref(), Some("No matching pods found"));
    assert_eq!(e.type_.as_deref(), Some("Normal"));
    assert!(e.last_timestamp >= e.first_timestamp);
}
