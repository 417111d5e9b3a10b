//! The RBAC authorizer's decision time with a large policy: 1,000 roles and 10,000
//! bindings over 100 namespaces, the authorizer called directly (no HTTP), so the
//! figure is the cost RBAC adds to every request.

use std::time::{Duration, Instant};

use apiserver::api::pipeline::rbac::{Index, Kind, Rbac};
use apiserver::api::pipeline::{Attributes, Authorizer, ResourceAttributes, UserInfo, Verdict};
use serde_json::json;

const ROLES: usize = 1_000;
const BINDINGS: usize = 10_000;
const NAMESPACES: usize = 100;
const USERS: usize = 2_000;
const DECISIONS: usize = 200_000;
/// Untimed decisions first (the same mix), so the figures are of a warm cache.
const WARM: usize = 20_000;

fn policy() -> Index {
    let mut index = Index::default();
    let resources = ["pods", "configmaps", "secrets", "services", "deployments"];
    for i in 0..ROLES {
        let rules = json!([
            {"verbs": ["get", "list", "watch"], "apiGroups": ["", "apps"], "resources": [resources[i % 5], format!("{}/status", resources[(i + 1) % 5])]},
            {"verbs": ["create", "update"], "apiGroups": [""], "resources": [resources[(i + 2) % 5]], "resourceNames": [format!("obj-{i}")]},
        ]);
        // Half cluster roles, half roles in a namespace.
        if i.is_multiple_of(2) {
            index.put(
                Kind::ClusterRole,
                &json!({"metadata": {"name": format!("role-{i}")}, "rules": rules}),
            );
        } else {
            index.put(Kind::Role, &json!({"metadata": {"name": format!("role-{i}"), "namespace": format!("ns-{}", i % NAMESPACES)}, "rules": rules}));
        }
    }
    for b in 0..BINDINGS {
        let role = b % ROLES;
        let ns = role % NAMESPACES;
        let role_kind = if role.is_multiple_of(2) {
            "ClusterRole"
        } else {
            "Role"
        };
        let subjects = json!([
            {"kind": "User", "name": format!("user-{}", b % USERS)},
            {"kind": "Group", "name": format!("group-{}", b % 50)},
            {"kind": "ServiceAccount", "name": format!("sa-{}", b % 20), "namespace": format!("ns-{ns}")},
        ]);
        let obj = json!({"metadata": {"name": format!("binding-{b}"), "namespace": format!("ns-{ns}")},
            "roleRef": {"kind": role_kind, "name": format!("role-{role}")}, "subjects": subjects});
        // Every tenth binding of a cluster role is a ClusterRoleBinding.
        if role_kind == "ClusterRole" && b.is_multiple_of(10) {
            index.put(Kind::ClusterRoleBinding, &obj);
        } else {
            index.put(Kind::RoleBinding, &obj);
        }
    }
    index
}

/// Prints the decision time's p50 and p99.
pub(crate) fn run() {
    let started = Instant::now();
    let rbac = Rbac::with_index(policy());
    let built = started.elapsed();
    let verbs = ["get", "list", "create", "delete"];
    let resources = ["pods", "configmaps", "secrets", "services", "deployments"];
    let mut times = Vec::with_capacity(DECISIONS);
    let mut allowed = 0usize;
    // The first pass over the request mix is untimed: it only warms caches.
    for (n, i) in (0..WARM).chain(0..DECISIONS).enumerate() {
        let attributes = Attributes {
            user: UserInfo {
                name: format!("user-{}", (i * 7) % USERS),
                uid: String::new(),
                groups: vec![format!("group-{}", i % 60), "system:authenticated".into()],
                ..Default::default()
            },
            verb: verbs[i % 4].into(),
            resource: Some(ResourceAttributes {
                group: String::new(),
                version: "v1".into(),
                resource: resources[(i / 4) % 5].into(),
                subresource: None,
                namespace: Some(format!("ns-{}", (i * 13) % NAMESPACES)),
                name: Some(format!("obj-{}", i % ROLES)),
                selectors: Default::default(),
            }),
            path: String::new(),
        };
        let t = Instant::now();
        let verdict = rbac.authorize(&attributes);
        let took = t.elapsed();
        if n >= WARM {
            times.push(took);
            allowed += usize::from(verdict == Verdict::Allow);
        }
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "## Authorization decision ({ROLES} roles, {BINDINGS} bindings, RBAC authorizer called directly)"
    );
    println!();
    println!(
        "p50 {:.2} µs, p99 {:.2} µs (target < 50 µs: {}), p99.9 {:.2} µs, max {:.0} µs over {DECISIONS} decisions ({:.0} % allowed); index built in {:.0} ms",
        us(pct(0.50)),
        us(pct(0.99)),
        if us(pct(0.99)) < 50.0 { "met" } else { "MISSED" },
        us(pct(0.999)),
        us(pct(1.0)),
        allowed as f64 * 100.0 / DECISIONS as f64,
        built.as_secs_f64() * 1e3
    );
    println!();
}
