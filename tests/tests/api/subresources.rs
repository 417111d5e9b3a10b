//! The status and scale subresources: who may change which half of an object.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::common::InProcess;

async fn create_deployment(api: &Api<Deployment>, name: &str, replicas: i32) -> Deployment {
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &d).await.unwrap()
}

#[tokio::test]
async fn a_status_update_changes_only_status_and_a_spec_update_keeps_status() {
    let s = InProcess::start().await;
    let api: Api<Deployment> = Api::namespaced(s.client.clone(), "default");
    let created = create_deployment(&api, "web", 1).await;
    assert!(created
        .status
        .as_ref()
        .and_then(|st| st.ready_replicas)
        .is_none());

    // Through /status: the status sticks, the spec change and label riding along do not.
    let mut both = created.clone();
    both.spec.as_mut().unwrap().replicas = Some(5);
    both.metadata.labels = Some([("sneaky".to_string(), "yes".to_string())].into());
    both.status = Some(
        serde_json::from_value(json!({"replicas": 1, "readyReplicas": 1, "observedGeneration": 1}))
            .unwrap(),
    );
    let after_status = api
        .replace_status("web", &PostParams::default(), &both)
        .await
        .unwrap();
    assert_eq!(
        after_status.spec.as_ref().unwrap().replicas,
        Some(1),
        "status update must not change spec"
    );
    assert_eq!(
        after_status.metadata.labels, None,
        "status update must not change labels"
    );
    assert_eq!(
        after_status.status.as_ref().unwrap().ready_replicas,
        Some(1)
    );
    assert_eq!(after_status.metadata.generation, Some(1));

    // Through the main resource: the spec changes, the status sent along is ignored.
    let mut spec_change = after_status.clone();
    spec_change.spec.as_mut().unwrap().replicas = Some(2);
    spec_change.status =
        Some(serde_json::from_value(json!({"replicas": 9, "readyReplicas": 9})).unwrap());
    let after_spec = api
        .replace("web", &PostParams::default(), &spec_change)
        .await
        .unwrap();
    assert_eq!(after_spec.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(
        after_spec.status.as_ref().unwrap().ready_replicas,
        Some(1),
        "spec update must keep status"
    );
    assert_eq!(after_spec.metadata.generation, Some(2));
    assert_eq!(
        api.get("web").await.unwrap().status.unwrap().ready_replicas,
        Some(1)
    );
}

#[tokio::test]
async fn the_scale_subresource_reads_and_patches_deployment_replicas() {
    let s = InProcess::start().await;
    let api: Api<Deployment> = Api::namespaced(s.client.clone(), "default");
    create_deployment(&api, "web", 2).await;

    let scale = api.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(
        scale.status.as_ref().unwrap().selector.as_deref(),
        Some("app=web")
    );

    let patched = api
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().replicas, Some(4));
    let d = api.get("web").await.unwrap();
    assert_eq!(
        d.spec.unwrap().replicas,
        Some(4),
        "scale writes through to the deployment"
    );
    assert_eq!(d.metadata.generation, Some(2));
}
