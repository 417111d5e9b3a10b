//! The ReplicationController loop (upstream's replication manager): the ReplicaSet
//! loop's planning, status and writes run over core/v1 ReplicationControllers, whose
//! selector is a plain label map, through [`crate::replicaset::Replicated`]. Pods get
//! controller references of kind ReplicationController; status and the ReplicaFailure
//! condition are the ReplicaSet's.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ReplicationController;

use crate::{Context, LoopFuture};

/// The loop entry for [`crate::loops`].
pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        crate::replicaset::run_controller::<ReplicationController>(&ctx.informers).await;
        anyhow::bail!("the replicationcontroller controller stopped")
    })
}
