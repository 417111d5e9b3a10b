//! The garbage collector: watches every resource, keeps the ownerReferences graph
//! (`gc/graph.rs`) and acts on it — deletes dependents whose owners are gone
//! (background), deletes the dependents of an owner deleted in the foreground before
//! removing its `foregroundDeletion` finalizer, and releases the dependents of an
//! owner deleted with `orphan` before removing that finalizer.

pub mod graph;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::{stream, FutureExt, StreamExt};
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::discovery::{verbs, ApiResource, Scope};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;

use self::graph::{
    dependent_step, owner_step, DependentStep, Graph, Node, OwnerState, OwnerStep, FOREGROUND,
    ORPHAN,
};
use crate::{Context, LoopFuture};

/// Kinds the collector leaves alone, as upstream's default `ignoredResources` does:
/// events are many, short-lived and never owners.
const IGNORED: [(&str, &str); 2] = [("", "events"), ("events.k8s.io", "events")];
/// How soon a failed step is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// How often discovery is read again for resources added since (CRDs), like
/// upstream's 30 s garbage-collector resync.
const REDISCOVER: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("discovering resources: {0}")]
    Discovery(#[source] kube::Error),
    #[error("{action} {resource} {name}: {source}")]
    Api {
        action: &'static str,
        resource: String,
        name: String,
        source: kube::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A watched resource: how to reach its objects.
struct Kind {
    ar: ApiResource,
    namespaced: bool,
}

struct Collector {
    client: kube::Client,
    kinds: Vec<Kind>,
    /// (group, kind) of owner references to the index of their resource.
    by_kind: HashMap<(String, String), usize>,
    graph: Graph,
    queue: VecDeque<String>,
    queued: HashSet<String>,
}

pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move { Ok(collect(ctx.client.clone()).await?) })
}

/// Every resource the collector can watch and act on.
async fn discover(client: &kube::Client) -> Result<Vec<Kind>> {
    let found = crate::runtime::discovery::resources(
        client.clone(),
        &[verbs::LIST, verbs::WATCH, verbs::DELETE, verbs::PATCH],
    )
    .await
    .map_err(Error::Discovery)?;
    Ok(found
        .into_iter()
        .filter(|(ar, _)| !IGNORED.contains(&(ar.group.as_str(), ar.plural.as_str())))
        .map(|(ar, caps)| Kind {
            namespaced: caps.scope == Scope::Namespaced,
            ar,
        })
        .collect())
}

/// Whether two discoveries list the same resources (by group, version, plural).
fn same_resources(a: &[Kind], b: &[Kind]) -> bool {
    let key = |k: &Kind| {
        (
            k.ar.group.clone(),
            k.ar.version.clone(),
            k.ar.plural.clone(),
        )
    };
    let mut a: Vec<_> = a.iter().map(key).collect();
    let mut b: Vec<_> = b.iter().map(key).collect();
    a.sort();
    b.sort();
    a == b
}

