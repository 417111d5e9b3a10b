//! Shared informers: one watch and one cache (reflector store) per kind for every loop
//! in a process, fanned out to each loop that asks for it (client-go's
//! SharedInformerFactory does the same for kube-controller-manager).
//!
//! kube-runtime's own shared stores (`reflector::store_shared`) are not used because
//! their subscribers never see deletions and block the watch while one subscriber
//! (a loop that lost its lease) stops reading. Here every subscriber gets applied and
//! deleted objects; one that falls behind gets every cached object again (a resync)
//! instead of holding the others up.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::broadcast;

/// How many changes a subscriber may fall behind before it gets a resync instead.
const CAPACITY: usize = 4096;

/// What a kind needs to be shared: a typed, static Kubernetes resource.
pub trait Kind:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Kind for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static
{
}

/// One change an informer saw: the object as stored, or as it was when deleted.
#[derive(Debug)]
pub enum Touched<K> {
    Applied(Arc<K>),
    Deleted(Arc<K>),
}

impl<K> Touched<K> {
    /// The object either way.
    pub fn object(self) -> Arc<K> {
        match self {
            Touched::Applied(o) | Touched::Deleted(o) => o,
        }
    }
}

impl<K> Clone for Touched<K> {
    fn clone(&self) -> Self {
        match self {
            Touched::Applied(o) => Touched::Applied(o.clone()),
            Touched::Deleted(o) => Touched::Deleted(o.clone()),
        }
    }
}

/// What goes over the fan-out channel: one change, or "everything" after a (re)list.
enum Message<K> {
    One(Touched<K>),
    All,
}

impl<K> Clone for Message<K> {
    fn clone(&self) -> Self {
        match self {
            Message::One(t) => Message::One(t.clone()),
            Message::All => Message::All,
        }
    }
}

/// A handle on one shared watch of `K`: its cache, and subscriptions to its changes.
pub struct Informer<K: Kind> {
    store: Store<K>,
    tx: broadcast::Sender<Message<K>>,
    /// True once the first list is in the cache. kube-runtime's `Store::wait_until_ready`
    /// wakes only the last of several concurrent waiters, so a shared cache is waited
    /// for here, and only then handed to `Controller`s (which wait on it again).
    synced: tokio::sync::watch::Receiver<bool>,
}

impl<K: Kind> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer {
            store: self.store.clone(),
            tx: self.tx.clone(),
            synced: self.synced.clone(),
        }
    }
}

impl<K: Kind> Informer<K> {
    /// The cache every subscriber reads.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Waits until the cache holds the first list (upstream's WaitForCacheSync). A loop
    /// waits for every informer it reads before it starts its controller.
    pub async fn synced(&self) {
        let mut synced = self.synced.clone();
        // Fails only when the watch task is gone (the registry was dropped).
        let _ = synced.wait_for(|s| *s).await;
    }

    /// Every object the watch touches from now on, applied or deleted. It starts with
    /// every cached object once the cache is filled (what a loop's own fresh watch
    /// would list first), and repeats them all after each relist or when this
    /// subscriber fell behind.
    pub fn events(&self) -> impl Stream<Item = Touched<K>> + Send + 'static {
        // Subscribe before listing the cache, so no change falls between the two.
        let rx = self.tx.subscribe();
        let this = self.clone();
        let initial = futures::stream::once(async move {
            this.synced().await;
            all(&this.store)
        });
        let store = self.store.clone();
        let live = futures::stream::unfold(rx, move |mut rx| {
            let store = store.clone();
            async move {
                let batch = match rx.recv().await {
                    Ok(Message::One(t)) => vec![t],
                    Ok(Message::All) | Err(broadcast::error::RecvError::Lagged(_)) => all(&store),
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                Some((batch, rx))
            }
        });
        initial.chain(live).flat_map(futures::stream::iter)
    }

    /// [`Informer::events`] as the objects alone (what `Controller::*_shared_stream` take).
    pub fn touched(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        self.events().map(Touched::object)
    }
}

fn all<K: Kind>(store: &Store<K>) -> Vec<Touched<K>> {
    store.state().into_iter().map(Touched::Applied).collect()
}

/// The informers of one process, by kind and watch selectors. Each watch starts the
/// first time a loop asks for its kind and runs until this registry is dropped.
pub struct Informers {
    /// What the loop holding this handle writes with (its own identity).
    client: kube::Client,
    /// What the shared watches use (the process's identity).
    watch_client: kube::Client,
    inner: Arc<Mutex<Registry>>,
}

