//! Upstream's Node authorizer (`plugin/pkg/auth/authorizer/node`): a node's identity
//! (`system:node:<name>` in `system:nodes`) may get the secrets, config maps, claims,
//! volumes and resource claims its pods use (and the secrets their persistent volumes
//! name), create tokens for their service accounts, and use its own Lease and CSINode; everything else a node asks is decided by the
//! `system:node` ClusterRole's rules, which upstream binds to nobody. Other users get
//! no opinion.
//!
//! The pod relationships come from [`graph`], followed from the pods and persistent
//! volumes watch caches; an allowed read is confirmed against the pods watch cache itself,
//! so a node loses a secret as soon as the server has seen its last pod using it go.
//! As upstream since 1.32 (`AuthorizeNodeWithSelectors`, on by default), a node reads
//! only its own Node and lists or watches pods only with the field selector
//! `spec.nodeName=<its name>` (or gets one of the pods bound to it).

use std::sync::{Arc, OnceLock, RwLock, Weak};

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use super::rbac::PolicyRule;
use super::{Attributes, Authorizer, ResourceAttributes, Rules, UserInfo, Verdict};
use crate::api::Api;
use crate::status::{ApiError, Result};
use crate::watchcache::{EventType, Subscription, WatchCache};

pub mod graph;

use graph::{Graph, Uses};

/// The group every node's identity is in (upstream's `user.NodesGroup`).
pub const NODES_GROUP: &str = "system:nodes";
/// The prefix of a node's user name.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// Where nodes' heartbeat Leases live.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The node a user is, as upstream's `NodeIdentity`: `Some("")` for a member of
/// `system:nodes` whose name says no node.
pub fn node_identity(user: &UserInfo) -> Option<&str> {
    let name = user.name.strip_prefix(NODE_USER_PREFIX)?;
    user.groups.iter().any(|g| g == NODES_GROUP).then_some(name)
}

/// The watch caches the graph is followed from.
#[derive(Clone, Copy)]
enum Source {
    Pods,
    Volumes,
}

impl Source {
    const ALL: [Source; 2] = [Source::Pods, Source::Volumes];

    fn plural(self) -> &'static str {
        match self {
            Source::Pods => "pods",
            Source::Volumes => "persistentvolumes",
        }
    }
}

/// A live watch cache and the key prefix of its resource.
struct Cache {
    cache: Weak<WatchCache>,
    prefix: String,
}

/// The Node authorizer. Clones share one graph.
#[derive(Clone)]
pub struct NodeAuthorizer {
    graph: Arc<RwLock<Graph>>,
    pods: Arc<OnceLock<Cache>>,
    attachments: Arc<OnceLock<Cache>>,
    rules: Arc<Vec<PolicyRule>>,
}

impl Default for NodeAuthorizer {
    /// Deciding what nodes may do beyond their pods' objects by the `system:node`
    /// ClusterRole's rules of the bootstrap policy.
    fn default() -> Self {
        Self::with_rules(crate::api::policy::cluster_role_rules("system:node"))
    }
}

type Decision = (Verdict, Option<String>);

fn no(reason: impl Into<String>) -> Decision {
    (Verdict::NoOpinion, Some(reason.into()))
}

const ALLOW: Decision = (Verdict::Allow, None);

impl NodeAuthorizer {
    pub fn with_rules(rules: Vec<PolicyRule>) -> Self {
        NodeAuthorizer {
            graph: Arc::new(RwLock::new(Graph::default())),
            pods: Arc::default(),
            attachments: Arc::default(),
            rules: Arc::new(rules),
        }
    }

