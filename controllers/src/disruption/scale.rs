//! The replicas a budget's pods' controllers want (upstream's finders): a ReplicaSet
//! run by a Deployment counts as the Deployment; every other controller is read through
//! its `/scale` subresource (ReplicaSets, StatefulSets, ReplicationControllers, and any
//! custom resource with one), found through discovery, and must have the uid the pod's
//! controller reference names.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DynamicObject, GroupVersionKind};
use kube::{Api, ResourceExt};

use crate::podcontrol::controller_of;

/// Why the expected count could not be found; the message goes into the condition.
#[derive(Debug, thiserror::Error)]
pub(super) enum ScaleError {
    #[error("found no controllers for pod {0:?}")]
    NoControllers(String),
    #[error("{0}")]
    Api(#[from] kube::Error),
}

/// The total replicas of the controllers of `pods`, each controller counted once, and
/// the names of pods with no controller (upstream's "unmanaged" pods, left out).
pub(super) async fn expected_scale(
    client: &kube::Client,
    ns: &str,
    pods: &[&Pod],
) -> Result<(i32, Vec<String>), ScaleError> {
    // Controller uid -> its replicas; pod controller uid -> the controller it stands for.
    let mut scales: BTreeMap<String, i32> = BTreeMap::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let Some(owner) = controller_of(&pod.metadata) else {
            unmanaged.push(pod.name_any());
            continue;
        };
        if seen.contains_key(&owner.uid) {
            continue;
        }
        match find(client, ns, owner).await? {
            Some((uid, replicas)) => {
                seen.insert(owner.uid.clone(), uid.clone());
                scales.insert(uid, replicas);
            }
            None => return Err(ScaleError::NoControllers(pod.name_any())),
        }
    }
    Ok((scales.values().sum(), unmanaged))
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The controller `owner` stands for (uid, replicas), if it exists with that uid.
async fn find(
    client: &kube::Client,
    ns: &str,
    owner: &OwnerReference,
) -> Result<Option<(String, i32)>, kube::Error> {
    let (group, version) = owner
        .api_version
        .split_once('/')
        .unwrap_or(("", &owner.api_version));
    if group == "apps" && owner.kind == "ReplicaSet" {
        let rs = match Api::<ReplicaSet>::namespaced(client.clone(), ns)
            .get(&owner.name)
            .await
        {
            Ok(rs) if rs.metadata.uid.as_deref() == Some(owner.uid.as_str()) => rs,
            Ok(_) => return Ok(None),
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Some(d) = controller_of(&rs.metadata).filter(|d| d.kind == "Deployment") {
            return match Api::<Deployment>::namespaced(client.clone(), ns)
                .get(&d.name)
                .await
            {
                Ok(dep) if dep.metadata.uid.as_deref() == Some(d.uid.as_str()) => {
                    let replicas = dep.spec.and_then(|s| s.replicas).unwrap_or(1);
                    Ok(Some((d.uid.clone(), replicas)))
                }
                Ok(_) => Ok(None),
                Err(e) if not_found(&e) => Ok(None),
                Err(e) => Err(e),
            };
        }
        let replicas = rs.spec.and_then(|s| s.replicas).unwrap_or(1);
        return Ok(Some((owner.uid.clone(), replicas)));
    }
    let gvk = GroupVersionKind::gvk(group, version, &owner.kind);
    let (resource, _) = match kube::discovery::pinned_kind(client, &gvk).await {
        Ok(found) => found,
        // A kind the server does not serve (or serves without /scale) has no scale.
        Err(kube::Error::Discovery(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    match api.get_scale(&owner.name).await {
        Ok(scale) if scale.metadata.uid.as_deref() == Some(owner.uid.as_str()) => {
            let replicas = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
            Ok(Some((owner.uid.clone(), replicas)))
        }
        Ok(_) => Ok(None),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}
