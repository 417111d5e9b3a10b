//! Recreate (upstream deployment/recreate.go): scale every old ReplicaSet to zero, wait
//! until none of their pods runs, then bring the new ReplicaSet up to full size.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::util::{deployment_replicas, spec_replicas};
use super::{Result, Rollout};
use crate::podcontrol::controller_of;

/// Whether any pod of an old ReplicaSet may still be running. Terminating pods count:
/// Recreate promises the old and new versions never run side by side.
pub(super) fn old_pods_running(old: &[ReplicaSet], pods: &[Arc<Pod>]) -> bool {
    if old
        .iter()
        .any(|rs| rs.status.as_ref().is_some_and(|s| s.replicas > 0))
    {
        return true;
    }
    let old_uids: Vec<&str> = old
        .iter()
        .filter_map(|rs| rs.metadata.uid.as_deref())
        .collect();
    pods.iter().any(|pod| {
        let owned =
            controller_of(&pod.metadata).is_some_and(|o| old_uids.contains(&o.uid.as_str()));
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        owned && !matches!(phase, Some("Succeeded" | "Failed"))
    })
}

impl Rollout {
    pub(crate) async fn rollout_recreate(&mut self) -> Result<Option<Duration>> {
        self.ensure_new_rs(false).await?;
        let active_old: Vec<String> = self
            .old
            .iter()
            .filter(|rs| spec_replicas(rs) > 0)
            .map(ResourceExt::name_any)
            .collect();
        let mut scaled_down = false;
        for name in active_old {
            scaled_down |= self.set_size(&name, 0).await?;
        }
        if scaled_down || old_pods_running(&self.old, &self.pods) {
            return self.sync_rollout_status().await;
        }
        self.ensure_new_rs(true).await?;
        if let Some(name) = self.new_rs.as_ref().map(ResourceExt::name_any) {
            let replicas = deployment_replicas(&self.d);
            self.set_size(&name, replicas).await?;
        }
        if self.is_complete() {
            self.cleanup().await?;
        }
        self.sync_rollout_status().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicaset::fixtures::*;

    #[test]
    fn recreate_waits_for_every_old_pod() {
        let rs = replica_set(0);
        let cases = [
            ("no pods", vec![], false),
            (
                "a running pod of the old set",
                vec![pod("a").running().owned_by(&rs)],
                true,
            ),
            (
                "a terminating pod still counts",
                vec![pod("a").running().deleting().owned_by(&rs)],
                true,
            ),
            (
                "finished pods do not",
                vec![pod("a").phase("Succeeded").owned_by(&rs)],
                false,
            ),
            (
                "someone else's pod does not",
                vec![pod("a").running()],
                false,
            ),
        ];
        for (name, pods, want) in cases {
            let pods: Vec<Arc<Pod>> = pods.into_iter().map(Arc::new).collect();
            assert_eq!(
                old_pods_running(std::slice::from_ref(&rs), &pods),
                want,
                "{name}"
            );
        }
    }
}
