//! The namespace controller: deleting a namespace deletes what is in it, then it.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::common::InProcess;
use crate::{eventually, Cluster};

async fn create_namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

fn configmap(name: &str, finalizers: &[&str]) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "finalizers": finalizers}, "data": {"k": "v"}}),
    )
    .unwrap()
}

#[tokio::test]
async fn deleting_a_namespace_removes_its_objects_and_then_the_namespace() {
    let cluster = Cluster::start(&["namespace"]).await;
    let client = cluster.client();
    create_namespace(&client, "doomed").await;
    let maps = Api::<ConfigMap>::namespaced(client.clone(), "doomed");
    for name in ["a", "b"] {
        maps.create(&PostParams::default(), &configmap(name, &[]))
            .await
            .unwrap();
    }
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"x": "y"}}))
            .unwrap();
    Api::<Secret>::namespaced(client.clone(), "doomed")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    let namespaces = Api::<Namespace>::all(client.clone());
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the namespace to be gone",
        Duration::from_secs(20),
        || async {
            namespaces
                .get_opt("doomed")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
    // Re-created, it starts empty: nothing of the old content survived.
    create_namespace(&client, "doomed").await;
    assert!(maps.get_opt("a").await.unwrap().is_none());
    assert!(Api::<Secret>::namespaced(client.clone(), "doomed")
        .get_opt("s")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_namespace_waits_for_content_with_finalizers_and_says_what_remains() {
    let cluster = Cluster::start(&["namespace"]).await;
    let client = cluster.client();
    create_namespace(&client, "held").await;
    let maps = Api::<ConfigMap>::namespaced(client.clone(), "held");
    maps.create(
        &PostParams::default(),
        &configmap("pinned", &["example.com/hold"]),
    )
    .await
    .unwrap();

    let namespaces = Api::<Namespace>::all(client.clone());
    namespaces
        .delete("held", &DeleteParams::default())
        .await
        .unwrap();
    let condition = eventually(
        "a NamespaceContentRemaining condition",
        Duration::from_secs(20),
        || async {
            let ns = namespaces.get("held").await.unwrap();
            let conditions = ns.status.and_then(|s| s.conditions).unwrap_or_default();
            conditions
                .into_iter()
                .find(|c| c.type_ == "NamespaceContentRemaining" && c.status == "True")
        },
    )
    .await;
    assert_eq!(condition.reason.as_deref(), Some("SomeResourcesRemain"));
    assert!(
        condition
            .message
            .as_deref()
            .unwrap_or("")
            .contains("configmaps. has 1 resource instances"),
        "{condition:?}"
    );
    let ns = namespaces.get("held").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    assert_eq!(
        ns.spec.unwrap().finalizers,
        Some(vec!["kubernetes".to_string()])
    );

    // The last finalizer goes: the configmap, then the namespace disappear.
    maps.patch(
        "pinned",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually(
        "the namespace to be gone",
        Duration::from_secs(20),
        || async {
            namespaces
                .get_opt("held")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn spec_finalizers_change_only_through_the_finalize_subresource() {
    // No loops: the test plays the namespace controller by hand.
    let api = InProcess::start().await;
    let client = api.client.clone();
    create_namespace(&client, "manual").await;
    let namespaces = Api::<Namespace>::all(client.clone());
    // A plain update cannot drop the finalizer...
    let mut ns = namespaces.get("manual").await.unwrap();
    ns.spec.as_mut().unwrap().finalizers = Some(vec![]);
    let updated = namespaces
        .replace("manual", &PostParams::default(), &ns)
        .await
        .unwrap();
    assert_eq!(
        updated.spec.unwrap().finalizers,
        Some(vec!["kubernetes".to_string()])
    );
    // ...and a terminating namespace stays while `kubernetes` is there.
    namespaces
        .delete("manual", &DeleteParams::default())
        .await
        .unwrap();
    let mut ns = namespaces.get("manual").await.unwrap();
    assert!(ns.metadata.deletion_timestamp.is_some());
    // Finalizing removes it.
    ns.spec.as_mut().unwrap().finalizers = Some(vec![]);
    namespaces
        .replace_subresource("finalize", "manual", &PostParams::default(), &ns)
        .await
        .unwrap();
    assert!(namespaces.get_opt("manual").await.unwrap().is_none());
}
