//! The pod garbage collector's writes: confirming a node is really gone, and removing a
//! pod at once (grace period 0: no kubelet is left to finish a graceful deletion).

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::plan::{is_terminated, Reason};
use crate::podcontrol::write_slot;

/// Whether the API server says `node` does not exist (the cache may lag behind it).
pub(super) async fn node_is_gone(client: &kube::Client, node: &str) -> kube::Result<bool> {
    match Api::<Node>::all(client.clone()).get_opt(node).await {
        Ok(found) => Ok(found.is_none()),
        Err(e) => Err(e),
    }
}

/// Removes `pod` for `reason`. An orphaned pod that had not finished is first marked
/// Failed with the DisruptionTarget condition upstream's pod GC writes, so whoever
/// watches it (a Job) sees why it ended. The delete is for this pod's uid only.
pub(super) async fn remove(client: &kube::Client, pod: &Pod, reason: Reason) -> kube::Result<()> {
    let _slot = write_slot().await;
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    if reason == Reason::Orphaned && !is_terminated(pod) {
        let status = json!({"status": {
            "phase": "Failed",
            "conditions": [{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByPodGC",
                "message": "PodGC: node no longer exists",
                "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string(),
            }],
        }});
        match api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(status),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => Ok(()),
        // Gone already, or a new pod under the same name (the uid precondition).
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
