//! Pods that still carry the tracking finalizer after their Job is gone (deleted with
//! its pods in the background, or orphaned) would never go away: nobody is left to
//! count them. Upstream's syncOrphanPod removes the finalizer; so does this.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{info, warn};

use super::pods::{has_tracking_finalizer, remove_tracking_finalizer};
use crate::podcontrol::controller_of;

/// Whether the cache cannot vouch for the pod's Job: the pod holds the finalizer but
/// has no Job as controller, or that Job (by uid) is not in the store.
pub(super) fn maybe_orphan(pod: &Pod, jobs: &Store<Job>) -> bool {
    if !has_tracking_finalizer(pod) {
        return false;
    }
    let Some(owner) = controller_of(&pod.metadata).filter(|o| o.kind == "Job") else {
        return true;
    };
    let key = ObjectRef::new(&owner.name).within(&pod.namespace().unwrap_or_default());
    jobs.get(&key)
        .is_none_or(|j| j.uid().as_deref() != Some(owner.uid.as_str()))
}

/// Consumes pods the watch flagged with [`maybe_orphan`]; asks the apiserver before
/// removing the finalizer, since the Job cache may lag behind the pod cache.
pub(super) async fn release_orphans(client: kube::Client, mut rx: UnboundedReceiver<Arc<Pod>>) {
    let mut pods = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed();
    while let Some(pod) = pods.next().await {
        let ns = pod.namespace().unwrap_or_default();
        if let Some(owner) = controller_of(&pod.metadata).filter(|o| o.kind == "Job") {
            let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
            match jobs.get_opt(&owner.name).await {
                Ok(Some(j)) if j.uid().as_deref() == Some(owner.uid.as_str()) => continue,
                Ok(_) => {}
                Err(e) => {
                    warn!(pod = %pod.name_any(), error = %e, "checking the job of a tracked pod");
                    continue;
                }
            }
        }
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        match remove_tracking_finalizer(&api, &pod).await {
            Ok(()) => {
                info!(pod = %format!("{ns}/{}", pod.name_any()), "removed the tracking finalizer of a pod without its job")
            }
            Err(e) => {
                warn!(pod = %pod.name_any(), error = %e, "removing the tracking finalizer of an orphan")
            }
        }
    }
}
