//! The EndpointSlice mirroring controller (upstream pkg/controller/endpointslicemirroring):
//! the Endpoints of a Service without a selector, written by hand or by another
//! controller, are mirrored into discovery.k8s.io/v1 EndpointSlices, so that consumers
//! of slices (the service proxy, cluster DNS) see them. Slices are labelled
//! `managed-by: endpointslicemirroring-controller.k8s.io` and with the service name,
//! owned by the Endpoints, and removed when the Endpoints goes, is labelled
//! `endpointslice.kubernetes.io/skip-mirror: "true"`, or its Service gets a selector
//! or goes. Slices of any other manager are never touched.

pub mod plan;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, Controller};
use kube::{Api, ResourceExt};
use tracing::{info, instrument};

pub use plan::{
    desired, plan, should_mirror, Plan, MANAGED_BY, MANAGED_BY_LABEL, MAX_ENDPOINTS_PER_SUBSET,
    SERVICE_NAME_LABEL, SKIP_MIRROR_LABEL,
};

use crate::expectations::{cached, Expectations};
use crate::runtime::informers::{Informers, Touched};
use crate::shared::slice_writes::{self, WriteError};
use crate::{Context, LoopFuture};

/// The component its events are reported as (upstream's).
pub const COMPONENT: &str = "endpoint-slice-mirroring-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("endpoints {0} has no namespace")]
    NoNamespace(String),
    #[error("{action} mirrored endpointslice for {key}: {source}")]
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
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
    /// Slices created or deleted but not yet seen in the cache.
    pub expectations: Expectations,
}

/// The loop entry for [`crate::loops`].
pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        run_controller(&ctx.informers).await;
        anyhow::bail!("the endpointslicemirroring controller stopped")
    })
}

/// Runs the controller until its streams end.
pub async fn run_controller(informers: &Informers) {
    let endpoints = informers.all::<Endpoints>();
    let ours = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let slices = informers.get::<EndpointSlice>(ours);
    let services = informers.all::<Service>();
    tokio::join!(endpoints.synced(), slices.synced(), services.synced());
    let state = Arc::new(State {
        client: informers.client().clone(),
        services: services.store(),
        slices: slices.store(),
        expectations: Expectations::default(),
    });
    // A deleted Endpoints has nothing left to reconcile: its slices go here.
    let cleanup_state = state.clone();
    let cleanup = endpoints.events().for_each(move |touched| {
        let state = cleanup_state.clone();
        async move {
            if let Touched::Deleted(ep) = touched {
                let (ns, name) = (ep.namespace().unwrap_or_default(), ep.name_any());
                if let Err(e) = delete_mirrored(&state, &ns, &name).await {
                    tracing::debug!(error = %e, "deleting the slices of a deleted endpoints");
                }
            }
        }
    });
    let controller = Controller::for_shared_stream(endpoints.touched(), endpoints.store())
        .watches_shared_stream(services.touched(), |svc: Arc<Service>| {
            Some(ObjectRef::new(&svc.name_any()).within(&svc.namespace()?))
        })
        .watches_shared_stream(slices.touched(), |slice: Arc<EndpointSlice>| {
            let name = slice.labels().get(SERVICE_NAME_LABEL)?;
            Some(ObjectRef::new(name).within(&slice.namespace()?))
        })
        .run(
            crate::runtime::metrics::metered(reconcile),
            crate::runtime::retry::error_policy,
            state,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "endpointslicemirroring reconcile failed");
            }
        });
    tokio::join!(controller, cleanup);
}

/// The slices this controller mirrored for the Endpoints `ns/name`.
fn mirrored(slices: &Store<EndpointSlice>, ns: &str, name: &str) -> Vec<EndpointSlice> {
    slices
        .state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(ns))
        .filter(|s| s.labels().get(SERVICE_NAME_LABEL).map(String::as_str) == Some(name))
        .filter(|s| s.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY))
        .map(|s| s.as_ref().clone())
        .collect()
}

async fn delete_mirrored(state: &State, ns: &str, name: &str) -> Result<()> {
    let key = format!("{ns}/{name}");
    let api: Api<EndpointSlice> = Api::namespaced(state.client.clone(), ns);
    for slice in mirrored(&state.slices, ns, name) {
        slice_writes::delete(&api, &state.expectations, &key, &slice)
            .await
            .map_err(|e| write_error(&key, e))?;
    }
    Ok(())
}

fn write_error(key: &str, e: WriteError) -> Error {
    Error::Write {
        action: e.action,
        key: key.to_string(),
        source: e.source,
    }
}

#[instrument(skip_all, fields(key = %format!("{}/{}", ep.namespace().unwrap_or_default(), ep.name_any())))]
pub async fn reconcile(ep: Arc<Endpoints>, state: Arc<State>) -> Result<Action> {
    let ns = ep
        .namespace()
        .ok_or_else(|| Error::NoNamespace(ep.name_any()))?;
    let name = ep.name_any();
    let key = format!("{ns}/{name}");
    let service = state.services.get(&ObjectRef::new(&name).within(&ns));
    let selectorless = service.is_some_and(|svc| {
        svc.spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .is_none()
    });
    if !should_mirror(&ep) || !selectorless {
        delete_mirrored(&state, &ns, &name).await?;
        return Ok(Action::await_change());
    }
    let existing = mirrored(&state.slices, &ns, &name);
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
    let want = desired(&ep, MAX_ENDPOINTS_PER_SUBSET);
    if want.invalid > 0 {
        let message = format!(
            "Skipped {} invalid IP addresses when mirroring to EndpointSlices",
            want.invalid
        );
        crate::podcontrol::publish_event(
            &state.client,
            ep.as_ref(),
            "Warning",
            "InvalidIPAddress",
            &message,
            COMPONENT,
        )
        .await;
    }
    if want.skipped > want.invalid {
        let message = format!(
            "A max of {MAX_ENDPOINTS_PER_SUBSET} addresses can be mirrored to EndpointSlices per Endpoints subset. {} addresses were skipped",
            want.skipped
        );
        crate::podcontrol::publish_event(
            &state.client,
            ep.as_ref(),
            "Warning",
            "TooManyAddressesToMirror",
            &message,
            COMPONENT,
        )
        .await;
    }
    let plan = plan(&ep, &existing, want);
    let api: Api<EndpointSlice> = Api::namespaced(state.client.clone(), &ns);
    let (creates, updates, deletes) = plan.counts();
    // No new slices for an Endpoints on its way out.
    let create = ep.metadata.deletion_timestamp.is_none();
    plan.apply(&api, &state.expectations, &key, create)
        .await
        .map_err(|e| write_error(&key, e))?;
    if creates + updates + deletes > 0 {
        info!(
            creates,
            updates, deletes, "mirrored endpoints into endpointslices"
        );
    }
    Ok(Action::await_change())
}