#[derive(Default)]
struct Registry {
    informers: HashMap<(TypeId, String), Box<dyn Any + Send + Sync>>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Informers {
    pub fn new(client: kube::Client) -> Self {
        Informers {
            watch_client: client.clone(),
            client,
            inner: Arc::default(),
        }
    }

    /// The same shared informers for a loop that writes with `client` (its own
    /// identity); the watches keep the process's.
    pub fn for_loop(&self, client: kube::Client) -> Self {
        Informers {
            client,
            watch_client: self.watch_client.clone(),
            inner: self.inner.clone(),
        }
    }

    /// The client the loop holding this handle writes with.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The shared informer of every `K` in the cluster.
    pub fn all<K: Kind>(&self) -> Informer<K> {
        self.get(watcher::Config::default())
    }

    /// The shared informer of the `K`s `config` selects; loops asking with the same
    /// label and field selectors share one watch. Must be called inside a Tokio runtime.
    pub fn get<K: Kind>(&self, config: watcher::Config) -> Informer<K> {
        let key = (
            TypeId::of::<K>(),
            format!(
                "labels={:?} fields={:?}",
                config.label_selector, config.field_selector
            ),
        );
        let mut inner = self.inner.lock().expect("informer registry poisoned");
        if let Some(found) = inner.informers.get(&key) {
            return found
                .downcast_ref::<Informer<K>>()
                .expect("informers are keyed by their type")
                .clone();
        }
        let (informer, task) = start::<K>(self.watch_client.clone(), config);
        inner.tasks.push(task.abort_handle());
        inner.informers.insert(key, Box::new(informer.clone()));
        informer
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts the watch that fills one cache and announces each change.
fn start<K: Kind>(
    client: kube::Client,
    config: watcher::Config,
) -> (Informer<K>, tokio::task::JoinHandle<()>) {
    let (store, mut writer) = reflector::store::<K>();
    let (tx, _) = broadcast::channel(CAPACITY);
    let (synced_tx, synced) = tokio::sync::watch::channel(false);
    let informer = Informer {
        store: store.clone(),
        tx: tx.clone(),
        synced,
    };
    let task = tokio::spawn(async move {
        let kind = K::kind(&());
        let mut events =
            std::pin::pin!(watcher(kube::Api::<K>::all(client), config).default_backoff());
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(%kind, error = %e, "watch failed; retrying");
                    continue;
                }
            };
            writer.apply_watcher_event(&event);
            // Sending fails only while no loop subscribes; nothing is lost then, as a
            // later subscriber starts from the cache.
            let _ = match event {
                watcher::Event::Apply(obj) => {
                    // Announce the cache's own copy instead of a second one.
                    let shared = store
                        .get(&ObjectRef::from_obj(&obj))
                        .unwrap_or_else(|| Arc::new(obj));
                    tx.send(Message::One(Touched::Applied(shared)))
                }
                watcher::Event::Delete(obj) => {
                    tx.send(Message::One(Touched::Deleted(Arc::new(obj))))
                }
                watcher::Event::InitDone => {
                    synced_tx.send_replace(true);
                    tx.send(Message::All)
                }
                watcher::Event::Init | watcher::Event::InitApply(_) => continue,
            };
        }
    });
    (informer, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn pod(name: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("ns".into());
        p
    }

    fn names(batch: &[Touched<Pod>]) -> Vec<String> {
        let mut names: Vec<String> = batch
            .iter()
            .map(|t| t.clone().object().metadata.name.clone().unwrap_or_default())
            .collect();
        names.sort();
        names
    }

    /// An informer whose cache holds `cached`, with a fan-out of `capacity` changes;
    /// no watch behind it.
    fn informer(
        cached: &[&str],
        capacity: usize,
    ) -> (Informer<Pod>, tokio::sync::watch::Sender<bool>) {
        let (store, mut writer) = reflector::store::<Pod>();
        writer.apply_watcher_event(&watcher::Event::Init);
        for name in cached {
            writer.apply_watcher_event(&watcher::Event::InitApply(pod(name)));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let (tx, _) = broadcast::channel(capacity);
        let (synced_tx, synced) = tokio::sync::watch::channel(true);
        (Informer { store, tx, synced }, synced_tx)
    }

    #[tokio::test]
    async fn a_subscriber_starts_with_every_cached_object_then_sees_changes_and_deletions() {
        let (informer, _synced) = informer(&["a", "b"], 8);
        let mut events = std::pin::pin!(informer.events());
        let first: Vec<_> = vec![events.next().await.unwrap(), events.next().await.unwrap()];
        assert_eq!(names(&first), ["a", "b"]);
        let _ = informer
            .tx
            .send(Message::One(Touched::Applied(Arc::new(pod("c")))));
        let _ = informer
            .tx
            .send(Message::One(Touched::Deleted(Arc::new(pod("a")))));
        assert!(
            matches!(events.next().await, Some(Touched::Applied(p)) if p.metadata.name.as_deref() == Some("c"))
        );
        assert!(
            matches!(events.next().await, Some(Touched::Deleted(p)) if p.metadata.name.as_deref() == Some("a"))
        );
    }

    #[tokio::test]
    async fn a_subscriber_that_fell_behind_gets_every_cached_object_again() {
        let (informer, _synced) = informer(&["a", "b"], 2);
        let mut events = std::pin::pin!(informer.events());
        events.next().await.unwrap();
        events.next().await.unwrap();
        // Three changes into a fan-out of two: this subscriber misses one.
        for name in ["x", "y", "z"] {
            let _ = informer
                .tx
                .send(Message::One(Touched::Applied(Arc::new(pod(name)))));
        }
        let resync: Vec<_> = vec![events.next().await.unwrap(), events.next().await.unwrap()];
        assert_eq!(
            names(&resync),
            ["a", "b"],
            "a lagging subscriber is resynced from the cache"
        );
    }

    #[tokio::test]
    async fn a_relist_sends_every_cached_object_to_each_subscriber() {
        let (informer, _synced) = informer(&["a"], 8);
        let mut one = std::pin::pin!(informer.events());
        let mut two = std::pin::pin!(informer.events());
        one.next().await.unwrap();
        two.next().await.unwrap();
        let _ = informer.tx.send(Message::All);
        for events in [&mut one, &mut two] {
            assert_eq!(names(&[events.next().await.unwrap()]), ["a"]);
        }
    }

    #[tokio::test]
    async fn every_waiter_wakes_when_the_cache_is_filled() {
        let (informer, synced) = informer(&[], 8);
        synced.send_replace(false);
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let informer = informer.clone();
                tokio::spawn(async move { informer.synced().await })
            })
            .collect();
        tokio::task::yield_now().await;
        synced.send_replace(true);
        for w in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(30), w)
                .await
                .expect("a waiter never woke")
                .unwrap();
        }
    }
}
