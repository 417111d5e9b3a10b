//! The garbage collector: background, orphan and foreground deletion of a
//! ConfigMap owned by another ConfigMap.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use serde_json::json;

use crate::{eventually, Cluster};

/// An owner and a dependent (with blockOwnerDeletion) in `default`.
async fn owner_and_dependent(maps: &Api<ConfigMap>, prefix: &str) -> (String, String) {
    let owner: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": format!("{prefix}-owner")}})).unwrap();
    let owner = maps.create(&PostParams::default(), &owner).await.unwrap();
    let dependent: ConfigMap = serde_json::from_value(json!({"metadata": {
        "name": format!("{prefix}-dependent"),
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name,
            "uid": owner.metadata.uid, "blockOwnerDeletion": true}],
    }}))
    .unwrap();
    maps.create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    (format!("{prefix}-owner"), format!("{prefix}-dependent"))
}

#[tokio::test]
async fn deleting_an_owner_deletes_its_dependent_in_the_background() {
    let cluster = Cluster::start(&["garbagecollector"]).await;
    let maps = Api::<ConfigMap>::namespaced(cluster.client(), "default");
    let (owner, dependent) = owner_and_dependent(&maps, "bg").await;
    maps.delete(&owner, &DeleteParams::background())
        .await
        .unwrap();
    assert!(
        maps.get_opt(&owner).await.unwrap().is_none(),
        "a background delete removes the owner at once"
    );
    eventually(
        "the dependent to be collected",
        Duration::from_secs(15),
        || async {
            maps.get_opt(&dependent)
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_dependent_whose_owner_never_existed_is_collected() {
    let cluster = Cluster::start(&["garbagecollector"]).await;
    let maps = Api::<ConfigMap>::namespaced(cluster.client(), "default");
    let dangling: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "dangling",
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "00000000-0000-0000-0000-000000000000"}]}}))
    .unwrap();
    maps.create(&PostParams::default(), &dangling)
        .await
        .unwrap();
    eventually(
        "the dangling dependent to be collected",
        Duration::from_secs(15),
        || async {
            maps.get_opt("dangling")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn orphan_deletion_keeps_the_dependent_without_its_owner_reference() {
    let cluster = Cluster::start(&["garbagecollector"]).await;
    let maps = Api::<ConfigMap>::namespaced(cluster.client(), "default");
    let (owner, dependent) = owner_and_dependent(&maps, "orphan").await;
    maps.delete(
        &owner,
        &DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    eventually("the owner to be gone", Duration::from_secs(15), || async {
        maps.get_opt(&owner).await.unwrap().is_none().then_some(())
    })
    .await;
    let kept = maps
        .get(&dependent)
        .await
        .expect("the orphaned dependent stays");
    assert!(
        kept.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "its owner reference is removed"
    );
    // It stays for good, not merely for a while.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(maps.get_opt(&dependent).await.unwrap().is_some());
}

#[tokio::test]
async fn foreground_deletion_deletes_the_dependent_before_the_owner() {
    let cluster = Cluster::start(&["garbagecollector"]).await;
    let maps = Api::<ConfigMap>::namespaced(cluster.client(), "default");
    let (owner, dependent) = owner_and_dependent(&maps, "fg").await;
    maps.delete(&owner, &DeleteParams::foreground())
        .await
        .unwrap();
    // Watch both: the owner must never be gone while the dependent is still there.
    eventually("the owner to be gone", Duration::from_secs(15), || async {
        let owner_gone = maps.get_opt(&owner).await.unwrap().is_none();
        let dependent_there = maps.get_opt(&dependent).await.unwrap().is_some();
        assert!(
            !(owner_gone && dependent_there),
            "the owner went before its blocking dependent"
        );
        owner_gone.then_some(())
    })
    .await;
    assert!(maps.get_opt(&dependent).await.unwrap().is_none());
}
