//! The claim side: a claim of our class waits for its first consumer's node, gets its
//! volume made there, and is bound to it (spec.volumeName, the bind annotations, status
//! Bound with the volume's capacity and access modes), as upstream's PV controller
//! binds a provisioned volume. Claims of other classes are never touched.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{info, instrument};

use super::class::{class_of, ClassOf};
use super::provision::{self, consumer_node, desired_volume, refusal};
use super::{Error, Result, State, COMPONENT, PROVISIONER, PV_CONTROLLER};
use crate::podcontrol::publish_event as event;

pub const BIND_COMPLETED_ANNOTATION: &str = "pv.kubernetes.io/bind-completed";
pub const BOUND_BY_CONTROLLER_ANNOTATION: &str = "pv.kubernetes.io/bound-by-controller";
pub const STORAGE_PROVISIONER_ANNOTATION: &str = "volume.kubernetes.io/storage-provisioner";
const BETA_STORAGE_PROVISIONER_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-provisioner";

fn key(claim: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        claim.namespace().unwrap_or_default(),
        claim.name_any()
    )
}

fn bound_volume(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim
        .spec
        .as_ref()?
        .volume_name
        .as_deref()
        .filter(|v| !v.is_empty())
}

/// Whether `pv` was made by us for exactly this claim (same uid: a claim deleted and
/// made again under the same name is a different claim).
fn made_for(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let provisioned_by_us = pv
        .annotations()
        .get(provision::PROVISIONED_BY_ANNOTATION)
        .is_some_and(|p| p == PROVISIONER);
    let cref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    provisioned_by_us && cref.is_some_and(|r| r.uid.is_some() && r.uid == claim.uid())
}

#[instrument(skip_all, fields(key = %key(&claim)))]
pub async fn reconcile(claim: Arc<PersistentVolumeClaim>, state: Arc<State>) -> Result<Action> {
    if claim.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let class = match class_of(&claim, &state.classes.state()) {
        ClassOf::NotOurs => return Ok(Action::await_change()),
        ClassOf::AssignDefault(sc) => {
            assign_class(&state, &claim, &sc.name_any()).await?;
            // The claim's update event brings it back with its class.
            return Ok(Action::await_change());
        }
        ClassOf::Ours(sc) => sc,
    };
    let volumes = Api::<PersistentVolume>::all(state.client.clone());
    if let Some(name) = bound_volume(&claim) {
        // Bound already, or a bind of ours that stopped half way (process restart).
        if let Some(pv) = state
            .volumes
            .get(&ObjectRef::new(name))
            .filter(|pv| made_for(pv, &claim))
        {
            complete_binding(&state, &claim, &pv).await?;
        }
        return Ok(Action::await_change());
    }
    let name = provision::volume_name(&claim);
    if let Some(pv) = state
        .volumes
        .get(&ObjectRef::new(&name))
        .filter(|pv| made_for(pv, &claim))
    {
        complete_binding(&state, &claim, &pv).await?;
        return Ok(Action::await_change());
    }
    if let Some(why) = refusal(&claim) {
        let message = format!(
            "failed to provision volume with StorageClass {:?}: {why}",
            class.name_any()
        );
        event(
            &state.client,
            claim.as_ref(),
            "Warning",
            "ProvisioningFailed",
            &message,
            COMPONENT,
        )
        .await;
        return Ok(Action::await_change());
    }
    let Some(node) = consumer_node(&claim, &state.pods) else {
        // WaitForFirstConsumer (and, having no other way to pick a node, Immediate too):
        // a consumer pod's scheduling brings the claim back.
        if class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer") {
            let message = "waiting for first consumer to be created before binding";
            event(
                &state.client,
                claim.as_ref(),
                "Normal",
                "WaitForFirstConsumer",
                message,
                PV_CONTROLLER,
            )
            .await;
        }
        return Ok(Action::await_change());
    };
    let waiting = format!("Waiting for a volume to be created either by the external provisioner '{PROVISIONER}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.");
    event(
        &state.client,
        claim.as_ref(),
        "Normal",
        "ExternalProvisioning",
        &waiting,
        PV_CONTROLLER,
    )
    .await;
    let provisioning = format!(
        "External provisioner is provisioning volume for claim {:?}",
        key(&claim)
    );
    event(
        &state.client,
        claim.as_ref(),
        "Normal",
        "Provisioning",
        &provisioning,
        COMPONENT,
    )
    .await;
    let desired = desired_volume(&claim, &class, &node, &state.config.base_path);
    let pv = match volumes.create(&PostParams::default(), &desired).await {
        Ok(pv) => {
            info!(volume = %name, %node, "provisioned a local-path volume");
            let message = format!("Successfully provisioned volume {name}");
            event(
                &state.client,
                claim.as_ref(),
                "Normal",
                "ProvisioningSucceeded",
                &message,
                COMPONENT,
            )
            .await;
            pv
        }
        // Made by an earlier try the cache has not shown yet.
        Err(kube::Error::Api(e)) if e.code == 409 => volumes
            .get(&name)
            .await
            .map_err(Error::api("reading", format!("PersistentVolume {name}")))?,
        Err(e) => {
            return Err(Error::api("creating", format!("PersistentVolume {name}"))(
                e,
            ))
        }
    };
    if made_for(&pv, &claim) {
        complete_binding(&state, &claim, &pv).await?;
    }
    Ok(Action::await_change())
}

