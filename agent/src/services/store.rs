//! The agent's one copy of the Services, EndpointSlices, Nodes and ServiceCIDRs it watches,
//! shared by the service proxy, the cluster DNS server and the peer routes. Each of them
//! subscribes and is told what changed since it last looked (kube-proxy's change trackers,
//! one per consumer), then reads what it needs from the store.

use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, RwLock, Weak};

use tokio::sync::Notify;

use super::model::{NodeInfo, Service, ServiceKey, Slice};
use crate::network::ipam::Cidr;

/// The kinds the store is filled from; each reports once that its first full list arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Services,
    EndpointSlices,
    Nodes,
    ServiceCidrs,
}

const ALL_KINDS: [Kind; 4] = [
    Kind::Services,
    Kind::EndpointSlices,
    Kind::Nodes,
    Kind::ServiceCidrs,
];

/// What changed since a subscriber last asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Services whose spec or EndpointSlices changed (or that were added or deleted).
    pub services: BTreeSet<ServiceKey>,
    pub nodes: bool,
    pub service_cidrs: bool,
    /// Every kind has delivered its first full list. Consumers program nothing before
    /// (upstream's OnServicesSynced / OnEndpointSlicesSynced). Once true it stays true in
    /// every later `Changes`.
    pub synced: bool,
    /// This is the first `Changes` with `synced` true for this subscriber: do a full sync.
    pub became_synced: bool,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.services.is_empty() && !self.nodes && !self.service_cidrs && !self.became_synced
    }
}

/// A (namespace, name) of an EndpointSlice.
type SliceKey = (Arc<str>, Arc<str>);

#[derive(Default)]
struct Inner {
    services: HashMap<ServiceKey, Arc<Service>>,
    slices: HashMap<SliceKey, Arc<Slice>>,
    /// Service → its slices' names (a slice names its Service by label).
    /// (Sorted; a Vec and not a BTreeSet: one slice per Service is the rule, and a
    /// BTreeSet's first node is ~200 bytes.)
    by_service: HashMap<ServiceKey, Vec<Arc<str>>>,
    /// Node names of endpoints, stored once: 50,000 endpoints name a few nodes.
    node_names: HashSet<Arc<str>>,
    nodes: HashMap<Arc<str>, Arc<NodeInfo>>,
    service_cidrs: HashMap<Arc<str>, Vec<Cidr>>,
    synced: BTreeSet<Kind>,
    subscribers: Vec<Weak<Pending>>,
}

struct Pending {
    changes: Mutex<Changes>,
    /// Whether this subscriber was already told `became_synced`.
    told_synced: Mutex<bool>,
    notify: Notify,
}

/// Read-mostly: the DNS server reads on every query from several threads, the watches
/// write a few times a second.
#[derive(Default)]
pub struct ClusterState {
    inner: RwLock<Inner>,
}

/// A Service's (namespace, name) as borrowed text, so a DNS query can look a Service up
/// without building a [`ServiceKey`] (two allocations) first.
trait KeyText {
    fn text(&self) -> (&str, &str);
}

impl KeyText for ServiceKey {
    fn text(&self) -> (&str, &str) {
        (&self.namespace, &self.name)
    }
}

impl KeyText for (&str, &str) {
    fn text(&self) -> (&str, &str) {
        *self
    }
}

impl<'a> Borrow<dyn KeyText + 'a> for ServiceKey {
    fn borrow(&self) -> &(dyn KeyText + 'a) {
        self
    }
}

/// The same hash as `ServiceKey`'s derived one (namespace, then name, as `str`).
impl Hash for dyn KeyText + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (namespace, name) = self.text();
        namespace.hash(state);
        name.hash(state);
    }
}

impl PartialEq for dyn KeyText + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

impl Eq for dyn KeyText + '_ {}

/// The EndpointSlices of one Service, read in place under the store's read lock.
pub struct SlicesOf<'a> {
    inner: &'a Inner,
    namespace: &'a Arc<str>,
    names: Option<&'a Vec<Arc<str>>>,
}

