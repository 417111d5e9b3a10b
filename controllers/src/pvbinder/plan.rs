//! The PersistentVolume binder's decisions, as pure functions: which static volume a
//! claim binds to (upstream's findBestMatchForClaim), what phase a volume is in, and
//! whether the protection finalizers may go.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;

use crate::localpath::class::requested_class;
use crate::shared::labels::selector_matches;
use crate::shared::quantity::parse_quantity;

pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";

/// Bytes in a Quantity such as `1Gi`, `500M`, `1.5Gi` or `1e9`; `None` if unreadable.
pub fn bytes(q: &Quantity) -> Option<i64> {
    parse_quantity(&q.0, 1)
}

fn storage(list: Option<&BTreeMap<String, Quantity>>) -> Option<i64> {
    bytes(list?.get("storage")?)
}

/// The class a claim binds by: its name, `""` for explicitly none or none asked for.
pub(super) fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    requested_class(claim).unwrap_or("")
}

fn volume_class(pv: &PersistentVolume) -> &str {
    pv.annotations()
        .get("volume.beta.kubernetes.io/storage-class")
        .map(String::as_str)
        .or_else(|| pv.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or("")
}

/// Whether the volume's claimRef names this claim (pre-bound from the volume's side,
/// uid unset, or bound to exactly this claim).
fn claim_ref_is(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name.as_deref() == claim.metadata.name.as_deref()
        && r.namespace.as_deref() == claim.metadata.namespace.as_deref()
        && (r.uid.is_none() || r.uid == claim.metadata.uid)
}

/// Whether `pv` can hold `claim`: class, volume mode, every access mode asked for, the
/// requested size, and the claim's selector on the volume's labels.
pub fn satisfies(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let (Some(spec), Some(want)) = (pv.spec.as_ref(), claim.spec.as_ref()) else {
        return false;
    };
    let mode = |m: Option<&String>| m.map_or("Filesystem", String::as_str).to_string();
    let modes = spec.access_modes.as_deref().unwrap_or_default();
    let requested = storage(want.resources.as_ref().and_then(|r| r.requests.as_ref())).unwrap_or(0);
    volume_class(pv) == claim_class(claim)
        && mode(spec.volume_mode.as_ref()) == mode(want.volume_mode.as_ref())
        && want
            .access_modes
            .as_deref()
            .unwrap_or_default()
            .iter()
            .all(|m| modes.contains(m))
        && storage(spec.capacity.as_ref()).unwrap_or(0) >= requested
        && want
            .selector
            .as_ref()
            .is_none_or(|s| selector_matches(Some(s), pv.labels()))
}

/// The volume `claim` should bind to: the one its spec.volumeName names, else one
/// pre-bound to it by claimRef, else the smallest free one that satisfies it (ties by
/// name). Volumes bound to other claims or being deleted are never chosen.
pub fn find_volume<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
) -> Option<&'a PersistentVolume> {
    let named = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .filter(|n| !n.is_empty());
    let free = |pv: &PersistentVolume| {
        pv.metadata.deletion_timestamp.is_none()
            && match pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                None => true,
                Some(_) => claim_ref_is(pv, claim),
            }
    };
    let candidates: Vec<&PersistentVolume> = volumes
        .into_iter()
        .filter(|pv| free(pv))
        .filter(|pv| named.is_none_or(|n| pv.name_any() == n))
        .filter(|pv| satisfies(pv, claim))
        .collect();
    if let Some(pre_bound) = candidates.iter().find(|pv| claim_ref_is(pv, claim)) {
        return Some(pre_bound);
    }
    candidates.into_iter().min_by(|a, b| {
        let size = |pv: &PersistentVolume| storage(pv.spec.as_ref()?.capacity.as_ref());
        size(a)
            .cmp(&size(b))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    })
}

/// What a volume's phase should be, given whether its claim (by claimRef, with uid)
/// still exists: no claimRef or a claimRef without uid whose claim is not bound yet is
/// Available, a claim that exists is Bound, a claim gone is Released (reclaim follows).
#[derive(Debug, PartialEq, Eq)]
pub enum VolumeState {
    Available,
    Bound,
    Released,
}

pub fn volume_state(pv: &PersistentVolume, claim: Option<&PersistentVolumeClaim>) -> VolumeState {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return VolumeState::Available;
    };
    match (r.uid.as_deref(), claim) {
        (None, _) => VolumeState::Available,
        (Some(uid), Some(c)) if c.metadata.uid.as_deref() == Some(uid) => VolumeState::Bound,
        _ => VolumeState::Released,
    }
}

