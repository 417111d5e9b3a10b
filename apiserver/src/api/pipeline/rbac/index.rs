//! The roles and bindings RBAC decides from, indexed by subject: a decision looks up the
//! bindings naming the user or one of its groups (a handful, whatever the cluster's
//! size) and the rules of the roles they reference.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::rule::PolicyRule;
use crate::api::pipeline::UserInfo;

/// `(namespace, name)`; the namespace is empty for ClusterRoles and ClusterRoleBindings
/// (a Role or RoleBinding always has one).
type Key = (String, String);

/// The four RBAC kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Role,
        Kind::ClusterRole,
        Kind::RoleBinding,
        Kind::ClusterRoleBinding,
    ];

    pub fn plural(self) -> &'static str {
        match self {
            Kind::Role => "roles",
            Kind::ClusterRole => "clusterroles",
            Kind::RoleBinding => "rolebindings",
            Kind::ClusterRoleBinding => "clusterrolebindings",
        }
    }

    fn namespaced(self) -> bool {
        matches!(self, Kind::Role | Kind::RoleBinding)
    }
}

struct Binding {
    role: Key,
    subjects: Vec<String>,
}

#[derive(Default)]
pub struct Index {
    roles: HashMap<Key, Arc<[PolicyRule]>>,
    bindings: HashMap<Key, Binding>,
    /// Subject (`u:<user>` or `g:<group>`) -> the bindings naming it.
    by_subject: HashMap<String, HashSet<Key>>,
}

fn key_of(kind: Kind, obj: &Value) -> Key {
    let meta = &obj["metadata"];
    let ns = if kind.namespaced() {
        meta["namespace"].as_str().unwrap_or_default()
    } else {
        ""
    };
    (
        ns.to_string(),
        meta["name"].as_str().unwrap_or_default().to_string(),
    )
}

/// The index keys a binding's subjects stand for. A ServiceAccount is the user
/// `system:serviceaccount:<ns>:<name>`, its namespace defaulting to the binding's
/// (upstream's `appliesToUser`); unknown kinds match nobody.
fn subject_keys(binding_ns: &str, obj: &Value) -> Vec<String> {
    let subjects = obj["subjects"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    subjects
        .iter()
        .filter_map(|s| {
            let name = s["name"].as_str()?;
            match s["kind"].as_str()? {
                "User" => Some(format!("u:{name}")),
                "Group" => Some(format!("g:{name}")),
                "ServiceAccount" => {
                    let ns = s["namespace"]
                        .as_str()
                        .filter(|n| !n.is_empty())
                        .unwrap_or(binding_ns);
                    Some(format!("u:system:serviceaccount:{ns}:{name}"))
                }
                _ => None,
            }
        })
        .collect()
}

impl Index {
    /// Adds or replaces one object.
    pub fn put(&mut self, kind: Kind, obj: &Value) {
        let key = key_of(kind, obj);
        match kind {
            Kind::Role | Kind::ClusterRole => {
                self.roles.insert(key, PolicyRule::of(obj).into());
            }
            Kind::RoleBinding | Kind::ClusterRoleBinding => {
                self.remove(kind, obj);
                let role_ref = &obj["roleRef"];
                let name = role_ref["name"].as_str().unwrap_or_default().to_string();
                let role = match role_ref["kind"].as_str() {
                    Some("Role") => (key.0.clone(), name),
                    _ => (String::new(), name),
                };
                let subjects = subject_keys(&key.0, obj);
                for s in &subjects {
                    self.by_subject
                        .entry(s.clone())
                        .or_default()
                        .insert(key.clone());
                }
                self.bindings.insert(key, Binding { role, subjects });
            }
        }
    }

    /// Removes one object (by its namespace and name).
    pub fn remove(&mut self, kind: Kind, obj: &Value) {
        let key = key_of(kind, obj);
        match kind {
            Kind::Role | Kind::ClusterRole => {
                self.roles.remove(&key);
            }
            Kind::RoleBinding | Kind::ClusterRoleBinding => {
                let Some(old) = self.bindings.remove(&key) else {
                    return;
                };
                for s in old.subjects {
                    if let Some(set) = self.by_subject.get_mut(&s) {
                        set.remove(&key);
                        if set.is_empty() {
                            self.by_subject.remove(&s);
                        }
                    }
                }
            }
        }
    }

    /// Forgets every object of `kind` (before a full reload).
    pub fn clear(&mut self, kind: Kind) {
        let cluster = !kind.namespaced();
        let of_kind = |k: &Key| k.0.is_empty() == cluster;
        match kind {
            Kind::Role | Kind::ClusterRole => self.roles.retain(|k, _| !of_kind(k)),
            Kind::RoleBinding | Kind::ClusterRoleBinding => {
                self.bindings.retain(|k, _| !of_kind(k));
                for set in self.by_subject.values_mut() {
                    set.retain(|k| !of_kind(k));
                }
                self.by_subject.retain(|_, set| !set.is_empty());
            }
        }
    }

    /// Calls `visit` with the rules of every role bound to `user` that applies in
    /// `namespace` (ClusterRoleBindings everywhere, RoleBindings in their namespace)
    /// until it returns true; whether one did. A binding to a missing role grants nothing.
    pub fn visit(
        &self,
        user: &UserInfo,
        namespace: Option<&str>,
        mut visit: impl FnMut(&[PolicyRule]) -> bool,
    ) -> bool {
        let subjects = std::iter::once(format!("u:{}", user.name))
            .chain(user.groups.iter().map(|g| format!("g:{g}")));
        for subject in subjects {
            let Some(bindings) = self.by_subject.get(&subject) else {
                continue;
            };
            for key in bindings {
                if !key.0.is_empty() && namespace != Some(key.0.as_str()) {
                    continue;
                }
                let Some(binding) = self.bindings.get(key) else {
                    continue;
                };
                if let Some(rules) = self.roles.get(&binding.role) {
                    if visit(rules) {
                        return true;
                    }
                }
            }
        }
        false
    }

    /// Every rule `user` holds in `namespace` (upstream's `RulesFor`).
    pub fn rules_for(&self, user: &UserInfo, namespace: Option<&str>) -> Vec<PolicyRule> {
        let mut out = Vec::new();
        self.visit(user, namespace, |rules| {
            out.extend_from_slice(rules);
            false
        });
        out
    }

    /// The rules of the role a binding's `roleRef` names, in the binding's namespace;
    /// `None` when it does not exist.
    pub fn role_rules(
        &self,
        namespace: Option<&str>,
        role_ref: &Value,
    ) -> Option<Arc<[PolicyRule]>> {
        let name = role_ref["name"].as_str().unwrap_or_default().to_string();
        let key = match role_ref["kind"].as_str() {
            Some("Role") => (namespace.unwrap_or_default().to_string(), name),
            _ => (String::new(), name),
        };
        self.roles.get(&key).cloned()
    }
}
