//! The ReplicaSet controller: keeps `spec.replicas` active pods matching the selector,
//! adopting matching orphans and releasing pods that stop matching, and reports what it
//! sees in the status (upstream pkg/controller/replicaset). The same code runs the
//! ReplicationController loop (`crate::replicationcontroller`) through [`Replicated`].

#[cfg(test)]
pub(crate) mod fixtures;
mod owner;
mod plan;
mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::Controller;
use kube::{Api, ResourceExt};
use tracing::{info, instrument, warn};

pub use owner::Replicated;
pub use plan::{claim_pods, desired_pods, Claim, Diff};
pub use status::calculate_status;

use crate::expectations::{cached, Expectations};
use crate::podcontrol::{self, controller_ref, is_active, seconds_until_available, PodWrite};
use crate::runtime::informers::Informers;
use crate::shared::ranking::pods_to_delete;
use crate::{Context, LoopFuture};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} has no namespace")]
    NoNamespace(String),
    #[error("creating pods for {key}: {source}")]
    CreatePods { key: String, source: kube::Error },
    #[error("deleting pod {pod}: {source}")]
    DeletePod { pod: String, source: kube::Error },
    #[error("adopting or releasing pod {pod}: {source}")]
    Claim { pod: String, source: kube::Error },
    #[error("writing status of {key}: {source}")]
    Status { key: String, source: kube::Error },
}

impl crate::runtime::retry::ReconcileError for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the reconciler reads and remembers between syncs.
pub struct State {
    pub client: kube::Client,
    pub pods: Store<Pod>,
    pub expectations: Expectations,
}

/// The loop entry for [`crate::loops`].
pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        run_controller::<ReplicaSet>(&ctx.informers).await;
        anyhow::bail!("the replicaset controller stopped")
    })
}

/// Runs the controller of `K`s (ReplicaSets or ReplicationControllers) until its
/// streams end.
pub async fn run_controller<K: Replicated>(informers: &Informers) {
    let pods = informers.all::<Pod>();
    let replica_sets = informers.all::<K>();
    tokio::join!(pods.synced(), replica_sets.synced());
    let state = Arc::new(State {
        client: informers.client().clone(),
        pods: pods.store(),
        expectations: Expectations::default(),
    });
    let rs_store = replica_sets.store();
    Controller::for_shared_stream(replica_sets.touched(), replica_sets.store())
        .watches_shared_stream(pods.touched(), move |pod| owners_of_pod(&rs_store, &pod))
        .run(
            crate::runtime::metrics::metered(reconcile),
            crate::runtime::retry::error_policy,
            state,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, controller = K::LOOP, "reconcile failed");
            }
        })
        .await;
}

/// The `K`s a pod event concerns: its controller when that is a `K`, else every `K` of
/// its namespace that would adopt it ([`podcontrol::owners_for_pod`], with the selector
/// computed: a ReplicationController's is a map made into a LabelSelector).
fn owners_of_pod<K: Replicated>(owners: &Store<K>, pod: &Pod) -> Vec<ObjectRef<K>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(owner) = podcontrol::controller_of(&pod.metadata) {
        return if owner.kind == K::kind(&()) {
            vec![ObjectRef::new(&owner.name).within(&ns)]
        } else {
            vec![]
        };
    }
    owners
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(ns.as_str()))
        .filter(|o| {
            o.selector()
                .is_some_and(|s| podcontrol::controller_selects(&s, pod.labels()))
        })
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

