//! Create, read, update, delete: metadata the server owns, optimistic concurrency,
//! generateName, finalizers and namespace lifecycle.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

use crate::common::InProcess;
use crate::{code, configmap, status};

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "busybox"}]}
            }
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn configmaps_can_be_created_read_listed_updated_and_deleted() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let created = api
        .create(&PostParams::default(), &configmap("one", json!({"k": "v"})))
        .await
        .unwrap();
    assert_eq!(created.data.as_ref().unwrap()["k"], "v");

    let got = api.get("one").await.unwrap();
    assert_eq!(got.metadata.uid, created.metadata.uid);

    let names: Vec<_> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(names, ["one"]);

    let mut changed = got.clone();
    changed.data = Some([("k".to_string(), "w".to_string())].into());
    let updated = api
        .replace("one", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_eq!(updated.data.as_ref().unwrap()["k"], "w");
    assert_eq!(api.get("one").await.unwrap().data.unwrap()["k"], "w");
    assert_ne!(
        updated.metadata.resource_version,
        got.metadata.resource_version
    );

    api.delete("one", &DeleteParams::default()).await.unwrap();
    assert_eq!(code(api.get("one").await), 404);
    assert!(api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test]
async fn the_server_sets_uid_creation_timestamp_and_resource_version() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let a = api
        .create(&PostParams::default(), &configmap("a", json!({})))
        .await
        .unwrap();
    let b = api
        .create(&PostParams::default(), &configmap("b", json!({})))
        .await
        .unwrap();
    assert!(
        a.metadata.uid.as_ref().is_some_and(|u| u.len() == 36),
        "uid {:?}",
        a.metadata.uid
    );
    assert_ne!(a.metadata.uid, b.metadata.uid);
    assert!(a.metadata.creation_timestamp.is_some());
    let rv = |c: &ConfigMap| {
        c.metadata
            .resource_version
            .as_ref()
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    assert!(rv(&b) > rv(&a), "later writes get larger resourceVersions");

    // A client cannot choose the uid or creation time on update either.
    let mut forged = a.clone();
    forged.metadata.uid = Some("00000000-0000-0000-0000-000000000000".into());
    let kept = api.replace("a", &PostParams::default(), &forged).await;
    match kept {
        Ok(kept) => assert_eq!(kept.metadata.uid, a.metadata.uid),
        Err(e) => assert_eq!(code(Err::<(), _>(e)), 422),
    }
}

#[tokio::test]
async fn generation_moves_on_spec_change_but_not_on_label_change() {
    let s = InProcess::start().await;
    let api: Api<Deployment> = Api::namespaced(s.client.clone(), "default");
    let d = api
        .create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));

    let mut labelled = d.clone();
    labelled
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("tier".into(), "front".into());
    let labelled = api
        .replace("web", &PostParams::default(), &labelled)
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(1),
        "a label change is not a spec change"
    );

    let mut scaled = labelled.clone();
    scaled.spec.as_mut().unwrap().replicas = Some(3);
    let scaled = api
        .replace("web", &PostParams::default(), &scaled)
        .await
        .unwrap();
    assert_eq!(scaled.metadata.generation, Some(2));
}

#[tokio::test]
async fn update_with_a_stale_resource_version_is_a_conflict() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let first = api
        .create(&PostParams::default(), &configmap("c", json!({"n": "1"})))
        .await
        .unwrap();
    let mut second = first.clone();
    second.data = Some([("n".to_string(), "2".to_string())].into());
    api.replace("c", &PostParams::default(), &second)
        .await
        .unwrap();

    let mut stale = first.clone();
    stale.data = Some([("n".to_string(), "3".to_string())].into());
    let st = status(api.replace("c", &PostParams::default(), &stale).await);
    assert_eq!((st.code, st.reason.as_str()), (409, "Conflict"), "{st:?}");
    assert_eq!(
        api.get("c").await.unwrap().data.unwrap()["n"],
        "2",
        "the stale write changed nothing"
    );
}

#[tokio::test]
async fn generate_name_gives_each_create_a_fresh_name() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let template: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "job-"}})).unwrap();
    let a = api.create(&PostParams::default(), &template).await.unwrap();
    let b = api.create(&PostParams::default(), &template).await.unwrap();
    let (a, b) = (a.metadata.name.unwrap(), b.metadata.name.unwrap());
    assert!(
        a.starts_with("job-") && a.len() == "job-".len() + 5,
        "name {a}"
    );
    assert_ne!(a, b);
    assert!(api.get(&a).await.is_ok() && api.get(&b).await.is_ok());
}

#[tokio::test]
async fn a_finalizer_holds_deletion_until_it_is_removed() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();

    api.delete("held", &DeleteParams::default()).await.unwrap();
    let marked = api.get("held").await.expect("a finalizer keeps the object");
    assert!(marked.metadata.deletion_timestamp.is_some());

    let mut released = marked.clone();
    released.metadata.finalizers = None;
    api.replace("held", &PostParams::default(), &released)
        .await
        .unwrap();
    assert_eq!(
        code(api.get("held").await),
        404,
        "removing the last finalizer deletes the object"
    );
}

#[tokio::test]
async fn create_in_a_missing_namespace_is_not_found_and_in_a_terminating_one_forbidden() {
    let s = InProcess::start().await;
    let missing: Api<ConfigMap> = Api::namespaced(s.client.clone(), "nowhere");
    let st = status(
        missing
            .create(&PostParams::default(), &configmap("x", json!({})))
            .await,
    );
    assert_eq!(st.code, 404, "{st:?}");
    assert_eq!(st.message, "namespaces \"nowhere\" not found");

    let namespaces: Api<Namespace> = Api::all(s.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "leaving"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    namespaces
        .delete("leaving", &DeleteParams::default())
        .await
        .unwrap();
    let leaving = namespaces
        .get("leaving")
        .await
        .expect("the namespace waits for its finalizer");
    assert_eq!(
        leaving.status.unwrap().phase.as_deref(),
        Some("Terminating")
    );

    let inside: Api<ConfigMap> = Api::namespaced(s.client.clone(), "leaving");
    let st = status(
        inside
            .create(&PostParams::default(), &configmap("x", json!({})))
            .await,
    );
    assert_eq!(st.code, 403, "{st:?}");
    assert!(
        st.message.contains("because it is being terminated"),
        "{}",
        st.message
    );
    assert_eq!(code(inside.get("x").await), 404);
}
