//! Rule matching, subject matching and escalation arithmetic as named table rows.

use serde_json::json;

use super::rule::{compact, uncovered};
use super::*;
use crate::api::pipeline::ResourceAttributes;

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        name: name.into(),
        uid: String::new(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..Default::default()
    }
}

fn rule(v: serde_json::Value) -> PolicyRule {
    serde_json::from_value(v).unwrap()
}

/// A request: verb, group, resource, subresource, namespace, name.
fn request(
    verb: &str,
    group: &str,
    resource: &str,
    sub: Option<&str>,
    ns: Option<&str>,
    name: Option<&str>,
) -> Attributes {
    Attributes {
        user: user("alice", &[]),
        verb: verb.into(),
        resource: Some(ResourceAttributes {
            group: group.into(),
            version: "v1".into(),
            resource: resource.into(),
            subresource: sub.map(String::from),
            namespace: ns.map(String::from),
            name: name.map(String::from),
            selectors: Default::default(),
        }),
        path: String::new(),
    }
}

fn path(verb: &str, p: &str) -> Attributes {
    Attributes {
        user: user("alice", &[]),
        verb: verb.into(),
        resource: None,
        path: p.into(),
    }
}

#[test]
fn rules_allow_what_upstream_rule_allows_allows() {
    let pods_get = json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]});
    let cases = [
        (
            "exact verb, group and resource",
            pods_get.clone(),
            request("get", "", "pods", None, Some("a"), Some("p")),
            true,
        ),
        (
            "another verb",
            pods_get.clone(),
            request("list", "", "pods", None, Some("a"), None),
            false,
        ),
        (
            "another group",
            pods_get.clone(),
            request("get", "apps", "pods", None, Some("a"), Some("p")),
            false,
        ),
        (
            "a subresource is not its resource",
            pods_get.clone(),
            request("get", "", "pods", Some("log"), Some("a"), Some("p")),
            false,
        ),
        (
            "resource/subresource",
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]}),
            request("get", "", "pods", Some("log"), Some("a"), Some("p")),
            true,
        ),
        (
            "*/scale matches any scale",
            json!({"verbs": ["update"], "apiGroups": ["*"], "resources": ["*/scale"]}),
            request(
                "update",
                "apps",
                "deployments",
                Some("scale"),
                Some("a"),
                Some("d"),
            ),
            true,
        ),
        (
            "*/scale is not the resource",
            json!({"verbs": ["update"], "apiGroups": ["*"], "resources": ["*/scale"]}),
            request("update", "apps", "deployments", None, Some("a"), Some("d")),
            false,
        ),
        (
            "* resource covers subresources",
            json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}),
            request("create", "", "pods", Some("exec"), Some("a"), Some("p")),
            true,
        ),
        (
            "resourceNames allow the named object",
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cm"]}),
            request("get", "", "configmaps", None, Some("a"), Some("cm")),
            true,
        ),
        (
            "resourceNames refuse another name",
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cm"]}),
            request("get", "", "configmaps", None, Some("a"), Some("other")),
            false,
        ),
        (
            "resourceNames refuse a list",
            json!({"verbs": ["list"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cm"]}),
            request("list", "", "configmaps", None, Some("a"), None),
            false,
        ),
        (
            "a URL exactly",
            json!({"verbs": ["get"], "nonResourceURLs": ["/healthz"]}),
            path("get", "/healthz"),
            true,
        ),
        (
            "a URL is not its sub-path",
            json!({"verbs": ["get"], "nonResourceURLs": ["/healthz"]}),
            path("get", "/healthz/etcd"),
            false,
        ),
        (
            "a URL prefix with *",
            json!({"verbs": ["get"], "nonResourceURLs": ["/healthz*"]}),
            path("get", "/healthz/etcd"),
            true,
        ),
        (
            "a URL rule does not allow resources",
            json!({"verbs": ["*"], "nonResourceURLs": ["*"]}),
            request("get", "", "pods", None, Some("a"), Some("p")),
            false,
        ),
        (
            "a resource rule does not allow URLs",
            json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}),
            path("get", "/api"),
            false,
        ),
    ];
    for (name, r, attributes, want) in cases {
        assert_eq!(rule(r).allows(&attributes), want, "{name}");
    }
}