impl<'a> SlicesOf<'a> {
    /// The slices, ordered by slice name.
    pub fn iter(&self) -> impl Iterator<Item = &'a Slice> + '_ {
        self.names.into_iter().flatten().filter_map(|name| {
            self.inner
                .slices
                .get(&(self.namespace.clone(), name.clone()))
                .map(|s| &**s)
        })
    }
}

/// One consumer's view of the changes.
pub struct Subscription {
    pending: Arc<Pending>,
    state: Arc<ClusterState>,
}

impl Subscription {
    /// Waits until something changed since the last call, and returns all of it.
    pub async fn next(&mut self) -> Changes {
        loop {
            let notified = self.pending.notify.notified();
            if let Some(changes) = self.take() {
                return changes;
            }
            notified.await;
        }
    }

    /// What changed since the last call, without waiting; `None` when nothing did.
    pub fn take(&self) -> Option<Changes> {
        let synced = self.state.is_synced();
        let mut told = self.pending.told_synced.lock().unwrap();
        let mut changes = std::mem::take(&mut *self.pending.changes.lock().unwrap());
        changes.synced = synced;
        if synced && !*told {
            *told = true;
            changes.became_synced = true;
        }
        (!changes.is_empty()).then_some(changes)
    }

    pub fn state(&self) -> &Arc<ClusterState> {
        &self.state
    }
}

