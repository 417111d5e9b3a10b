//! The Endpoints controller: for every Service with a selector, an Endpoints object of
//! the same name listing the selected pods' addresses, ready or not, per port (upstream
//! pkg/controller/endpoint). Services without a selector keep the Endpoints someone
//! wrote by hand (the apiserver's own `kubernetes` service among them); Endpoints of a
//! deleted Service are deleted.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::Controller;
use kube::{Api, ResourceExt};
use tracing::{info, instrument, warn};

use crate::shared::endpoint_pods as pods;
pub use plan::desired_subsets;

use crate::runtime::informers::{Informers, Touched};
use crate::{Context, LoopFuture};

/// Upstream marks Endpoints used as leader-election locks with this; they have no
/// Service and are never cleaned up.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("service {0} has no namespace")]
    NoNamespace(String),
    #[error("writing endpoints {key}: {source}")]
    Write { key: String, source: kube::Error },
}

impl crate::runtime::retry::ReconcileError for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub struct State {
    pub client: kube::Client,
    pub pods: Store<Pod>,
    pub endpoints: Store<Endpoints>,
}

/// The loop entry for [`crate::loops`].
pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        run_controller(&ctx.informers).await;
        anyhow::bail!("the endpoints controller stopped")
    })
}

/// Runs the controller until its streams end.
pub async fn run_controller(informers: &Informers) {
    let client = informers.client().clone();
    let pods = informers.all::<Pod>();
    let endpoints = informers.all::<Endpoints>();
    let services = informers.all::<Service>();
    tokio::join!(pods.synced(), endpoints.synced(), services.synced());
    // Deleted Services are seen here, in the change stream: the reconciler never runs
    // for an object that is gone.
    let (deleted_tx, deleted_rx) = tokio::sync::mpsc::unbounded_channel::<Service>();
    let svc_events = services.events().map(move |touched| {
        if let Touched::Deleted(svc) = &touched {
            let _ = deleted_tx.send(svc.as_ref().clone());
        }
        touched.object()
    });

    let state = Arc::new(State {
        client: client.clone(),
        pods: pods.store(),
        endpoints: endpoints.store(),
    });
    tokio::spawn(delete_for_deleted_services(client.clone(), deleted_rx));
    tokio::spawn(delete_leftovers(
        client.clone(),
        services.store(),
        endpoints.store(),
    ));

    let services_for_pods = services.store();
    let endpoints_for_pods = endpoints.store();
    Controller::for_shared_stream(svc_events, services.store())
        .watches_shared_stream(pods.touched(), move |pod| {
            pods::services_for_pod(&services_for_pods, &pod, |svc| {
                lists_pod(&endpoints_for_pods, svc, &pod)
            })
        })
        .watches_shared_stream(endpoints.touched(), |ep: Arc<Endpoints>| {
            Some(ObjectRef::new(&ep.name_any()).within(&ep.namespace()?))
        })
        .run(
            crate::runtime::metrics::metered(reconcile),
            crate::runtime::retry::error_policy,
            state,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "endpoints reconcile failed");
            }
        })
        .await;
}

/// Whether the Endpoints of `svc` name `pod` (so a pod that stopped matching leaves).
fn lists_pod(endpoints: &Store<Endpoints>, svc: &Service, pod: &Pod) -> bool {
    let Some(ep) = endpoints.get(&endpoints_ref(svc)) else {
        return false;
    };
    ep.subsets.iter().flatten().any(|s| {
        s.addresses
            .iter()
            .chain(s.not_ready_addresses.iter())
            .flatten()
            .any(|a| {
                a.target_ref
                    .as_ref()
                    .is_some_and(|r| r.uid == pod.metadata.uid)
            })
    })
}

/// The Endpoints of the same name as `svc`.
fn endpoints_ref(svc: &Service) -> ObjectRef<Endpoints> {
    ObjectRef::new(&svc.name_any()).within(&svc.namespace().unwrap_or_default())
}

async fn delete_for_deleted_services(
    client: kube::Client,
    mut deleted: tokio::sync::mpsc::UnboundedReceiver<Service>,
) {
    while let Some(svc) = deleted.recv().await {
        let Some(ns) = svc.namespace() else { continue };
        delete_endpoints(&client, &ns, &svc.name_any()).await;
    }
}

