//! The PersistentVolume binder (the binding half of upstream's persistentvolume
//! controller, with the pv-protection and pvc-protection controllers): static volumes
//! bind to claims by class, volume mode, access modes, size (the smallest that fits),
//! selector and volumeName, or as pre-bound by a volume's claimRef; volumes go
//! Available, Bound, and once their claim is gone Released (Retain), deleted (Delete)
//! or Failed (Recycle, which kybern refuses as upstream does without a recycler).
//! Claims of the local-path classes, claims waiting for a default class, and claims of
//! WaitForFirstConsumer classes are left to the local-path loop as before; its volumes'
//! phases and reclaim stay its own, only the protection finalizers are added here.

mod apply;
mod plan;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::Controller;
use kube::{Api, ResourceExt};
use tracing::{info, instrument};

pub use plan::{
    bytes, claim_in_use, find_volume, satisfies, volume_state, VolumeState, PVC_PROTECTION,
    PV_PROTECTION,
};

use crate::localpath::claim_of_volume;
use crate::localpath::class::{class_of, default_of, requested_class, ClassOf};
use crate::localpath::provision::PROVISIONED_BY_ANNOTATION;
use crate::{Context, LoopFuture};

/// Upstream's PV controller reports its events under this name.
const COMPONENT: &str = "persistentvolume-controller";

#[derive(Debug, thiserror::Error)]
#[error("{action} {object}: {source}")]
pub struct Error {
    action: &'static str,
    object: String,
    source: kube::Error,
}

impl crate::runtime::retry::ReconcileError for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn api_err(action: &'static str, object: String) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error {
        action,
        object,
        source,
    }
}

pub struct State {
    pub client: kube::Client,
    pub claims: Store<PersistentVolumeClaim>,
    pub volumes: Store<PersistentVolume>,
    pub pods: Store<Pod>,
    pub classes: Store<StorageClass>,
}

/// The loop entry for [`crate::loops`].
pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        let informers = &ctx.informers;
        let claims = informers.all::<PersistentVolumeClaim>();
        let volumes = informers.all::<PersistentVolume>();
        let pods = informers.all::<Pod>();
        let classes = informers.all::<StorageClass>();
        tokio::join!(
            claims.synced(),
            volumes.synced(),
            pods.synced(),
            classes.synced()
        );
        let state = Arc::new(State {
            client: informers.client().clone(),
            claims: claims.store(),
            volumes: volumes.store(),
            pods: pods.store(),
            classes: classes.store(),
        });
        let volumes_by_claim = volumes.store();
        let claims_by_volume = claims.store();
        let claims_controller = Controller::for_shared_stream(claims.touched(), claims.store())
            .watches_shared_stream(pods.touched(), |pod| claims_of_pod(&pod))
            .watches_shared_stream(volumes.touched(), move |pv| {
                claims_of_volume(&claims_by_volume, &pv)
            })
            .run(
                crate::runtime::metrics::metered(reconcile_claim),
                crate::runtime::retry::error_policy,
                state.clone(),
            )
            .for_each(|r| async move {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "pv binder claim reconcile failed");
                }
            });
        let volumes_controller = Controller::for_shared_stream(volumes.touched(), volumes.store())
            .watches_shared_stream(claims.touched(), move |claim| {
                volumes_of_claim(&volumes_by_claim, &claim)
            })
            .run(
                crate::runtime::metrics::metered(reconcile_volume),
                crate::runtime::retry::error_policy,
                state,
            )
            .for_each(|r| async move {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "pv binder volume reconcile failed");
                }
            });
        futures::join!(claims_controller, volumes_controller);
        anyhow::bail!("the persistentvolume binder stopped")
    })
}

fn claims_of_pod(pod: &Pod) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    let ns = pod.namespace().unwrap_or_default();
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(c), _) => Some(c.claim_name.clone()),
            (None, Some(_)) => Some(format!("{}-{}", pod.name_any(), v.name)),
            _ => None,
        })
        .map(|name| ObjectRef::new(&name).within(&ns))
        .collect()
}

