//! API groups served beside the workload kinds: admission configuration, events.k8s.io,
//! APIServices, CertificateSigningRequests (with `/approval`), flow control,
//! RuntimeClasses, the review endpoints of authentication.k8s.io and
//! authorization.k8s.io, and the computed ComponentStatuses.

use kube::discovery::Discovery;
use kube::Client;
use serde_json::{json, Value};

use crate::call;
use crate::common::InProcess;

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
        fields: || {
            json!({"spec": {
                "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                    "operations": ["CREATE"], "resources": ["configmaps"]}]},
                "validations": [{"expression": "true"}]
            }})
        },
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
            true,
        ),
        (
            "a subject access review",
            format!("{authz}/subjectaccessreviews"),
            review(
                "SubjectAccessReview",
                json!({"user": "alice", "groups": ["system:masters"], "resourceAttributes": pods}),
            ),
            true,
        ),
        (
            "a subject access review of a user RBAC grants nothing",
            format!("{authz}/subjectaccessreviews"),
            review(
                "SubjectAccessReview",
                json!({"user": "alice", "resourceAttributes": pods}),
            ),
            false,
        ),
        (
            "a local subject access review",
            format!("{authz}/namespaces/default/localsubjectaccessreviews"),
            review(
                "LocalSubjectAccessReview",
                json!({"user": "alice", "groups": ["system:masters"], "resourceAttributes": pods}),
            ),
            true,
        ),
        (
            "a non-resource self review",
            format!("{authz}/selfsubjectaccessreviews"),
            review(
                "SelfSubjectAccessReview",
                json!({"nonResourceAttributes": {"path": "/healthz", "verb": "get"}}),
            ),
            true,
        ),
    ];
    for (name, uri, body, allowed) in cases {
        let answer = call(&s.client, "POST", &uri, Some(body))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // As the server's own authorizers (system:masters, then RBAC) decide.
        assert_eq!(answer["status"]["allowed"], allowed, "{name}: {answer}");
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
    let with_selector = |which: &str, selector: Value| {
        let mut attributes = json!({"namespace": "default", "verb": "list", "resource": "pods"});
        attributes[which] = selector;
        attributes
    };
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
        (
            "a field selector given both raw and parsed",
            format!("{authz}/selfsubjectaccessreviews"),
            review(
                "SelfSubjectAccessReview",
                json!({"resourceAttributes": with_selector(
                    "fieldSelector",
                    json!({"rawSelector": "spec.nodeName=n1", "requirements": [
                        {"key": "spec.nodeName", "operator": "In", "values": ["n1"]},
                    ]}),
                )}),
            ),
            422,
            "spec.resourceAttributes.fieldSelector.rawSelector: Invalid value: \"spec.nodeName=n1\": may not specified at the same time as requirements",
        ),
        (
            "a label selector given neither",
            format!("{authz}/subjectaccessreviews"),
            review(
                "SubjectAccessReview",
                json!({"user": "u", "resourceAttributes": with_selector("labelSelector", json!({}))}),
            ),
            422,
            "spec.resourceAttributes.labelSelector.requirements: Required value: when spec.resourceAttributes.labelSelector is specified, requirements or rawSelector is required",
        ),
        (
            "a field requirement without a key",
            format!("{authz}/namespaces/default/localsubjectaccessreviews"),
            review(
                "LocalSubjectAccessReview",
                json!({"user": "u", "resourceAttributes": with_selector(
                    "fieldSelector",
                    json!({"requirements": [{"operator": "In", "values": ["x"]}]}),
                )}),
            ),
            422,
            "spec.resourceAttributes.fieldSelector.requirements[0].key: Required value: must be specified",
        ),
        (
            "In without values",
            format!("{authz}/selfsubjectaccessreviews"),
            review(
                "SelfSubjectAccessReview",
                json!({"resourceAttributes": with_selector(
                    "labelSelector",
                    json!({"requirements": [{"key": "app", "operator": "In", "values": []}]}),
                )}),
            ),
            422,
            "spec.resourceAttributes.labelSelector.requirements[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
        ),
        (
            "Exists with values",
            format!("{authz}/selfsubjectaccessreviews"),
            review(
                "SelfSubjectAccessReview",
                json!({"resourceAttributes": with_selector(
                    "fieldSelector",
                    json!({"requirements": [{"key": "spec.nodeName", "operator": "Exists", "values": ["n1"]}]}),
                )}),
            ),
            422,
            "spec.resourceAttributes.fieldSelector.requirements[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        ),
        (
            "a label key that is no label name",
            format!("{authz}/selfsubjectaccessreviews"),
            review(
                "SelfSubjectAccessReview",
                json!({"resourceAttributes": with_selector(
                    "labelSelector",
                    json!({"requirements": [{"key": "()foo", "operator": "Exists"}]}),
                )}),
            ),
            422,
            "spec.resourceAttributes.labelSelector.requirements[0].key: Invalid value: \"()foo\": name part must consist of alphanumeric characters",
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

/// GET `/openapi/v2` with `accept`: status, Content-Type, ETag and body.
async fn openapi_v2(
    client: &Client,
    accept: &str,
    if_none_match: Option<&str>,
) -> (u16, String, String, Vec<u8>) {
    use http_body_util::BodyExt;
    let mut req = http::Request::get("/openapi/v2").header("accept", accept);
    if let Some(etag) = if_none_match {
        req = req.header("if-none-match", etag);
    }
    let resp = client
        .send(req.body(kube::client::Body::empty()).unwrap())
        .await
        .unwrap();
    let header = |h: &str| {
        resp.headers()
            .get(h)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (status, ctype, etag) = (
        resp.status().as_u16(),
        header("content-type"),
        header("etag"),
    );
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, ctype, etag, body)
}

/// The length-delimited fields of a protobuf message, in order.
fn pb_fields(buf: &[u8]) -> Vec<(u32, Vec<u8>)> {
    use apiserver::protobuf::wire::{Reader, WireValue};
    let mut r = Reader::new(buf);
    let mut out = Vec::new();
    while let Some((t, v)) = r.next_field().unwrap() {
        if let WireValue::Bytes(b) = v {
            out.push((t, b.to_vec()));
        }
    }
    out
}

/// The first length-delimited field `tag` of a protobuf message.
fn pb_field(buf: &[u8], tag: u32) -> Vec<u8> {
    pb_fields(buf)
        .into_iter()
        .find(|(t, _)| *t == tag)
        .unwrap_or_else(|| panic!("no field {tag}"))
        .1
}

/// The `Named*` entries (1 name, 2 value) of repeated field `tag` of a protobuf message.
fn named_entries(buf: &[u8], tag: u32) -> Vec<(String, Vec<u8>)> {
    pb_fields(buf)
        .into_iter()
        .filter(|(t, _)| *t == tag)
        .map(|(_, entry)| {
            let name = String::from_utf8(pb_field(&entry, 1)).unwrap();
            (name, pb_field(&entry, 2))
        })
        .collect()
}

#[tokio::test]
async fn a_user_crds_schema_is_published_in_openapi_v2_as_json_and_as_gnostic_protobuf() {
    let s = InProcess::start().await;
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.org"},
        "spec": {"group": "example.org", "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object", "description": "What the gadget does.",
                    "properties": {"speed": {"type": "integer"}}}}}}}]}
    });
    call(
        &s.client,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        Some(crd),
    )
    .await
    .unwrap();
    let json_doc: Value = crate::common::eventually("the Gadget schema in /openapi/v2", || {
        let client = s.client.clone();
        async move {
            let (_, _, _, body) = openapi_v2(&client, "application/json", None).await;
            let doc: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            match doc.pointer("/definitions/org.example.v1.Gadget") {
                Some(_) => Ok(doc),
                None => Err("not yet".into()),
            }
        }
    })
    .await;
    let gadget = &json_doc["definitions"]["org.example.v1.Gadget"];
    assert_eq!(
        gadget.pointer("/properties/spec/properties/speed/type"),
        Some(&json!("integer"))
    );
    assert!(json_doc["paths"]
        .get("/apis/example.org/v1/namespaces/{namespace}/gadgets/{name}")
        .is_some());

    // client-go's OpenAPISchema: protobuf alone, in the spelling with `@`.
    let (code, ctype, etag, body) = openapi_v2(
        &s.client,
        "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        ctype,
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    );
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    // Document: 8 Paths {2 NamedPathItem}, 9 Definitions {1 NamedSchema};
    // Schema: 4 description, 25 Properties {1 NamedSchema}.
    let paths = named_entries(&pb_field(&body, 8), 2);
    assert!(paths
        .iter()
        .any(|(p, _)| p == "/apis/example.org/v1/namespaces/{namespace}/gadgets/{name}"));
    let defs = named_entries(&pb_field(&body, 9), 1);
    let (_, gadget) = defs
        .iter()
        .find(|(n, _)| n == "org.example.v1.Gadget")
        .expect("the Gadget definition in the protobuf document");
    let props = named_entries(&pb_field(gadget, 25), 1);
    assert_eq!(props[0].0, "spec");
    assert_eq!(
        String::from_utf8(pb_field(&props[0].1, 4)).unwrap(),
        "What the gadget does."
    );

    // Revalidation as upstream: the same ETag answers 304 Not Modified with no body.
    let (code, _, _, body) = openapi_v2(
        &s.client,
        "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        Some(&etag),
    )
    .await;
    assert_eq!((code, body.len()), (304, 0));
}
