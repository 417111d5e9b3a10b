//! The garbage collector: background, orphan and foreground deletion of a
//! ConfigMap owned by another ConfigMap.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    Preconditions, PropagationPolicy,
};
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

/// How a test deletes the objects of an ownership circle.
enum Deletion {
    /// The first object only, with this policy and its uid as a precondition.
    First(PropagationPolicy),
    /// Every object, one after the other, with this policy.
    All(PropagationPolicy),
}

/// Creates `names` as objects of `ar` in `default`, then makes a circle of them the
/// way upstream's e2e "should not be blocked by dependency circle" does: each object
/// is patched (strategic merge) to be controlled by the one before it (the first by
/// the last; a single object by itself), with blockOwnerDeletion.
async fn circle(api: &Api<DynamicObject>, ar: &ApiResource, names: &[&str]) -> Vec<String> {
    let mut uids = Vec::new();
    for name in names {
        let mut body =
            json!({"apiVersion": ar.api_version, "kind": ar.kind, "metadata": {"name": name}});
        if ar.kind == "Pod" {
            body["spec"] = json!({"containers": [{"name": "nginx", "image": "nginx"}]});
        }
        let obj: DynamicObject = serde_json::from_value(body).unwrap();
        let created = api.create(&PostParams::default(), &obj).await.unwrap();
        uids.push(created.metadata.uid.unwrap());
    }
    for (i, name) in names.iter().enumerate() {
        let owner = (i + names.len() - 1) % names.len();
        let patch = json!({"metadata": {"ownerReferences": [{"apiVersion": ar.api_version,
            "kind": ar.kind, "name": names[owner], "uid": uids[owner],
            "controller": true, "blockOwnerDeletion": true}]}});
        api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
            .unwrap();
    }
    uids
}

#[tokio::test]
async fn an_ownership_circle_is_collected_whichever_way_it_is_deleted() {
    use Deletion::*;
    use PropagationPolicy::*;
    let pods = ApiResource::erase::<Pod>(&());
    let maps = ApiResource::erase::<ConfigMap>(&());
    let cases: Vec<(&str, &ApiResource, &[&str], Deletion)> = vec![
        (
            "three pods, the first deleted in the foreground (upstream's e2e)",
            &pods,
            &["pod1", "pod2", "pod3"],
            First(Foreground),
        ),
        (
            "three config maps, the first deleted in the background",
            &maps,
            &["cm1", "cm2", "cm3"],
            First(Background),
        ),
        (
            "three config maps, all deleted in the foreground",
            &maps,
            &["cm1", "cm2", "cm3"],
            All(Foreground),
        ),
        (
            "three config maps, all deleted in the background",
            &maps,
            &["cm1", "cm2", "cm3"],
            All(Background),
        ),
        (
            "an owner and a dependent owning it, the owner deleted in the foreground",
            &maps,
            &["owner", "dependent"],
            First(Foreground),
        ),
        (
            "a config map owned by itself, deleted in the foreground",
            &maps,
            &["self-owned"],
            First(Foreground),
        ),
    ];
    for (name, ar, names, deletion) in cases {
        let cluster = Cluster::start(&["garbagecollector"]).await;
        let api = Api::<DynamicObject>::namespaced_with(cluster.client(), "default", ar);
        let uids = circle(&api, ar, names).await;
        let (count, policy) = match deletion {
            First(p) => (1, p),
            All(p) => (names.len(), p),
        };
        for (n, uid) in names.iter().zip(&uids).take(count) {
            let dp = DeleteParams {
                propagation_policy: Some(policy.clone()),
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            api.delete(n, &dp)
                .await
                .unwrap_or_else(|e| panic!("{name}: deleting {n}: {e}"));
        }
        eventually(
            &format!("{name}: every object of the circle to be gone"),
            Duration::from_secs(20),
            || async {
                let left = api.list(&ListParams::default()).await.unwrap();
                let left = left
                    .items
                    .iter()
                    .filter(|o| names.contains(&o.metadata.name.as_deref().unwrap_or("")))
                    .count();
                (left == 0).then_some(())
            },
        )
        .await;
    }
}
