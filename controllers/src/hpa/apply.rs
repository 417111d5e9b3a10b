//! The autoscaler's writes: reading and setting the target's replicas through its
//! `/scale` subresource (any kind that has one), and its events.

use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::{CrossVersionObjectReference, HorizontalPodAutoscaler};
use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::Api;
use serde_json::json;

/// Upstream's HPA reports events under this name.
const COMPONENT: &str = "horizontal-pod-autoscaler";

/// The target's `/scale` API, found through discovery (apiVersion and kind to resource).
pub(super) async fn scale_api(
    client: &kube::Client,
    ns: &str,
    target: &CrossVersionObjectReference,
) -> kube::Result<Api<DynamicObject>> {
    let api_version = target.api_version.as_deref().unwrap_or("v1");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, &target.kind);
    let (ar, _) = kube::discovery::pinned_kind(client, &gvk).await?;
    Ok(Api::namespaced_with(client.clone(), ns, &ar))
}

pub(super) async fn get_scale(api: &Api<DynamicObject>, name: &str) -> kube::Result<Scale> {
    api.get_scale(name).await
}

pub(super) async fn set_replicas(
    api: &Api<DynamicObject>,
    name: &str,
    replicas: i32,
) -> kube::Result<Scale> {
    api.patch_scale(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": replicas}})),
    )
    .await
}

/// An event about the autoscaler; best effort.
pub(super) async fn event(
    client: &kube::Client,
    hpa: &HorizontalPodAutoscaler,
    type_: &str,
    reason: &str,
    message: &str,
) {
    crate::podcontrol::publish_event(client, hpa, type_, reason, message, COMPONENT).await;
}