/// Upstream's checkLeftoverEndpoints: Endpoints whose Service went away while no
/// controller watched are deleted once, at start.
async fn delete_leftovers(
    client: kube::Client,
    services: Store<Service>,
    endpoints: Store<Endpoints>,
) {
    if services.wait_until_ready().await.is_err() || endpoints.wait_until_ready().await.is_err() {
        return;
    }
    for ep in endpoints.state() {
        let Some(ns) = ep.namespace() else { continue };
        let leader_lock = ep.annotations().contains_key(LEADER_ANNOTATION);
        if !leader_lock
            && services
                .get(&ObjectRef::new(&ep.name_any()).within(&ns))
                .is_none()
        {
            delete_endpoints(&client, &ns, &ep.name_any()).await;
        }
    }
}

async fn delete_endpoints(client: &kube::Client, ns: &str, name: &str) {
    match Api::<Endpoints>::namespaced(client.clone(), ns)
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => {
            info!(endpoints = %format!("{ns}/{name}"), "deleted the endpoints of a deleted service")
        }
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => {
            warn!(endpoints = %format!("{ns}/{name}"), error = %e, "deleting the endpoints of a deleted service")
        }
    }
}

/// The Endpoints a Service should have, given the pods it selects.
pub fn desired_endpoints(svc: &Service, pods: &[&Pod]) -> Endpoints {
    Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.namespace(),
            labels: Some(pods::endpoint_labels(svc)),
            ..Default::default()
        },
        subsets: Some(desired_subsets(svc, pods)).filter(|s| !s.is_empty()),
    }
}

/// Whether `existing` already says what `desired` says (subsets and labels).
pub fn up_to_date(existing: &Endpoints, desired: &Endpoints) -> bool {
    let subsets = |e: &Endpoints| e.subsets.clone().filter(|s| !s.is_empty());
    subsets(existing) == subsets(desired) && existing.labels() == desired.labels()
}

#[instrument(skip_all, fields(key = %format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any())))]
pub async fn reconcile(svc: Arc<Service>, state: Arc<State>) -> Result<Action> {
    let ns = svc
        .namespace()
        .ok_or_else(|| Error::NoNamespace(svc.name_any()))?;
    if pods::managed_selector(&svc).is_none() || svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let key = format!("{ns}/{}", svc.name_any());
    let selected = pods::selected_pods(&svc, &state.pods);
    let selected: Vec<&Pod> = selected.iter().map(Arc::as_ref).collect();
    let desired = desired_endpoints(&svc, &selected);
    let api: Api<Endpoints> = Api::namespaced(state.client.clone(), &ns);
    let write_err = |source| Error::Write {
        key: key.clone(),
        source,
    };
    match state.endpoints.get(&endpoints_ref(&svc)) {
        Some(existing) if up_to_date(&existing, &desired) => {}
        Some(existing) => {
            let mut updated = existing.as_ref().clone();
            updated.subsets = desired.subsets;
            updated.metadata.labels = desired.metadata.labels;
            // Replace carries the resourceVersion read: a stale cache gets a 409 and a retry.
            api.replace(&svc.name_any(), &PostParams::default(), &updated)
                .await
                .map_err(write_err)?;
            info!(
                ready = count(&updated, true),
                not_ready = count(&updated, false),
                "updated endpoints"
            );
        }
        None => match api.create(&PostParams::default(), &desired).await {
            Ok(created) => info!(
                ready = count(&created, true),
                not_ready = count(&created, false),
                "created endpoints"
            ),
            // Made by someone else since the cache looked: its event brings us back.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(source) => return Err(write_err(source)),
        },
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn count(ep: &Endpoints, ready: bool) -> usize {
    ep.subsets
        .iter()
        .flatten()
        .map(|s| {
            if ready {
                &s.addresses
            } else {
                &s.not_ready_addresses
            }
        })
        .map(|a| a.as_ref().map_or(0, Vec::len))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::endpoint_pods::fixtures::*;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    #[test]
    fn endpoints_are_rewritten_only_when_subsets_or_labels_change() {
        let svc = service("web").ports(vec![svc_port("http", 80, IntOrString::Int(8080))]);
        let a = pod("a").ip("10.42.0.1").ready();
        let b = pod("b").ip("10.42.0.2");
        let current = desired_endpoints(&svc, &[&a, &b]);
        let cases = [
            ("same pods", desired_endpoints(&svc, &[&b, &a]), true),
            (
                "a pod turned ready",
                desired_endpoints(&svc, &[&a, &b.clone().ready()]),
                false,
            ),
            ("a pod left", desired_endpoints(&svc, &[&a]), false),
            (
                "the service became headless",
                desired_endpoints(&svc.clone().headless(), &[&a, &b]),
                false,
            ),
        ];
        for (name, desired, want) in cases {
            assert_eq!(up_to_date(&current, &desired), want, "{name}");
        }
    }
}