/// Pods that still use the claim: they name it (directly or as an ephemeral volume's
/// claim `<pod>-<volume>`) and have not finished, so the claim must stay.
pub fn claim_in_use<'a>(
    claim: &PersistentVolumeClaim,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> bool {
    let name = claim.name_any();
    pods.into_iter()
        .filter(|p| p.namespace() == claim.namespace())
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .any(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.volumes.as_deref())
                .unwrap_or_default()
                .iter()
                .any(|v| {
                    v.persistent_volume_claim
                        .as_ref()
                        .is_some_and(|c| c.claim_name == name)
                        || (v.ephemeral.is_some() && format!("{}-{}", p.name_any(), v.name) == name)
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(name: &str, size: &str, extra: serde_json::Value) -> PersistentVolume {
        let mut v = json!({
            "metadata": {"name": name, "labels": {"tier": "fast"}},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": "/x"}, "storageClassName": "manual"},
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn claim(extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut v = json!({
            "metadata": {"name": "data", "namespace": "ns", "uid": "c1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                "resources": {"requests": {"storage": "1Gi"}}},
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    #[test]
    fn quantities_read_as_bytes() {
        let cases = [
            ("1Gi", 1 << 30),
            ("500M", 500_000_000),
            ("1.5Ki", 1536),
            ("1e3", 1000),
            ("42", 42),
        ];
        for (q, want) in cases {
            assert_eq!(bytes(&Quantity(q.into())), Some(want), "{q}");
        }
    }

    #[test]
    fn a_claim_binds_to_the_smallest_volume_that_fits_it() {
        let bound_elsewhere =
            json!({"spec": {"claimRef": {"namespace": "ns", "name": "other", "uid": "o1"}}});
        let cases = [
            (
                "smallest that fits",
                claim(json!({})),
                vec![
                    pv("big", "10Gi", json!({})),
                    pv("small", "2Gi", json!({})),
                    pv("tiny", "500Mi", json!({})),
                ],
                Some("small"),
            ),
            (
                "class must match",
                claim(json!({})),
                vec![pv(
                    "other-class",
                    "2Gi",
                    json!({"spec": {"storageClassName": "slow"}}),
                )],
                None,
            ),
            (
                "access modes must be offered",
                claim(json!({"spec": {"accessModes": ["ReadWriteMany"]}})),
                vec![pv("rwo", "2Gi", json!({}))],
                None,
            ),
            (
                "selector must match",
                claim(json!({"spec": {"selector": {"matchLabels": {"tier": "slow"}}}})),
                vec![pv("fast", "2Gi", json!({}))],
                None,
            ),
            (
                "volumeName picks it",
                claim(json!({"spec": {"volumeName": "big"}})),
                vec![pv("big", "10Gi", json!({})), pv("small", "2Gi", json!({}))],
                Some("big"),
            ),
            (
                "pre-bound by claimRef wins",
                claim(json!({})),
                vec![
                    pv("small", "2Gi", json!({})),
                    pv(
                        "mine",
                        "10Gi",
                        json!({"spec": {"claimRef": {"namespace": "ns", "name": "data"}}}),
                    ),
                ],
                Some("mine"),
            ),
            (
                "bound elsewhere is taken",
                claim(json!({})),
                vec![pv("taken", "2Gi", bound_elsewhere)],
                None,
            ),
        ];
        for (name, claim, volumes, want) in cases {
            let got = find_volume(&claim, &volumes).map(|pv| pv.name_any());
            assert_eq!(got.as_deref(), want, "{name}");
        }
    }

    #[test]
    fn a_volume_is_available_bound_or_released_by_its_claim() {
        let c = claim(json!({}));
        let with_ref = |uid: Option<&str>| {
            pv(
                "v",
                "1Gi",
                json!({"spec": {"claimRef": {"namespace": "ns", "name": "data", "uid": uid}}}),
            )
        };
        let cases = [
            (
                "no claimRef",
                pv("v", "1Gi", json!({})),
                Some(&c),
                VolumeState::Available,
            ),
            (
                "pre-bound, not yet bound",
                with_ref(None),
                None,
                VolumeState::Available,
            ),
            (
                "claim present",
                with_ref(Some("c1")),
                Some(&c),
                VolumeState::Bound,
            ),
            (
                "claim gone",
                with_ref(Some("c1")),
                None,
                VolumeState::Released,
            ),
            (
                "claim recreated",
                with_ref(Some("old")),
                Some(&c),
                VolumeState::Released,
            ),
        ];
        for (name, pv, claim, want) in cases {
            assert_eq!(volume_state(&pv, claim), want, "{name}");
        }
    }

    #[test]
    fn a_claim_is_in_use_while_an_unfinished_pod_mounts_it() {
        let pod = |phase: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p", "namespace": "ns"},
                "spec": {"containers": [], "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]},
                "status": {"phase": phase},
            }))
            .unwrap()
        };
        let c = claim(json!({}));
        assert!(claim_in_use(&c, &[pod("Running")]));
        assert!(!claim_in_use(&c, &[pod("Succeeded")]));
        assert!(!claim_in_use(&c, &[]));
    }
}
