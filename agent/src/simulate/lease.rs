//! Node heartbeats: one Lease per node in kube-node-lease, held by the node, owned by the
//! Node object (so it goes with it), renewed by a single task for all nodes.

use std::sync::Arc;

use futures::{stream, StreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use tokio::sync::Semaphore;

use super::{
    is_status, Context, Result, Shared, SimConfig, SimNode, FIELD_MANAGER, LEASE_NAMESPACE,
};

pub(super) fn lease_object(node: &SimNode, duration_seconds: i32, now: MicroTime) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node.name.clone()),
            namespace: Some(LEASE_NAMESPACE.into()),
            owner_references: (!node.uid.is_empty()).then(|| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: node.name.clone(),
                    uid: node.uid.clone(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.name.clone()),
            lease_duration_seconds: Some(duration_seconds),
            renew_time: Some(now),
            ..Default::default()
        }),
    }
}

fn micro_now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Renews the lease of `node`, creating it when it is missing (first start, or deleted).
pub(super) async fn ensure(
    client: &Client,
    config: &SimConfig,
    limit: &Semaphore,
    node: &SimNode,
) -> Result<()> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let lease = lease_object(node, config.lease_duration_seconds, micro_now());
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let renewed = {
        let _permit = limit.acquire().await;
        let patch = json!({ "spec": lease.spec });
        api.patch(&node.name, &params, &Patch::Merge(&patch)).await
    };
    match renewed {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => {
            let _permit = limit.acquire().await;
            let post = PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            match api.create(&post, &lease).await {
                // Someone created it between the two calls: the next renewal patches it.
                Err(e) if is_status(&e, 409) => Ok(()),
                other => other
                    .map(drop)
                    .context(|| format!("creating the lease of node {}", node.name)),
            }
        }
        Err(e) => Err(e).context(|| format!("renewing the lease of node {}", node.name)),
    }
}

/// Renews every lease each interval. A failed renewal is logged and retried at the next
/// tick (the lease is valid for 40 s, four ticks), as the kubelet does.
pub(super) async fn renew_forever(shared: Arc<Shared>) -> Result<()> {
    let mut ticks = tokio::time::interval(shared.config.lease_renew_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate; registration just renewed them
    loop {
        ticks.tick().await;
        stream::iter(&shared.nodes)
            .for_each_concurrent(shared.config.max_in_flight.max(1), |node| {
                let shared = &shared;
                async move {
                    if let Err(e) = ensure(&shared.client, &shared.config, &shared.limit, node).await {
                        tracing::warn!(node = %node.name, error = %e, "lease renewal failed; retrying next tick");
                    }
                }
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_lease_is_held_by_and_owned_by_its_node() {
        let node = SimNode {
            name: "sim-1".into(),
            index: 1,
            uid: "u-1".into(),
            ip: "10.255.0.2".parse().unwrap(),
            pod_prefix: [10, 42, 1],
        };
        let lease = lease_object(&node, 40, micro_now());
        assert_eq!(lease.metadata.namespace.as_deref(), Some("kube-node-lease"));
        assert_eq!(lease.metadata.name.as_deref(), Some("sim-1"));
        let owner = &lease.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Node", "sim-1", "u-1")
        );
        let spec = lease.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("sim-1"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert!(spec.renew_time.is_some());
    }
}
