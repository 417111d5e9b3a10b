//! The four watches that fill the shared store: Services, EndpointSlices, Nodes and
//! ServiceCIDRs, each a kube-runtime `watcher` (paged LIST, then WATCH, relisting after a
//! 410). An initial list (or relist) replaces the kind wholesale, so objects deleted while a
//! watch was down go too; later events set or remove one object.

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use super::convert;
use super::model::{self, ServiceKey};
use super::store::ClusterState;
use crate::network::ipam::Cidr;

/// Starts the four watches; they run until the handle is aborted.
pub fn spawn(client: Client, state: Arc<ClusterState>) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::join!(
            watch::<Service>(Api::all(client.clone()), state.clone()),
            watch::<EndpointSlice>(Api::all(client.clone()), state.clone()),
            watch::<Node>(Api::all(client.clone()), state.clone()),
            watch::<ServiceCIDR>(Api::all(client), state),
        );
    })
}

/// A kind the store holds: how one object converts, and how the store takes a full list
/// or one object.
trait Watched: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static {
    type Item: Send;
    const KIND: &'static str;
    fn convert(&self) -> Option<Self::Item>;
    fn replace(state: &ClusterState, all: Vec<Self::Item>);
    /// Stores the object (`Some`, its conversion) or removes it (`None`: deleted, or no
    /// longer something the store keeps).
    fn set(state: &ClusterState, object: &Self, item: Option<Self::Item>);
}

async fn watch<K: Watched>(api: Api<K>, state: Arc<ClusterState>) {
    let mut events = watcher(api).default_backoff().boxed();
    let mut listed: Vec<K::Item> = Vec::new();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => listed.clear(),
            Ok(Event::InitApply(object)) => listed.extend(object.convert()),
            Ok(Event::InitDone) => K::replace(&state, std::mem::take(&mut listed)),
            Ok(Event::Apply(object)) => K::set(&state, &object, object.convert()),
            Ok(Event::Delete(object)) => K::set(&state, &object, None),
            Err(e) if K::KIND == "ServiceCIDR" && is_not_found(&e) => {
                // An API server without ServiceCIDRs (before 1.33, or with the API off):
                // there are none, and the --service-cidr flag is the only range. The
                // watcher keeps retrying with back-off, so they show up if it is enabled.
                if !state.is_synced() {
                    tracing::info!(
                        "the API server serves no ServiceCIDRs; using --service-cidr only"
                    );
                }
                K::replace(&state, Vec::new());
            }
            Err(e) => tracing::warn!(kind = K::KIND, error = %e, "watch failed; retrying"),
        }
    }
}

fn watcher<K: Watched>(api: Api<K>) -> impl futures::Stream<Item = watcher::Result<Event<K>>> {
    watcher::watcher(api, watcher::Config::default())
}

fn is_not_found(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status.code == 404,
        _ => false,
    }
}

impl Watched for Service {
    type Item = (ServiceKey, model::Service);
    const KIND: &'static str = "Service";
    fn convert(&self) -> Option<Self::Item> {
        convert::service(self)
    }
    fn replace(state: &ClusterState, all: Vec<Self::Item>) {
        state.replace_services(all);
    }
    fn set(state: &ClusterState, object: &Self, item: Option<Self::Item>) {
        let key = ServiceKey::new(&object.namespace().unwrap_or_default(), &object.name_any());
        state.set_service(key, item.map(|(_, service)| service));
    }
}

impl Watched for EndpointSlice {
    type Item = ((String, String), model::Slice);
    const KIND: &'static str = "EndpointSlice";
    fn convert(&self) -> Option<Self::Item> {
        convert::slice(self)
    }
    fn replace(state: &ClusterState, all: Vec<Self::Item>) {
        state.replace_slices(all);
    }
    fn set(state: &ClusterState, object: &Self, item: Option<Self::Item>) {
        let namespace = object.namespace().unwrap_or_default();
        state.set_slice(&namespace, &object.name_any(), item.map(|(_, slice)| slice));
    }
}

impl Watched for Node {
    type Item = model::NodeInfo;
    const KIND: &'static str = "Node";
    fn convert(&self) -> Option<Self::Item> {
        convert::node(self)
    }
    fn replace(state: &ClusterState, all: Vec<Self::Item>) {
        state.replace_nodes(all);
    }
    fn set(state: &ClusterState, object: &Self, item: Option<Self::Item>) {
        state.set_node(&object.name_any(), item);
    }
}

impl Watched for ServiceCIDR {
    type Item = (String, Vec<Cidr>);
    const KIND: &'static str = "ServiceCIDR";
    fn convert(&self) -> Option<Self::Item> {
        convert::service_cidr(self)
    }
    fn replace(state: &ClusterState, all: Vec<Self::Item>) {
        state.replace_service_cidrs(all);
    }
    fn set(state: &ClusterState, object: &Self, item: Option<Self::Item>) {
        state.set_service_cidr(&object.name_any(), item.map(|(_, cidrs)| cidrs));
    }
}
