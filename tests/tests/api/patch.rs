//! Merge patch and JSON patch, including a JSON patch whose `test` fails.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::common::InProcess;
use crate::{configmap, status};

#[tokio::test]
async fn a_merge_patch_sets_and_removes_only_the_fields_it_names() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let before = api
        .create(
            &PostParams::default(),
            &configmap("m", json!({"keep": "1", "drop": "2", "change": "3"})),
        )
        .await
        .unwrap();
    let patch = json!({"metadata": {"labels": {"l": "v"}}, "data": {"drop": null, "change": "30", "add": "4"}});
    let after = api
        .patch("m", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    let data = after.data.unwrap();
    assert_eq!(data.len(), 3, "{data:?}");
    assert_eq!(
        (
            data["keep"].as_str(),
            data["change"].as_str(),
            data["add"].as_str()
        ),
        ("1", "30", "4")
    );
    assert_eq!(after.metadata.labels.unwrap()["l"], "v");
    assert_eq!(after.metadata.uid, before.metadata.uid);
}

#[tokio::test]
async fn a_json_patch_applies_its_operations_in_order() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    api.create(
        &PostParams::default(),
        &configmap("j", json!({"a": "1", "b": "2"})),
    )
    .await
    .unwrap();
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "replace", "path": "/data/a", "value": "10"},
        {"op": "remove", "path": "/data/b"},
        {"op": "add", "path": "/data/c", "value": "3"}
    ]))
    .unwrap();
    let after = api
        .patch("j", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .unwrap();
    let data = after.data.unwrap();
    assert_eq!(data.len(), 2, "{data:?}");
    assert_eq!((data["a"].as_str(), data["c"].as_str()), ("10", "3"));
}

#[tokio::test]
async fn a_json_patch_with_a_failing_test_is_unprocessable_and_changes_nothing() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let before = api
        .create(&PostParams::default(), &configmap("t", json!({"a": "1"})))
        .await
        .unwrap();
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/data/a", "value": "changed"},
        {"op": "test", "path": "/data/a", "value": "not-what-is-there"}
    ]))
    .unwrap();
    let st = status(
        api.patch("t", &PatchParams::default(), &Patch::Json::<()>(ops))
            .await,
    );
    assert_eq!(st.code, 422, "{st:?}");
    let now = api.get("t").await.unwrap();
    assert_eq!(
        now.data.unwrap()["a"],
        "1",
        "a failed patch applies none of its operations"
    );
    assert_eq!(
        now.metadata.resource_version,
        before.metadata.resource_version
    );
}