    /// Changes the graph directly (tests fill it themselves).
    pub fn graph_mut(&self) -> std::sync::RwLockWriteGuard<'_, Graph> {
        self.graph.write().expect("node graph poisoned")
    }

    fn graph(&self) -> std::sync::RwLockReadGuard<'_, Graph> {
        self.graph.read().expect("node graph poisoned")
    }

    fn decide(&self, a: &Attributes) -> Decision {
        let Some(node) = node_identity(&a.user) else {
            return (Verdict::NoOpinion, None);
        };
        if node.is_empty() {
            return no(format!("unknown node for user {:?}", a.user.name));
        }
        if let Some(r) = &a.resource {
            let sub = r.subresource.as_deref();
            match (r.group.as_str(), r.resource.as_str()) {
                ("", "secrets") => return self.read_namespaced(node, Uses::Secret, a, r),
                ("", "configmaps") => return self.read_namespaced(node, Uses::ConfigMap, a, r),
                ("", "persistentvolumeclaims") if sub == Some("status") => {
                    return match a.verb.as_str() {
                        "update" | "patch" => self.related(node, Target::Claim, r),
                        _ => no("can only get/update/patch this type"),
                    };
                }
                ("", "persistentvolumeclaims") => return self.get(node, Target::Claim, a, r),
                ("", "persistentvolumes") => return self.get(node, Target::Volume, a, r),
                ("resource.k8s.io", "resourceclaims") => {
                    return self.get(node, Target::ResourceClaim, a, r)
                }
                ("storage.k8s.io", "volumeattachments") => {
                    return self.get(node, Target::Attachment, a, r)
                }
                ("", "serviceaccounts") => return self.create_token(node, a, r),
                ("coordination.k8s.io", "leases") => return lease(node, a, r),
                ("storage.k8s.io", "csinodes") => return csi_node(node, a, r),
                ("", "nodes") => return own_node(node, a, r),
                ("", "pods") => return self.pod(node, a, r),
                _ => {}
            }
        }
        // What is not subdivided above is decided by the static node rules.
        if self.rules.iter().any(|rule| rule.allows(a)) {
            ALLOW
        } else {
            (Verdict::NoOpinion, None)
        }
    }

    fn read_namespaced(
        &self,
        node: &str,
        kind: Uses,
        a: &Attributes,
        r: &ResourceAttributes,
    ) -> Decision {
        if !matches!(a.verb.as_str(), "get" | "list" | "watch") {
            return no("can only read resources of this type");
        }
        if r.subresource.is_some() {
            return no("cannot read subresource");
        }
        if r.namespace.as_deref().is_none_or(str::is_empty) {
            return no("can only read namespaced object of this type");
        }
        self.related(node, Target::Used(kind), r)
    }

    fn get(&self, node: &str, target: Target, a: &Attributes, r: &ResourceAttributes) -> Decision {
        if a.verb != "get" {
            return no("can only get individual resources of this type");
        }
        if r.subresource.is_some() {
            return no("cannot get subresource");
        }
        self.related(node, target, r)
    }

    /// Pods: a get of one bound to the node, a list or watch selecting the node's pods
    /// (or naming one bound to it), mirror pods' creation and deletion, status and
    /// evictions (NodeRestriction confines these to the node's own pods).
    fn pod(&self, node: &str, a: &Attributes, r: &ResourceAttributes) -> Decision {
        match (r.subresource.as_deref(), a.verb.as_str()) {
            (None, "get") => self.get(node, Target::Pod, a, r),
            (None, "list" | "watch") => {
                if r.selectors.requires_field("spec.nodeName", node) {
                    ALLOW
                } else if r.name.as_deref().is_some_and(|n| !n.is_empty()) {
                    self.related(node, Target::Pod, r)
                } else {
                    no("can only list/watch pods with spec.nodeName field selector")
                }
            }
            (None, "create" | "delete")
            | (Some("status"), "update" | "patch")
            | (Some("eviction"), "create") => ALLOW,
            _ => (Verdict::NoOpinion, None),
        }
    }

    fn create_token(&self, node: &str, a: &Attributes, r: &ResourceAttributes) -> Decision {
        if a.verb != "create" || r.name.as_deref().is_none_or(str::is_empty) {
            return no("can only create tokens for individual service accounts");
        }
        if r.subresource.as_deref() != Some("token") {
            return no("can only create token subresource of serviceaccount");
        }
        self.related(node, Target::Used(Uses::ServiceAccount), r)
    }

    /// Whether the named object is related to `node`.
    fn related(&self, node: &str, target: Target, r: &ResourceAttributes) -> Decision {
        let Some(name) = r.name.as_deref().filter(|n| !n.is_empty()) else {
            return no("No Object name found");
        };
        let namespace = r.namespace.as_deref().unwrap_or_default();
        let found = match target {
            Target::Used(Uses::Secret) => {
                self.used_on(node, Uses::Secret, namespace, name)
                    || self.volume_secret_on(node, namespace, name)
            }
            Target::Used(kind) => self.used_on(node, kind, namespace, name),
            Target::Claim => self.used_on(node, Uses::PersistentVolumeClaim, namespace, name),
            Target::ResourceClaim => self.used_on(node, Uses::ResourceClaim, namespace, name),
            Target::Volume => self.volume_on(node, name),
            Target::Attachment => self.attached_to(node, name),
            Target::Pod => self.bound_to(node, namespace, name),
        };
        if found {
            ALLOW
        } else {
            no(format!(
                "no relationship found between node '{node}' and this object"
            ))
        }
    }

    /// Whether a pod bound to `node` uses the object: the graph's candidates, each
    /// confirmed in the pods watch cache (still there, still on that node).
    fn used_on(&self, node: &str, kind: Uses, namespace: &str, name: &str) -> bool {
        let candidates = self.graph().pods_using(node, kind, namespace, name);
        self.confirmed(node, &candidates)
    }

    /// Whether one of the pods is in the pods watch cache, bound to `node` (all of them
    /// count before the cache is followed, in tests that fill the graph alone).
    fn confirmed(&self, node: &str, candidates: &[graph::Key]) -> bool {
        let live = self
            .pods
            .get()
            .and_then(|c| Some((c.cache.upgrade()?, &c.prefix)));
        candidates.iter().any(|(ns, pod)| match &live {
            Some((cache, prefix)) => cache
                .get(&format!("{prefix}{ns}/{pod}"))
                .is_some_and(|p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node)),
            None => true,
        })
    }

    /// Whether the pod is bound to `node`, in the graph and still in the pods cache.
    fn bound_to(&self, node: &str, namespace: &str, name: &str) -> bool {
        let known = self.graph().pod_node(namespace, name) == Some(node);
        known && self.confirmed(node, &[(namespace.to_string(), name.to_string())])
    }

    /// Whether the persistent volume's claim is used by a pod bound to `node`.
    fn volume_on(&self, node: &str, volume: &str) -> bool {
        let claim = self.graph().claim_of(volume).cloned();
        claim
            .is_some_and(|(ns, claim)| self.used_on(node, Uses::PersistentVolumeClaim, &ns, &claim))
    }

    /// Whether the secret is named by a persistent volume (its CSI node secrets, or an
    /// older plugin's secretRef) bound to a claim a pod on `node` uses: upstream's
    /// node <- pod <- pvc <- pv <- secret.
    fn volume_secret_on(&self, node: &str, namespace: &str, name: &str) -> bool {
        let volumes = self.graph().volumes_using_secret(namespace, name);
        volumes.iter().any(|v| self.volume_on(node, v))
    }

    /// Whether the VolumeAttachment `name` is for `node` (read from its watch cache).
    fn attached_to(&self, node: &str, name: &str) -> bool {
        let Some(c) = self.attachments.get() else {
            return false;
        };
        c.cache
            .upgrade()
            .and_then(|cache| cache.get(&format!("{}{name}", c.prefix)))
            .is_some_and(|va| va.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node))
    }

    /// Loads the graph from the watch caches, then follows them in the background.
    async fn follow(&self, api: &Arc<Api>) -> Result<()> {
        let snap = api.registry.snapshot();
        for source in Source::ALL {
            let r = snap
                .get("", "v1", source.plural())
                .ok_or(ApiError::NoSuchResource)?;
            let cache = api.cache(r).await?;
            let prefix = r.key_prefix();
            let sub = self.load(source, &cache, &prefix)?;
            if let Source::Pods = source {
                let _ = self.pods.set(Cache {
                    cache: Arc::downgrade(&cache),
                    prefix: prefix.clone(),
                });
            }
            tokio::spawn(
                self.clone()
                    .keep_current(source, Arc::downgrade(&cache), prefix, sub),
            );
        }
        if let Some(r) = snap.get("storage.k8s.io", "v1", "volumeattachments") {
            let cache = api.cache(r).await?;
            let _ = self.attachments.set(Cache {
                cache: Arc::downgrade(&cache),
                prefix: r.key_prefix(),
            });
        }
        Ok(())
    }

    fn load(&self, source: Source, cache: &WatchCache, prefix: &str) -> Result<Subscription> {
        let sub = cache.subscribe(prefix, None)?;
        let mut graph = self.graph_mut();
        match source {
            Source::Pods => graph.clear_pods(),
            Source::Volumes => graph.clear_volumes(),
        }
        for obj in &sub.initial {
            apply(&mut graph, source, EventType::Added, obj);
        }
        Ok(sub)
    }

    async fn keep_current(
        self,
        source: Source,
        cache: Weak<WatchCache>,
        prefix: String,
        mut sub: Subscription,
    ) {
        loop {
            match sub.live.recv().await {
                Ok(ev) if ev.revision <= sub.revision => {}
                Ok(ev) => apply(&mut self.graph_mut(), source, ev.kind, &ev.object),
                Err(RecvError::Lagged(_)) => {
                    let Some(cache) = cache.upgrade() else { return };
                    match self.load(source, &cache, &prefix) {
                        Ok(s) => sub = s,
                        Err(e) => {
                            tracing::error!(resource = source.plural(), error = %e, "reloading the node graph failed");
                            return;
                        }
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}

fn apply(graph: &mut Graph, source: Source, kind: EventType, obj: &Value) {
    match (source, kind) {
        (Source::Pods, EventType::Deleted) => graph.remove_pod(obj),
        (Source::Pods, _) => graph.put_pod(obj),
        (Source::Volumes, EventType::Deleted) => graph.remove_volume(obj),
        (Source::Volumes, _) => graph.put_volume(obj),
    }
}

/// What a request names, for [`NodeAuthorizer::related`].
#[derive(Clone, Copy)]
enum Target {
    Used(Uses),
    Claim,
    ResourceClaim,
    Volume,
    Attachment,
    Pod,
}

fn lease(node: &str, a: &Attributes, r: &ResourceAttributes) -> Decision {
    if !matches!(
        a.verb.as_str(),
        "get" | "create" | "update" | "patch" | "delete"
    ) {
        return no("can only get, create, update, patch, or delete a node lease");
    }
    if r.namespace.as_deref() != Some(NODE_LEASE_NAMESPACE) {
        return no(format!(
            "can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"
        ));
    }
    // A create names no object here; NodeRestriction checks the created Lease's name.
    if a.verb != "create" && r.name.as_deref() != Some(node) {
        return no("can only access node lease with the same name as the requesting node");
    }
    ALLOW
}

/// Nodes: any node may register and update Nodes and their status (NodeRestriction
/// confines it to its own), and read only its own.
fn own_node(node: &str, a: &Attributes, r: &ResourceAttributes) -> Decision {
    match (r.subresource.as_deref(), a.verb.as_str()) {
        (None, "create" | "update" | "patch") | (Some("status"), "update" | "patch") => ALLOW,
        (None, "get" | "list" | "watch") => match r.name.as_deref().unwrap_or_default() {
            n if n == node => ALLOW,
            "" => no(format!(
                "node '{node}' cannot read all nodes, only its own Node object"
            )),
            other => no(format!(
                "node '{node}' cannot read '{other}', only its own Node object"
            )),
        },
        _ => (Verdict::NoOpinion, None),
    }
}

fn csi_node(node: &str, a: &Attributes, r: &ResourceAttributes) -> Decision {
    if !matches!(
        a.verb.as_str(),
        "get" | "create" | "update" | "patch" | "delete"
    ) {
        return no("can only get, create, update, patch, or delete a CSINode");
    }
    if r.subresource.is_some() {
        return no("cannot authorize CSINode subresources");
    }
    if a.verb != "create" && r.name.as_deref() != Some(node) {
        return no("can only access CSINode with the same name as the requesting node");
    }
    ALLOW
}

impl Authorizer for NodeAuthorizer {
    fn authorize(&self, attributes: &Attributes) -> Verdict {
        self.decide(attributes).0
    }

    fn explain(&self, attributes: &Attributes) -> Option<String> {
        self.decide(attributes).1
    }

    fn authorize_with_reason(&self, attributes: &Attributes) -> (Verdict, String) {
        let (verdict, reason) = self.decide(attributes);
        (verdict, reason.unwrap_or_default())
    }

    /// Upstream lists no rules for a node (its answer is incomplete) and none for others.
    fn rules(&self, user: &UserInfo, _: &str) -> Option<Rules> {
        Some(Rules {
            incomplete: node_identity(user).is_some(),
            ..Rules::default()
        })
    }

    fn start<'a>(&'a self, api: &'a Arc<Api>) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.follow(api))
    }
}

#[cfg(test)]
mod tests;
