//! The volume side of our volumes' lives, as upstream's PV controller syncs a volume:
//! Bound once its claim names it; when the claim is gone (deleted, or replaced by a
//! claim of the same name with another uid) the volume is deleted under reclaim policy
//! Delete, or marked Released under Retain and kept for an administrator.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{info, instrument};

use super::provision::{self, PROVISIONED_BY_ANNOTATION};
use super::{Error, Result, State, CLEANUP_FINALIZER, PROVISIONER};

/// The volumes a claim event may concern: the one it names and the one we would have
/// made for it (a claim deleted before its bind completed names none).
pub fn volumes_of_claim(claim: &PersistentVolumeClaim) -> Vec<ObjectRef<PersistentVolume>> {
    let named = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty());
    let ours = provision::volume_name(claim);
    let mut refs = vec![ObjectRef::new(&ours)];
    if let Some(v) = named.filter(|v| *v != ours) {
        refs.push(ObjectRef::new(&v));
    }
    refs
}

/// What a volume of ours needs.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Its claim names it: phase Bound.
    Bind,
    /// Its claim is gone and the policy is Delete.
    Delete,
    /// Its claim is gone and the policy keeps it: phase Released.
    Release,
    /// Nothing (already in that state, or a bind still under way).
    Nothing,
}

/// The decision for `pv`, given the claim its claimRef names (None when none exists).
pub fn verdict(pv: &PersistentVolume, claim: Option<&PersistentVolumeClaim>) -> Verdict {
    let Some(spec) = pv.spec.as_ref() else {
        return Verdict::Nothing;
    };
    let Some(cref) = spec.claim_ref.as_ref() else {
        return Verdict::Nothing;
    };
    let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
    let claim = claim.filter(|c| cref.uid.is_none() || c.uid() == cref.uid);
    match claim {
        None if spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete") => {
            Verdict::Delete
        }
        None if phase != Some("Released") => Verdict::Release,
        None => Verdict::Nothing,
        Some(c) => {
            let names_it = c.spec.as_ref().and_then(|s| s.volume_name.as_deref())
                == Some(pv.name_any().as_str());
            if names_it && phase != Some("Bound") {
                Verdict::Bind
            } else {
                Verdict::Nothing
            }
        }
    }
}

fn is_ours(pv: &PersistentVolume) -> bool {
    pv.annotations()
        .get(PROVISIONED_BY_ANNOTATION)
        .is_some_and(|p| p == PROVISIONER)
}

#[instrument(skip_all, fields(key = %pv.name_any()))]
pub async fn reconcile(pv: Arc<PersistentVolume>, state: Arc<State>) -> Result<Action> {
    if pv.metadata.deletion_timestamp.is_some() || !is_ours(&pv) {
        return Ok(Action::await_change());
    }
    if !pv.finalizers().iter().any(|f| f == CLEANUP_FINALIZER) {
        // A volume provisioned before volumes carried it; the update brings it back.
        add_cleanup_finalizer(&state, &pv).await?;
        return Ok(Action::await_change());
    }
    let Some(cref) = pv.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
        return Ok(Action::await_change());
    };
    let (ns, claim_name) = (
        cref.namespace.unwrap_or_default(),
        cref.name.unwrap_or_default(),
    );
    let mut claim = state
        .claims
        .get(&ObjectRef::new(&claim_name).within(&ns))
        .map(|c| c.as_ref().clone());
    if claim.as_ref().is_none_or(|c| c.uid() != cref.uid) {
        // A cache that has not seen the claim yet must never cost a volume its data:
        // ask the apiserver before deciding the claim is gone.
        let api = Api::<PersistentVolumeClaim>::namespaced(state.client.clone(), &ns);
        claim = api.get_opt(&claim_name).await.map_err(Error::api(
            "reading",
            format!("PersistentVolumeClaim {ns}/{claim_name}"),
        ))?;
    }
    let api = Api::<PersistentVolume>::all(state.client.clone());
    let name = pv.name_any();
    let err = |action| Error::api(action, format!("PersistentVolume {name}"));
    match verdict(&pv, claim.as_ref()) {
        Verdict::Bind => {
            api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Bound"}})),
            )
            .await
            .map_err(err("marking Bound"))?;
        }
        Verdict::Release => {
            api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Released"}})),
            )
            .await
            .map_err(err("marking Released"))?;
            info!(claim = %format!("{ns}/{claim_name}"), "claim gone; volume Released and retained");
        }
        Verdict::Delete => {
            // Preconditioned on the uid: a volume made again under this name stays.
            let dp = DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: pv.uid(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => {
                    info!(claim = %format!("{ns}/{claim_name}"), "claim gone; deleted its volume")
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(err("deleting")(e)),
            }
        }
        Verdict::Nothing => {}
    }
    Ok(Action::await_change())
}

/// Adds [`CLEANUP_FINALIZER`], guarded by the resourceVersion (a 409 is retried).
async fn add_cleanup_finalizer(state: &State, pv: &PersistentVolume) -> Result<()> {
    let mut finalizers = pv.finalizers().to_vec();
    finalizers.push(CLEANUP_FINALIZER.into());
    let patch = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": pv.resource_version(),
    }});
    let name = pv.name_any();
    match Api::<PersistentVolume>::all(state.client.clone())
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::api(
            "adding the cleanup finalizer to",
            format!("PersistentVolume {name}"),
        )(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn what_a_volume_needs() {
        let claim = claim("data").uid("u1");
        let bound_claim = claim.clone().bound_to("pvc-u1");
        let pv = volume("pvc-u1").claimed_by(&claim);
        let cases = [
            (
                "claim not bound yet",
                pv.clone(),
                Some(claim.clone()),
                Verdict::Nothing,
            ),
            (
                "claim names the volume",
                pv.clone(),
                Some(bound_claim.clone()),
                Verdict::Bind,
            ),
            (
                "already Bound",
                pv.clone().phase("Bound"),
                Some(bound_claim.clone()),
                Verdict::Nothing,
            ),
            (
                "claim gone, policy Delete",
                pv.clone().phase("Bound"),
                None,
                Verdict::Delete,
            ),
            (
                "claim made again with another uid",
                pv.clone().phase("Bound"),
                Some(bound_claim.clone().uid("u2")),
                Verdict::Delete,
            ),
            (
                "claim gone, policy Retain",
                pv.clone().reclaim("Retain").phase("Bound"),
                None,
                Verdict::Release,
            ),
            (
                "already Released",
                pv.clone().reclaim("Retain").phase("Released"),
                None,
                Verdict::Nothing,
            ),
        ];
        for (name, pv, claim, want) in cases {
            assert_eq!(verdict(&pv, claim.as_ref()), want, "{name}");
        }
    }

    #[test]
    fn a_claim_event_concerns_the_volume_it_names_and_the_one_made_for_it() {
        let names = |c: &PersistentVolumeClaim| {
            volumes_of_claim(c)
                .iter()
                .map(|r| r.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&claim("a").uid("u1")), vec!["pvc-u1"]);
        assert_eq!(
            names(&claim("a").uid("u1").bound_to("pvc-u1")),
            vec!["pvc-u1"]
        );
        assert_eq!(
            names(&claim("a").uid("u1").bound_to("static")),
            vec!["pvc-u1", "static"]
        );
    }
}
