//! Metadata-only requests (`as=PartialObjectMetadata(List);g=meta.k8s.io;v=v1`), as
//! kube-rs metadata watchers and controller-runtime metadata informers make them.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

use crate::common::InProcess;
use crate::configmap;

#[tokio::test]
async fn list_get_and_watch_answer_with_metadata_only() {
    let s = InProcess::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    for name in ["a", "b"] {
        cms.create(
            &PostParams::default(),
            &configmap(name, json!({"k": "secret-ish"})),
        )
        .await
        .unwrap();
    }

    let list = cms
        .list_metadata(&ListParams::default().limit(1))
        .await
        .unwrap();
    assert_eq!(list.types.kind, "PartialObjectMetadataList");
    assert_eq!(list.types.api_version, "meta.k8s.io/v1");
    assert!(
        list.metadata.resource_version.is_some(),
        "{:?}",
        list.metadata
    );
    assert!(
        list.metadata.continue_.is_some(),
        "a limited list carries continue: {:?}",
        list.metadata
    );
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].metadata.name.as_deref(), Some("a"));

    let one = cms.get_metadata("b").await.unwrap();
    assert_eq!(one.metadata.name.as_deref(), Some("b"));
    let raw: serde_json::Value = s
        .client
        .request(
            http::Request::get("/api/v1/namespaces/default/configmaps/b")
                .header(
                    "accept",
                    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
                )
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(raw["kind"], "PartialObjectMetadata", "{raw}");
    assert!(
        raw.get("data").is_none(),
        "a metadata-only get returns no data: {raw}"
    );

    let rv = list.metadata.resource_version.unwrap();
    let mut events = cms
        .watch_metadata(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    cms.create(&PostParams::default(), &configmap("c", json!({})))
        .await
        .unwrap();
    match events.try_next().await.unwrap() {
        Some(WatchEvent::Added(obj)) => {
            assert_eq!(obj.metadata.name.as_deref(), Some("c"));
            assert_eq!(
                obj.types.as_ref().map(|t| t.kind.as_str()),
                Some("PartialObjectMetadata")
            );
        }
        other => panic!("expected ADDED c, got {other:?}"),
    }
}

#[tokio::test]
async fn a_metadata_watcher_sees_every_object() {
    let s = InProcess::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    cms.create(&PostParams::default(), &configmap("x", json!({})))
        .await
        .unwrap();
    let mut names = watcher(
        Api::<PartialObjectMeta<ConfigMap>>::namespaced(s.client.clone(), "default"),
        watcher::Config::default(),
    )
    .applied_objects()
    .map_ok(|o| o.metadata.name.unwrap_or_default())
    .boxed();
    let mut seen = Vec::new();
    while !seen.contains(&"x".to_string()) {
        seen.push(names.try_next().await.unwrap().unwrap());
    }
    cms.create(&PostParams::default(), &configmap("y", json!({})))
        .await
        .unwrap();
    while !seen.contains(&"y".to_string()) {
        seen.push(names.try_next().await.unwrap().unwrap());
    }
}
