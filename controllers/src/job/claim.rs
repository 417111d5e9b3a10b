//! Which pods a Job runs (upstream getPodsForJob / ClaimPods): the pods it controls
//! that match its selector, plus orphans that match, adopted with the tracking
//! finalizer; pods it controls that stopped matching are released, finalizer and all.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::info;

use super::pods::TRACKING_FINALIZER;
use super::{Error, Result};
use crate::podcontrol::{self, claim, controller_of, controller_ref, controller_selects};

/// The Jobs an orphan pod's event concerns: those in its namespace whose selector
/// matches it (upstream's addPod/updatePod for pods without a controller).
pub(super) fn jobs_for_orphan(pod: &Pod, jobs: &Store<Job>) -> Vec<ObjectRef<Job>> {
    if controller_of(&pod.metadata).is_some() || podcontrol::is_deleting(&pod.metadata) {
        return Vec::new();
    }
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    jobs.state()
        .iter()
        .filter(|j| j.namespace() == pod.namespace())
        .filter(|j| {
            j.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|sel| controller_selects(sel, &labels))
        })
        .map(|j| ObjectRef::from_obj(j.as_ref()))
        .collect()
}

/// Adopts and releases, then returns the pods the Job controls.
pub(super) async fn claim_pods(
    api: &Api<Pod>,
    job: &Job,
    in_namespace: &[Arc<Pod>],
) -> Result<Vec<Pod>> {
    let selector = job
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let claimed = claim(
        &selector,
        &job.metadata,
        in_namespace.iter().map(AsRef::as_ref),
    );
    let uid = job.uid().unwrap_or_default();
    for pod in &claimed.release {
        release(api, pod, &uid).await?;
        info!(pod = %pod.name_any(), "released pod that no longer matches the job's selector");
    }
    let mut owned: Vec<Pod> = claimed.owned.into_iter().cloned().collect();
    for pod in &claimed.adopt {
        match adopt(api, pod, job).await {
            Ok(pod) => {
                info!(pod = %pod.name_any(), "adopted orphan pod");
                owned.push(pod);
            }
            // Deleted or changed since the cache saw it: the next event brings us back.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 || e.code == 422 => {}
            Err(source) => {
                return Err(Error::Claim {
                    pod: pod.name_any(),
                    source,
                })
            }
        }
    }
    Ok(owned)
}

/// The Job becomes the pod's controller and counts it through the tracking finalizer.
async fn adopt(api: &Api<Pod>, pod: &Pod, job: &Job) -> kube::Result<Pod> {
    let patch = json!({"metadata": {
        "ownerReferences": [controller_ref(job)],
        "finalizers": [TRACKING_FINALIZER],
        "uid": pod.uid(),
    }});
    api.patch(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Strategic(patch),
    )
    .await
}

/// The pod leaves the Job: its owner reference and the tracking finalizer go.
async fn release(api: &Api<Pod>, pod: &Pod, job_uid: &str) -> Result<()> {
    let patch = json!({"metadata": {
        "ownerReferences": [{"$patch": "delete", "uid": job_uid}],
        "$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER],
        "uid": pod.uid(),
    }});
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 422 => Ok(()),
        Err(source) => Err(Error::Claim {
            pod: pod.name_any(),
            source,
        }),
    }
}
