//! RBAC through real requests: users, groups and service accounts (client certificates
//! from the cluster CA) × verbs × resources × namespaces, each answered as upstream
//! answers (allowed, or 403 with upstream's message); `kubectl auth can-i` and `--list`;
//! escalation prevention on writes of roles and bindings.

use kube::Client;
use serde_json::{json, Value};

use crate::call;
use crate::common::{InProcess, User};

async fn create(client: &Client, uri: &str, body: Value) {
    call(client, "POST", uri, Some(body.clone()))
        .await
        .unwrap_or_else(|e| panic!("creating {body} at {uri}: {e}"));
}

const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": groups, "resources": resources})
}

fn subject(kind: &str, name: &str) -> Value {
    match kind {
        "ServiceAccount" => {
            let (ns, n) = name.split_once('/').unwrap();
            json!({"kind": kind, "name": n, "namespace": ns})
        }
        _ => json!({"kind": kind, "name": name, "apiGroup": "rbac.authorization.k8s.io"}),
    }
}

async fn cluster_role(admin: &Client, name: &str, rules: Value) {
    create(
        admin,
        &format!("{RBAC}/clusterroles"),
        json!({"metadata": {"name": name}, "rules": rules}),
    )
    .await;
}

async fn role(admin: &Client, ns: &str, name: &str, rules: Value) {
    create(
        admin,
        &format!("{RBAC}/namespaces/{ns}/roles"),
        json!({"metadata": {"name": name}, "rules": rules}),
    )
    .await;
}

/// Binds `role` (`ClusterRole/x` or `Role/x`) to one subject, in `ns` or cluster-wide.
async fn bind(admin: &Client, ns: Option<&str>, name: &str, role: &str, subject: Value) {
    let (kind, role_name) = role.split_once('/').unwrap();
    let body = json!({"metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role_name},
        "subjects": [subject]});
    let uri = match ns {
        Some(ns) => format!("{RBAC}/namespaces/{ns}/rolebindings"),
        None => format!("{RBAC}/clusterrolebindings"),
    };
    create(admin, &uri, body).await;
}

/// Two namespaces, and roles bound to a user, a group and a service account.
async fn matrix_cluster() -> InProcess {
    let s = InProcess::start().await;
    let admin = &s.client;
    for ns in ["team-a", "team-b"] {
        create(
            admin,
            "/api/v1/namespaces",
            json!({"metadata": {"name": ns}}),
        )
        .await;
    }
    create(admin, "/apis/apps/v1/namespaces/team-a/deployments", json!({
        "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})).await;
    cluster_role(
        admin,
        "pod-reader",
        json!([rule(&["get", "list", "watch"], &[""], &["pods"])]),
    )
    .await;
    cluster_role(admin, "public-secret", json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["public"]}])).await;
    cluster_role(
        admin,
        "scaler",
        json!([rule(&["get", "update"], &["*"], &["*/scale"])]),
    )
    .await;
    role(
        admin,
        "team-a",
        "cm-editor",
        json!([rule(&["get", "list", "create"], &[""], &["configmaps"])]),
    )
    .await;
    bind(
        admin,
        Some("team-a"),
        "alice-pods",
        "ClusterRole/pod-reader",
        subject("User", "alice"),
    )
    .await;
    bind(
        admin,
        Some("team-a"),
        "devs-cm",
        "Role/cm-editor",
        subject("Group", "devs"),
    )
    .await;
    bind(
        admin,
        None,
        "robot-pods",
        "ClusterRole/pod-reader",
        subject("ServiceAccount", "team-b/robot"),
    )
    .await;
    bind(
        admin,
        Some("team-b"),
        "sas-public",
        "ClusterRole/public-secret",
        subject("Group", "system:serviceaccounts:team-b"),
    )
    .await;
    bind(
        admin,
        Some("team-a"),
        "dave-scale",
        "ClusterRole/scaler",
        subject("User", "dave"),
    )
    .await;
    settled(admin, "dave", "team-a", ("apps", "deployments"), "scale").await;
    s
}

/// A matrix row: its name, the user, method, URI, body, and `None` when the request is
/// allowed or upstream's 403 message.
type Row<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    Option<Value>,
    Option<String>,
);

