//! Server-side apply of built-in kinds from kube-rs (`Patch::Apply`), and deletes whose
//! DeleteOptions arrive as protobuf, as client-go (and so Helm) sends them.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::{json, Value};

use crate::common::InProcess;
use crate::{code, configmap, status};

fn applied(name: &str, data: Value) -> Patch<Value> {
    Patch::Apply(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}),
    )
}

/// Who owns which `data` keys, by manager.
fn owners(cm: &ConfigMap) -> Vec<(String, Vec<String>)> {
    cm.managed_fields()
        .iter()
        .map(|m| {
            let fields = serde_json::to_value(&m.fields_v1).unwrap();
            let mut keys: Vec<String> = fields["f:data"]
                .as_object()
                .map(|d| {
                    d.keys()
                        .map(|k| k.trim_start_matches("f:").to_string())
                        .collect()
                })
                .unwrap_or_default();
            keys.sort();
            (m.manager.clone().unwrap_or_default(), keys)
        })
        .collect()
}

#[tokio::test]
async fn an_apply_creates_updates_and_removes_the_fields_its_configuration_drops() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let created = api
        .patch(
            "a",
            &PatchParams::apply("mgr"),
            &applied("a", json!({"x": "1", "y": "2"})),
        )
        .await
        .unwrap();
    assert_eq!(created.data.as_ref().unwrap().len(), 2);
    assert_eq!(
        owners(&created),
        [("mgr".to_string(), vec!["x".to_string(), "y".to_string()])]
    );
    assert_eq!(
        created.managed_fields()[0].operation.as_deref(),
        Some("Apply")
    );

    let updated = api
        .patch(
            "a",
            &PatchParams::apply("mgr"),
            &applied("a", json!({"x": "10"})),
        )
        .await
        .unwrap();
    let data = updated.data.unwrap();
    assert_eq!(
        data.len(),
        1,
        "y was dropped from the configuration: {data:?}"
    );
    assert_eq!(data["x"], "10");
    assert_eq!(updated.metadata.uid, created.metadata.uid);
}

#[tokio::test]
async fn a_second_manager_applying_another_value_conflicts_until_it_forces() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    api.patch(
        "c",
        &PatchParams::apply("first"),
        &applied("c", json!({"shared": "1", "mine": "1"})),
    )
    .await
    .unwrap();

    // The same value is shared ownership, not a conflict.
    let shared = api
        .patch(
            "c",
            &PatchParams::apply("second"),
            &applied("c", json!({"shared": "1"})),
        )
        .await
        .unwrap();
    assert_eq!(owners(&shared).len(), 2, "{:?}", owners(&shared));

    let conflict = status(
        api.patch(
            "c",
            &PatchParams::apply("second"),
            &applied("c", json!({"mine": "2"})),
        )
        .await,
    );
    assert_eq!(conflict.code, 409);
    assert_eq!(conflict.reason, "Conflict");
    assert_eq!(
        conflict.message,
        r#"Apply failed with 1 conflict: conflict with "first": .data.mine"#
    );
    assert_eq!(
        api.get("c").await.unwrap().data.unwrap()["mine"],
        "1",
        "a refused apply changes nothing"
    );

    let forced = api
        .patch(
            "c",
            &PatchParams::apply("second").force(),
            &applied("c", json!({"mine": "2"})),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["mine"], "2");
    assert_eq!(
        owners(&forced),
        [
            ("first".to_string(), vec!["shared".to_string()]),
            ("second".to_string(), vec!["mine".to_string()])
        ],
        "forcing takes the field from its old owner"
    );
}

#[tokio::test]
async fn a_dry_run_apply_answers_with_the_result_and_stores_nothing() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let dry = api
        .patch(
            "d",
            &PatchParams::apply("mgr").dry_run(),
            &applied("d", json!({"k": "v"})),
        )
        .await
        .unwrap();
    assert_eq!(dry.data.unwrap()["k"], "v");
    assert_eq!(
        code(api.get("d").await),
        404,
        "a dry-run create stores nothing"
    );

    api.create(&PostParams::default(), &configmap("d", json!({"k": "v"})))
        .await
        .unwrap();
    let dry = api
        .patch(
            "d",
            &PatchParams::apply("mgr").dry_run().force(),
            &applied("d", json!({"k": "w"})),
        )
        .await
        .unwrap();
    assert_eq!(dry.data.unwrap()["k"], "w");
    assert_eq!(
        api.get("d").await.unwrap().data.unwrap()["k"],
        "v",
        "a dry-run update stores nothing"
    );
}

/// One length-delimited protobuf field (all lengths here are under 128 bytes).
fn field(tag: u8, bytes: &[u8]) -> Vec<u8> {
    assert!(bytes.len() < 128);
    let mut out = vec![tag << 3 | 2, bytes.len() as u8];
    out.extend_from_slice(bytes);
    out
}

/// A protobuf `DeleteOptions` body whose preconditions name `uid`, as client-go encodes it.
fn protobuf_delete_options(uid: &str) -> Vec<u8> {
    let type_meta = [field(1, b"v1"), field(2, b"DeleteOptions")].concat();
    let options = [field(2, &field(1, uid.as_bytes())), field(4, b"Background")].concat();
    [b"k8s\0".to_vec(), field(1, &type_meta), field(2, &options)].concat()
}

#[tokio::test]
async fn a_delete_honours_delete_options_sent_as_protobuf() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let cm = api
        .create(&PostParams::default(), &configmap("p", json!({})))
        .await
        .unwrap();
    let delete = |uid: &str| {
        http::Request::delete("/api/v1/namespaces/default/configmaps/p")
            .header("content-type", "application/vnd.kubernetes.protobuf")
            .body(protobuf_delete_options(uid))
            .unwrap()
    };

    let refused = status(s.client.request::<Value>(delete("not-its-uid")).await);
    assert_eq!(refused.code, 409, "{refused:?}");
    assert!(
        refused
            .message
            .contains("Precondition failed: UID in precondition: not-its-uid"),
        "{}",
        refused.message
    );
    assert!(
        api.get("p").await.is_ok(),
        "a failed precondition deletes nothing"
    );

    s.client
        .request::<Value>(delete(&cm.uid().unwrap()))
        .await
        .unwrap();
    assert_eq!(code(api.get("p").await), 404);
}

#[tokio::test]
async fn a_dry_run_delete_answers_like_a_delete_and_deletes_nothing() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    api.create(&PostParams::default(), &configmap("kept", json!({})))
        .await
        .unwrap();
    // kube-rs, like client-go, sends dryRun in the DeleteOptions body.
    api.delete("kept", &kube::api::DeleteParams::default().dry_run())
        .await
        .unwrap();
    assert!(
        api.get("kept").await.is_ok(),
        "a dry-run delete deletes nothing"
    );
    let all = api
        .delete_collection(
            &kube::api::DeleteParams::default().dry_run(),
            &Default::default(),
        )
        .await
        .unwrap();
    assert!(
        all.is_left(),
        "a collection delete lists what it would delete"
    );
    assert!(
        api.get("kept").await.is_ok(),
        "a dry-run delete deletes nothing"
    );
}
