//! Everything a pod's worker tells the API, behind one narrow trait, as the kubelet's status
//! manager is the only writer of pod status: status writes, events, and the final removal
//! of a pod whose containers are gone. [`ApiStatusSink`] is the real one; a recording fake
//! serves the worker's unit tests. [`Reporter`] writes a status only when it changed.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::events;

const FIELD_MANAGER: &str = "kybern-agent";

#[async_trait]
pub trait StatusSink: Send + Sync {
    /// Writes the pod's status (a merge patch of the status subresource), only to the pod
    /// of UID `uid` when given (not to a newer pod of the same name). Returns the
    /// resourceVersion the write produced.
    async fn write_status(
        &self,
        pod: &Pod,
        uid: Option<&str>,
        status: &PodStatus,
    ) -> Result<u64, kube::Error>;
    /// Records an event about the pod (best effort, as the kubelet's recorder).
    async fn event(
        &self,
        pod: &Pod,
        field_path: Option<String>,
        type_: &str,
        reason: &str,
        message: &str,
    );
    /// Removes the pod at once (grace period 0), if it still has `uid`. A pod already gone
    /// or replaced by a newer one of the same name is no error.
    async fn delete_pod(&self, pod: &Pod, uid: &str) -> Result<(), kube::Error>;
}

/// The sink that writes to the apiserver.
pub struct ApiStatusSink {
    client: Client,
    node_name: String,
}

impl ApiStatusSink {
    pub fn new(client: Client, node_name: &str) -> Self {
        ApiStatusSink {
            client,
            node_name: node_name.to_string(),
        }
    }

    fn api(&self, pod: &Pod) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default())
    }
}

#[async_trait]
impl StatusSink for ApiStatusSink {
    async fn write_status(
        &self,
        pod: &Pod,
        uid: Option<&str>,
        status: &PodStatus,
    ) -> Result<u64, kube::Error> {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let patch = match uid {
            Some(uid) => json!({ "metadata": { "uid": uid }, "status": status }),
            None => json!({ "status": status }),
        };
        let written = self
            .api(pod)
            .patch_status(&pod.name_any(), &params, &Patch::Merge(&patch))
            .await?;
        Ok(written
            .resource_version()
            .and_then(|rv| rv.parse().ok())
            .unwrap_or(0))
    }

    async fn event(
        &self,
        pod: &Pod,
        field_path: Option<String>,
        type_: &str,
        reason: &str,
        message: &str,
    ) {
        events::record(
            &self.client,
            &self.node_name,
            pod,
            field_path,
            type_,
            reason,
            message,
        )
        .await;
    }

    async fn delete_pod(&self, pod: &Pod, uid: &str) -> Result<(), kube::Error> {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.api(pod).delete(&pod.name_any(), &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Writes a pod's status when it differs from what the pod shows and from what was last
/// written (unless a newer pod than that write came in).
#[derive(Default)]
pub(super) struct Reporter {
    /// What we last wrote, and the resourceVersion the write produced.
    reported: Option<(PodStatus, u64)>,
}

impl Reporter {
    pub(super) async fn report(
        &mut self,
        sink: &dyn StatusSink,
        pod: &Pod,
        uid: &str,
        status: PodStatus,
    ) {
        let pod_rv: u64 = pod
            .resource_version()
            .and_then(|rv| rv.parse().ok())
            .unwrap_or(0);
        if pod.status.as_ref() == Some(&status) {
            return;
        }
        if let Some((last, rv)) = &self.reported {
            if *last == status && pod_rv <= *rv {
                return;
            }
        }
        // A static pod's status goes to its mirror, which has a UID of its own.
        let only = (!is_static(pod)).then_some(uid);
        match sink.write_status(pod, only, &status).await {
            Ok(rv) => self.reported = Some((status, rv)),
            Err(e) => {
                tracing::warn!(pod = %pod.name_any(), error = %e, "reporting pod status failed; retrying")
            }
        }
    }
}

fn is_static(pod: &Pod) -> bool {
    pod.annotations()
        .get(super::static_pods::ANNOTATION_SOURCE)
        .is_some_and(|s| s == "file")
}

#[cfg(test)]
pub(crate) mod recording;

#[cfg(test)]
mod tests {
    use super::recording::{RecordingSink, Sent};
    use super::*;

    fn pod(rv: &str, annotations: &[(&str, &str)]) -> Pod {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "resourceVersion": rv},
        }))
        .unwrap();
        p.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        p
    }

    fn status(phase: &str) -> PodStatus {
        PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }
    }

    fn writes(sink: &RecordingSink) -> Vec<(Option<String>, Option<String>)> {
        sink.sent()
            .into_iter()
            .filter_map(|s| match s {
                Sent::Status { uid, status, .. } => Some((uid, status.phase)),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_status_is_written_once_until_it_changes_or_a_newer_pod_comes() {
        let sink = RecordingSink::new();
        sink.set_next_resource_version(6);
        let mut r = Reporter::default();
        r.report(&sink, &pod("5", &[]), "u1", status("Pending"))
            .await;
        assert_eq!(writes(&sink).len(), 1);
        r.report(&sink, &pod("5", &[]), "u1", status("Pending"))
            .await;
        r.report(&sink, &pod("6", &[]), "u1", status("Pending"))
            .await;
        assert_eq!(
            writes(&sink).len(),
            1,
            "the same status to a pod no newer than our write (rv 6) is not written again"
        );
        // Someone else wrote the pod after us (rv 7) and it does not show our status.
        r.report(&sink, &pod("7", &[]), "u1", status("Pending"))
            .await;
        assert_eq!(writes(&sink).len(), 2, "a newer pod gets the status again");
        r.report(&sink, &pod("8", &[]), "u1", status("Running"))
            .await;
        assert_eq!(writes(&sink).len(), 3, "a changed status is written");
        let mut shown = pod("20", &[]);
        shown.status = Some(status("Running"));
        r.report(&sink, &shown, "u1", status("Running")).await;
        assert_eq!(writes(&sink).len(), 3, "the pod shows it already");
    }

    #[tokio::test]
    async fn a_static_pods_status_goes_to_its_mirror_without_a_uid_precondition() {
        let sink = RecordingSink::new();
        let mut r = Reporter::default();
        r.report(&sink, &pod("1", &[]), "u1", status("Pending"))
            .await;
        let mirror = pod(
            "1",
            &[(super::super::static_pods::ANNOTATION_SOURCE, "file")],
        );
        Reporter::default()
            .report(&sink, &mirror, "u1", status("Pending"))
            .await;
        assert_eq!(
            writes(&sink),
            vec![
                (Some("u1".into()), Some("Pending".into())),
                (None, Some("Pending".into()))
            ]
        );
    }
}