/// Writes the default class's name into a claim that named none.
async fn assign_class(state: &State, claim: &PersistentVolumeClaim, class: &str) -> Result<()> {
    let api = Api::<PersistentVolumeClaim>::namespaced(
        state.client.clone(),
        &claim.namespace().unwrap_or_default(),
    );
    // The resourceVersion makes this a conditional update: a claim changed meanwhile is
    // looked at again instead of overwritten.
    let patch = json!({
        "metadata": {"resourceVersion": claim.resource_version()},
        "spec": {"storageClassName": class},
    });
    api.patch(
        &claim.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(Error::api(
        "assigning the default class to",
        format!("PersistentVolumeClaim {}", key(claim)),
    ))?;
    info!(class, "assigned the default StorageClass");
    Ok(())
}

/// The claim half of binding: spec.volumeName and the bind annotations, then status.
async fn complete_binding(
    state: &State,
    claim: &PersistentVolumeClaim,
    pv: &PersistentVolume,
) -> Result<()> {
    let api = Api::<PersistentVolumeClaim>::namespaced(
        state.client.clone(),
        &claim.namespace().unwrap_or_default(),
    );
    let err = || Error::api("binding", format!("PersistentVolumeClaim {}", key(claim)));
    let pv_name = pv.name_any();
    let annotated = claim
        .annotations()
        .get(BIND_COMPLETED_ANNOTATION)
        .is_some_and(|v| v == "yes");
    if bound_volume(claim) != Some(pv_name.as_str()) || !annotated {
        let patch = json!({
            "metadata": {
                "resourceVersion": claim.resource_version(),
                "annotations": {
                    BIND_COMPLETED_ANNOTATION: "yes",
                    BOUND_BY_CONTROLLER_ANNOTATION: "yes",
                    STORAGE_PROVISIONER_ANNOTATION: PROVISIONER,
                    BETA_STORAGE_PROVISIONER_ANNOTATION: PROVISIONER,
                },
            },
            "spec": {"volumeName": pv_name},
        });
        api.patch(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(err())?;
    }
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase != Some("Bound") {
        let spec = pv.spec.clone().unwrap_or_default();
        let status = json!({"status": {"phase": "Bound", "capacity": spec.capacity, "accessModes": spec.access_modes}});
        api.patch_status(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .map_err(err())?;
        info!(volume = %pv_name, "bound the claim");
    }
    Ok(())
}
