//! The ReplicationController loop on simulated nodes: pods are created, scheduled and
//! become ready, `kubectl get rc` shows it, orphans are adopted with a controller
//! reference of kind ReplicationController, and relabelled pods are released.

use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use kybern_testkit::fixtures::orphan_pod;
use kybern_testkit::{eventually, Cluster};
use serde_json::json;

fn controller_kind(pod: &Pod) -> Option<String> {
    pod.owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.kind.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_controller_runs_its_pods_and_kubectl_shows_them_ready() {
    let c = Cluster::start("rc", &["replicationcontroller", "scheduler"], 2).await;
    // No selector: the API server defaults it from the template's labels.
    let rc: ReplicationController = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }))
    .unwrap();
    c.api::<ReplicationController>()
        .create(&PostParams::default(), &rc)
        .await
        .unwrap();
    eventually(
        "kubectl get rc to show 2 desired, 2 current, 2 ready",
        || async {
            let out = c.kubectl(&["get", "rc", "web", "--no-headers"]);
            let cols: Vec<&str> = out.split_whitespace().collect();
            (cols.get(1..4) == Some(&["2", "2", "2"][..]))
                .then_some(())
                .ok_or(out)
        },
    )
    .await;
    let rc = c.api::<ReplicationController>().get("web").await.unwrap();
    let status = rc.status.unwrap();
    assert_eq!(
        (
            status.replicas,
            status.fully_labeled_replicas,
            status.available_replicas,
            status.observed_generation
        ),
        (2, Some(2), Some(2), rc.metadata.generation),
        "{status:?}"
    );
    for pod in c.live_pods().await {
        assert_eq!(
            controller_kind(&pod).as_deref(),
            Some("ReplicationController"),
            "{}",
            pod.name_any()
        );
    }

    // An orphan with the labels is adopted and the surplus pod removed.
    c.api::<Pod>()
        .create(&PostParams::default(), &orphan_pod("orphan", "web"))
        .await
        .unwrap();
    eventually("the orphan adopted and the count back at 2", || async {
        let pods = c.live_pods().await;
        let orphan = pods.iter().find(|p| p.name_any() == "orphan");
        let adopted = orphan.is_none_or(|p| controller_kind(p).is_some());
        (adopted && pods.len() == 2)
            .then_some(())
            .ok_or(format!("{} pods", pods.len()))
    })
    .await;
    // `kubectl describe rc` lists upstream's events for both.
    c.wait_described(
        &["rc", "web"],
        &[
            "SuccessfulCreate",
            "Created pod: web-",
            "SuccessfulDelete",
            "Deleted pod: ",
        ],
    )
    .await;

    // A pod relabelled out of the selector is released and replaced.
    let victim = c.live_pods().await[0].name_any();
    c.api::<Pod>()
        .patch(
            &victim,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "debug"}}})),
        )
        .await
        .unwrap();
    eventually("the relabelled pod released and replaced", || async {
        let released = c
            .api::<Pod>()
            .get(&victim)
            .await
            .map_err(|e| e.to_string())?;
        let selected = c
            .api::<Pod>()
            .list(&ListParams::default().labels("app=web"))
            .await
            .map_err(|e| e.to_string())?
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count();
        (controller_kind(&released).is_none() && selected == 2)
            .then_some(())
            .ok_or(format!("{selected} selected"))
    })
    .await;
}