impl ClusterState {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A new consumer. It is told `became_synced` once every kind has been listed, even if
    /// that happened before it subscribed.
    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        let pending = Arc::new(Pending {
            changes: Mutex::new(Changes::default()),
            told_synced: Mutex::new(false),
            notify: Notify::new(),
        });
        let mut inner = self.inner.write().unwrap();
        inner.subscribers.push(Arc::downgrade(&pending));
        // Wake it at once when the store is already synced, so it does its full sync.
        if inner.synced.len() == ALL_KINDS.len() {
            pending.notify.notify_one();
        }
        drop(inner);
        Subscription {
            pending,
            state: self.clone(),
        }
    }

    pub fn is_synced(&self) -> bool {
        self.inner.read().unwrap().synced.len() == ALL_KINDS.len()
    }

    pub fn service(&self, key: &ServiceKey) -> Option<Arc<Service>> {
        self.inner.read().unwrap().services.get(key).cloned()
    }

    /// Every Service, in no particular order.
    pub fn services(&self) -> Vec<(ServiceKey, Arc<Service>)> {
        let inner = self.inner.read().unwrap();
        inner
            .services
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The EndpointSlices of a Service, ordered by slice name.
    pub fn slices(&self, key: &ServiceKey) -> Vec<Arc<Slice>> {
        let inner = self.inner.read().unwrap();
        let Some(names) = inner.by_service.get(key) else {
            return Vec::new();
        };
        names
            .iter()
            .filter_map(|name| {
                inner
                    .slices
                    .get(&(key.namespace.clone(), name.clone()))
                    .cloned()
            })
            .collect()
    }

    /// Runs `read` on the Service `namespace/name` and its EndpointSlices under one read
    /// lock, copying nothing; `None` when there is no such Service.
    pub fn with_service<R>(
        &self,
        namespace: &str,
        name: &str,
        read: impl FnOnce(&Service, SlicesOf<'_>) -> R,
    ) -> Option<R> {
        let inner = self.inner.read().unwrap();
        let wanted: &dyn KeyText = &(namespace, name);
        let (key, service) = inner.services.get_key_value(wanted)?;
        let slices = SlicesOf {
            inner: &inner,
            namespace: &key.namespace,
            names: inner.by_service.get(wanted),
        };
        Some(read(service, slices))
    }

    pub fn node(&self, name: &str) -> Option<Arc<NodeInfo>> {
        self.inner.read().unwrap().nodes.get(name).cloned()
    }

    pub fn nodes(&self) -> Vec<Arc<NodeInfo>> {
        self.inner.read().unwrap().nodes.values().cloned().collect()
    }

    /// The ranges of every ServiceCIDR object, deduplicated.
    pub fn service_cidrs(&self) -> Vec<Cidr> {
        let inner = self.inner.read().unwrap();
        let mut all: Vec<Cidr> = Vec::new();
        for cidr in inner.service_cidrs.values().flatten() {
            if !all.contains(cidr) {
                all.push(*cidr);
            }
        }
        all.sort_by_key(|c| (u32::from(c.network()), c.prefix()));
        all
    }

    /// Adds, replaces (`Some`) or removes (`None`) a Service. Subscribers hear of it only
    /// when it really changed.
    pub fn set_service(&self, key: ServiceKey, service: Option<Service>) {
        let mut inner = self.inner.write().unwrap();
        if inner.set_service(key.clone(), service) {
            inner.tell(|c| {
                c.services.insert(key.clone());
            });
        }
    }

    /// Adds, replaces or removes the EndpointSlice `namespace/name`.
    pub fn set_slice(&self, namespace: &str, name: &str, slice: Option<Slice>) {
        let mut inner = self.inner.write().unwrap();
        let touched = inner.set_slice((namespace.into(), name.into()), slice);
        if !touched.is_empty() {
            inner.tell(|c| c.services.extend(touched.iter().cloned()));
        }
    }

    pub fn set_node(&self, name: &str, node: Option<NodeInfo>) {
        let mut inner = self.inner.write().unwrap();
        if inner.set_node(name.into(), node) {
            inner.tell(|c| c.nodes = true);
        }
    }

    pub fn set_service_cidr(&self, name: &str, cidrs: Option<Vec<Cidr>>) {
        let mut inner = self.inner.write().unwrap();
        if inner.set_service_cidr(name.into(), cidrs) {
            inner.tell(|c| c.service_cidrs = true);
        }
    }

    /// A full list of Services (a watch's initial list or relist): what is not in it is gone.
    pub fn replace_services(&self, all: Vec<(ServiceKey, Service)>) {
        let mut inner = self.inner.write().unwrap();
        let mut touched = BTreeSet::new();
        let keep: BTreeSet<ServiceKey> = all.iter().map(|(k, _)| k.clone()).collect();
        let gone: Vec<ServiceKey> = inner
            .services
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if inner.set_service(key.clone(), None) {
                touched.insert(key);
            }
        }
        for (key, service) in all {
            if inner.set_service(key.clone(), Some(service)) {
                touched.insert(key);
            }
        }
        inner.synced.insert(Kind::Services);
        inner.tell(|c| c.services.extend(touched.iter().cloned()));
    }

    /// A full list of EndpointSlices: ((namespace, name), slice).
    pub fn replace_slices(&self, all: Vec<((String, String), Slice)>) {
        let mut inner = self.inner.write().unwrap();
        let mut touched = BTreeSet::new();
        let keep: BTreeSet<(String, String)> = all.iter().map(|(k, _)| k.clone()).collect();
        let gone: Vec<SliceKey> = inner
            .slices
            .keys()
            .filter(|(ns, n)| !keep.contains(&(ns.to_string(), n.to_string())))
            .cloned()
            .collect();
        for key in gone {
            touched.extend(inner.set_slice(key, None));
        }
        for ((ns, name), slice) in all {
            touched.extend(inner.set_slice((ns.into(), name.into()), Some(slice)));
        }
        inner.synced.insert(Kind::EndpointSlices);
        inner.tell(|c| c.services.extend(touched.iter().cloned()));
    }

    pub fn replace_nodes(&self, all: Vec<NodeInfo>) {
        let mut inner = self.inner.write().unwrap();
        let keep: BTreeSet<Arc<str>> = all.iter().map(|n| n.name.clone()).collect();
        let gone: Vec<Arc<str>> = inner
            .nodes
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        let mut changed = false;
        for name in gone {
            changed |= inner.set_node(name, None);
        }
        for node in all {
            changed |= inner.set_node(node.name.clone(), Some(node));
        }
        inner.synced.insert(Kind::Nodes);
        inner.tell(|c| c.nodes |= changed);
    }

    pub fn replace_service_cidrs(&self, all: Vec<(String, Vec<Cidr>)>) {
        let mut inner = self.inner.write().unwrap();
        let keep: BTreeSet<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        let gone: Vec<Arc<str>> = inner
            .service_cidrs
            .keys()
            .filter(|k| !keep.contains(&***k))
            .cloned()
            .collect();
        let mut changed = false;
        for name in gone {
            changed |= inner.set_service_cidr(name, None);
        }
        for (name, cidrs) in all {
            changed |= inner.set_service_cidr(name.into(), Some(cidrs));
        }
        inner.synced.insert(Kind::ServiceCidrs);
        inner.tell(|c| c.service_cidrs |= changed);
    }
}