/// Volumes a claim event concerns: the one it names and the ones whose claimRef names it.
fn volumes_of_claim(
    volumes: &Store<PersistentVolume>,
    claim: &PersistentVolumeClaim,
) -> Vec<ObjectRef<PersistentVolume>> {
    let named = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref());
    volumes
        .state()
        .iter()
        .filter(|pv| {
            named == pv.metadata.name.as_deref()
                || claim_of_volume(pv)
                    .is_some_and(|r| r.name == claim.name_any() && r.namespace == claim.namespace())
        })
        .map(|pv| ObjectRef::from_obj(pv.as_ref()))
        .collect()
}

/// Claims a volume event concerns: the one its claimRef names, or, for a free volume,
/// every claim not bound yet (the volume may fit one now).
fn claims_of_volume(
    claims: &Store<PersistentVolumeClaim>,
    pv: &PersistentVolume,
) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    if let Some(r) = claim_of_volume(pv) {
        return vec![r];
    }
    claims
        .state()
        .iter()
        .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound"))
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

fn has_finalizer<K: kube::Resource>(obj: &K, f: &str) -> bool {
    obj.meta()
        .finalizers
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|x| x == f)
}

/// Whether binding this claim is someone else's job: the local-path loop's (its
/// classes, and claims that will get the default class), or the first consumer's
/// (WaitForFirstConsumer classes).
fn left_to_others(claim: &PersistentVolumeClaim, classes: &[Arc<StorageClass>]) -> bool {
    if class_of(claim, classes) != ClassOf::NotOurs {
        return true;
    }
    match requested_class(claim) {
        None => default_of(classes.iter().map(Arc::as_ref)).is_some(),
        Some("") => false,
        Some(name) => classes.iter().any(|sc| {
            sc.name_any() == name
                && sc.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
        }),
    }
}

#[instrument(skip_all, fields(key = %format!("{}/{}", claim.namespace().unwrap_or_default(), claim.name_any())))]
pub async fn reconcile_claim(
    claim: Arc<PersistentVolumeClaim>,
    state: Arc<State>,
) -> Result<Action> {
    let client = &state.client;
    let key = format!(
        "{}/{}",
        claim.namespace().unwrap_or_default(),
        claim.name_any()
    );
    let api: Api<PersistentVolumeClaim> =
        Api::namespaced(client.clone(), &claim.namespace().unwrap_or_default());
    if claim.metadata.deletion_timestamp.is_some() {
        let pods = state.pods.state();
        if has_finalizer(claim.as_ref(), PVC_PROTECTION)
            && !claim_in_use(&claim, pods.iter().map(AsRef::as_ref))
        {
            apply::set_finalizer(&api, claim.as_ref(), PVC_PROTECTION, false)
                .await
                .map_err(api_err("removing pvc-protection from", key))?;
        }
        return Ok(Action::await_change());
    }
    if !has_finalizer(claim.as_ref(), PVC_PROTECTION) {
        // The update event brings the claim back for binding.
        apply::set_finalizer(&api, claim.as_ref(), PVC_PROTECTION, true)
            .await
            .map_err(api_err("adding pvc-protection to", key))?;
        return Ok(Action::await_change());
    }
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase == Some("Bound") || left_to_others(&claim, &state.classes.state()) {
        return Ok(Action::await_change());
    }
    let volumes = state.volumes.state();
    match find_volume(&claim, volumes.iter().map(AsRef::as_ref)) {
        Some(pv) => {
            apply::bind(client, pv, &claim).await.map_err(api_err(
                "binding",
                format!("{key} to volume {}", pv.name_any()),
            ))?;
            info!(volume = %pv.name_any(), "bound claim");
        }
        None if phase != Some("Pending") => {
            apply::set_claim_phase(client, &claim, "Pending")
                .await
                .map_err(api_err("writing the phase of", key))?;
            let (reason, message) = match requested_class(&claim).unwrap_or("") {
                "" => ("FailedBinding".to_string(), "no persistent volumes available for this claim and no storage class is set".to_string()),
                name => match state.classes.state().iter().find(|sc| sc.name_any() == name) {
                    Some(sc) => ("ExternalProvisioning".into(), format!("Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.", sc.provisioner)),
                    None => ("ProvisioningFailed".into(), format!("storageclass.storage.k8s.io \"{name}\" not found")),
                },
            };
            let type_ = if reason == "ProvisioningFailed" {
                "Warning"
            } else {
                "Normal"
            };
            event(client, claim.as_ref(), type_, &reason, &message).await;
        }
        None => {}
    }
    Ok(Action::await_change())
}

