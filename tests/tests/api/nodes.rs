//! Nodes' own identities (`system:node:<name>` in `system:nodes`) through real requests:
//! the Node authorizer lets a node read only what its pods use, NodeRestriction lets it
//! write only its own Node, Lease and pods' status, each refusal upstream's 403.

use kube::Client;
use serde_json::{json, Value};

use crate::call;
use crate::common::{eventually, InProcess, User};

const NS: &str = "apps";

async fn create(client: &Client, uri: &str, body: Value) {
    call(client, "POST", uri, Some(body.clone()))
        .await
        .unwrap_or_else(|e| panic!("creating {body} at {uri}: {e}"));
}

/// A JSON merge patch.
async fn merge(client: &Client, uri: &str, patch: Value) -> Result<Value, kube::Error> {
    let req = http::Request::builder()
        .method("PATCH")
        .uri(uri)
        .header("content-type", "application/merge-patch+json")
        .body(serde_json::to_vec(&patch).unwrap())
        .unwrap();
    client.request::<Value>(req).await
}

/// The message of a refused request, or a panic naming what was allowed.
fn refusal(what: &str, result: Result<Value, kube::Error>) -> String {
    match result {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{what}: {s:?}");
            s.message
        }
        other => panic!("{what}: expected a 403, got {other:?}"),
    }
}

fn pod(name: &str, node: &str, secret: &str) -> Value {
    json!({"metadata": {"name": name, "labels": {"app": name}}, "spec": {
        "nodeName": node,
        "containers": [{"name": "c", "image": "busybox"}],
        "volumes": [{"name": "s", "secret": {"secretName": secret}}]}})
}