fn binding(
    kind: &str,
    ns: Option<&str>,
    name: &str,
    role_kind: &str,
    role: &str,
    subjects: serde_json::Value,
) -> serde_json::Value {
    let mut meta = json!({"name": name});
    if let Some(ns) = ns {
        meta["namespace"] = json!(ns);
    }
    json!({"kind": kind, "metadata": meta, "roleRef": {"kind": role_kind, "name": role}, "subjects": subjects})
}

fn cluster() -> Index {
    let mut index = Index::default();
    index.put(Kind::ClusterRole, &json!({"metadata": {"name": "read-pods"}, "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]}));
    index.put(Kind::Role, &json!({"metadata": {"name": "cm", "namespace": "a"}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}]}));
    index.put(
        Kind::RoleBinding,
        &binding(
            "RoleBinding",
            Some("a"),
            "pods-a",
            "ClusterRole",
            "read-pods",
            json!([{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "robot"}]),
        ),
    );
    index.put(
        Kind::RoleBinding,
        &binding(
            "RoleBinding",
            Some("a"),
            "cm-a",
            "Role",
            "cm",
            json!([{"kind": "Group", "name": "devs"}]),
        ),
    );
    index.put(
        Kind::ClusterRoleBinding,
        &binding(
            "ClusterRoleBinding",
            None,
            "all-sas",
            "ClusterRole",
            "read-pods",
            json!([{"kind": "Group", "name": "system:serviceaccounts:b"}]),
        ),
    );
    index
}

#[test]
fn bindings_apply_to_their_subjects_in_their_scope() {
    let rbac = Rbac::with_index(cluster());
    let cases = [
        (
            "a user bound in its namespace",
            user("alice", &[]),
            "pods",
            Some("a"),
            true,
        ),
        (
            "a user in another namespace",
            user("alice", &[]),
            "pods",
            Some("b"),
            false,
        ),
        (
            "a user at the cluster scope",
            user("alice", &[]),
            "pods",
            None,
            false,
        ),
        ("another user", user("bob", &[]), "pods", Some("a"), false),
        (
            "a group member through a Role",
            user("bob", &["devs"]),
            "configmaps",
            Some("a"),
            true,
        ),
        (
            "a service account in the binding's namespace",
            user("system:serviceaccount:a:robot", &[]),
            "pods",
            Some("a"),
            true,
        ),
        (
            "a same-named service account elsewhere",
            user("system:serviceaccount:b:robot", &[]),
            "configmaps",
            Some("a"),
            false,
        ),
        (
            "the service accounts of a namespace, cluster-wide",
            user("x", &["system:serviceaccounts:b"]),
            "pods",
            Some("c"),
            true,
        ),
    ];
    for (name, u, resource, ns, want) in cases {
        let mut a = request("get", "", resource, None, ns, Some("x"));
        a.user = u;
        assert_eq!(rbac.authorize(&a) == Verdict::Allow, want, "{name}");
    }
}

#[test]
fn a_deleted_binding_or_role_grants_nothing_more() {
    let mut index = cluster();
    let mut a = request("get", "", "pods", None, Some("a"), Some("p"));
    index.remove(
        Kind::RoleBinding,
        &binding(
            "RoleBinding",
            Some("a"),
            "pods-a",
            "ClusterRole",
            "read-pods",
            json!([]),
        ),
    );
    assert_eq!(Rbac::with_index(index).authorize(&a), Verdict::NoOpinion);
    let mut index = cluster();
    index.remove(
        Kind::ClusterRole,
        &json!({"metadata": {"name": "read-pods"}}),
    );
    a.user = user("system:serviceaccount:a:robot", &[]);
    assert_eq!(Rbac::with_index(index).authorize(&a), Verdict::NoOpinion);
}

/// `devs` bound to `read-pods` by `per_namespace` RoleBindings in each of namespaces
/// `ns-0`..`ns-9`, and once cluster-wide to `cm`.
fn repeated_bindings(per_namespace: usize) -> Index {
    let mut index = cluster();
    index.put(Kind::ClusterRole, &json!({"metadata": {"name": "cm"}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}]}));
    let devs = json!([{"kind": "Group", "name": "devs"}]);
    for ns in 0..10 {
        let ns = format!("ns-{ns}");
        for b in 0..per_namespace {
            let name = format!("pods-{b}");
            let obj = binding(
                "RoleBinding",
                Some(&ns),
                &name,
                "ClusterRole",
                "read-pods",
                devs.clone(),
            );
            index.put(Kind::RoleBinding, &obj);
        }
    }
    index.put(
        Kind::ClusterRoleBinding,
        &binding(
            "ClusterRoleBinding",
            None,
            "cm-all",
            "ClusterRole",
            "cm",
            devs,
        ),
    );
    index
}