async fn collect(client: kube::Client) -> Result<()> {
    let kinds = discover(&client).await?;
    let by_kind = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| ((k.ar.group.clone(), k.ar.kind.clone()), i))
        .collect();
    let watches = kinds.iter().enumerate().map(|(i, k)| {
        watcher(
            Api::<DynamicObject>::all_with(client.clone(), &k.ar),
            watcher::Config::default(),
        )
        .default_backoff()
        .map(move |e| (i, e))
        .boxed()
    });
    let mut events = stream::select_all(watches);
    tracing::info!(resources = kinds.len(), "garbage collector watching");
    let mut c = Collector {
        client,
        kinds,
        by_kind,
        graph: Graph::default(),
        queue: VecDeque::new(),
        queued: HashSet::new(),
    };
    // Uids seen since each resource's (re)list began, to drop what the list lacks.
    let mut relisting: HashMap<usize, HashSet<String>> = HashMap::new();
    let mut retry = Vec::new();
    let mut retry_tick = tokio::time::interval(RETRY);
    let mut rediscover =
        tokio::time::interval_at(tokio::time::Instant::now() + REDISCOVER, REDISCOVER);
    loop {
        tokio::select! {
            ev = events.next() => {
                let Some((i, ev)) = ev else { return Ok(()) };
                c.handle(i, ev, &mut relisting);
                // Take in every event already at hand before acting, so a burst is one pass.
                while let Some(Some((i, ev))) = events.next().now_or_never() {
                    c.handle(i, ev, &mut relisting);
                }
            }
            _ = retry_tick.tick() => c.enqueue(std::mem::take(&mut retry)),
            _ = rediscover.tick() => match discover(&c.client).await {
                // Resources came or went (a CRD): start over with watches of the new
                // set; the runtime restarts the loop, and the graph is rebuilt from lists.
                Ok(now) if !same_resources(&now, &c.kinds) => {
                    tracing::info!(before = c.kinds.len(), after = now.len(), "served resources changed; restarting the collector");
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "rediscovery failed; keeping the current watches"),
            },
        }
        while let Some(uid) = c.queue.pop_front() {
            c.queued.remove(&uid);
            if let Err(e) = c.process(&uid).await {
                tracing::warn!(uid = %uid, error = %e, "garbage collection step failed; retrying");
                retry.push(uid);
            }
        }
    }
}