/// Nodes `a` and `b`, each running one pod with its own secret, and a client for each
/// node's identity.
async fn two_nodes() -> (InProcess, User, User) {
    let s = InProcess::start().await;
    let admin = &s.client;
    create(
        admin,
        "/api/v1/namespaces",
        json!({"metadata": {"name": NS}}),
    )
    .await;
    for node in ["a", "b"] {
        create(
            admin,
            "/api/v1/nodes",
            json!({"metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}}}),
        )
        .await;
        create(
            admin,
            &format!("/api/v1/namespaces/{NS}/secrets"),
            json!({"metadata": {"name": format!("{node}-secret")}, "data": {"k": "dg=="}}),
        )
        .await;
    }
    eventually("the default service account", || async {
        call(
            admin,
            "GET",
            &format!("/api/v1/namespaces/{NS}/serviceaccounts/default"),
            None,
        )
        .await
        .map_err(|e| e.to_string())
    })
    .await;
    for node in ["a", "b"] {
        create(
            admin,
            &format!("/api/v1/namespaces/{NS}/pods"),
            pod(&format!("{node}-pod"), node, &format!("{node}-secret")),
        )
        .await;
    }
    let kc = &s.server.kubeconfig;
    let a = User::new(kc, "system:node:a", Some("system:nodes")).await;
    let b = User::new(kc, "system:node:b", Some("system:nodes")).await;
    (s, a, b)
}

fn secret_uri(name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/secrets/{name}")
}

#[tokio::test]
async fn a_node_reads_the_secret_of_its_pod_and_not_another_nodes() {
    let (s, a, _b) = two_nodes().await;
    // The authorizer learns of a new pod from the watch cache.
    eventually("node a reads its pod's secret", || async {
        call(&a.client, "GET", &secret_uri("a-secret"), None)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    let message = refusal(
        "node a reading node b's pod's secret",
        call(&a.client, "GET", &secret_uri("b-secret"), None).await,
    );
    assert_eq!(
        message,
        "secrets \"b-secret\" is forbidden: User \"system:node:a\" cannot get resource \"secrets\" in API group \"\" in the namespace \"apps\": no relationship found between node 'a' and this object"
    );
    let message = refusal(
        "node a listing secrets",
        call(
            &a.client,
            "GET",
            &format!("/api/v1/namespaces/{NS}/secrets"),
            None,
        )
        .await,
    );
    assert!(message.ends_with(": No Object name found"), "{message}");

    // Once its pod is gone, so is the node's access to the secret.
    call(
        &s.client,
        "DELETE",
        &format!("/api/v1/namespaces/{NS}/pods/a-pod"),
        Some(json!({"gracePeriodSeconds": 0})),
    )
    .await
    .expect("deleting node a's pod");
    eventually("node a loses its deleted pod's secret", || async {
        match call(&a.client, "GET", &secret_uri("a-secret"), None).await {
            Err(kube::Error::Api(s)) if s.code == 403 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test]
async fn a_node_writes_only_its_own_node_lease_and_pods_status() {
    let (_s, a, _b) = two_nodes().await;
    let c = &a.client;
    let cases: Vec<(&str, &str, Value, Option<&str>)> = vec![
        (
            "its own node's labels",
            "/api/v1/nodes/a",
            json!({"metadata": {"labels": {"example.com/rack": "r1", "node.kubernetes.io/instance-type": "big"}}}),
            None,
        ),
        (
            "its own node's status",
            "/api/v1/nodes/a/status",
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            None,
        ),
        (
            "another node",
            "/api/v1/nodes/b",
            json!({"metadata": {"labels": {"x": "y"}}}),
            Some("nodes \"b\" is forbidden: node \"a\" is not allowed to modify node \"b\""),
        ),
        (
            "another node's status",
            "/api/v1/nodes/b/status",
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
            Some("nodes \"b\" is forbidden: node \"a\" is not allowed to modify node \"b\""),
        ),
        (
            "a restricted label on its own node",
            "/api/v1/nodes/a",
            json!({"metadata": {"labels": {"node-restriction.kubernetes.io/trusted": "yes"}}}),
            Some("nodes \"a\" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/trusted"),
        ),
        (
            "a role label on its own node",
            "/api/v1/nodes/a",
            json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}}}),
            Some("nodes \"a\" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/control-plane"),
        ),
        (
            "its own node's taints",
            "/api/v1/nodes/a",
            json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}),
            Some("nodes \"a\" is forbidden: node \"a\" is not allowed to modify taints"),
        ),
        (
            "its own pod's status",
            "/api/v1/namespaces/apps/pods/a-pod/status",
            json!({"status": {"message": "running on a"}}),
            None,
        ),
        (
            "another node's pod's status",
            "/api/v1/namespaces/apps/pods/b-pod/status",
            json!({"status": {"message": "hijacked"}}),
            Some("pods \"b-pod\" is forbidden: node \"a\" can only update pod status for pods with spec.nodeName set to itself"),
        ),
        (
            "its own pod's labels through status",
            "/api/v1/namespaces/apps/pods/a-pod/status",
            json!({"metadata": {"labels": {"app": "other"}}}),
            Some("pods \"a-pod\" is forbidden: node \"a\" cannot update labels through pod status"),
        ),
        (
            "its own pod's spec",
            "/api/v1/namespaces/apps/pods/a-pod",
            json!({"metadata": {"annotations": {"x": "y"}}}),
            Some("pods \"a-pod\" is forbidden: User \"system:node:a\" cannot patch resource \"pods\" in API group \"\" in the namespace \"apps\""),
        ),
    ];
    for (name, uri, patch, want) in cases {
        let result = merge(c, uri, patch).await;
        match want {
            None => {
                result.unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            Some(want) => assert_eq!(refusal(name, result), want, "{name}"),
        }
    }
}

#[tokio::test]
async fn a_node_keeps_only_its_own_lease_and_deletes_only_its_own_pods() {
    let (s, a, _b) = two_nodes().await;
    let c = &a.client;
    let leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
    let lease = |name: &str| json!({"metadata": {"name": name}, "spec": {"holderIdentity": name, "leaseDurationSeconds": 40}});
    call(c, "POST", leases, Some(lease("a")))
        .await
        .expect("node a creating its own lease");
    merge(
        c,
        &format!("{leases}/a"),
        json!({"spec": {"leaseDurationSeconds": 41}}),
    )
    .await
    .expect("node a renewing its own lease");
    call(&s.client, "POST", leases, Some(lease("b")))
        .await
        .expect("the admin creating node b's lease");
    for (name, result, want) in [
        (
            "creating node b's lease",
            call(c, "POST", leases, Some(lease("b"))).await,
            "leases.coordination.k8s.io \"b\" is forbidden: can only access node lease with the same name as the requesting node",
        ),
        (
            "renewing node b's lease",
            merge(c, &format!("{leases}/b"), json!({"spec": {"leaseDurationSeconds": 1}})).await,
            "leases.coordination.k8s.io \"b\" is forbidden: User \"system:node:a\" cannot patch resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"kube-node-lease\": can only access node lease with the same name as the requesting node",
        ),
        (
            "deleting node b's pod",
            call(c, "DELETE", "/api/v1/namespaces/apps/pods/b-pod", None).await,
            "pods \"b-pod\" is forbidden: node \"a\" can only delete pods with spec.nodeName set to itself",
        ),
        (
            "creating a pod that is not a mirror pod",
            call(c, "POST", "/api/v1/namespaces/apps/pods", Some(pod("sneaky", "a", "b-secret"))).await,
            "pods \"sneaky\" is forbidden: pod does not have \"kubernetes.io/config.mirror\" annotation, node \"a\" can only create mirror pods",
        ),
    ] {
        assert_eq!(refusal(name, result), want, "{name}");
    }
    call(
        c,
        "DELETE",
        "/api/v1/namespaces/apps/pods/a-pod",
        Some(json!({"gracePeriodSeconds": 0})),
    )
    .await
    .expect("node a deleting its own pod");
}

#[tokio::test]
async fn a_node_lists_pods_only_with_its_node_name_selector_and_reviews_give_the_reason() {
    let (s, a, _b) = two_nodes().await;
    let own = call(
        &a.client,
        "GET",
        "/api/v1/pods?fieldSelector=spec.nodeName%3Da",
        None,
    )
    .await
    .expect("node a listing its own pods");
    let names: Vec<&str> = own["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.pointer("/metadata/name").and_then(Value::as_str))
        .collect();
    assert_eq!(names, ["a-pod"]);
    let message = refusal(
        "node a listing every pod",
        call(&a.client, "GET", "/api/v1/pods", None).await,
    );
    assert_eq!(
        message,
        "pods is forbidden: User \"system:node:a\" cannot list resource \"pods\" in API group \"\" at the cluster scope: can only list/watch pods with spec.nodeName field selector"
    );

    // The same questions as a SubjectAccessReview, with the selector as requirements.
    let review = |field_selector: Value| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": "system:node:a", "groups": ["system:nodes", "system:authenticated"],
                "resourceAttributes": {"verb": "list", "resource": "pods", "version": "v1",
                    "fieldSelector": field_selector}}})
    };
    let uri = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
    let own =
        json!({"requirements": [{"key": "spec.nodeName", "operator": "In", "values": ["a"]}]});
    let answer = call(&s.client, "POST", uri, Some(review(own)))
        .await
        .unwrap();
    assert_eq!(answer["status"], json!({"allowed": true}));
    let unparsable = json!({"rawSelector": "spec.nodeName"});
    let answer = call(&s.client, "POST", uri, Some(review(unparsable)))
        .await
        .unwrap();
    assert_eq!(
        answer["status"],
        json!({
            "allowed": false,
            "reason": "can only list/watch pods with spec.nodeName field selector",
            "evaluationError": "spec.resourceAttributes.fieldSelector ignored due to parse error"
        })
    );
}
