//! The bootstrap RBAC policy (upstream's `bootstrappolicy`): the default ClusterRoles and
//! ClusterRoleBindings ([`roles`], as data), created at start and reconciled as
//! upstream's auto-reconcile does: unless an object is annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "false"`, missing rules, aggregation
//! selectors, subjects, labels and annotations are added (nothing a user added is
//! removed) and a binding whose roleRef changed is made again.

use std::sync::Arc;

use http::Method;
use serde_json::{json, Map, Value};

use super::bootstrap::{get, request, Object};
use super::pipeline::rbac::{rule::uncovered, PolicyRule, GROUP};
use super::Api;
use crate::status::{ApiError, Result};

mod bootstrap_tokens;
mod roles;

use roles::{
    ClusterRole, ClusterRoleBinding, Rule, Subject, CLUSTER_ROLES, CLUSTER_ROLE_BINDINGS,
    CONTROLLER_ROLES,
};

const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

/// Creates or reconciles every default ClusterRole, then every default binding.
pub async fn ensure(api: &Arc<Api>) -> Result<()> {
    for role in CLUSTER_ROLES {
        reconcile(api, "clusterroles", role_object(role)).await?;
    }
    for binding in CLUSTER_ROLE_BINDINGS {
        reconcile(api, "clusterrolebindings", binding_object(binding)).await?;
    }
    for role in CONTROLLER_ROLES {
        reconcile(api, "clusterroles", role_object(role)).await?;
        reconcile(api, "clusterrolebindings", controller_binding(role.name)).await?;
    }
    bootstrap_tokens::ensure(api).await
}

/// A control loop's role `system:controller:<account>` bound to `<account>` in
/// kube-system, as upstream binds its controllers' roles.
fn controller_binding(role: &str) -> Value {
    let account = role
        .strip_prefix(CONTROLLER_PREFIX)
        .expect("controller roles are named system:controller:<account>");
    json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "ClusterRoleBinding",
        "metadata": metadata(role, &[]),
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": "kube-system"}],
    })
}

const CONTROLLER_PREFIX: &str = "system:controller:";

/// The rules of the default ClusterRole `name` (none for a name it does not have).
pub(crate) fn cluster_role_rules(name: &str) -> Vec<PolicyRule> {
    CLUSTER_ROLES
        .iter()
        .filter(|r| r.name == name)
        .flat_map(|r| r.rules.iter().map(policy_rule))
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn policy_rule(r: &Rule) -> PolicyRule {
    PolicyRule {
        verbs: strings(r.verbs),
        api_groups: strings(r.groups),
        resources: strings(r.resources),
        resource_names: strings(r.names),
        non_resource_urls: strings(r.urls),
    }
}

fn metadata(name: &str, extra_labels: &[(&str, &str)]) -> Value {
    let mut labels = Map::new();
    labels.insert("kubernetes.io/bootstrapping".into(), json!("rbac-defaults"));
    for (k, v) in extra_labels {
        labels.insert(k.to_string(), json!(v));
    }
    json!({"name": name, "labels": labels, "annotations": {AUTOUPDATE: "true"}})
}

/// A default ClusterRole as upstream's bootstrap policy writes it.
fn role_object(role: &ClusterRole) -> Value {
    let rules: Vec<PolicyRule> = role.rules.iter().map(policy_rule).collect();
    let mut obj = json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "ClusterRole",
        "metadata": metadata(role.name, role.labels),
        "rules": rules,
    });
    if let Some(label) = role.aggregates {
        obj["aggregationRule"] =
            json!({"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]});
    }
    obj
}

fn binding_object(b: &ClusterRoleBinding) -> Value {
    let subjects: Vec<Value> = b
        .subjects
        .iter()
        .map(|s| {
            let (kind, name) = match s {
                Subject::User(n) => ("User", n),
                Subject::Group(n) => ("Group", n),
            };
            json!({"apiGroup": GROUP, "kind": kind, "name": name})
        })
        .collect();
    json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "ClusterRoleBinding",
        "metadata": metadata(b.name, &[]),
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": b.role},
        "subjects": subjects,
    })
}

async fn reconcile(api: &Arc<Api>, resource: &'static str, expected: Value) -> Result<()> {
    let at = Object {
        group: GROUP,
        namespace: None,
        resource,
    };
    let name = expected["metadata"]["name"].as_str().unwrap_or_default();
    let Some(existing) = get(api, &at, name).await? else {
        return match request(api, Method::POST, &at, None, None, &expected).await {
            Ok(_) | Err(ApiError::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        };
    };
    if existing.pointer(&format!(
        "/metadata/annotations/{}",
        AUTOUPDATE.replace('/', "~1")
    )) == Some(&json!("false"))
    {
        return Ok(());
    }
    if resource == "clusterrolebindings" && existing["roleRef"] != expected["roleRef"] {
        // A roleRef cannot be changed: the binding is made again.
        request(api, Method::DELETE, &at, Some(name), None, &Value::Null).await?;
        request(api, Method::POST, &at, None, None, &expected).await?;
        return Ok(());
    }
    let mut merged = existing.clone();
    for field in ["labels", "annotations"] {
        let have = merged["metadata"][field]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut all = expected["metadata"][field]
            .as_object()
            .cloned()
            .unwrap_or_default();
        all.extend(have);
        merged["metadata"][field] = Value::Object(all);
    }
    if resource == "clusterroles" {
        let missing = uncovered(&PolicyRule::of(&existing), &PolicyRule::of(&expected));
        if !missing.is_empty() {
            let mut rules = PolicyRule::of(&existing);
            rules.extend(missing);
            merged["rules"] = json!(rules);
        }
        add_missing(
            &mut merged,
            &expected,
            "/aggregationRule/clusterRoleSelectors",
        );
    } else {
        add_missing(&mut merged, &expected, "/subjects");
    }
    if merged != existing {
        request(api, Method::PUT, &at, Some(name), None, &merged).await?;
    }
    Ok(())
}

/// Appends the items of the list at `pointer` in `expected` that `obj`'s list lacks.
fn add_missing(obj: &mut Value, expected: &Value, pointer: &str) {
    let Some(want) = expected.pointer(pointer).and_then(Value::as_array) else {
        return;
    };
    let (parent, field) = pointer.rsplit_once('/').expect("pointers have a '/'");
    if parent.is_empty() {
        let list = obj[field].as_array().cloned().unwrap_or_default();
        obj[field] = json!(list);
    } else {
        let p = &parent[1..];
        if !obj[p].is_object() {
            obj[p] = json!({});
        }
        if !obj[p][field].is_array() {
            obj[p][field] = json!([]);
        }
    }
    let list = obj
        .pointer_mut(pointer)
        .and_then(Value::as_array_mut)
        .expect("made a list above");
    for item in want {
        if !list.contains(item) {
            list.push(item.clone());
        }
    }
}

#[cfg(test)]
mod tests;
