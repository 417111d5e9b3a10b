//! ServiceLB, as k3s' servicelb controller: a `type: LoadBalancer` Service without
//! `spec.loadBalancerClass` gets `status.loadBalancer.ingress` = the IPs of the nodes
//! that answer for it (Ready nodes; with externalTrafficPolicy Local only those with a
//! ready endpoint; ExternalIPs if any, else InternalIPs). The node agents' service
//! proxy forwards traffic to those addresses on the service's ports, so there are no
//! klipper-lb pods; as with k3s' hostPorts, a younger Service asking for a port an
//! older one holds gets no nodes. Events `UpdatedLoadBalancer` and
//! `UnAvailableLoadBalancer` tell each change.

pub mod plan;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::Controller;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{info, instrument};

pub use plan::{current_ips, go_list, ingress_ips, port_holder, serves};

use crate::runtime::informers::Informers;
use crate::{Context, LoopFuture};

/// The component its events are reported as: k3s reports as the cloud provider's
/// service controller.
pub const COMPONENT: &str = "service-controller";
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("service {0} has no namespace")]
    NoNamespace(String),
    #[error("updating the load balancer status of {key}: {source}")]
    Status { key: String, source: kube::Error },
}

impl crate::runtime::retry::ReconcileError for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub struct State {
    pub client: kube::Client,
    pub services: Store<Service>,
    pub nodes: Store<Node>,
    pub slices: Store<EndpointSlice>,
    /// Services already told they were blocked by an older one's port.
    blocked: Mutex<HashSet<String>>,
}

/// The loop entry for [`crate::loops`].
pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        run_controller(&ctx.informers).await;
        anyhow::bail!("the servicelb controller stopped")
    })
}

/// The served Services of `store` for which `pick` holds.
fn served_where(
    store: &Store<Service>,
    pick: impl Fn(&Service) -> bool,
) -> Vec<ObjectRef<Service>> {
    store
        .state()
        .iter()
        .filter(|s| serves(s) && pick(s))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// Runs the controller until its streams end.
pub async fn run_controller(informers: &Informers) {
    let services = informers.all::<Service>();
    let nodes = informers.all::<Node>();
    let slices = informers.all::<EndpointSlice>();
    tokio::join!(services.synced(), nodes.synced(), slices.synced());
    let state = Arc::new(State {
        client: informers.client().clone(),
        services: services.store(),
        nodes: nodes.store(),
        slices: slices.store(),
        blocked: Mutex::default(),
    });
    let for_nodes = services.store();
    let for_ports = services.store();
    Controller::for_shared_stream(services.touched(), services.store())
        // Any node change can change every balancer's nodes.
        .watches_shared_stream(nodes.touched(), move |_node: Arc<Node>| {
            served_where(&for_nodes, |_| true)
        })
        .watches_shared_stream(slices.touched(), |slice: Arc<EndpointSlice>| {
            let service = slice.labels().get(SERVICE_NAME_LABEL)?;
            Some(ObjectRef::new(service).within(&slice.namespace()?))
        })
        // A balancer that comes, changes or goes can free or take another's port.
        .watches_shared_stream(services.touched(), move |svc: Arc<Service>| {
            served_where(&for_ports, |other| {
                other.uid() != svc.uid() && plan::share_a_port(other, &svc)
            })
        })
        .run(
            crate::runtime::metrics::metered(reconcile),
            crate::runtime::retry::error_policy,
            state,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "servicelb reconcile failed");
            }
        })
        .await;
}

#[instrument(skip_all, fields(key = %format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any())))]
pub async fn reconcile(svc: Arc<Service>, state: Arc<State>) -> Result<Action> {
    let ns = svc
        .namespace()
        .ok_or_else(|| Error::NoNamespace(svc.name_any()))?;
    let key = format!("{ns}/{}", svc.name_any());
    let class = svc
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_class.as_ref());
    let before = current_ips(&svc);
    if class.is_some() || svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let after = if !serves(&svc) {
        // No longer a load balancer: its ingress goes, as the service controller does.
        if before.is_empty() {
            return Ok(Action::await_change());
        }
        vec![]
    } else {
        let services = state.services.state();
        let services: Vec<&Service> = services.iter().map(Arc::as_ref).collect();
        let holder = port_holder(&svc, &services).map(|h| h.name_any());
        let newly_blocked = {
            let mut blocked = state.blocked.lock().unwrap_or_else(|e| e.into_inner());
            match &holder {
                Some(_) => blocked.insert(key.clone()),
                None => {
                    blocked.remove(&key);
                    false
                }
            }
        };
        if let Some(holder) = holder {
            info!(
                holder,
                "a port of this load balancer is held by an older one"
            );
            if newly_blocked && before.is_empty() {
                // The status does not change, but the user learns why it stays empty.
                unavailable(&state, &svc).await;
            }
            vec![]
        } else {
            let nodes = state.nodes.state();
            let nodes: Vec<&Node> = nodes.iter().map(Arc::as_ref).collect();
            let slices = state.slices.state();
            let slices: Vec<&EndpointSlice> = slices
                .iter()
                .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
                .filter(|s| s.labels().get(SERVICE_NAME_LABEL) == svc.metadata.name.as_ref())
                .map(Arc::as_ref)
                .collect();
            ingress_ips(&svc, &nodes, &slices)
        }
    };
    if after == before {
        return Ok(Action::await_change());
    }
    let ingress = if after.is_empty() {
        serde_json::Value::Null
    } else {
        json!(after.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>())
    };
    let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
    let api: Api<Service> = Api::namespaced(state.client.clone(), &ns);
    api.patch_status(
        &svc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|source| Error::Status {
        key: key.clone(),
        source,
    })?;
    info!(before = %go_list(&before), after = %go_list(&after), "updated load balancer ingress");
    if !serves(&svc) {
        return Ok(Action::await_change());
    }
    if after.is_empty() {
        unavailable(&state, &svc).await;
    } else {
        let message = format!(
            "Updated LoadBalancer with new IPs: {} -> {}",
            go_list(&before),
            go_list(&after)
        );
        crate::podcontrol::publish_event(
            &state.client,
            svc.as_ref(),
            "Normal",
            "UpdatedLoadBalancer",
            &message,
            COMPONENT,
        )
        .await;
    }
    Ok(Action::await_change())
}

async fn unavailable(state: &State, svc: &Service) {
    crate::podcontrol::publish_event(
        &state.client,
        svc,
        "Warning",
        "UnAvailableLoadBalancer",
        "There are no available nodes for LoadBalancer",
        COMPONENT,
    )
    .await;
}
