//! Events about a pod, as the kubelet records them (source component "kubelet", the node as
//! host, `spec.containers{name}` as the field path), best effort.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};

use super::actions::Kind;

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

/// The field path naming a container in events (`spec.initContainers{setup}`).
pub fn field_path(kind: Kind, container: &str) -> String {
    let list = match kind {
        Kind::Init => "initContainers",
        Kind::App => "containers",
        Kind::Ephemeral => "ephemeralContainers",
    };
    format!("spec.{list}{{{container}}}")
}

/// Records an event; a failure is logged and otherwise ignored, as the kubelet does.
pub async fn record(
    client: &Client,
    node: &str,
    pod: &Pod,
    field_path: Option<String>,
    type_: &str,
    reason: &str,
    message: &str,
) {
    let ns = pod.namespace().unwrap_or_else(|| "default".into());
    let about = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(pod.name_any()),
        namespace: Some(ns.clone()),
        uid: pod.uid(),
        field_path,
        ..Default::default()
    };
    let event = kubelet_event(node, &ns, about, type_, reason, message);
    post(client, &ns, &event, reason).await;
}

/// Records an event about the node itself, as the kubelet does: its reference names the
/// node with the node's name as UID (`kubectl describe node` looks for both), and like
/// every event of a cluster-scoped object it lives in `default`.
pub async fn record_node(client: &Client, node: &str, type_: &str, reason: &str, message: &str) {
    let about = ObjectReference {
        kind: Some("Node".into()),
        name: Some(node.into()),
        uid: Some(node.into()),
        ..Default::default()
    };
    let event = kubelet_event(node, "default", about, type_, reason, message);
    post(client, "default", &event, reason).await;
}

/// An event the kubelet of `node` reports about `about`, stored in `namespace`.
fn kubelet_event(
    node: &str,
    namespace: &str,
    about: ObjectReference,
    type_: &str,
    reason: &str,
    message: &str,
) -> Event {
    let now = Time(Timestamp::now());
    Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", about.name.as_deref().unwrap_or_default())),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        involved_object: about,
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(type_.into()),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some(node.into()),
        }),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(node.into()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Default::default()
    }
}

async fn post(client: &Client, namespace: &str, event: &Event, reason: &str) {
    if let Err(e) = Api::<Event>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), event)
        .await
    {
        let object = event.involved_object.name.as_deref().unwrap_or_default();
        tracing::debug!(object, reason, error = %e, "recording an event failed");
    }
}