#[tokio::test]
async fn rbac_matrix_answers_as_upstream() {
    let s = matrix_cluster().await;
    let kc = &s.server.kubeconfig;
    let users = [
        ("alice", User::new(kc, "alice", None).await),
        ("bob", User::new(kc, "bob", Some("devs")).await),
        ("carol", User::new(kc, "carol", None).await),
        ("dave", User::new(kc, "dave", None).await),
        (
            "robot",
            User::new(
                kc,
                "system:serviceaccount:team-b:robot",
                Some("system:serviceaccounts:team-b"),
            )
            .await,
        ),
    ];
    let client = |who: &str| &users.iter().find(|(n, _)| *n == who).unwrap().1.client;
    let denied = |user: &str, verb: &str, what: &str, resource: &str, group: &str, scope: &str| {
        format!("{what} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}")
    };
    let in_ns = |ns: &str| format!("in the namespace \"{ns}\"");
    let robot = "system:serviceaccount:team-b:robot";
    // (row, user, method, uri, None when allowed or the 403 message)
    let cm = json!({"metadata": {"name": "c"}});
    let rows: Vec<Row<'_>> = vec![
        (
            "a user lists pods where bound",
            "alice",
            "GET",
            "/api/v1/namespaces/team-a/pods",
            None,
            None,
        ),
        (
            "a user gets a pod where bound",
            "alice",
            "GET",
            "/api/v1/namespaces/team-a/pods/x",
            None,
            None,
        ),
        (
            "a user lists pods in another namespace",
            "alice",
            "GET",
            "/api/v1/namespaces/team-b/pods",
            None,
            Some(denied(
                "alice",
                "list",
                "pods",
                "pods",
                "",
                &in_ns("team-b"),
            )),
        ),
        (
            "a user lists pods cluster-wide",
            "alice",
            "GET",
            "/api/v1/pods",
            None,
            Some(denied(
                "alice",
                "list",
                "pods",
                "pods",
                "",
                "at the cluster scope",
            )),
        ),
        (
            "a user deletes with a read role",
            "alice",
            "DELETE",
            "/api/v1/namespaces/team-a/pods/x",
            None,
            Some(denied(
                "alice",
                "delete",
                "pods \"x\"",
                "pods",
                "",
                &in_ns("team-a"),
            )),
        ),
        (
            "a subresource is not its resource",
            "alice",
            "GET",
            "/api/v1/namespaces/team-a/pods/x/log",
            None,
            Some(denied(
                "alice",
                "get",
                "pods \"x\"",
                "pods/log",
                "",
                &in_ns("team-a"),
            )),
        ),
        (
            "a group member creates through a Role",
            "bob",
            "POST",
            "/api/v1/namespaces/team-a/configmaps",
            Some(cm.clone()),
            None,
        ),
        (
            "a group member outside the Role's verbs",
            "bob",
            "DELETE",
            "/api/v1/namespaces/team-a/configmaps/c",
            None,
            Some(denied(
                "bob",
                "delete",
                "configmaps \"c\"",
                "configmaps",
                "",
                &in_ns("team-a"),
            )),
        ),
        (
            "a group member on another resource",
            "bob",
            "GET",
            "/api/v1/namespaces/team-a/secrets",
            None,
            Some(denied(
                "bob",
                "list",
                "secrets",
                "secrets",
                "",
                &in_ns("team-a"),
            )),
        ),
        (
            "a user bound to nothing",
            "carol",
            "GET",
            "/api/v1/namespaces/team-a/configmaps",
            None,
            Some(denied(
                "carol",
                "list",
                "configmaps",
                "configmaps",
                "",
                &in_ns("team-a"),
            )),
        ),
        (
            "a user bound to nothing reads the version",
            "carol",
            "GET",
            "/version",
            None,
            None,
        ),
        (
            "a user bound to nothing discovers the API",
            "carol",
            "GET",
            "/apis",
            None,
            None,
        ),
        (
            "a user bound to nothing asks about itself",
            "carol",
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            Some(json!({"spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}})),
            None,
        ),
        (
            "a user bound to nothing reads metrics",
            "carol",
            "GET",
            "/metrics",
            None,
            Some("forbidden: User \"carol\" cannot get path \"/metrics\"".into()),
        ),
        (
            "*/scale allows a scale",
            "dave",
            "GET",
            "/apis/apps/v1/namespaces/team-a/deployments/d/scale",
            None,
            None,
        ),
        (
            "*/scale does not allow the resource",
            "dave",
            "GET",
            "/apis/apps/v1/namespaces/team-a/deployments/d",
            None,
            Some(denied(
                "dave",
                "get",
                "deployments.apps \"d\"",
                "deployments",
                "apps",
                &in_ns("team-a"),
            )),
        ),
        (
            "a service account bound cluster-wide lists everywhere",
            "robot",
            "GET",
            "/api/v1/pods",
            None,
            None,
        ),
        (
            "a namespace's service accounts get the named secret",
            "robot",
            "GET",
            "/api/v1/namespaces/team-b/secrets/public",
            None,
            None,
        ),
        (
            "a namespace's service accounts get another secret",
            "robot",
            "GET",
            "/api/v1/namespaces/team-b/secrets/private",
            None,
            Some(denied(
                robot,
                "get",
                "secrets \"private\"",
                "secrets",
                "",
                &in_ns("team-b"),
            )),
        ),
        (
            "resourceNames do not allow a list",
            "robot",
            "GET",
            "/api/v1/namespaces/team-b/secrets",
            None,
            Some(denied(
                robot,
                "list",
                "secrets",
                "secrets",
                "",
                &in_ns("team-b"),
            )),
        ),
    ];
    for (row, who, method, uri, body, want) in rows {
        let got = call(client(who), method, uri, body).await;
        match (want, got) {
            (None, Ok(_)) => {}
            (None, Err(kube::Error::Api(s))) => assert_ne!(s.code, 403, "{row}: {}", s.message),
            (None, Err(e)) => panic!("{row}: {e}"),
            (Some(message), Err(kube::Error::Api(s))) => {
                assert_eq!(
                    (s.code, s.reason.as_str(), s.message.as_str()),
                    (403, "Forbidden", message.as_str()),
                    "{row}"
                );
            }
            (Some(_), other) => panic!("{row}: expected 403, got {other:?}"),
        }
    }
}

// kubectl runs while the in-process server answers it on the other worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_auth_can_i_answers_from_rbac() {
    let s = matrix_cluster().await;
    let alice = User::new(&s.server.kubeconfig, "alice", None).await;
    let kubectl = alice.kubectl();
    let rows = [
        (
            "bound verb in the bound namespace",
            vec!["list", "pods", "-n", "team-a"],
            "yes",
        ),
        (
            "bound verb elsewhere",
            vec!["list", "pods", "-n", "team-b"],
            "no",
        ),
        ("unbound verb", vec!["delete", "pods", "-n", "team-a"], "no"),
        (
            "cluster-wide",
            vec!["list", "pods", "--all-namespaces"],
            "no",
        ),
        ("a public path", vec!["get", "/version"], "yes"),
    ];
    for (row, args, want) in rows {
        let mut full = vec!["auth", "can-i"];
        full.extend(args);
        let out = tokio::task::block_in_place(|| kubectl.output(&full));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout.trim(),
            want,
            "{row}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.success(), want == "yes", "{row}");
    }
    let list =
        tokio::task::block_in_place(|| kubectl.run(&["auth", "can-i", "--list", "-n", "team-a"]));
    let line = |prefix: &str| {
        list.lines()
            .find(|l| l.split_whitespace().next() == Some(prefix))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    assert_eq!(
        line("pods"),
        Some("pods [] [] [get list watch]".into()),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["[/version]", "[]", "[get]"]),
        "{list}"
    );
    assert!(
        list.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{list}"
    );
    let elsewhere =
        tokio::task::block_in_place(|| kubectl.run(&["auth", "can-i", "--list", "-n", "team-b"]));
    assert!(
        !elsewhere.lines().any(|l| l.starts_with("pods ")),
        "{elsewhere}"
    );
}

#[tokio::test]
async fn writing_roles_and_bindings_needs_the_rights_they_grant() {
    let s = matrix_cluster().await;
    let admin = &s.client;
    role(
        admin,
        "team-a",
        "rbac-writer",
        json!([
            rule(
                &["create", "update"],
                &["rbac.authorization.k8s.io"],
                &["roles", "rolebindings"]
            ),
            rule(&["get", "list"], &[""], &["pods"]),
        ]),
    )
    .await;
    bind(
        admin,
        Some("team-a"),
        "erin-rbac",
        "Role/rbac-writer",
        subject("User", "erin"),
    )
    .await;
    settled(admin, "erin", "team-a", ("", "pods"), "").await;
    let erin = User::new(&s.server.kubeconfig, "erin", None).await;
    let roles = format!("{RBAC}/namespaces/team-a/roles");
    let bindings = format!("{RBAC}/namespaces/team-a/rolebindings");
    let held = json!({"metadata": {"name": "held"}, "rules": [rule(&["get"], &[""], &["pods"])]});
    let more = json!({"metadata": {"name": "more"}, "rules": [rule(&["get", "list"], &[""], &["secrets", "pods"])]});
    let binding = |name: &str, role: &str| {
        json!({"metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [subject("User", "frank")]})
    };
    let not_held = |what: &str, missing: &str| {
        format!(
        "{what} is forbidden: user \"erin\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{missing}")
    };
    let rows: Vec<(&str, &str, Value, Option<String>)> = vec![
        ("a role with rules the writer holds", &roles, held, None),
        ("a role with rules the writer lacks", &roles, more.clone(),
            Some(not_held("roles.rbac.authorization.k8s.io \"more\"", "{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"list\"]}"))),
        ("a binding to a role with a verb the writer lacks", &bindings, binding("b1", "pod-reader"),
            Some(not_held("rolebindings.rbac.authorization.k8s.io \"b1\"", "{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"watch\"]}"))),
        ("a binding to cluster-admin", &bindings, binding("b2", "cluster-admin"),
            Some(not_held("rolebindings.rbac.authorization.k8s.io \"b2\"", "{APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}\n{NonResourceURLs:[\"*\"], Verbs:[\"*\"]}"))),
        ("a binding to a missing role", &bindings, binding("b3", "nope"),
            Some("rolebindings.rbac.authorization.k8s.io \"b3\" is forbidden: clusterrole.rbac.authorization.k8s.io \"nope\" not found".into())),
    ];
    for (row, uri, body, want) in rows {
        let got = call(&erin.client, "POST", uri, Some(body)).await;
        match (want, got) {
            (None, Ok(_)) => {}
            (Some(m), Err(kube::Error::Api(s))) => {
                assert_eq!((s.code, s.message.as_str()), (403, m.as_str()), "{row}")
            }
            (want, got) => panic!("{row}: wanted {want:?}, got {got:?}"),
        }
    }
    // `escalate` and `bind` on the roles lift the checks, as upstream.
    role(admin, "team-a", "escalator", json!([
        rule(&["escalate"], &["rbac.authorization.k8s.io"], &["roles"]),
        {"verbs": ["bind"], "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "resourceNames": ["cluster-admin"]},
    ])).await;
    bind(
        admin,
        Some("team-a"),
        "erin-escalate",
        "Role/escalator",
        subject("User", "erin"),
    )
    .await;
    common_eventually_ok(&erin.client, "POST", &roles, more).await;
    common_eventually_ok(
        &erin.client,
        "POST",
        &bindings,
        binding("b2", "cluster-admin"),
    )
    .await;
}

/// Retries `call` until it succeeds: a new binding reaches the authorizer through the
/// watch cache, a moment after its create returned.
async fn common_eventually_ok(client: &Client, method: &str, uri: &str, body: Value) {
    crate::common::eventually(&format!("{method} {uri} allowed"), || async {
        call(client, method, uri, Some(body.clone()))
            .await
            .map_err(|e| e.to_string())
    })
    .await;
}

/// Waits until the authorizer has seen the bindings made last.
async fn settled(
    admin: &Client,
    user: &str,
    ns: &str,
    group_resource: (&str, &str),
    subresource: &str,
) {
    let (group, resource) = group_resource;
    let review = json!({"spec": {"user": user, "resourceAttributes": {"namespace": ns, "verb": "get",
        "group": group, "resource": resource, "subresource": subresource, "name": "x"}}});
    crate::common::eventually(&format!("{user} bound"), || async {
        let r = call(
            admin,
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            Some(review.clone()),
        )
        .await
        .map_err(|e| e.to_string())?;
        match r["status"]["allowed"].as_bool() {
            Some(true) => Ok(()),
            _ => Err(r.to_string()),
        }
    })
    .await;
}

#[tokio::test]
async fn subject_access_reviews_answer_with_rbacs_reason_as_upstream() {
    let s = matrix_cluster().await;
    let review = |spec: Value| json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec});
    let rows = [
        (
            "a user through a RoleBinding",
            json!({"user": "alice", "resourceAttributes": {"namespace": "team-a", "verb": "list", "resource": "pods"}}),
            json!({"allowed": true, "reason": "RBAC: allowed by RoleBinding \"alice-pods/team-a\" of ClusterRole \"pod-reader\" to User \"alice\""}),
        ),
        (
            "a service account through a ClusterRoleBinding",
            json!({"user": "system:serviceaccount:team-b:robot", "resourceAttributes": {"namespace": "team-a", "verb": "get", "resource": "pods", "name": "p"}}),
            json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"robot-pods\" of ClusterRole \"pod-reader\" to ServiceAccount \"robot/team-b\""}),
        ),
        (
            "a group through a RoleBinding of a Role",
            json!({"user": "erin", "groups": ["devs"], "resourceAttributes": {"namespace": "team-a", "verb": "create", "resource": "configmaps"}}),
            json!({"allowed": true, "reason": "RBAC: allowed by RoleBinding \"devs-cm/team-a\" of Role \"cm-editor\" to Group \"devs\""}),
        ),
        (
            "a user bound to nothing",
            json!({"user": "carol", "resourceAttributes": {"namespace": "team-a", "verb": "list", "resource": "pods"}}),
            json!({"allowed": false}),
        ),
    ];
    for (name, spec, want) in rows {
        let answer = call(
            &s.client,
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            Some(review(spec)),
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(answer["status"], want, "{name}");
    }
}
