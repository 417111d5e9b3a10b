//! The EndpointSlice controller: for every Service with a selector, discovery.k8s.io/v1
//! EndpointSlices (at most 100 endpoints each, one set of ports each) listing the
//! selected pods with ready/serving/terminating conditions, labelled with the service
//! name and `managed-by: endpointslice-controller.k8s.io` and owned by the Service, so
//! the garbage collector removes them with it (upstream pkg/controller/endpointslice).
//! Slices managed by others (the apiserver's `kubernetes` slice) are never touched.

pub mod plan;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, Controller};
use kube::{Api, ResourceExt};
use tracing::{info, instrument};

pub use plan::{
    desired_groups, plan, Plan, MANAGED_BY, MANAGED_BY_LABEL, MAX_ENDPOINTS_PER_SLICE,
    SERVICE_NAME_LABEL,
};

use crate::expectations::{cached, Expectations};
use crate::runtime::informers::Informers;
use crate::shared::endpoint_pods as pods;
use crate::{Context, LoopFuture};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("service {0} has no namespace")]
    NoNamespace(String),
    #[error("{action} endpointslice for {key}: {source}")]
    Write {
        action: &'static str,
        key: String,
        source: kube::Error,
    },
}

impl crate::runtime::retry::ReconcileError for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub struct State {
    pub client: kube::Client,
    pub pods: Store<Pod>,
    pub slices: Store<EndpointSlice>,
    /// Slices created or deleted but not yet seen in the cache: until they are, the
    /// cache would make us create the same endpoints twice.
    pub expectations: Expectations,
}

/// The loop entry for [`crate::loops`].
pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        run_controller(&ctx.informers).await;
        anyhow::bail!("the endpointslice controller stopped")
    })
}

/// Runs the controller until its streams end.
pub async fn run_controller(informers: &Informers) {
    let pods = informers.all::<Pod>();
    let ours = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let slices = informers.get::<EndpointSlice>(ours);
    let services = informers.all::<Service>();
    tokio::join!(pods.synced(), slices.synced(), services.synced());
    let services_for_pods = services.store();
    let slices_for_pods = slices.store();
    let state = Arc::new(State {
        client: informers.client().clone(),
        pods: pods.store(),
        slices: slices.store(),
        expectations: Expectations::default(),
    });
    Controller::for_shared_stream(services.touched(), services.store())
        .watches_shared_stream(pods.touched(), move |pod| {
            pods::services_for_pod(&services_for_pods, &pod, |svc| {
                lists_pod(&slices_for_pods, svc, &pod)
            })
        })
        .watches_shared_stream(slices.touched(), |slice: Arc<EndpointSlice>| {
            let service = slice.labels().get(SERVICE_NAME_LABEL)?;
            Some(ObjectRef::new(service).within(&slice.namespace()?))
        })
        .run(
            crate::runtime::metrics::metered(reconcile),
            crate::runtime::retry::error_policy,
            state,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "endpointslice reconcile failed");
            }
        })
        .await;
}

/// The slices of `svc` this controller manages.
fn slices_of(slices: &Store<EndpointSlice>, svc: &Service) -> Vec<EndpointSlice> {
    slices
        .state()
        .iter()
        .filter(|s| s.namespace() == svc.namespace())
        .filter(|s| s.labels().get(SERVICE_NAME_LABEL) == svc.metadata.name.as_ref())
        .filter(|s| s.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY))
        .map(|s| s.as_ref().clone())
        .collect()
}

fn lists_pod(slices: &Store<EndpointSlice>, svc: &Service, pod: &Pod) -> bool {
    slices_of(slices, svc)
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .any(|e| {
            e.target_ref
                .as_ref()
                .is_some_and(|r| r.uid == pod.metadata.uid)
        })
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
    let existing = slices_of(&state.slices, &svc);
    if let Err(in_flight) = state
        .expectations
        .satisfied(&key, &cached(&existing), Instant::now())
    {
        info!(
            in_flight,
            "waiting for the cache to observe earlier slice writes"
        );
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let selected = pods::selected_pods(&svc, &state.pods);
    let selected: Vec<&Pod> = selected.iter().map(Arc::as_ref).collect();
    let plan = plan(
        &svc,
        &existing,
        desired_groups(&svc, &selected),
        MAX_ENDPOINTS_PER_SLICE,
    );
    let api: Api<EndpointSlice> = Api::namespaced(state.client.clone(), &ns);
    let (creates, updates, deletes) = plan.counts();
    plan.apply(&api, &state.expectations, &key, true)
        .await
        .map_err(|e| Error::Write {
            action: e.action,
            key: key.clone(),
            source: e.source,
        })?;
    if creates + updates + deletes > 0 {
        info!(creates, updates, deletes, "synced endpointslices");
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}
