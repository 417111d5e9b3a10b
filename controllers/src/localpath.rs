//! The local-path provisioner: claims of a StorageClass whose provisioner is
//! `kybern.io/local-path` (the default `local-path` class among them) get a hostPath
//! PersistentVolume on the node their first consumer was scheduled to, and are bound to
//! it; a volume whose claim is gone is deleted (reclaim policy Delete) or marked Released
//! (Retain). This is what k3s ships as rancher's local-path-provisioner plus the binding
//! part of upstream's PV controller for our own classes. Only API objects are handled
//! here: the directory is made by the agent when a pod mounts the volume
//! (`DirectoryOrCreate`); every volume we make carries [`CLEANUP_FINALIZER`], which the
//! agent of the volume's node removes once it has removed the directory of a deleted
//! volume (`agent::local_path`), so the volume object outlives its data.

pub mod bind;
pub mod class;
pub mod provision;
pub mod release;

#[cfg(test)]
mod fixtures;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::Controller;

use crate::runtime::informers::Informers;
use crate::{Context, LoopFuture};

/// The provisioner name our StorageClasses carry, and the `provisioned-by` annotation
/// value on the volumes we make.
pub const PROVISIONER: &str = "kybern.io/local-path";
/// Held by every volume we provision until the agent of its node has removed the
/// volume's directory (the agent's `local_path::CLEANUP_FINALIZER`, same string).
pub const CLEANUP_FINALIZER: &str = "kybern.io/local-path-cleanup";
/// The default class created at start when absent.
pub const DEFAULT_CLASS: &str = "local-path";
/// Where volumes live on a node unless configured otherwise.
pub const DEFAULT_BASE: &str = "/var/lib/kybern/storage";
/// The component name events are reported under.
const COMPONENT: &str = "kybern.io/local-path";
/// Upstream's PV controller reports its events under this name.
const PV_CONTROLLER: &str = "persistentvolume-controller";

/// The loop's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The directory on each node under which volume directories are made.
    pub base_path: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            base_path: DEFAULT_BASE.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {object}: {source}")]
    Api {
        action: &'static str,
        object: String,
        source: kube::Error,
    },
}

impl crate::runtime::retry::ReconcileError for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn api(action: &'static str, object: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let object = object.into();
        move |source| Error::Api {
            action,
            object,
            source,
        }
    }
}

/// What both reconcilers read.
pub struct State {
    pub client: kube::Client,
    pub config: Config,
    pub claims: Store<PersistentVolumeClaim>,
    pub volumes: Store<PersistentVolume>,
    pub pods: Store<Pod>,
    pub classes: Store<StorageClass>,
}

/// The loop entry for [`crate::loops`], with the [`Config`] among the context's settings
/// (`kybern up` keeps volumes under its data dir), else the default.
pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        let config = ctx.settings.get::<Config>().cloned().unwrap_or_default();
        run_with(&ctx.informers, config).await
    })
}

/// Ensures the default class, then runs the claim and volume reconcilers until their
/// streams end (which is an error: the loop is restarted).
pub async fn run_with(informers: &Informers, config: Config) -> anyhow::Result<()> {
    let client = informers.client().clone();
    class::ensure_default_class(&client).await?;
    // Each controller subscribes to the claim and volume changes on its own; the
    // volume side must see claim deletions (which never reach a claim reconcile).
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
        client,
        config,
        claims: claims.store(),
        volumes: volumes.store(),
        pods: pods.store(),
        classes: classes.store(),
    });

    let claims_of_class = claims.store();
    let claims_controller = Controller::for_shared_stream(claims.touched(), claims.store())
        .watches_shared_stream(pods.touched(), |pod| provision::claims_of_pod(&pod))
        .watches_shared_stream(volumes.touched(), |pv| claim_of_volume(&pv))
        // A claim waiting for its class (or for a default class) is retried when it appears.
        .watches_shared_stream(classes.touched(), move |sc| {
            class::waiting_claims(&claims_of_class, &sc)
        })
        .run(
            crate::runtime::metrics::metered(bind::reconcile),
            crate::runtime::retry::error_policy,
            state.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "local-path claim reconcile failed");
            }
        });
    let volumes_controller = Controller::for_shared_stream(volumes.touched(), volumes.store())
        .watches_shared_stream(claims.touched(), |claim| release::volumes_of_claim(&claim))
        .run(
            crate::runtime::metrics::metered(release::reconcile),
            crate::runtime::retry::error_policy,
            state,
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "local-path volume reconcile failed");
            }
        });
    futures::join!(claims_controller, volumes_controller);
    anyhow::bail!("the local-path provisioner stopped")
}

/// The claim a volume's claimRef names (also the PV binder's reading).
pub(crate) fn claim_of_volume(pv: &PersistentVolume) -> Option<ObjectRef<PersistentVolumeClaim>> {
    let r = pv.spec.as_ref()?.claim_ref.as_ref()?;
    Some(ObjectRef::new(r.name.as_deref()?).within(r.namespace.as_deref()?))
}
