//! VolumeBinding's PreFilter (with VolumeRestrictions' check that each claim exists):
//! a pod whose claims are missing, lost, being deleted, or unbound while their class
//! binds immediately is unschedulable on every node, with upstream's message, until a
//! claim event moves it back. Claims of WaitForFirstConsumer classes pass unbound: the
//! local-path provisioner makes their volume on the node the pod is bound to.

use crate::cache::{PodInfo, Volumes};
use crate::framework::Status;

/// Upstream's reason for a pod with an unbound claim of an immediate-binding class.
pub const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

/// Whether `pod`'s claims let it be scheduled at all. Pods without claims cost one check.
pub fn pre_filter(pod: &PodInfo, volumes: &Volumes) -> Result<(), Status> {
    let Some(claims) = pod.spec.as_deref().and_then(|s| s.claims.as_deref()) else {
        return Ok(());
    };
    let mut unbound_immediate = false;
    for c in claims {
        let (name, ephemeral) = c.claim_name(&pod.name);
        let Some(claim) = volumes.claims.get(&format!("{}/{name}", pod.namespace)) else {
            return Err(Status::unresolvable(if ephemeral {
                format!(
                    "waiting for ephemeral volume controller to create the persistentvolumeclaim \"{name}\""
                )
            } else {
                format!("persistentvolumeclaim \"{name}\" not found")
            }));
        };
        if claim.lost {
            return Err(Status::unresolvable(format!(
                "persistentvolumeclaim \"{name}\" bound to non-existent persistentvolume \"{}\"",
                claim.volume_name
            )));
        }
        if claim.deleting {
            return Err(Status::unresolvable(format!(
                "persistentvolumeclaim \"{name}\" is being deleted"
            )));
        }
        // No class, or a class that does not exist, binds immediately (upstream's
        // IsDelayBindingMode).
        if !claim.fully_bound && !volumes.delayed_classes.contains(&claim.class) {
            unbound_immediate = true;
        }
    }
    if unbound_immediate {
        return Err(Status::unresolvable(UNBOUND_IMMEDIATE));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use controllers::fixtures::PodFixture;
    use k8s_openapi::api::core::v1::{
        EphemeralVolumeSource, PersistentVolumeClaimVolumeSource, Pod, Volume,
    };

    use super::*;
    use crate::cache::ClaimInfo;

    fn pod_with(volumes: Vec<Volume>) -> PodInfo {
        let mut pod = Pod::test("p");
        pod.spec.as_mut().unwrap().volumes = Some(volumes);
        PodInfo::new(Arc::new(pod.into()))
    }

    fn claim_volume(claim: &str) -> Volume {
        Volume {
            name: format!("v-{claim}"),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.into(),
                read_only: None,
            }),
            ..Volume::default()
        }
    }

    fn ephemeral_volume(name: &str) -> Volume {
        Volume {
            name: name.into(),
            ephemeral: Some(EphemeralVolumeSource::default()),
            ..Volume::default()
        }
    }

    fn claim(class: &str) -> ClaimInfo {
        ClaimInfo {
            class: class.into(),
            ..ClaimInfo::default()
        }
    }

    fn bound(class: &str) -> ClaimInfo {
        ClaimInfo {
            volume_name: "pv1".into(),
            fully_bound: true,
            ..claim(class)
        }
    }

    #[test]
    fn which_claims_keep_a_pod_from_every_node() {
        type Case = (
            &'static str,
            Vec<Volume>,
            Vec<(&'static str, ClaimInfo)>,
            Option<&'static str>,
        );
        let cases: Vec<Case> = vec![
            ("no claims", vec![Volume::default()], vec![], None),
            (
                "a missing claim",
                vec![claim_volume("x")],
                vec![],
                Some("persistentvolumeclaim \"x\" not found"),
            ),
            (
                "a missing ephemeral claim",
                vec![ephemeral_volume("scratch")],
                vec![],
                Some("waiting for ephemeral volume controller to create the persistentvolumeclaim \"p-scratch\""),
            ),
            (
                "a claim being deleted",
                vec![claim_volume("x")],
                vec![("x", ClaimInfo { deleting: true, ..bound("fast") })],
                Some("persistentvolumeclaim \"x\" is being deleted"),
            ),
            (
                "a lost claim",
                vec![claim_volume("x")],
                vec![("x", ClaimInfo { lost: true, ..bound("fast") })],
                Some("persistentvolumeclaim \"x\" bound to non-existent persistentvolume \"pv1\""),
            ),
            (
                "an unbound claim without a class",
                vec![claim_volume("x")],
                vec![("x", claim(""))],
                Some(UNBOUND_IMMEDIATE),
            ),
            (
                "an unbound claim of an immediate class",
                vec![claim_volume("x")],
                vec![("x", claim("fast"))],
                Some(UNBOUND_IMMEDIATE),
            ),
            (
                "volumeName set but the bind not completed",
                vec![claim_volume("x")],
                vec![("x", ClaimInfo { volume_name: "pv1".into(), ..claim("fast") })],
                Some(UNBOUND_IMMEDIATE),
            ),
            (
                "an unbound claim of a WaitForFirstConsumer class",
                vec![claim_volume("x")],
                vec![("x", claim("local-path"))],
                None,
            ),
            (
                "a bound claim of an immediate class",
                vec![claim_volume("x")],
                vec![("x", bound("fast"))],
                None,
            ),
            (
                "an ephemeral volume's claim, bound",
                vec![ephemeral_volume("scratch")],
                vec![("p-scratch", bound("fast"))],
                None,
            ),
        ];
        for (name, volumes, claims, want) in cases {
            let mut state = Volumes::default();
            state.delayed_classes.insert("local-path".into());
            for (n, c) in claims {
                state.claims.insert(format!("default/{n}"), c);
            }
            let got = pre_filter(&pod_with(volumes), &state).err();
            assert_eq!(
                got.as_ref().map(|s| s.reasons.join(",")).as_deref(),
                want,
                "{name}"
            );
        }
    }
}
