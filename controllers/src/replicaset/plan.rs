//! The ReplicaSet's decisions, as pure functions of the ReplicaSet and the pods in its
//! namespace: which pods it owns, adopts and releases, and how many to create or delete;
//! which pods go first on scale-down is shared (`crate::shared::ranking`).

use std::cmp::Ordering;

use k8s_openapi::api::core::v1::Pod;

use super::owner::Replicated;
use crate::podcontrol::{controller_of, controller_selects, is_deleting};

/// At most this many creates or deletes per sync (upstream's burstReplicas).
pub(super) const BURST_REPLICAS: usize = 500;

/// How the ReplicaSet's claim on the namespace's pods splits them.
#[derive(Debug, Default)]
pub struct Claim<'a> {
    /// Controlled by this ReplicaSet and matching its selector.
    pub owned: Vec<&'a Pod>,
    /// Orphans that match: to be given a controller reference to this ReplicaSet.
    pub adopt: Vec<&'a Pod>,
    /// Controlled by this ReplicaSet but no longer matching: to lose the reference.
    pub release: Vec<&'a Pod>,
}

/// Splits `pods` like upstream's ClaimPods. A ReplicaSet being deleted adopts nothing
/// and releases nothing (the garbage collector is about to act on its children).
pub fn claim_pods<'a, K: Replicated>(rs: &K, pods: impl IntoIterator<Item = &'a Pod>) -> Claim<'a> {
    let mut claim = Claim::default();
    let Some(selector) = rs.selector() else {
        return claim;
    };
    let uid = rs.meta().uid.as_deref().unwrap_or_default();
    let rs_deleting = is_deleting(rs.meta());
    for pod in pods {
        let matches = controller_selects(
            &selector,
            pod.metadata.labels.as_ref().unwrap_or(&Default::default()),
        );
        match controller_of(&pod.metadata) {
            Some(owner) if owner.uid == uid => {
                if matches {
                    claim.owned.push(pod);
                } else if !rs_deleting {
                    claim.release.push(pod);
                }
            }
            Some(_) => {}
            None if matches && !rs_deleting && !is_deleting(&pod.metadata) => claim.adopt.push(pod),
            None => {}
        }
    }
    claim
}

/// What to do about the pod count.
#[derive(Debug, PartialEq, Eq)]
pub enum Diff {
    Create(usize),
    Delete(usize),
    Steady,
}

/// The change that brings `active` pods to `replicas`, capped at [`BURST_REPLICAS`].
pub fn desired_pods(replicas: i32, active: usize) -> Diff {
    let want = usize::try_from(replicas).unwrap_or(0);
    match active.cmp(&want) {
        Ordering::Less => Diff::Create((want - active).min(BURST_REPLICAS)),
        Ordering::Greater => Diff::Delete((active - want).min(BURST_REPLICAS)),
        Ordering::Equal => Diff::Steady,
    }
}

/// Batch sizes for creating `n` pods: 1, 2, 4, ... so a template that can never be
/// created (quota, bad admission) fails after one request, not after `n`.
pub(super) fn slow_start_batches(n: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let (mut left, mut size) = (n, 1);
    while left > 0 {
        let batch = size.min(left);
        batches.push(batch);
        left -= batch;
        size *= 2;
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicaset::fixtures::*;

    fn names(pods: &[&Pod]) -> Vec<String> {
        pods.iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn desired_pods_creates_deletes_and_caps_bursts() {
        let cases = [
            ("too few", 3, 1, Diff::Create(2)),
            ("too many", 1, 3, Diff::Delete(2)),
            ("just right", 2, 2, Diff::Steady),
            ("scale to zero", 0, 4, Diff::Delete(4)),
            ("huge scale-up is capped at 500", 1000, 0, Diff::Create(500)),
            ("negative replicas mean zero", -1, 1, Diff::Delete(1)),
        ];
        for (name, replicas, active, want) in cases {
            assert_eq!(desired_pods(replicas, active), want, "{name}");
        }
    }

    #[test]
    fn slow_start_doubles_the_batch() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), vec![1]);
        // 10 = 1 + 2 + 4 + 3
        assert_eq!(slow_start_batches(10), vec![1, 2, 4, 3]);
    }

    #[test]
    fn claim_adopts_orphans_and_releases_mismatches() {
        let rs = replica_set(2);
        let mut other = replica_set(1);
        other.metadata.uid = Some("uid-other".into());
        let pods = vec![
            pod("owned").owned_by(&rs),
            pod("orphan"),
            pod("orphan-other-app").labelled(&[("app", "db")]),
            pod("relabelled").labelled(&[("app", "db")]).owned_by(&rs),
            pod("someone-elses").owned_by(&other),
            pod("orphan-deleting").deleting(),
        ];
        let claim = claim_pods(&rs, &pods);
        assert_eq!(names(&claim.owned), vec!["owned"]);
        assert_eq!(names(&claim.adopt), vec!["orphan"]);
        assert_eq!(names(&claim.release), vec!["relabelled"]);
    }

    #[test]
    fn a_deleted_replica_set_neither_adopts_nor_releases() {
        let mut rs = replica_set(2);
        rs.metadata.deletion_timestamp = Some(at(1));
        let pods = vec![
            pod("orphan"),
            pod("relabelled").labelled(&[("app", "db")]).owned_by(&rs),
        ];
        let claim = claim_pods(&rs, &pods);
        assert!(claim.adopt.is_empty() && claim.release.is_empty());
    }
}