type WatchEvent = std::result::Result<watcher::Event<DynamicObject>, watcher::Error>;

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl Collector {
    fn handle(
        &mut self,
        i: usize,
        ev: WatchEvent,
        relisting: &mut HashMap<usize, HashSet<String>>,
    ) {
        match ev {
            Ok(watcher::Event::Init) => {
                relisting.insert(i, HashSet::new());
            }
            Ok(watcher::Event::InitApply(o)) => {
                relisting
                    .entry(i)
                    .or_default()
                    .insert(o.uid().unwrap_or_default());
                self.apply(i, &o);
            }
            Ok(watcher::Event::InitDone) => {
                let seen = relisting.remove(&i).unwrap_or_default();
                for uid in self
                    .graph
                    .uids_of(i)
                    .into_iter()
                    .filter(|u| !seen.contains(u))
                {
                    let dirty = self.graph.remove(&uid);
                    self.enqueue(dirty);
                }
            }
            Ok(watcher::Event::Apply(o)) => self.apply(i, &o),
            Ok(watcher::Event::Delete(o)) => {
                let dirty = self.graph.remove(&o.uid().unwrap_or_default());
                self.enqueue(dirty);
            }
            Err(e) => {
                tracing::warn!(resource = %self.kinds[i].ar.plural, error = %e, "watch failed; retrying")
            }
        }
    }

    fn apply(&mut self, resource: usize, o: &DynamicObject) {
        let node = Node {
            uid: o.uid().unwrap_or_default(),
            resource,
            namespace: o.namespace(),
            name: o.name_any(),
            resource_version: o.resource_version(),
            owners: o.owner_references().to_vec(),
            finalizers: o.finalizers().to_vec(),
            deleting: o.metadata.deletion_timestamp.is_some(),
        };
        let dirty = self.graph.upsert(node);
        self.enqueue(dirty);
    }

    fn enqueue(&mut self, uids: Vec<String>) {
        for uid in uids {
            if self.queued.insert(uid.clone()) {
                self.queue.push_back(uid);
            }
        }
    }

    fn api(&self, node: &Node) -> Api<DynamicObject> {
        let ar = &self.kinds[node.resource].ar;
        match &node.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, ar),
            None => Api::all_with(self.client.clone(), ar),
        }
    }

    fn err(&self, action: &'static str, node: &Node) -> impl FnOnce(kube::Error) -> Error {
        let (resource, name) = (
            self.kinds[node.resource].ar.plural.clone(),
            node.name.clone(),
        );
        move |source| Error::Api {
            action,
            resource,
            name,
            source,
        }
    }

    #[tracing::instrument(skip(self), fields(key))]
    async fn process(&mut self, uid: &str) -> Result<()> {
        let Some(node) = self.graph.get(uid).cloned() else {
            return Ok(());
        };
        tracing::Span::current().record(
            "key",
            format!("{}/{}", node.namespace.as_deref().unwrap_or(""), node.name),
        );
        let dependents: Vec<Node> = self.graph.dependents(uid).into_iter().cloned().collect();
        match owner_step(&node, &dependents.iter().collect::<Vec<_>>()) {
            OwnerStep::Nothing => {}
            OwnerStep::Orphan { dependents: deps } => {
                for d in deps.iter().filter_map(|d| self.graph.get(d).cloned()) {
                    self.drop_owners(&d, std::slice::from_ref(&node.uid))
                        .await?;
                }
                return self.remove_finalizer(&node, ORPHAN).await;
            }
            OwnerStep::Foreground {
                dependents: deps,
                remove_finalizer,
            } => {
                self.enqueue(deps);
                if remove_finalizer {
                    return self.remove_finalizer(&node, FOREGROUND).await;
                }
                if let Some(d) = self
                    .graph
                    .waiting_circle_through(uid)
                    .and_then(|d| self.graph.get(&d).cloned())
                {
                    tracing::info!(dependent = %d.name, "breaking a circle of objects waiting for each other");
                    let owners = graph::unblocked(&d.owners, Some(&node.uid));
                    return self
                        .set_owners(&d, owners, "unblocking owner references of")
                        .await;
                }
            }
        }
        if node.deleting || node.owners.is_empty() {
            return Ok(());
        }
        let mut states = Vec::new();
        for r in &node.owners {
            states.push((r, self.owner_state(&node, r).await?));
        }
        if dependent_step(&states, !dependents.is_empty()) == DependentStep::Nothing {
            return Ok(());
        }
        // About to drop references or delete: decide on the object as it is now, not as
        // this watch last showed it (as upstream does). The graph can lag: an orphaning
        // owner may have just had its reference removed from this very object.
        let Some(live) = self
            .api(&node)
            .get_opt(&node.name)
            .await
            .map_err(self.err("reading", &node))?
        else {
            return Ok(());
        };
        if live.uid().as_deref() != Some(node.uid.as_str())
            || live.metadata.deletion_timestamp.is_some()
        {
            return Ok(());
        }
        let node = Node {
            resource_version: live.resource_version(),
            owners: live.owner_references().to_vec(),
            ..node
        };
        let mut states = Vec::new();
        for r in &node.owners {
            states.push((r, self.owner_state(&node, r).await?));
        }
        match dependent_step(&states, !dependents.is_empty()) {
            DependentStep::Nothing => Ok(()),
            DependentStep::DropOwners(drop) => self.drop_owners(&node, &drop).await,
            DependentStep::Delete { foreground } => {
                // As upstream: an owner waits for this object, which would in turn wait
                // for its dependents; when one of those already waits itself, they
                // likely form a circle back to the owner. Stop this object blocking its
                // owners first, or the circle would wait forever.
                if foreground && dependents.iter().any(|d| d.waiting_for_dependents()) {
                    let owners = graph::unblocked(&node.owners, None);
                    self.set_owners(&node, owners, "unblocking owner references of")
                        .await?;
                }
                let policy = if foreground {
                    PropagationPolicy::Foreground
                } else {
                    PropagationPolicy::Background
                };
                tracing::info!(?policy, "deleting: its owners are gone");
                let dp = DeleteParams {
                    propagation_policy: Some(policy),
                    // Never delete a newer object that took the name.
                    preconditions: Some(Preconditions {
                        uid: Some(node.uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match self.api(&node).delete(&node.name, &dp).await {
                    Ok(_) => Ok(()),
                    Err(e) if not_found(&e) => Ok(()),
                    Err(e) => Err(self.err("deleting", &node)(e)),
                }
            }
        }
    }

    /// An owner's state: from the graph when it is there, otherwise from the apiserver
    /// (the owner's watch may not have caught up), Gone when absent or of another uid.
    async fn owner_state(
        &self,
        dependent: &Node,
        r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) -> Result<OwnerState> {
        if let Some(owner) = self.graph.get(&r.uid) {
            return Ok(if owner.waiting_for_dependents() {
                OwnerState::WaitingForDependents
            } else {
                OwnerState::Present
            });
        }
        let group = r.api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        let Some(&i) = self.by_kind.get(&(group.to_string(), r.kind.clone())) else {
            tracing::debug!(kind = %r.kind, "owner of an unknown kind; keeping the dependent");
            return Ok(OwnerState::Present);
        };
        let kind = &self.kinds[i];
        let api = match (&dependent.namespace, kind.namespaced) {
            (_, false) => Api::<DynamicObject>::all_with(self.client.clone(), &kind.ar),
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &kind.ar),
            (None, true) => {
                tracing::warn!(kind = %r.kind, "a cluster-scoped object cannot have a namespaced owner; keeping it");
                return Ok(OwnerState::Present);
            }
        };
        let found = api.get_opt(&r.name).await.map_err(|source| Error::Api {
            action: "reading owner",
            resource: kind.ar.plural.clone(),
            name: r.name.clone(),
            source,
        })?;
        Ok(match found {
            Some(o) if o.uid().as_deref() == Some(r.uid.as_str()) => {
                let waiting = o.metadata.deletion_timestamp.is_some()
                    && o.finalizers().iter().any(|f| f == FOREGROUND);
                if waiting {
                    OwnerState::WaitingForDependents
                } else {
                    OwnerState::Present
                }
            }
            _ => OwnerState::Gone,
        })
    }

    /// Removes references to `drop` from a dependent, guarded by its resourceVersion.
    async fn drop_owners(&self, node: &Node, drop: &[String]) -> Result<()> {
        tracing::info!(dependent = %node.name, owners = ?drop, "removing owner references");
        let owners = graph::without_owners(&node.owners, drop);
        self.set_owners(node, owners, "removing owner references of")
            .await
    }

    /// Replaces a dependent's owner references, guarded by its resourceVersion.
    async fn set_owners(
        &self,
        node: &Node,
        owners: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
        action: &'static str,
    ) -> Result<()> {
        let patch = json!({"metadata": {
            "ownerReferences": owners,
            "resourceVersion": node.resource_version,
        }});
        match self
            .api(node)
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(self.err(action, node)(e)),
        }
    }

    async fn remove_finalizer(&self, node: &Node, finalizer: &str) -> Result<()> {
        tracing::info!(finalizer, "removing finalizer");
        let patch = json!({"metadata": {
            "finalizers": graph::without_finalizer(&node.finalizers, finalizer),
            "resourceVersion": node.resource_version,
        }});
        match self
            .api(node)
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(self.err("removing a finalizer of", node)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(group: &str, plural: &str) -> Kind {
        let ar = ApiResource {
            group: group.into(),
            version: "v1".into(),
            api_version: if group.is_empty() {
                "v1".into()
            } else {
                format!("{group}/v1")
            },
            kind: plural.trim_end_matches('s').into(),
            plural: plural.into(),
        };
        Kind {
            ar,
            namespaced: true,
        }
    }

    #[test]
    fn a_new_resource_changes_the_watched_set_but_order_does_not() {
        let before = [kind("", "configmaps"), kind("apps", "deployments")];
        let reordered = [kind("apps", "deployments"), kind("", "configmaps")];
        let grown = [
            kind("", "configmaps"),
            kind("apps", "deployments"),
            kind("example.com", "widgets"),
        ];
        assert!(same_resources(&before, &reordered));
        assert!(!same_resources(&before, &grown));
    }
}
