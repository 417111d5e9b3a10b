//! Local-path volumes' folders on this node. The local-path loop puts
//! [`CLEANUP_FINALIZER`] on every volume it provisions; once such a volume is deleted,
//! the agent of the node in its node affinity removes the volume's folder (reclaim
//! policy Delete, and only below the configured root: see [`safety`]) and then the
//! finalizer, so the volume goes only after its data. This is the part upstream's
//! local-path-provisioner gives to a helper pod on the node. Simulated nodes have no
//! disk: they only drop the finalizer.

pub mod safety;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, PersistentVolume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

/// Held by each volume the local-path loop provisions until its folder is gone (the
/// controllers crate writes the same string).
pub const CLEANUP_FINALIZER: &str = "kybern.io/local-path-cleanup";
/// Where volumes live on a node unless configured otherwise (the loop's default too).
pub const DEFAULT_ROOT: &str = "/var/lib/kybern/storage";
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// What happens to a volume's folder.
#[derive(Clone, Debug)]
pub enum Disk {
    /// Folders live below this root on this host.
    Host { root: PathBuf },
    /// Simulated nodes: there is no folder.
    Simulated,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} PersistentVolume {volume}: {source}")]
    Api {
        action: &'static str,
        volume: String,
        source: kube::Error,
    },
    #[error("removing {path:?} of PersistentVolume {volume}: {source}")]
    Remove {
        volume: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

struct Cleaner {
    client: Client,
    nodes: BTreeSet<String>,
    disk: Disk,
}

/// Cleans up after the deleted local-path volumes of `nodes` until the process ends.
pub async fn run(client: Client, nodes: impl IntoIterator<Item = String>, disk: Disk) {
    let cleaner = Arc::new(Cleaner {
        client: client.clone(),
        nodes: nodes.into_iter().collect(),
        disk,
    });
    Controller::new(
        Api::<PersistentVolume>::all(client),
        watcher::Config::default(),
    )
    .run(reconcile, error_policy, cleaner)
    .for_each(|r| async move {
        if let Err(e) = r {
            tracing::debug!(error = %e, "local-path cleanup failed");
        }
    })
    .await;
}

fn error_policy(_: Arc<PersistentVolume>, e: &Error, _: Arc<Cleaner>) -> Action {
    tracing::warn!(error = %e, "local-path cleanup; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// The single node a volume's required node affinity names by hostname.
pub fn node_of(pv: &PersistentVolume) -> Option<&str> {
    let terms = &pv
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    let [term] = terms.as_slice() else {
        return None;
    };
    let exprs = term.match_expressions.as_deref()?;
    let [expr] = exprs else { return None };
    match (
        expr.key.as_str(),
        expr.operator.as_str(),
        expr.values.as_deref(),
    ) {
        (HOSTNAME_LABEL, "In", Some([node])) => Some(node),
        _ => None,
    }
}

fn holds_finalizer(pv: &PersistentVolume) -> bool {
    pv.finalizers().iter().any(|f| f == CLEANUP_FINALIZER)
}

async fn reconcile(pv: Arc<PersistentVolume>, cleaner: Arc<Cleaner>) -> Result<Action, Error> {
    let name = pv.name_any();
    let ours = node_of(&pv).is_some_and(|n| cleaner.nodes.contains(n));
    if pv.metadata.deletion_timestamp.is_none() || !holds_finalizer(&pv) || !ours {
        return Ok(Action::await_change());
    }
    let spec = pv.spec.clone().unwrap_or_default();
    let delete = spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete");
    if let (Disk::Host { root }, true, Some(host)) = (&cleaner.disk, delete, &spec.host_path) {
        match safety::folder_to_remove(root, host.path.as_ref()) {
            Ok(Some(folder)) => {
                let target = folder.clone();
                tokio::task::spawn_blocking(move || safety::remove(&target))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                    .map_err(|source| Error::Remove {
                        volume: name.clone(),
                        path: folder.clone(),
                        source,
                    })?;
                tracing::info!(volume = %name, folder = %folder.display(), "removed a deleted volume's folder");
            }
            Ok(None) => {}
            Err(refusal) => {
                // The volume stays (Terminating) for an administrator to look at: data
                // outside the root is never ours to remove.
                let message = format!("refusing to remove the volume's folder: {refusal}");
                tracing::warn!(volume = %name, %message);
                event(&cleaner, &pv, "VolumeFailedDelete", &message).await;
                return Ok(Action::await_change());
            }
        }
    }
    let finalizers: Vec<&String> = pv
        .finalizers()
        .iter()
        .filter(|f| *f != CLEANUP_FINALIZER)
        .collect();
    // Guarded by the resourceVersion: a 409 is retried with the newer volume.
    let patch = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": pv.resource_version(),
    }});
    match Api::<PersistentVolume>::all(cleaner.client.clone())
        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
        Err(source) => Err(Error::Api {
            action: "removing the cleanup finalizer of",
            volume: name,
            source,
        }),
    }
}

/// A Warning event about the volume (cluster-scoped objects' events go to `default`),
/// best effort.
async fn event(cleaner: &Cleaner, pv: &PersistentVolume, reason: &str, message: &str) {
    let node = node_of(pv).unwrap_or_default().to_string();
    let now = Time(Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", pv.name_any())),
            namespace: Some("default".into()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolume".into()),
            name: Some(pv.name_any()),
            uid: pv.uid(),
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some("Warning".into()),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some(node.clone()),
        }),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(node),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Default::default()
    };
    if let Err(e) = Api::<Event>::namespaced(cleaner.client.clone(), "default")
        .create(&PostParams::default(), &event)
        .await
    {
        tracing::debug!(volume = %pv.name_any(), reason, error = %e, "recording an event failed");
    }
}
