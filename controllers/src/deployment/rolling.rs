//! RollingUpdate (upstream deployment/rolling.go): grow the new ReplicaSet within
//! maxSurge, shrink old ones within maxUnavailable. Each step that changes something
//! ends the sync; the ReplicaSet events it causes bring the next one.

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::ResourceExt;

use super::util::{self, deployment_replicas, spec_replicas};
use super::{Result, Rollout};

/// The new ReplicaSet's next size: as many more pods as the surge budget allows, never
/// beyond `replicas`.
///
/// 3 replicas, maxSurge 1, old RS at 3, new RS at 0: at most 3 + 1 = 4 pods, 3 exist, so
/// the new RS may grow by 1 -> 1. With old 3 and new 1, 4 exist: no growth until an old
/// pod goes.
pub fn new_rs_new_replicas(replicas: i32, max_surge: i32, old_total: i32, new_size: i32) -> i32 {
    let max_total = replicas + max_surge;
    let current = old_total + new_size;
    if current >= max_total {
        return new_size;
    }
    new_size + (max_total - current).min(replicas - new_size).max(0)
}

/// How many old pods may go now without dropping below `replicas - maxUnavailable`
/// available, counting the new ReplicaSet's not-yet-available pods as already missing.
///
/// 3 replicas, maxUnavailable 0, old 3 (all available) + new 1 (not yet available):
/// 4 - 3 - 1 = 0, nothing may go. Once the new pod is available: 4 - 3 - 0 = 1.
pub fn max_scaled_down(
    all_total: i32,
    replicas: i32,
    max_unavailable: i32,
    new_size: i32,
    new_available: i32,
) -> i32 {
    let min_available = replicas - max_unavailable;
    let new_unavailable = new_size - new_available;
    all_total - min_available - new_unavailable
}

/// Old ReplicaSets as the scale-down steps see them, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Old {
    pub name: String,
    pub size: i32,
    pub available: i32,
}

/// Scales away old pods that are not available first (they cost no availability), up to
/// `max_cleanup`. Returns the new sizes of the ReplicaSets that change.
///
/// old A: 3 pods, 1 available; max_cleanup 5 -> A drops its 2 unavailable pods: A = 1.
pub fn cleanup_unhealthy(old: &[Old], max_cleanup: i32) -> Vec<(String, i32)> {
    let mut done = 0;
    let mut out = Vec::new();
    for rs in old {
        if done >= max_cleanup {
            break;
        }
        let unhealthy = rs.size - rs.available;
        if rs.size == 0 || unhealthy <= 0 {
            continue;
        }
        let cut = unhealthy.min(max_cleanup - done);
        done += cut;
        out.push((rs.name.clone(), rs.size - cut));
    }
    out
}

/// Scales old ReplicaSets down, oldest first, by what availability allows:
/// `available_total - min_available` pods.
///
/// 3 replicas, maxUnavailable 0 (min 3); 4 available (old 3 + new 1) -> 1 may go:
/// old 3 -> 2.
pub fn scale_down_old(old: &[Old], available_total: i32, min_available: i32) -> Vec<(String, i32)> {
    let mut left = available_total - min_available;
    let mut out = Vec::new();
    for rs in old {
        if left <= 0 {
            break;
        }
        if rs.size == 0 {
            continue;
        }
        let cut = rs.size.min(left);
        left -= cut;
        out.push((rs.name.clone(), rs.size - cut));
    }
    out
}