#[test]
fn a_decision_checks_each_role_in_scope_once_whatever_the_bindings_elsewhere() {
    let index = repeated_bindings(100);
    let cases = [
        (
            "in a namespace with 100 bindings to one role",
            Some("ns-3"),
            2,
        ),
        ("in a namespace without bindings", Some("other"), 1),
        ("at the cluster scope", None, 1),
    ];
    for (name, ns, want) in cases {
        let mut visited = 0;
        index.visit(&user("bob", &["devs"]), ns, |_| {
            visited += 1;
            false
        });
        assert_eq!(visited, want, "{name}");
    }
}

#[test]
fn a_role_bound_twice_is_granted_until_both_bindings_are_gone() {
    let mut index = repeated_bindings(2);
    let bob = user("bob", &["devs"]);
    let mut a = request("get", "", "pods", None, Some("ns-1"), Some("p"));
    a.user = bob.clone();
    let pod_rules = |index: &Index| {
        index
            .rules_for(&bob, Some("ns-1"))
            .iter()
            .filter(|r| r.resources == ["pods"])
            .count()
    };
    assert_eq!(
        pod_rules(&index),
        2,
        "upstream lists a rule once per binding"
    );
    let gone = |name: &str| {
        binding(
            "RoleBinding",
            Some("ns-1"),
            name,
            "ClusterRole",
            "read-pods",
            json!([]),
        )
    };
    index.remove(Kind::RoleBinding, &gone("pods-0"));
    assert_eq!(pod_rules(&index), 1);
    let rbac = Rbac::with_index(index);
    assert_eq!(rbac.authorize(&a), Verdict::Allow, "one binding left");
    rbac.write().remove(Kind::RoleBinding, &gone("pods-1"));
    assert_eq!(rbac.authorize(&a), Verdict::NoOpinion, "none left");
    rbac.write().clear(Kind::ClusterRoleBinding);
    a.resource.as_mut().unwrap().resource = "configmaps".into();
    assert_eq!(
        rbac.authorize(&a),
        Verdict::NoOpinion,
        "cluster bindings cleared"
    );
}

#[test]
fn uncovered_rules_are_what_the_owner_lacks() {
    let owner = vec![
        rule(
            json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "*/status"]}),
        ),
        rule(json!({"verbs": ["get"], "nonResourceURLs": ["/api/*"]})),
    ];
    let cases = [
        (
            "a subset",
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}),
            vec![],
        ),
        (
            "a named subset",
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["p"]}),
            vec![],
        ),
        (
            "*/status covers a status",
            json!({"verbs": ["list"], "apiGroups": [""], "resources": ["services/status"]}),
            vec![],
        ),
        (
            "a URL under a prefix",
            json!({"verbs": ["get"], "nonResourceURLs": ["/api/v1"]}),
            vec![],
        ),
        (
            "one more verb",
            json!({"verbs": ["get", "delete"], "apiGroups": [""], "resources": ["pods"]}),
            vec!["{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}"],
        ),
        (
            "another resource, verbs compacted",
            json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["secrets"]}),
            vec!["{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"list\"]}"],
        ),
        (
            "a URL outside",
            json!({"verbs": ["get"], "nonResourceURLs": ["/metrics"]}),
            vec!["{NonResourceURLs:[\"/metrics\"], Verbs:[\"get\"]}"],
        ),
    ];
    for (name, servant, want) in cases {
        let missing: Vec<String> = compact(uncovered(&owner, &[rule(servant)]))
            .iter()
            .map(PolicyRule::compact_string)
            .collect();
        assert_eq!(missing, want, "{name}");
    }
}

