//! The scheduler's writes: POST pods/{name}/binding, the PodScheduled=False condition
//! (pods/status), nominatedNodeName, Scheduled and FailedScheduling events, and victim
//! deletion.

use k8s_openapi::api::core::v1::{Event, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::cache::PodInfo;
use super::objects::Pod;

pub const FIELD_MANAGER: &str = "default-scheduler";

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("binding {pod} to {node}: {source}")]
    Api {
        pod: String,
        node: String,
        source: kube::Error,
    },
}

impl BindError {
    /// The pod is gone (404) or already bound elsewhere (409): nothing to retry.
    pub fn is_final(&self) -> bool {
        let BindError::Api { source, .. } = self;
        matches!(source, kube::Error::Api(s) if s.code == 404 || s.code == 409)
    }
}

fn pods(client: &Client, pod: &PodInfo) -> Api<Pod> {
    Api::namespaced(client.clone(), &pod.namespace)
}

pub async fn bind(client: &Client, pod: &PodInfo, node: &str) -> Result<(), BindError> {
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    pods(client, pod)
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &pod.name,
            &PostParams::default(),
            &binding,
        )
        .await
        .map(|_| ())
        .map_err(|source| BindError::Api {
            pod: format!("{}/{}", pod.namespace, pod.name),
            node: node.into(),
            source,
        })
}

/// Whether the pod already carries exactly this PodScheduled=False condition.
fn already_reported(pod: &PodInfo, message: &str) -> bool {
    pod.unschedulable_message.as_deref() == Some(message)
}

/// Sets PodScheduled=False/Unschedulable with the message (strategic merge on the
/// conditions list, keyed by type) and, after a preemption, status.nominatedNodeName.
pub async fn report_unschedulable(
    client: &Client,
    pod: &PodInfo,
    message: &str,
    nominated: Option<&str>,
) -> Result<(), kube::Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    if !already_reported(pod, message) || nominated.is_some() {
        let mut status = json!({"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastTransitionTime": now,
        }]});
        if let Some(n) = nominated {
            status["nominatedNodeName"] = json!(n);
        }
        pods(client, pod)
            .patch_status(
                &pod.name,
                &PatchParams::default(),
                &Patch::Strategic(json!({"status": status})),
            )
            .await?;
    }
    let event = pod_event(
        pod,
        FIELD_MANAGER,
        ("Warning", "FailedScheduling", "Scheduling"),
        message,
        now,
    );
    Api::<Event>::namespaced(client.clone(), &pod.namespace)
        .create(&PostParams::default(), &event)
        .await?;
    Ok(())
}

/// The `Scheduled` event upstream's scheduler records for every pod it bound
/// (`kubectl describe pod` shows it; `source=default-scheduler` selects it).
pub async fn report_scheduled(
    client: &Client,
    scheduler: &str,
    pod: &PodInfo,
    node: &str,
) -> Result<(), kube::Error> {
    let message = format!(
        "Successfully assigned {}/{} to {node}",
        pod.namespace, pod.name
    );
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let event = pod_event(
        pod,
        scheduler,
        ("Normal", "Scheduled", "Binding"),
        &message,
        now,
    );
    Api::<Event>::namespaced(client.clone(), &pod.namespace)
        .create(&PostParams::default(), &event)
        .await?;
    Ok(())
}

/// A core/v1 Event about a pod from the scheduler; `(type, reason, action)`.
fn pod_event(
    pod: &PodInfo,
    scheduler: &str,
    (type_, reason, action): (&str, &str, &str),
    message: &str,
    now: Time,
) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", pod.name, now.0.as_nanosecond())),
            namespace: Some(pod.namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(pod.uid.clone()),
            resource_version: pod.resource_version.clone(),
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(type_.into()),
        action: Some(action.into()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        source: Some(k8s_openapi::api::core::v1::EventSource {
            component: Some(scheduler.into()),
            host: None,
        }),
        reporting_component: Some(scheduler.into()),
        ..Default::default()
    }
}

/// Deletes a preemption victim gracefully (its own termination grace period).
pub async fn evict(client: &Client, victim: &PodInfo) -> Result<(), kube::Error> {
    match pods(client, victim)
        .delete(&victim.name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
