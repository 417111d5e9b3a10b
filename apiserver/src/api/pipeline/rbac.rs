//! Upstream's RBAC authorizer: Roles, ClusterRoles, RoleBindings and ClusterRoleBindings
//! from the server's own watch caches, kept current by following them ([`Rbac::start`]),
//! indexed by subject ([`index`]), matched as upstream's `RuleAllows` ([`rule`]). Also
//! the `system:masters` authorizer kube-apiserver puts first (that group may do
//! anything, RBAC or not) and the escalation checks on writes of RBAC objects
//! ([`escalation`]).

use std::sync::{Arc, RwLock, Weak};

use futures::future::BoxFuture;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::{Attributes, Authorizer, Rules, UserInfo, Verdict};
use crate::api::Api;
use crate::status::{ApiError, Result};
use crate::watchcache::{EventType, WatchCache};

pub mod escalation;
pub mod index;
pub mod rule;

pub use escalation::Escalation;
pub use index::{Index, Kind};
pub use rule::PolicyRule;

pub const GROUP: &str = "rbac.authorization.k8s.io";

/// The group whose members are allowed everything (upstream's `SystemPrivilegedGroup`).
pub const MASTERS: &str = "system:masters";

/// Allows every request of a `system:masters` member; no opinion on others.
pub struct PrivilegedGroups;

impl Authorizer for PrivilegedGroups {
    fn authorize(&self, attributes: &Attributes) -> Verdict {
        if attributes.user.groups.iter().any(|g| g == MASTERS) {
            Verdict::Allow
        } else {
            Verdict::NoOpinion
        }
    }

    /// Nothing of its own to list: a member's rules come from its bindings.
    fn rules(&self, _: &UserInfo, _: &str) -> Option<Rules> {
        Some(Rules::default())
    }
}

/// The RBAC authorizer. Clones share one index.
#[derive(Clone, Default)]
pub struct Rbac {
    index: Arc<RwLock<Index>>,
}

impl Rbac {
    /// An authorizer deciding from `index` (tests and benchmarks fill it themselves).
    pub fn with_index(index: Index) -> Self {
        Rbac {
            index: Arc::new(RwLock::new(index)),
        }
    }

    /// The escalation checks for writes of RBAC objects, deciding from the same index.
    pub fn escalation(&self) -> Escalation {
        Escalation { rbac: self.clone() }
    }

    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().expect("rbac index poisoned")
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().expect("rbac index poisoned")
    }

    /// Loads every RBAC object from the watch caches, then follows their changes in the
    /// background (a watcher that falls behind reloads its kind).
    async fn follow(&self, api: &Arc<Api>) -> Result<()> {
        let snap = api.registry.snapshot();
        for kind in Kind::ALL {
            let r = snap
                .get(GROUP, "v1", kind.plural())
                .ok_or(ApiError::NoSuchResource)?;
            let cache = api.cache(r).await?;
            let prefix = r.key_prefix();
            let sub = self.load(kind, &cache, &prefix)?;
            tokio::spawn(
                self.clone()
                    .keep_current(kind, Arc::downgrade(&cache), prefix, sub),
            );
        }
        Ok(())
    }

    fn load(
        &self,
        kind: Kind,
        cache: &WatchCache,
        prefix: &str,
    ) -> Result<crate::watchcache::Subscription> {
        let sub = cache.subscribe(prefix, None)?;
        let mut index = self.write();
        index.clear(kind);
        for obj in &sub.initial {
            index.put(kind, obj);
        }
        Ok(sub)
    }

    async fn keep_current(
        self,
        kind: Kind,
        cache: Weak<WatchCache>,
        prefix: String,
        mut sub: crate::watchcache::Subscription,
    ) {
        loop {
            match sub.live.recv().await {
                Ok(ev) if ev.revision <= sub.revision => {}
                Ok(ev) => {
                    let mut index = self.write();
                    match ev.kind {
                        EventType::Deleted => index.remove(kind, &ev.object),
                        _ => index.put(kind, &ev.object),
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    let Some(cache) = cache.upgrade() else { return };
                    match self.load(kind, &cache, &prefix) {
                        Ok(s) => sub = s,
                        Err(e) => {
                            tracing::error!(kind = kind.plural(), error = %e, "reloading RBAC objects failed");
                            return;
                        }
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}

impl Authorizer for Rbac {
    fn authorize(&self, attributes: &Attributes) -> Verdict {
        let namespace = attributes
            .resource
            .as_ref()
            .and_then(|r| r.namespace.as_deref());
        let allowed = self.read().visit(&attributes.user, namespace, |rules| {
            rules.iter().any(|r| r.allows(attributes))
        });
        if allowed {
            Verdict::Allow
        } else {
            Verdict::NoOpinion
        }
    }

    /// Upstream's reason names a binding that allows the request.
    fn authorize_with_reason(&self, attributes: &Attributes) -> (Verdict, String) {
        let namespace = attributes
            .resource
            .as_ref()
            .and_then(|r| r.namespace.as_deref());
        let allowed = self
            .read()
            .allowed_by(&attributes.user, namespace, |rules| {
                rules.iter().any(|r| r.allows(attributes))
            });
        match allowed {
            Some(reason) => (Verdict::Allow, reason),
            None => (
                Verdict::NoOpinion,
                self.explain(attributes).unwrap_or_default(),
            ),
        }
    }

    /// Upstream's reason when RBAC allows nothing: the bound roles that do not exist,
    /// one error alone, several as Go's aggregate prints them (`[a, b]`).
    fn explain(&self, attributes: &Attributes) -> Option<String> {
        let namespace = attributes
            .resource
            .as_ref()
            .and_then(|r| r.namespace.as_deref());
        let missing = self.read().missing_roles(&attributes.user, namespace);
        match missing.as_slice() {
            [] => None,
            [one] => Some(format!("RBAC: {one}")),
            many => Some(format!("RBAC: [{}]", many.join(", "))),
        }
    }

    /// Every rule bound to `user` in `namespace`, as SelfSubjectRulesReview's
    /// ResourceRule and NonResourceRule objects.
    fn rules(&self, user: &UserInfo, namespace: &str) -> Option<Rules> {
        let ns = Some(namespace).filter(|n| !n.is_empty());
        let mut out = Rules::default();
        for r in self.read().rules_for(user, ns) {
            if r.non_resource_urls.is_empty() {
                let mut v =
                    json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
                if !r.resource_names.is_empty() {
                    v["resourceNames"] = json!(r.resource_names);
                }
                out.resource_rules.push(v);
            } else {
                out.non_resource_rules
                    .push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
            }
        }
        Some(out)
    }

    fn start<'a>(&'a self, api: &'a Arc<Api>) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.follow(api))
    }
}

#[cfg(test)]
mod tests;