#[test]
fn system_masters_may_do_anything_and_others_get_no_opinion() {
    let mut a = path("delete", "/anything");
    a.user = user("root", &["system:masters"]);
    assert_eq!(PrivilegedGroups.authorize(&a), Verdict::Allow);
    a.user = user("root", &["system:authenticated"]);
    assert_eq!(PrivilegedGroups.authorize(&a), Verdict::NoOpinion);
}

#[test]
fn an_allowed_request_names_the_binding_role_and_subject_as_upstreams_reason() {
    let rbac = Rbac::with_index(cluster());
    let cases = [
        (
            "a user through a RoleBinding of a ClusterRole",
            user("alice", &[]),
            request("get", "", "pods", None, Some("a"), Some("p")),
            r#"RBAC: allowed by RoleBinding "pods-a/a" of ClusterRole "read-pods" to User "alice""#,
        ),
        (
            "a group through a RoleBinding of a Role",
            user("bob", &["devs"]),
            request("get", "", "configmaps", None, Some("a"), Some("c")),
            r#"RBAC: allowed by RoleBinding "cm-a/a" of Role "cm" to Group "devs""#,
        ),
        (
            "a service account, named as upstream names it",
            user("system:serviceaccount:a:robot", &[]),
            request("list", "", "pods", None, Some("a"), None),
            r#"RBAC: allowed by RoleBinding "pods-a/a" of ClusterRole "read-pods" to ServiceAccount "robot/a""#,
        ),
        (
            "a group through a ClusterRoleBinding",
            user("system:serviceaccount:b:x", &["system:serviceaccounts:b"]),
            request("list", "", "pods", None, Some("z"), None),
            r#"RBAC: allowed by ClusterRoleBinding "all-sas" of ClusterRole "read-pods" to Group "system:serviceaccounts:b""#,
        ),
    ];
    for (name, who, mut attributes, want) in cases {
        attributes.user = who;
        assert_eq!(
            rbac.authorize_with_reason(&attributes),
            (Verdict::Allow, want.to_string()),
            "{name}"
        );
    }
    let mut denied = request("delete", "", "pods", None, Some("a"), Some("p"));
    denied.user = user("alice", &[]);
    assert_eq!(
        rbac.authorize_with_reason(&denied),
        (Verdict::NoOpinion, String::new())
    );
}

#[test]
fn a_denial_names_the_bound_roles_that_do_not_exist_as_upstream() {
    let mut index = cluster();
    index.put(
        Kind::ClusterRoleBinding,
        &binding(
            "ClusterRoleBinding",
            None,
            "gone",
            "ClusterRole",
            "gone-role",
            json!([{"kind": "User", "name": "alice"}]),
        ),
    );
    let rbac = Rbac::with_index(index);
    let mut a = request("delete", "", "pods", None, Some("a"), Some("p"));
    a.user = user("alice", &[]);
    assert_eq!(
        rbac.authorize_with_reason(&a),
        (
            Verdict::NoOpinion,
            r#"RBAC: clusterrole.rbac.authorization.k8s.io "gone-role" not found"#.to_string()
        )
    );
    let mut b = a.clone();
    b.user = user("bob", &["devs"]);
    assert_eq!(rbac.explain(&b), None, "bob's role exists");
    let mut two = Rbac::with_index({
        let mut i = cluster();
        i.remove(
            Kind::Role,
            &json!({"metadata": {"name": "cm", "namespace": "a"}}),
        );
        i.put(
            Kind::ClusterRoleBinding,
            &binding(
                "ClusterRoleBinding",
                None,
                "gone",
                "ClusterRole",
                "gone-role",
                json!([{"kind": "Group", "name": "devs"}]),
            ),
        );
        i
    });
    b.user = user("bob", &["devs"]);
    assert_eq!(
        two.explain(&b).as_deref(),
        Some(
            r#"RBAC: [clusterrole.rbac.authorization.k8s.io "gone-role" not found, role.rbac.authorization.k8s.io "cm" not found]"#
        )
    );
    two = Rbac::default();
    assert_eq!(two.explain(&b), None);
}