fn oldest_first(old: &[ReplicaSet]) -> Vec<Old> {
    let mut sorted: Vec<&ReplicaSet> = old.iter().collect();
    sorted.sort_by(|a, b| {
        let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(a)
            .cmp(&created(b))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    sorted
        .into_iter()
        .map(|rs| Old {
            name: rs.name_any(),
            size: spec_replicas(rs),
            available: rs
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0),
        })
        .collect()
}

impl Rollout {
    pub(crate) async fn rollout_rolling(&mut self) -> Result<Option<Duration>> {
        self.ensure_new_rs(true).await?;
        if self.reconcile_new_rs().await? || self.reconcile_old_rses().await? {
            return self.sync_rollout_status().await;
        }
        if self.is_complete() {
            self.cleanup().await?;
        }
        self.sync_rollout_status().await
    }

    async fn reconcile_new_rs(&mut self) -> Result<bool> {
        let d = self.d.clone();
        let Some(new_rs) = self.new_rs.as_ref() else {
            return Ok(false);
        };
        let (name, size) = (new_rs.name_any(), spec_replicas(new_rs));
        let replicas = deployment_replicas(&d);
        let target = if size > replicas {
            replicas
        } else {
            new_rs_new_replicas(
                replicas,
                util::max_surge(&d),
                util::sum_spec(&self.old),
                size,
            )
        };
        self.set_size(&name, target).await
    }

    async fn reconcile_old_rses(&mut self) -> Result<bool> {
        if util::sum_spec(&self.old) == 0 {
            return Ok(false);
        }
        let d = self.d.clone();
        let replicas = deployment_replicas(&d);
        let max_unavailable = util::max_unavailable(&d);
        let (new_size, new_available) = self.new_rs.as_ref().map_or((0, 0), |rs| {
            (
                spec_replicas(rs),
                rs.status
                    .as_ref()
                    .and_then(|s| s.available_replicas)
                    .unwrap_or(0),
            )
        });
        let all_total = util::sum_spec(self.all());
        let budget = max_scaled_down(
            all_total,
            replicas,
            max_unavailable,
            new_size,
            new_available,
        );
        if budget <= 0 {
            return Ok(false);
        }
        let mut changed = false;
        for (name, size) in cleanup_unhealthy(&oldest_first(&self.old), budget) {
            changed |= self.set_size(&name, size).await?;
        }
        let available_total = util::sum_available(self.all());
        for (name, size) in scale_down_old(
            &oldest_first(&self.old),
            available_total,
            replicas - max_unavailable,
        ) {
            changed |= self.set_size(&name, size).await?;
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old(name: &str, size: i32, available: i32) -> Old {
        Old {
            name: name.into(),
            size,
            available,
        }
    }

    #[test]
    fn the_new_replica_set_grows_within_max_surge() {
        let cases = [
            // (name, replicas, surge, old total, new size, want)
            ("3 at surge 1, fresh rollout: 3+1-3 = 1 room", 3, 1, 3, 0, 1),
            ("3 at surge 1, 4 pods exist: no room", 3, 1, 3, 1, 1),
            (
                "3 at surge 1, old down to 2: room for 1 more",
                3,
                1,
                2,
                1,
                2,
            ),
            ("10 at surge 3: room 3 of the 10 wanted", 10, 3, 10, 0, 3),
            ("room never takes the new RS past replicas", 3, 5, 0, 2, 3),
            ("surge 0 waits for old pods to go", 3, 0, 3, 0, 0),
        ];
        for (name, replicas, surge, old_total, new_size, want) in cases {
            assert_eq!(
                new_rs_new_replicas(replicas, surge, old_total, new_size),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn old_pods_go_only_while_enough_stay_available() {
        let cases = [
            // (name, all total, replicas, maxUnavailable, new size, new available, want)
            ("new pod not yet available: 4 - 3 - 1 = 0", 4, 3, 0, 1, 0, 0),
            ("new pod available: 4 - 3 - 0 = 1", 4, 3, 0, 1, 1, 1),
            (
                "10 at unavailable 2, new 3 unavailable: 13 - 8 - 3 = 2",
                13,
                10,
                2,
                3,
                0,
                2,
            ),
        ];
        for (name, all_total, replicas, unavailable, new_size, new_available, want) in cases {
            assert_eq!(
                max_scaled_down(all_total, replicas, unavailable, new_size, new_available),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn unhealthy_old_pods_go_first_oldest_replica_set_first() {
        let got = cleanup_unhealthy(&[old("a", 3, 1), old("b", 2, 0)], 3);
        // a drops its 2 unavailable pods, b 1 of its 2 (budget 3).
        assert_eq!(got, vec![("a".to_string(), 1), ("b".to_string(), 1)]);
        assert_eq!(
            cleanup_unhealthy(&[old("a", 3, 3)], 3),
            vec![],
            "healthy replica sets keep their pods"
        );
    }

    #[test]
    fn healthy_old_pods_go_as_availability_allows() {
        // min 3 available, 4 available: one old pod may go.
        assert_eq!(
            scale_down_old(&[old("a", 3, 3)], 4, 3),
            vec![("a".to_string(), 2)]
        );
        // 7 available, min 3: 4 may go, a (oldest) empties by 2, b loses 2.
        assert_eq!(
            scale_down_old(&[old("a", 2, 2), old("b", 3, 3)], 7, 3),
            vec![("a".to_string(), 0), ("b".to_string(), 1)]
        );
        assert_eq!(
            scale_down_old(&[old("a", 3, 3)], 3, 3),
            vec![],
            "at the minimum nothing goes"
        );
    }
}
