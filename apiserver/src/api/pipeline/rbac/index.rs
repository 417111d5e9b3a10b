//! The roles and bindings RBAC decides from, indexed by subject and scope: a decision
//! looks up the user and each of its groups, takes the roles they are bound to
//! cluster-wide and in the request's namespace (each role once, however many bindings
//! repeat it) and checks those roles' rules, so its cost does not grow with the
//! cluster's bindings elsewhere.

use std::collections::{BTreeMap, HashMap};
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

/// Who a binding's subject is: a user name, a service account (by its user name) or a
/// group.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SubjectKind {
    User,
    ServiceAccount,
    Group,
}

struct Binding {
    role: Key,
    subjects: Vec<(SubjectKind, String)>,
}

/// What one subject is bound to, by scope (`""` for ClusterRoleBindings, else the
/// RoleBinding's namespace): each role once, with the bindings that grant it there.
/// A decision then costs one lookup per role in scope, however many bindings repeat it
/// (a group bound to one role in 100 RoleBindings of a namespace is one role to check).
type Scopes = HashMap<String, BTreeMap<Key, Vec<Key>>>;

#[derive(Default)]
pub struct Index {
    roles: HashMap<Key, Arc<[PolicyRule]>>,
    bindings: HashMap<Key, Binding>,
    users: HashMap<String, Scopes>,
    groups: HashMap<String, Scopes>,
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

/// The subjects a binding names. A ServiceAccount is the user
/// `system:serviceaccount:<ns>:<name>`, its namespace defaulting to the binding's
/// (upstream's `appliesToUser`); unknown kinds match nobody.
fn subjects_of(binding_ns: &str, obj: &Value) -> Vec<(SubjectKind, String)> {
    let subjects = obj["subjects"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    subjects
        .iter()
        .filter_map(|s| {
            let name = s["name"].as_str()?;
            match s["kind"].as_str()? {
                "User" => Some((SubjectKind::User, name.to_string())),
                "Group" => Some((SubjectKind::Group, name.to_string())),
                "ServiceAccount" => {
                    let ns = s["namespace"]
                        .as_str()
                        .filter(|n| !n.is_empty())
                        .unwrap_or(binding_ns);
                    Some((
                        SubjectKind::ServiceAccount,
                        format!("system:serviceaccount:{ns}:{name}"),
                    ))
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
                self.remove_binding(&key);
                let role_ref = &obj["roleRef"];
                let name = role_ref["name"].as_str().unwrap_or_default().to_string();
                let role = match role_ref["kind"].as_str() {
                    Some("Role") => (key.0.clone(), name),
                    _ => (String::new(), name),
                };
                let subjects = subjects_of(&key.0, obj);
                for (kind, name) in &subjects {
                    let granted = self
                        .subjects_mut(*kind)
                        .entry(name.clone())
                        .or_default()
                        .entry(key.0.clone())
                        .or_default()
                        .entry(role.clone())
                        .or_default();
                    if !granted.contains(&key) {
                        granted.push(key.clone());
                    }
                }
                self.bindings.insert(key, Binding { role, subjects });
            }
        }
    }

    fn subjects_mut(&mut self, kind: SubjectKind) -> &mut HashMap<String, Scopes> {
        match kind {
            SubjectKind::User | SubjectKind::ServiceAccount => &mut self.users,
            SubjectKind::Group => &mut self.groups,
        }
    }

    /// Removes one object (by its namespace and name).
    pub fn remove(&mut self, kind: Kind, obj: &Value) {
        let key = key_of(kind, obj);
        match kind {
            Kind::Role | Kind::ClusterRole => {
                self.roles.remove(&key);
            }
            Kind::RoleBinding | Kind::ClusterRoleBinding => self.remove_binding(&key),
        }
    }

    fn remove_binding(&mut self, key: &Key) {
        let Some(old) = self.bindings.remove(key) else {
            return;
        };
        for (kind, name) in old.subjects {
            let subjects = self.subjects_mut(kind);
            let Some(scopes) = subjects.get_mut(&name) else {
                continue;
            };
            if let Some(roles) = scopes.get_mut(&key.0) {
                if let Some(granted) = roles.get_mut(&old.role) {
                    granted.retain(|b| b != key);
                    if granted.is_empty() {
                        roles.remove(&old.role);
                    }
                }
                if roles.is_empty() {
                    scopes.remove(&key.0);
                }
            }
            if scopes.is_empty() {
                subjects.remove(&name);
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
                let gone: Vec<Key> = self
                    .bindings
                    .keys()
                    .filter(|k| of_kind(k))
                    .cloned()
                    .collect();
                for key in &gone {
                    self.remove_binding(key);
                }
            }
        }
    }

    /// Calls `visit` with the rules of every role bound to `user` that applies in
    /// `namespace` (ClusterRoleBindings everywhere, RoleBindings in their namespace)
    /// until it returns true; whether one did. A role bound several times is visited
    /// once; a binding to a missing role grants nothing.
    pub fn visit(
        &self,
        user: &UserInfo,
        namespace: Option<&str>,
        mut visit: impl FnMut(&[PolicyRule]) -> bool,
    ) -> bool {
        self.visit_bound(user, namespace, |rules, _| visit(rules))
    }

    /// [`Index::visit`], also telling how many of the user's bindings grant each role.
    /// Cluster-wide bindings come first, as upstream's authorizer visits them.
    fn visit_bound(
        &self,
        user: &UserInfo,
        namespace: Option<&str>,
        mut visit: impl FnMut(&[PolicyRule], usize) -> bool,
    ) -> bool {
        self.visit_bindings(user, namespace, |rules, granted| {
            visit(rules, granted.len())
        })
        .is_some()
    }

    /// Upstream's reason for an allowed request, naming a binding that allows it (the
    /// first by name of the first role whose rules `allows`), its role and the subject
    /// that matched: `RBAC: allowed by ClusterRoleBinding "b" of ClusterRole "r" to
    /// Group "g"`. `None` when no role allows.
    pub fn allowed_by(
        &self,
        user: &UserInfo,
        namespace: Option<&str>,
        mut allows: impl FnMut(&[PolicyRule]) -> bool,
    ) -> Option<String> {
        let granted = self.visit_bindings(user, namespace, |rules, _| allows(rules))?;
        let key = granted.iter().min()?;
        let binding = self.bindings.get(key)?;
        let subject = binding.subjects.iter().find(|(kind, name)| match kind {
            SubjectKind::User | SubjectKind::ServiceAccount => *name == user.name,
            SubjectKind::Group => user.groups.contains(name),
        })?;
        let (kind, name) = if key.0.is_empty() {
            ("ClusterRoleBinding", key.1.clone())
        } else {
            ("RoleBinding", format!("{}/{}", key.1, key.0))
        };
        let role_kind = if binding.role.0.is_empty() {
            "ClusterRole"
        } else {
            "Role"
        };
        let subject = match subject {
            (SubjectKind::User, n) => format!("User {n:?}"),
            (SubjectKind::Group, n) => format!("Group {n:?}"),
            // Upstream names an account `<name>/<namespace>`.
            (SubjectKind::ServiceAccount, n) => {
                let (ns, sa) = n
                    .strip_prefix("system:serviceaccount:")
                    .and_then(|r| r.split_once(':'))
                    .unwrap_or(("", n));
                format!("ServiceAccount \"{sa}/{ns}\"")
            }
        };
        Some(format!(
            "RBAC: allowed by {kind} {name:?} of {role_kind} {:?} to {subject}",
            binding.role.1
        ))
    }

    /// The roles bound to `user` in `namespace` that do not exist, as upstream's RBAC
    /// authorizer reports them when it allows nothing (`clusterrole.rbac.authorization.k8s.io
    /// "x" not found`), each once.
    pub fn missing_roles(&self, user: &UserInfo, namespace: Option<&str>) -> Vec<String> {
        let mut out = Vec::new();
        for (role, _) in self.bound(user, namespace) {
            if self.roles.contains_key(role) {
                continue;
            }
            let kind = if role.0.is_empty() {
                "clusterrole"
            } else {
                "role"
            };
            let missing = format!("{kind}.rbac.authorization.k8s.io {:?} not found", role.1);
            if !out.contains(&missing) {
                out.push(missing);
            }
        }
        out
    }

    /// Each role bound to `user` in `namespace`, with the bindings that bind it there:
    /// cluster-wide first, then in the namespace; the user's own bindings, then each
    /// group's. Roles that do not exist are included.
    fn bound<'s: 'a, 'a>(
        &'s self,
        user: &'a UserInfo,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'s Key, &'s [Key])> + 'a {
        let scopes = std::iter::once("").chain(namespace.filter(|n| !n.is_empty()));
        scopes.flat_map(move |scope| {
            std::iter::once(self.users.get(user.name.as_str()))
                .chain(user.groups.iter().map(|g| self.groups.get(g.as_str())))
                .flatten()
                .filter_map(move |scopes| scopes.get(scope))
                .flatten()
                .map(|(role, granted)| (role, granted.as_slice()))
        })
    }

    /// Calls `visit` with each role bound to `user` in `namespace` and the bindings that
    /// grant it there, until it returns true; those bindings.
    fn visit_bindings(
        &self,
        user: &UserInfo,
        namespace: Option<&str>,
        mut visit: impl FnMut(&[PolicyRule], &[Key]) -> bool,
    ) -> Option<&[Key]> {
        self.bound(user, namespace).find_map(|(role, granted)| {
            let rules = self.roles.get(role)?;
            visit(rules, granted).then_some(granted)
        })
    }

    /// Every rule `user` holds in `namespace` (upstream's `RulesFor`), a role's rules once
    /// per binding that grants it, as upstream lists them.
    pub fn rules_for(&self, user: &UserInfo, namespace: Option<&str>) -> Vec<PolicyRule> {
        let mut out = Vec::new();
        self.visit_bound(user, namespace, |rules, bindings| {
            for _ in 0..bindings {
                out.extend_from_slice(rules);
            }
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
