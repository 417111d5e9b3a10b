//! API groups served beside the workload kinds: admission configuration, events.k8s.io,
//! APIServices, CertificateSigningRequests (with `/approval`), flow control,
//! RuntimeClasses, the review endpoints of authentication.k8s.io and
//! authorization.k8s.io, and the computed ComponentStatuses.

use kube::discovery::Discovery;
use kube::Client;
use serde_json::{json, Value};

use crate::common::InProcess;

/// A request with a JSON body (or none), answered as JSON.
async fn call(
    client: &Client,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> Result<Value, kube::Error> {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(
            body.map(|b| serde_json::to_vec(&b).unwrap())
                .unwrap_or_default(),
        )
        .unwrap();
    client.request::<Value>(req).await
}

struct Kind {
    name: &'static str,
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    /// The object's fields besides apiVersion, kind and metadata.
    fields: fn() -> Value,
    object_name: &'static str,
}

fn webhook() -> Value {
    json!({"webhooks": [{"name": "a.example.com", "clientConfig": {"url": "https://example.com/hook"},
        "admissionReviewVersions": ["v1"], "sideEffects": "None"}]})
}

const KINDS: &[Kind] = &[
    Kind {
        name: "mutating webhook configurations",
        group: "admissionregistration.k8s.io",
        kind: "MutatingWebhookConfiguration",
        plural: "mutatingwebhookconfigurations",
        namespaced: false,
        short_names: &[],
        categories: &["api-extensions"],
        fields: webhook,
        object_name: "hooks",
    },
    Kind {
        name: "validating webhook configurations",
        group: "admissionregistration.k8s.io",
        kind: "ValidatingWebhookConfiguration",
        plural: "validatingwebhookconfigurations",
        namespaced: false,
        short_names: &[],
        categories: &["api-extensions"],
        fields: webhook,
        object_name: "hooks",
    },
    Kind {
        name: "validating admission policies",
        group: "admissionregistration.k8s.io",
        kind: "ValidatingAdmissionPolicy",
        plural: "validatingadmissionpolicies",
        namespaced: false,
        short_names: &[],
        categories: &["api-extensions"],
        fields: || json!({"spec": {"validations": [{"expression": "true"}]}}),
        object_name: "policy",
    },
    Kind {
        name: "validating admission policy bindings",
        group: "admissionregistration.k8s.io",
        kind: "ValidatingAdmissionPolicyBinding",
        plural: "validatingadmissionpolicybindings",
        namespaced: false,
        short_names: &[],
        categories: &["api-extensions"],
        fields: || json!({"spec": {"policyName": "policy", "validationActions": ["Deny"]}}),
        object_name: "binding",
    },
    Kind {
        name: "events.k8s.io events",
        group: "events.k8s.io",
        kind: "Event",
        plural: "events",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        fields: || {
            json!({"eventTime": "2025-01-01T00:00:00.000000Z", "reportingController": "example.com/c",
                "reportingInstance": "c-1", "action": "Reconcile", "reason": "Synced", "type": "Normal",
                "note": "done", "regarding": {"kind": "Pod", "name": "p", "namespace": "default"}})
        },
        object_name: "ev1",
    },
    Kind {
        name: "API services",
        group: "apiregistration.k8s.io",
        kind: "APIService",
        plural: "apiservices",
        namespaced: false,
        short_names: &[],
        categories: &["api-extensions"],
        fields: || {
            json!({"spec": {"group": "example.com", "version": "v1", "groupPriorityMinimum": 1000,
                "versionPriority": 15, "service": {"namespace": "default", "name": "ext"}}})
        },
        object_name: "v1.example.com",
    },
    Kind {
        name: "certificate signing requests",
        group: "certificates.k8s.io",
        kind: "CertificateSigningRequest",
        plural: "certificatesigningrequests",
        namespaced: false,
        short_names: &["csr"],
        categories: &[],
        fields: csr_fields,
        object_name: "req",
    },
    Kind {
        name: "flow schemas",
        group: "flowcontrol.apiserver.k8s.io",
        kind: "FlowSchema",
        plural: "flowschemas",
        namespaced: false,
        short_names: &[],
        categories: &[],
        fields: || json!({"spec": {"priorityLevelConfiguration": {"name": "global-default"}}}),
        object_name: "fs",
    },
    Kind {
        name: "priority level configurations",
        group: "flowcontrol.apiserver.k8s.io",
        kind: "PriorityLevelConfiguration",
        plural: "prioritylevelconfigurations",
        namespaced: false,
        short_names: &[],
        categories: &[],
        fields: || json!({"spec": {"type": "Exempt", "exempt": {}}}),
        object_name: "plc",
    },
    Kind {
        name: "runtime classes",
        group: "node.k8s.io",
        kind: "RuntimeClass",
        plural: "runtimeclasses",
        namespaced: false,
        short_names: &[],
        categories: &[],
        fields: || json!({"handler": "runc"}),
        object_name: "runc",
    },
];

fn csr_fields() -> Value {
    json!({"spec": {"request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K",
        "signerName": "example.com/signer", "usages": ["digital signature"]}})
}

fn collection(k: &Kind) -> String {
    let ns = if k.namespaced {
        "namespaces/default/"
    } else {
        ""
    };
    format!("/apis/{}/v1/{ns}{}", k.group, k.plural)
}

#[tokio::test]
async fn every_added_group_is_discovered_and_stores_its_kinds() {
    let s = InProcess::start().await;
    let discovery = Discovery::new(s.client.clone())
        .run_aggregated()
        .await
        .expect("aggregated discovery");
    for k in KINDS {
        let name = k.name;
        let group = discovery
            .get(k.group)
            .unwrap_or_else(|| panic!("{name}: group {} not discovered", k.group));
        assert!(
            group
                .versioned_resources("v1")
                .iter()
                .any(|(r, _)| r.kind == k.kind && r.plural == k.plural),
            "{name}: {} not in aggregated discovery",
            k.kind
        );
        let list = call(&s.client, "GET", &format!("/apis/{}/v1", k.group), None)
            .await
            .unwrap();
        let entry = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == k.plural)
            .unwrap_or_else(|| panic!("{name}: not in /apis/{}/v1: {list}", k.group));
        assert_eq!(entry["kind"], k.kind, "{name}");
        assert_eq!(entry["namespaced"], k.namespaced, "{name}");
        assert_eq!(
            entry.get("shortNames").cloned().unwrap_or(json!([])),
            json!(k.short_names),
            "{name}"
        );
        assert_eq!(
            entry.get("categories").cloned().unwrap_or(json!([])),
            json!(k.categories),
            "{name}"
        );

        let mut obj = (k.fields)();
        obj["apiVersion"] = json!(format!("{}/v1", k.group));
        obj["kind"] = json!(k.kind);
        obj["metadata"] = json!({"name": k.object_name});
        let created = call(&s.client, "POST", &collection(k), Some(obj))
            .await
            .unwrap_or_else(|e| panic!("{name}: create: {e}"));
        assert_eq!(created["kind"], k.kind, "{name}: {created}");
        let got = call(
            &s.client,
            "GET",
            &format!("{}/{}", collection(k), k.object_name),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: get: {e}"));
        assert_eq!(
            got["metadata"]["uid"], created["metadata"]["uid"],
            "{name}: {got}"
        );
    }
}

#[tokio::test]
async fn resource_k8s_io_is_not_served_as_upstream_1_33_leaves_its_beta_versions_off() {
    let s = InProcess::start().await;
    let groups = call(&s.client, "GET", "/apis", None).await.unwrap();
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert!(!names.contains(&"resource.k8s.io"), "{names:?}");
    for g in [
        "events.k8s.io",
        "certificates.k8s.io",
        "authorization.k8s.io",
        "authentication.k8s.io",
    ] {
        assert!(names.contains(&g), "{g} missing from {names:?}");
    }
}

#[tokio::test]
async fn csr_approval_changes_only_the_conditions_and_status_the_status() {
    let s = InProcess::start().await;
    let base = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
    let mut csr = csr_fields();
    csr["metadata"] = json!({"name": "req"});
    call(&s.client, "POST", base, Some(csr)).await.unwrap();
    let mut current = call(&s.client, "GET", &format!("{base}/req"), None)
        .await
        .unwrap();
    current["status"] = json!({
        "conditions": [{"type": "Approved", "status": "True", "reason": "ByTest", "message": "ok"}],
        "certificate": "c3RvbGVu",
    });
    current["spec"]["signerName"] = json!("example.com/other");
    let approved = call(
        &s.client,
        "PUT",
        &format!("{base}/req/approval"),
        Some(current),
    )
    .await
    .unwrap();
    assert_eq!(
        approved["status"]["conditions"][0]["type"], "Approved",
        "{approved}"
    );
    assert!(
        approved["status"].get("certificate").is_none(),
        "approval must not set the certificate: {approved}"
    );
    assert_eq!(
        approved["spec"]["signerName"], "example.com/signer",
        "{approved}"
    );

    let req = http::Request::builder()
        .method("PATCH")
        .uri(format!("{base}/req/status"))
        .header("content-type", "application/merge-patch+json")
        .body(serde_json::to_vec(&json!({"status": {"certificate": "Y2VydA=="}})).unwrap())
        .unwrap();
    let issued: Value = s.client.request(req).await.unwrap();
    assert_eq!(issued["status"]["certificate"], "Y2VydA==", "{issued}");
    assert_eq!(
        issued["status"]["conditions"][0]["type"], "Approved",
        "{issued}"
    );

    let discovery = call(&s.client, "GET", "/apis/certificates.k8s.io/v1", None)
        .await
        .unwrap();
    assert!(
        discovery["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "certificatesigningrequests/approval"),
        "{discovery}"
    );
}

fn review(kind: &str, spec: Value) -> Value {
    let group = if kind.ends_with("AccessReview") || kind == "SelfSubjectRulesReview" {
        "authorization.k8s.io"
    } else {
        "authentication.k8s.io"
    };
    json!({"apiVersion": format!("{group}/v1"), "kind": kind, "spec": spec})
}

#[tokio::test]
async fn access_reviews_answer_as_the_server_authorizes_and_store_nothing() {
    let s = InProcess::start().await;
    let authz = "/apis/authorization.k8s.io/v1";
    let pods = json!({"namespace": "default", "verb": "list", "resource": "pods"});
    let cases = [
        (
            "a self subject access review",
            format!("{authz}/selfsubjectaccessreviews"),
            review(
                "SelfSubjectAccessReview",
                json!({"resourceAttributes": pods}),
            ),
        ),
        (
            "a subject access review",
            format!("{authz}/subjectaccessreviews"),
            review(
                "SubjectAccessReview",
                json!({"user": "alice", "resourceAttributes": pods}),
            ),
        ),
        (
            "a local subject access review",
            format!("{authz}/namespaces/default/localsubjectaccessreviews"),
            review(
                "LocalSubjectAccessReview",
                json!({"user": "alice", "resourceAttributes": pods}),
            ),
        ),
        (
            "a non-resource self review",
            format!("{authz}/selfsubjectaccessreviews"),
            review(
                "SelfSubjectAccessReview",
                json!({"nonResourceAttributes": {"path": "/healthz", "verb": "get"}}),
            ),
        ),
    ];
    for (name, uri, body) in cases {
        let answer = call(&s.client, "POST", &uri, Some(body))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // kybern server authorizes every authenticated user (no RBAC yet), and says so.
        assert_eq!(answer["status"]["allowed"], true, "{name}: {answer}");
        assert!(answer["metadata"].is_object(), "{name}: {answer}");
    }
    let listed = call(
        &s.client,
        "GET",
        &format!("{authz}/subjectaccessreviews"),
        None,
    )
    .await;
    assert_eq!(crate::code(listed), 405);

    let rules = call(
        &s.client,
        "POST",
        &format!("{authz}/selfsubjectrulesreviews"),
        Some(review(
            "SelfSubjectRulesReview",
            json!({"namespace": "default"}),
        )),
    )
    .await
    .unwrap();
    assert_eq!(rules["status"]["incomplete"], false, "{rules}");
    assert_eq!(
        rules["status"]["resourceRules"][0]["verbs"],
        json!(["*"]),
        "{rules}"
    );
}

#[tokio::test]
async fn access_reviews_are_validated_as_upstream_validates_them() {
    let s = InProcess::start().await;
    let authz = "/apis/authorization.k8s.io/v1";
    let pods_in = |ns: &str| json!({"namespace": ns, "verb": "get", "resource": "pods"});
    let cases = [
        (
            "no user or group",
            format!("{authz}/subjectaccessreviews"),
            review(
                "SubjectAccessReview",
                json!({"resourceAttributes": pods_in("default")}),
            ),
            422,
            "at least one of user or group must be specified",
        ),
        (
            "no attributes",
            format!("{authz}/selfsubjectaccessreviews"),
            review("SelfSubjectAccessReview", json!({})),
            422,
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ),
        (
            "attributes in another namespace than the path",
            format!("{authz}/namespaces/default/localsubjectaccessreviews"),
            review(
                "LocalSubjectAccessReview",
                json!({"user": "u", "resourceAttributes": pods_in("other")}),
            ),
            422,
            "must match metadata.namespace",
        ),
        (
            "an object in another namespace than the path",
            format!("{authz}/namespaces/default/localsubjectaccessreviews"),
            {
                let mut r = review(
                    "LocalSubjectAccessReview",
                    json!({"user": "u", "resourceAttributes": pods_in("other")}),
                );
                r["metadata"] = json!({"namespace": "other"});
                r
            },
            400,
            "does not match the namespace sent on the request",
        ),
    ];
    for (name, uri, body, code, message) in cases {
        let status = crate::status(call(&s.client, "POST", &uri, Some(body)).await);
        assert_eq!(status.code, code, "{name}: {status:?}");
        assert!(status.message.contains(message), "{name}: {status:?}");
    }
}

#[tokio::test]
async fn self_subject_review_names_the_caller_and_token_review_checks_service_account_tokens() {
    let s = InProcess::start().await;
    let authn = "/apis/authentication.k8s.io/v1";
    let me = call(
        &s.client,
        "POST",
        &format!("{authn}/selfsubjectreviews"),
        Some(review("SelfSubjectReview", json!(null))),
    )
    .await
    .unwrap();
    let user = &me["status"]["userInfo"];
    assert!(!user["username"].as_str().unwrap_or("").is_empty(), "{me}");
    assert!(
        user["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:authenticated")),
        "{me}"
    );

    call(
        &s.client,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts",
        Some(json!({"metadata": {"name": "robot"}})),
    )
    .await
    .unwrap();
    let issued = call(
        &s.client,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/robot/token",
        Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})),
    )
    .await
    .unwrap();
    let token = issued["status"]["token"].as_str().unwrap().to_string();
    let cases = [
        ("a token this server issued", token.clone(), true),
        (
            "a token with a forged signature",
            format!("{}x", &token[..token.len() - 2]),
            false,
        ),
        ("not a token", "garbage".to_string(), false),
    ];
    for (name, t, valid) in cases {
        let answer = call(
            &s.client,
            "POST",
            &format!("{authn}/tokenreviews"),
            Some(review("TokenReview", json!({"token": t}))),
        )
        .await
        .unwrap();
        let status = &answer["status"];
        assert_eq!(
            status["authenticated"].as_bool().unwrap_or(false),
            valid,
            "{name}: {answer}"
        );
        if valid {
            assert_eq!(
                status["user"]["username"], "system:serviceaccount:default:robot",
                "{name}: {answer}"
            );
            assert!(
                status["user"]["groups"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("system:serviceaccounts:default")),
                "{name}"
            );
        } else {
            assert!(
                status["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{name}: {answer}"
            );
        }
    }
}

#[tokio::test]
async fn component_statuses_are_computed_for_upstreams_three_components() {
    let s = InProcess::start().await;
    let list = call(&s.client, "GET", "/api/v1/componentstatuses", None)
        .await
        .unwrap();
    assert_eq!(list["kind"], "ComponentStatusList", "{list}");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["scheduler", "controller-manager", "etcd-0"]);
    let etcd = call(&s.client, "GET", "/api/v1/componentstatuses/etcd-0", None)
        .await
        .unwrap();
    assert_eq!(
        etcd["conditions"][0],
        json!({"type": "Healthy", "status": "True", "message": "ok"}),
        "{etcd}"
    );
    // No loops run in this server: nothing holds the scheduler's Lease.
    let scheduler = &list["items"][0]["conditions"][0];
    assert_eq!(scheduler["status"], "False", "{scheduler}");
    let missing = call(&s.client, "GET", "/api/v1/componentstatuses/nope", None).await;
    assert_eq!(crate::code(missing), 404);
    let created = call(
        &s.client,
        "POST",
        "/api/v1/componentstatuses",
        Some(json!({"metadata": {"name": "x"}, "conditions": []})),
    )
    .await;
    assert_eq!(crate::code(created), 405);
}
