//! The Deployment controller: one ReplicaSet per pod template (`<name>-<hash>`), rolled
//! forward by strategy, with revisions, history cleanup, pause, proportional scaling and
//! progress conditions (upstream pkg/controller/deployment). One file per phase:
//! `sync` (ReplicaSets, scaling, cleanup) with `proportional` (its arithmetic), `rolling`, `recreate`, `rollback`,
//! `progress`, `status`; `util` holds the shared arithmetic.

mod apply;
mod progress;
mod proportional;
mod recreate;
mod rollback;
mod rolling;
mod status;
mod sync;
pub mod util;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::Controller;
use kube::{Api, ResourceExt};
use tracing::{instrument, warn};

pub use progress::{progressing_condition, ProgressInput};
pub use proportional::{proportional_sizes, Sizing};
pub use rolling::{cleanup_unhealthy, max_scaled_down, new_rs_new_replicas, scale_down_old};
pub use status::calculate_status;

use crate::runtime::informers::Informers;
use crate::shared::labels;
use crate::{Context, LoopFuture};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("deployment {0} has no namespace")]
    NoNamespace(String),
    #[error("creating replicaset {name}: {source}")]
    CreateReplicaSet { name: String, source: kube::Error },
    #[error("replicaset {0} exists with another template; collisionCount raised, retrying")]
    HashCollision(String),
    #[error("updating replicaset {name}: {source}")]
    UpdateReplicaSet { name: String, source: kube::Error },
    #[error("deleting replicaset {name}: {source}")]
    DeleteReplicaSet { name: String, source: kube::Error },
    #[error("updating deployment {name}: {source}")]
    UpdateDeployment { name: String, source: kube::Error },
}

impl crate::runtime::retry::ReconcileError for Error {
    fn retry_after(&self) -> Option<Duration> {
        // The next attempt uses the bumped collision count.
        matches!(self, Error::HashCollision(_)).then_some(crate::runtime::retry::CONFLICT_RETRY)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the reconciler reads: ReplicaSets and pods from reflector stores.
pub struct State {
    pub client: kube::Client,
    pub replica_sets: Store<ReplicaSet>,
    pub pods: Store<Pod>,
}

/// The loop entry for [`crate::loops`].
pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        run_controller(&ctx.informers).await;
        anyhow::bail!("the deployment controller stopped")
    })
}

/// Runs the controller until its streams end.
pub async fn run_controller(informers: &Informers) {
    let replica_sets = informers.all::<ReplicaSet>();
    // Pods only matter to Recreate (wait until the old ones are gone, terminating ones
    // included, which no ReplicaSet status change announces).
    let pods = informers.all::<Pod>();
    let deployments = informers.all::<Deployment>();
    tokio::join!(replica_sets.synced(), pods.synced(), deployments.synced());
    let state = Arc::new(State {
        client: informers.client().clone(),
        replica_sets: replica_sets.store(),
        pods: pods.store(),
    });
    let rs_store = replica_sets.store();
    Controller::for_shared_stream(deployments.touched(), deployments.store())
        .owns_shared_stream(replica_sets.touched())
        .watches_shared_stream(pods.touched(), move |pod: Arc<Pod>| {
            deployment_of_pod(&rs_store, &pod)
        })
        .run(
            crate::runtime::metrics::metered(reconcile),
            crate::runtime::retry::error_policy,
            state,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "deployment reconcile failed");
            }
        })
        .await;
}

/// The Deployment whose ReplicaSet controls `pod`, if any.
fn deployment_of_pod(replica_sets: &Store<ReplicaSet>, pod: &Pod) -> Option<ObjectRef<Deployment>> {
    let ns = pod.namespace()?;
    let owner =
        crate::podcontrol::controller_of(&pod.metadata).filter(|o| o.kind == "ReplicaSet")?;
    let rs = replica_sets.get(&ObjectRef::new(&owner.name).within(&ns))?;
    let d = crate::podcontrol::controller_of(&rs.metadata).filter(|o| o.kind == "Deployment")?;
    Some(ObjectRef::new(&d.name).within(&ns))
}

/// One sync of one Deployment: its ReplicaSets split into the one running the current
/// template and the old ones, and the status being built up for this sync.
pub struct Rollout {
    pub(crate) d: Arc<Deployment>,
    pub(crate) rs_api: Api<ReplicaSet>,
    pub(crate) pods: Vec<Arc<Pod>>,
    pub(crate) new_rs: Option<ReplicaSet>,
    pub(crate) old: Vec<ReplicaSet>,
    pub(crate) status: DeploymentStatus,
}

/// Upstream's syncDeployment as a decision table: deleted -> status only; paused ->
/// scale only; a replica change -> scale; otherwise roll out by strategy.
#[instrument(skip_all, fields(key = %format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any())))]
pub async fn reconcile(d: Arc<Deployment>, state: Arc<State>) -> Result<Action> {
    let ns = d
        .namespace()
        .ok_or_else(|| Error::NoNamespace(d.name_any()))?;
    if d.spec
        .as_ref()
        .is_none_or(|s| labels::is_empty(&s.selector))
    {
        warn!("deployment has an empty selector; it would select every pod, so it is left alone");
        return Ok(Action::await_change());
    }
    let mut r = Rollout::load(&state, d.clone(), &ns).await?;
    r.check_paused_conditions();
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);

    let requeue = if d.metadata.deletion_timestamp.is_some() {
        r.sync_status().await?;
        None
    } else if paused || r.is_scaling_event() {
        r.sync(paused).await?;
        None
    } else if util::is_rolling(&d) {
        r.rollout_rolling().await?
    } else {
        r.rollout_recreate().await?
    };
    Ok(requeue.map_or_else(
        || Action::requeue(Duration::from_secs(300)),
        Action::requeue,
    ))
}