#[instrument(skip_all, fields(key = %pv.name_any()))]
pub async fn reconcile_volume(pv: Arc<PersistentVolume>, state: Arc<State>) -> Result<Action> {
    let client = &state.client;
    let key = pv.name_any();
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let claim = claim_of_volume(&pv).and_then(|r| state.claims.get(&r));
    let current = volume_state(&pv, claim.as_deref());
    if pv.metadata.deletion_timestamp.is_some() {
        if has_finalizer(pv.as_ref(), PV_PROTECTION) && current != VolumeState::Bound {
            apply::set_finalizer(&api, pv.as_ref(), PV_PROTECTION, false)
                .await
                .map_err(api_err("removing pv-protection from", key))?;
        }
        return Ok(Action::await_change());
    }
    if !has_finalizer(pv.as_ref(), PV_PROTECTION) {
        apply::set_finalizer(&api, pv.as_ref(), PV_PROTECTION, true)
            .await
            .map_err(api_err("adding pv-protection to", key))?;
        return Ok(Action::await_change());
    }
    if pv.annotations().contains_key(PROVISIONED_BY_ANNOTATION) {
        // The provisioner's volume: its phases and reclaim are the provisioner's.
        return Ok(Action::await_change());
    }
    match current {
        VolumeState::Available => apply::set_volume_phase(client, &pv, "Available", None).await,
        VolumeState::Bound => apply::set_volume_phase(client, &pv, "Bound", None).await,
        VolumeState::Released => {
            // The cache may lag: the claim must really be gone (or be another uid).
            if let Some(r) = claim_of_volume(&pv) {
                let live = Api::<PersistentVolumeClaim>::namespaced(
                    client.clone(),
                    r.namespace.as_deref().unwrap_or_default(),
                )
                .get_opt(&r.name)
                .await
                .map_err(api_err("reading the claim of", key.clone()))?;
                if volume_state(&pv, live.as_ref()) != VolumeState::Released {
                    return Ok(Action::await_change());
                }
            }
            reclaim(client, &pv).await
        }
    }
    .map_err(api_err("reconciling volume", key))?;
    Ok(Action::await_change())
}

/// What happens to a volume whose claim is gone, by its reclaim policy.
async fn reclaim(client: &kube::Client, pv: &PersistentVolume) -> kube::Result<()> {
    let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
    match policy.unwrap_or("Retain") {
        "Delete" => {
            apply::set_volume_phase(client, pv, "Released", None).await?;
            info!("deleting released volume (reclaim policy Delete)");
            apply::delete_volume(client, pv).await
        }
        "Recycle" if phase != Some("Failed") => {
            // Upstream recycles only through a volume plugin's recycler; kybern has none.
            let message = "No recycler plugin found for the volume!";
            apply::set_volume_phase(client, pv, "Failed", Some(message)).await?;
            event(client, pv, "Warning", "VolumeFailedRecycle", message).await;
            Ok(())
        }
        "Recycle" => Ok(()),
        _ => apply::set_volume_phase(client, pv, "Released", None).await,
    }
}

/// An event from the PV controller; best effort.
async fn event<K: kube::Resource<DynamicType = ()>>(
    client: &kube::Client,
    obj: &K,
    type_: &str,
    reason: &str,
    message: &str,
) {
    crate::podcontrol::publish_event(client, obj, type_, reason, message, COMPONENT).await;
}
