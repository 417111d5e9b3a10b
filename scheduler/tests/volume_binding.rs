//! VolumeBinding against the real in-process apiserver: a pod whose claim is missing,
//! being deleted, or unbound under an immediate-binding class stays pending with
//! upstream's FailedScheduling message and is bound as soon as its claim binds; a
//! WaitForFirstConsumer claim does not hold its pod back.

use std::time::Duration;

use controllers::fixtures::{NodeFixture, PodFixture};
use k8s_openapi::api::core::v1::{
    Event, Node, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use kybern_testkit::fixtures::{create_node, create_pod};
use kybern_testkit::{eventually_some, InProcess};
use scheduler::config::SchedulerConfig;
use scheduler::Scheduler;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const NOT_HELPFUL: &str =
    "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling..";

fn pod_with_claim(name: &str, claim: &str) -> Pod {
    let mut pod = Pod::test(name);
    pod.spec.as_mut().unwrap().volumes = Some(vec![Volume {
        name: "data".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.into(),
            read_only: None,
        }),
        ..Volume::default()
    }]);
    pod
}

fn claim(name: &str, class: Option<&str>) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "finalizers": ["test.kybern.io/hold"]},
        "spec": {
            "storageClassName": class,
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}
        }
    }))
    .unwrap()
}

async fn failed_scheduling(events: &Api<Event>, pod: &str) -> String {
    eventually_some(WAIT, "FailedScheduling event", || async move {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find_map(|e| {
            (e.involved_object.name.as_deref() == Some(pod)
                && e.reason.as_deref() == Some("FailedScheduling"))
            .then(|| e.message.unwrap_or_default())
        })
    })
    .await
}

async fn node_of(pods: &Api<Pod>, pod: &str) -> String {
    eventually_some(WAIT, "pod bound", || async move {
        pods.get(pod).await.ok()?.spec?.node_name
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_whose_claims_cannot_bind_say_so_and_are_scheduled_once_they_bind() {
    let cluster = InProcess::start().await;
    let client = cluster.client.clone();
    create_node(&client, &Node::test("n1")).await;
    let classes: Api<StorageClass> = Api::all(client.clone());
    for (name, mode) in [("fast", "Immediate"), ("later", "WaitForFirstConsumer")] {
        let sc: StorageClass = serde_json::from_value(json!({
            "metadata": {"name": name}, "provisioner": "example.com/none",
            "volumeBindingMode": mode
        }))
        .unwrap();
        classes.create(&PostParams::default(), &sc).await.unwrap();
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    for c in [
        claim("no-class", None),
        claim("immediate", Some("fast")),
        claim("first-consumer", Some("later")),
        claim("going", Some("later")),
    ] {
        claims.create(&PostParams::default(), &c).await.unwrap();
    }
    claims
        .delete("going", &DeleteParams::default())
        .await
        .unwrap();
    tokio::spawn(Scheduler::new(client.clone(), SchedulerConfig::default()).run());

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let unbound = "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims.";
    let cases = [
        (
            "a missing claim",
            "uses-missing",
            "missing",
            "0/1 nodes are available: persistentvolumeclaim \"missing\" not found.",
        ),
        (
            "a claim without a class",
            "uses-no-class",
            "no-class",
            unbound,
        ),
        (
            "a claim of an immediate class",
            "uses-immediate",
            "immediate",
            unbound,
        ),
        (
            "a claim being deleted",
            "uses-going",
            "going",
            "0/1 nodes are available: persistentvolumeclaim \"going\" is being deleted.",
        ),
    ];
    for (_, pod, claim, _) in &cases {
        create_pod(&client, &pod_with_claim(pod, claim)).await;
    }
    create_pod(
        &client,
        &pod_with_claim("uses-first-consumer", "first-consumer"),
    )
    .await;

    assert_eq!(
        node_of(&pods, "uses-first-consumer").await,
        "n1",
        "a WaitForFirstConsumer claim is bound after its pod"
    );
    for (name, pod, _, want) in &cases {
        assert_eq!(
            failed_scheduling(&events, pod).await,
            format!("{want} {NOT_HELPFUL}"),
            "{name}"
        );
        let p = pods.get(pod).await.unwrap();
        assert_eq!(p.spec.unwrap().node_name, None, "{name}: not scheduled");
    }

    // The PV controller's bind (volumeName and bind-completed) lets the pod through.
    claims
        .patch(
            "immediate",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
                "spec": {"volumeName": "pv-immediate"}
            })),
        )
        .await
        .unwrap();
    assert_eq!(node_of(&pods, "uses-immediate").await, "n1");
}