impl Inner {
    /// Records a change for every live subscriber and wakes it; forgets dropped ones.
    fn tell(&mut self, record: impl Fn(&mut Changes)) {
        let synced = self.synced.len() == ALL_KINDS.len();
        self.subscribers.retain(|weak| {
            let Some(pending) = weak.upgrade() else {
                return false;
            };
            let mut changes = pending.changes.lock().unwrap();
            record(&mut changes);
            let changed = !changes.is_empty();
            drop(changes);
            // Lock order as in `Subscription::take`: never hold `changes` here.
            if changed || (synced && !*pending.told_synced.lock().unwrap()) {
                pending.notify.notify_one();
            }
            true
        });
    }

    fn set_service(&mut self, key: ServiceKey, service: Option<Service>) -> bool {
        match service {
            Some(service) => {
                if self.services.get(&key).is_some_and(|old| **old == service) {
                    return false;
                }
                self.services.insert(key, Arc::new(service));
                true
            }
            None => self.services.remove(&key).is_some(),
        }
    }

    /// Returns the Services whose endpoints changed (the old and the new owner of the slice).
    fn set_slice(&mut self, key: SliceKey, slice: Option<Slice>) -> Vec<ServiceKey> {
        let old = self.slices.get(&key).cloned();
        if let (Some(old), Some(new)) = (&old, &slice) {
            if **old == *new {
                return Vec::new();
            }
        }
        let mut touched = Vec::new();
        if let Some(old) = old {
            if let Some(names) = self.by_service.get_mut(&old.service) {
                if let Ok(at) = names.binary_search(&key.1) {
                    names.remove(at);
                }
                if names.is_empty() {
                    self.by_service.remove(&old.service);
                }
            }
            touched.push(old.service.clone());
            self.slices.remove(&key);
        }
        if let Some(mut slice) = slice {
            self.share_strings(&mut slice);
            let names = self.by_service.entry(slice.service.clone()).or_default();
            if let Err(at) = names.binary_search(&key.1) {
                names.insert(at, key.1.clone());
            }
            if !touched.contains(&slice.service) {
                touched.push(slice.service.clone());
            }
            self.slices.insert(key, Arc::new(slice));
        }
        touched
    }

    /// Points a new slice's strings at copies the store already holds: its Service's key
    /// (when the Service is known) and its endpoints' node names. At 10,000 slices of 5
    /// endpoints that is ~70,000 small allocations fewer.
    fn share_strings(&mut self, slice: &mut Slice) {
        if let Some((key, _)) = self.services.get_key_value(&slice.service) {
            slice.service = key.clone();
        }
        for ep in &mut slice.endpoints {
            if let Some(node) = &ep.node {
                let shared = match self.node_names.get(node) {
                    Some(shared) => shared.clone(),
                    None => {
                        self.node_names.insert(node.clone());
                        node.clone()
                    }
                };
                ep.node = Some(shared);
            }
        }
    }

    fn set_node(&mut self, name: Arc<str>, node: Option<NodeInfo>) -> bool {
        match node {
            Some(node) => {
                if self.nodes.get(&name).is_some_and(|old| **old == node) {
                    return false;
                }
                self.nodes.insert(name, Arc::new(node));
                true
            }
            None => self.nodes.remove(&name).is_some(),
        }
    }

    fn set_service_cidr(&mut self, name: Arc<str>, cidrs: Option<Vec<Cidr>>) -> bool {
        match cidrs {
            Some(cidrs) => {
                if self.service_cidrs.get(&name) == Some(&cidrs) {
                    return false;
                }
                self.service_cidrs.insert(name, cidrs);
                true
            }
            None => self.service_cidrs.remove(&name).is_some(),
        }
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
