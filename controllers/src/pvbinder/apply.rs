//! The binder's writes, in upstream's order for a bind (volume claimRef, volume phase,
//! claim volumeName and annotations, claim phase), so a crash half way leaves a state
//! the next sync completes; every spec write carries the resourceVersion it was decided
//! on, so a lost race is a 409 the error policy retries.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::localpath::bind::{BIND_COMPLETED_ANNOTATION, BOUND_BY_CONTROLLER_ANNOTATION};

fn claims(client: &kube::Client, claim: &PersistentVolumeClaim) -> Api<PersistentVolumeClaim> {
    Api::namespaced(client.clone(), &claim.namespace().unwrap_or_default())
}

/// Adds or removes `finalizer`, guarded by the object's resourceVersion.
pub(super) async fn set_finalizer<K>(
    api: &Api<K>,
    obj: &K,
    finalizer: &str,
    present: bool,
) -> kube::Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut finalizers: Vec<String> = obj.meta().finalizers.clone().unwrap_or_default();
    finalizers.retain(|f| f != finalizer);
    if present {
        finalizers.push(finalizer.to_string());
    }
    let patch = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": obj.meta().resource_version,
    }});
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Binds `pv` to `claim`, both ways.
pub(super) async fn bind(
    client: &kube::Client,
    pv: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> kube::Result<()> {
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pv_spec = pv.spec.clone().unwrap_or_default();
    let bound_uid = pv_spec.claim_ref.as_ref().and_then(|r| r.uid.as_deref());
    if bound_uid.is_none() {
        let mut annotations = json!({});
        if pv_spec.claim_ref.is_none() {
            annotations[BOUND_BY_CONTROLLER_ANNOTATION] = json!("yes");
        }
        let patch = json!({
            "metadata": {"annotations": annotations, "resourceVersion": pv.resource_version()},
            "spec": {"claimRef": {
                "kind": "PersistentVolumeClaim", "apiVersion": "v1",
                "namespace": claim.namespace(), "name": claim.name_any(),
                "uid": claim.uid(), "resourceVersion": claim.resource_version(),
            }},
        });
        volumes
            .patch(
                &pv.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await?;
    }
    set_volume_phase(client, pv, "Bound", None).await?;

    let spec = claim.spec.clone().unwrap_or_default();
    let named = spec.volume_name.as_deref().is_some_and(|n| !n.is_empty());
    let mut annotations = json!({BIND_COMPLETED_ANNOTATION: "yes"});
    if !named {
        annotations[BOUND_BY_CONTROLLER_ANNOTATION] = json!("yes");
    }
    let patch = json!({
        "metadata": {"annotations": annotations, "resourceVersion": claim.resource_version()},
        "spec": {"volumeName": pv.name_any()},
    });
    let api = claims(client, claim);
    api.patch(
        &claim.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await?;
    let status = json!({"status": {
        "phase": "Bound",
        "capacity": pv_spec.capacity,
        "accessModes": pv_spec.access_modes,
    }});
    api.patch_status(
        &claim.name_any(),
        &PatchParams::default(),
        &Patch::Merge(status),
    )
    .await
    .map(drop)
}

/// Sets a claim's phase (Pending while no volume fits).
pub(super) async fn set_claim_phase(
    client: &kube::Client,
    claim: &PersistentVolumeClaim,
    phase: &str,
) -> kube::Result<()> {
    claims(client, claim)
        .patch_status(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": phase}})),
        )
        .await
        .map(drop)
}

/// Sets a volume's phase, with `message` (cleared when `None`).
pub(super) async fn set_volume_phase(
    client: &kube::Client,
    pv: &PersistentVolume,
    phase: &str,
    message: Option<&str>,
) -> kube::Result<()> {
    let status = pv.status.as_ref();
    if status.and_then(|s| s.phase.as_deref()) == Some(phase)
        && status.and_then(|s| s.message.as_deref()) == message
    {
        return Ok(());
    }
    Api::<PersistentVolume>::all(client.clone())
        .patch_status(
            &pv.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": phase, "message": message}})),
        )
        .await
        .map(drop)
}

/// Deletes a released volume whose reclaim policy is Delete (this volume only: uid).
pub(super) async fn delete_volume(
    client: &kube::Client,
    pv: &PersistentVolume,
) -> kube::Result<()> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pv.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match Api::<PersistentVolume>::all(client.clone())
        .delete(&pv.name_any(), &params)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