#[instrument(skip_all, fields(key = %format!("{}/{}", rs.namespace().unwrap_or_default(), rs.name_any())))]
pub async fn reconcile<K: Replicated>(rs: Arc<K>, state: Arc<State>) -> Result<Action> {
    let ns = rs
        .namespace()
        .ok_or_else(|| Error::NoNamespace(format!("{} {}", K::LOOP, rs.name_any())))?;
    let key = format!("{ns}/{}", rs.name_any());
    let pods_api: Api<Pod> = Api::namespaced(state.client.clone(), &ns);
    // Shared, not copied: a deep copy of every pod per sync is most of the memory a
    // large ReplicaSet's syncs would otherwise churn through.
    let in_namespace: Vec<Arc<Pod>> = state
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .collect();

    let claim = claim_pods(rs.as_ref(), in_namespace.iter().map(AsRef::as_ref));
    for pod in &claim.release {
        podcontrol::release(&pods_api, *pod, rs.uid().as_deref().unwrap_or_default())
            .await
            .map_err(|source| Error::Claim {
                pod: pod.name_any(),
                source,
            })?;
        info!(pod = %pod.name_any(), "released pod that no longer matches the selector");
    }
    let mut adopted = Vec::new();
    for pod in &claim.adopt {
        match podcontrol::adopt(&pods_api, *pod, controller_ref(rs.as_ref())).await {
            Ok(pod) => adopted.push(pod),
            // Deleted or changed since the cache saw it: the next event brings us back.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 || e.code == 422 => {}
            Err(source) => {
                return Err(Error::Claim {
                    pod: pod.name_any(),
                    source,
                })
            }
        }
    }
    let active: Vec<&Pod> = claim
        .owned
        .iter()
        .copied()
        .chain(adopted.iter())
        .filter(|p| is_active(p))
        .collect();

    let mut manage_error = None;
    let now = Instant::now();
    let satisfied =
        state
            .expectations
            .satisfied(&key, &cached(in_namespace.iter().map(AsRef::as_ref)), now);
    if let Err(in_flight) = satisfied {
        info!(
            in_flight,
            "waiting for the cache to observe earlier creates/deletes"
        );
    } else if !podcontrol::is_deleting(rs.meta()) {
        let replicas = rs.replicas();
        if let Err(e) =
            manage_replicas(&state, rs.as_ref(), &key, &pods_api, &active, replicas).await
        {
            manage_error = Some(e);
        }
    }

    let now_ts = Timestamp::now();
    let reason_message = manage_error.as_ref().map(|e| {
        let reason = if matches!(e, Error::CreatePods { .. }) {
            "FailedCreate"
        } else {
            "FailedDelete"
        };
        (reason, e.to_string())
    });
    let new_status = calculate_status(rs.as_ref(), &active, reason_message, now_ts);
    if status::differs(rs.replica_status().as_ref(), &new_status) {
        Api::<K>::namespaced(state.client.clone(), &ns)
            .patch_status(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(status::status_patch(&new_status)),
            )
            .await
            .map_err(|source| Error::Status {
                key: key.clone(),
                source,
            })?;
    }
    if let Some(e) = manage_error {
        return Err(e);
    }

    // A ready pod becomes available minReadySeconds after it turned ready; no event
    // announces that, so come back then.
    let min_ready = rs.min_ready_seconds();
    let next = active
        .iter()
        .filter_map(|p| seconds_until_available(p, min_ready, now_ts))
        .min();
    Ok(match (next, satisfied) {
        (Some(secs), _) => Action::requeue(Duration::from_secs(secs.unsigned_abs() + 1)),
        (None, Err(_)) => Action::requeue(Duration::from_secs(5)),
        (None, Ok(())) => Action::requeue(Duration::from_secs(300)),
    })
}

/// An event about `rs` and one of its pods, worded as upstream's pod control words it
/// (`kubectl describe rs` lists them).
async fn pod_event<K: Replicated>(
    pods_api: &Api<Pod>,
    rs: &K,
    write: PodWrite,
    pod: &str,
    error: Option<&kube::Error>,
) {
    let client = pods_api.clone().into_client();
    podcontrol::publish_pod_event(&client, rs, write, pod, error, K::COMPONENT).await;
}

/// Creates or deletes pods so `replicas` are active, recording each write as expected.
async fn manage_replicas<K: Replicated>(
    state: &State,
    rs: &K,
    key: &str,
    pods_api: &Api<Pod>,
    active: &[&Pod],
    replicas: i32,
) -> Result<()> {
    match desired_pods(replicas, active.len()) {
        Diff::Steady => Ok(()),
        Diff::Create(n) => {
            let Some(template) = rs.template() else {
                return Ok(());
            };
            let generate_name = format!("{}-", rs.name_any());
            for batch in plan::slow_start_batches(n) {
                let creates = (0..batch).map(|_| {
                    podcontrol::create_pod(pods_api, template, &generate_name, controller_ref(rs))
                });
                let results = futures::future::join_all(creates).await;
                let mut failure = None;
                let mut names = Vec::new();
                for result in results {
                    let pod = result.as_ref().map_or(String::new(), |p| p.name_any());
                    pod_event(pods_api, rs, PodWrite::Create, &pod, result.as_ref().err()).await;
                    match result {
                        Ok(pod) => names.push(pod.name_any()),
                        Err(source) => failure = Some(source),
                    }
                }
                info!(created = names.len(), "created pods");
                state
                    .expectations
                    .expect_creations(key, names, Instant::now());
                if let Some(source) = failure {
                    return Err(Error::CreatePods {
                        key: key.to_string(),
                        source,
                    });
                }
            }
            Ok(())
        }
        Diff::Delete(n) => {
            let victims = pods_to_delete(active, n);
            let uids = victims.iter().filter_map(|p| p.uid());
            state
                .expectations
                .expect_deletions(key, uids, Instant::now());
            let deletes = victims.iter().map(|p| async move {
                let deleted = podcontrol::delete_pod(pods_api, &p.name_any()).await;
                pod_event(
                    pods_api,
                    rs,
                    PodWrite::Delete,
                    &p.name_any(),
                    deleted.as_ref().err(),
                )
                .await;
                deleted.map_err(|source| Error::DeletePod {
                    pod: p.name_any(),
                    source,
                })
            });
            let results = futures::future::join_all(deletes).await;
            info!(deleted = victims.len(), "deleted pods");
            if results.iter().any(Result::is_err) {
                // The failed deletes will never be observed; start afresh next sync.
                state.expectations.forget(key);
            }
            results.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
        }
    }
}
