//! Responses as upstream's apiserver writes them, driven through `Api::handle`: what a
//! delete answers, the status a create starts with, the bytes of objects and Status
//! bodies, and the per-kind rules upstream's own end-to-end tests check.

use std::sync::Arc;

use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use crate::api::Api;
use crate::storage::embedded::EmbeddedStore;
use crate::tls::ClientIdentity;

async fn api(dir: &std::path::Path) -> Arc<Api> {
    let store = EmbeddedStore::open(&dir.join("db")).unwrap();
    let registry = Arc::new(crate::registry::Registry::with_builtins().unwrap());
    let api = Api::new(store, registry, "127.0.0.1:6443".into());
    crate::api::bootstrap(&api).await.unwrap();
    // Pods need their account, which the service-account loop (not running here) makes.
    let account =
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
    create(&api, "/api/v1/namespaces/default/serviceaccounts", account).await;
    api
}

fn admin() -> ClientIdentity {
    ClientIdentity {
        user: "admin".into(),
        groups: vec!["system:masters".into()],
    }
}

/// Sends a request with a body of the given media type; the answer's code and bytes.
async fn send(
    api: &Arc<Api>,
    method: Method,
    uri: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = api.clone().handle(req, Some(admin())).await;
    let code = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (code, body.to_vec())
}

async fn call(
    api: &Arc<Api>,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let bytes = body
        .map(|b| serde_json::to_vec(&b).unwrap())
        .unwrap_or_default();
    let (code, body) = send(api, method, uri, "application/json", bytes).await;
    (code, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn create(api: &Arc<Api>, uri: &str, body: Value) -> Value {
    let (code, out) = call(api, Method::POST, uri, Some(body)).await;
    assert_eq!(code, StatusCode::CREATED, "{uri}: {out}");
    out
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

fn service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"ports": [{"port": 80}]}})
}

fn persistent_volume(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/tmp/pv"}}})
}

fn claim(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

fn deployment(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
}

fn daemonset(name: &str) -> Value {
    let mut d = deployment(name);
    d["kind"] = json!("DaemonSet");
    d
}

const PODS: &str = "/api/v1/namespaces/default/pods";
const SERVICES: &str = "/api/v1/namespaces/default/services";
const PVS: &str = "/api/v1/persistentvolumes";
const PVCS: &str = "/api/v1/namespaces/default/persistentvolumeclaims";
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const DAEMONSETS: &str = "/apis/apps/v1/namespaces/default/daemonsets";

#[tokio::test]
async fn an_immediate_delete_answers_the_deleted_object_where_upstream_does() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path()).await;
    // Volumes and claims keep their StorageObjectInUseProtection finalizer until the
    // binder takes it off: deleted, they are marked, not gone.
    let cases = [
        ("unscheduled_pod", PODS, pod("p"), StatusCode::NOT_FOUND),
        ("service", SERVICES, service("s"), StatusCode::NOT_FOUND),
        (
            "persistent_volume",
            PVS,
            persistent_volume("v"),
            StatusCode::OK,
        ),
        ("persistent_volume_claim", PVCS, claim("c"), StatusCode::OK),
    ];
    for (case, uri, body, after) in cases {
        let created = create(&api, uri, body).await;
        let name = created["metadata"]["name"].as_str().unwrap();
        let (code, out) = call(&api, Method::DELETE, &format!("{uri}/{name}"), None).await;
        assert_eq!(code, StatusCode::OK, "{case}: {out}");
        assert_eq!(out["kind"], created["kind"], "{case}: {out}");
        assert_eq!(out["metadata"]["uid"], created["metadata"]["uid"], "{case}");
        let (code, _) = call(&api, Method::GET, &format!("{uri}/{name}"), None).await;
        assert_eq!(code, after, "{case}: the object is gone or marked deleted");
    }
}

#[tokio::test]
async fn deleting_a_configmap_answers_upstreams_success_status_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path()).await;
    let created = create(
        &api,
        CONFIGMAPS,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
    )
    .await;
    let uid = created["metadata"]["uid"].as_str().unwrap();
    let (code, body) = send(
        &api,
        Method::DELETE,
        &format!("{CONFIGMAPS}/c"),
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        format!("{{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{{}},\"status\":\"Success\",\"details\":{{\"name\":\"c\",\"kind\":\"configmaps\",\"uid\":\"{uid}\"}}}}\n")
    );
}

#[tokio::test]
async fn a_conflict_and_a_not_found_are_upstreams_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path()).await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    create(&api, CONFIGMAPS, cm.clone()).await;
    let mut stale = cm;
    stale["metadata"]["resourceVersion"] = json!("1");
    let (code, body) = send(
        &api,
        Method::PUT,
        &format!("{CONFIGMAPS}/c"),
        "application/json",
        serde_json::to_vec(&stale).unwrap(),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"Operation cannot be fulfilled on configmaps \\\"c\\\": the object has been modified; please apply your changes to the latest version and try again\",\"reason\":\"Conflict\",\"details\":{\"name\":\"c\",\"kind\":\"configmaps\"},\"code\":409}\n"
    );
    let (code, body) = send(
        &api,
        Method::GET,
        "/apis/apps/v1/namespaces/default/deployments/nope",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"deployments.apps \\\"nope\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"nope\",\"group\":\"apps\",\"kind\":\"deployments\"},\"code\":404}\n"
    );
}

#[tokio::test]
async fn objects_and_lists_are_written_kind_first() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path()).await;
    // A body with apiVersion first, as most clients send it.
    let (_, body) = send(
        &api,
        Method::POST,
        CONFIGMAPS,
        "application/json",
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#.to_vec(),
    )
    .await;
    assert!(body.starts_with(br#"{"kind":"ConfigMap","apiVersion":"v1","metadata":"#));
    let (_, body) = send(&api, Method::GET, &format!("{CONFIGMAPS}/c"), "", vec![]).await;
    assert!(body.starts_with(br#"{"kind":"ConfigMap","apiVersion":"v1","metadata":"#));
    let (_, body) = send(&api, Method::GET, CONFIGMAPS, "", vec![]).await;
    assert!(body.starts_with(br#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":"#));
}

#[tokio::test]
async fn a_created_object_starts_with_upstreams_status_whatever_the_request_carried() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path()).await;
    let with_status = |mut v: Value| {
        v["status"] = json!({"phase": "Bound", "replicas": 7, "readyReplicas": 3,
            "loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}});
        v
    };
    let cases = [
        (
            "service",
            SERVICES,
            service("s"),
            json!({"loadBalancer": {}}),
        ),
        ("deployment", DEPLOYMENTS, deployment("d"), json!({})),
        (
            "daemonset",
            DAEMONSETS,
            daemonset("ds"),
            json!({"currentNumberScheduled": 0, "desiredNumberScheduled": 0,
                "numberMisscheduled": 0, "numberReady": 0}),
        ),
        ("claim", PVCS, claim("c"), json!({"phase": "Pending"})),
    ];
    for (case, uri, body, want) in cases {
        let created = create(&api, uri, with_status(body)).await;
        assert_eq!(created["status"], want, "{case}");
    }
    let pv = create(&api, PVS, with_status(persistent_volume("v"))).await;
    assert_eq!(pv["status"]["phase"], "Pending");
    assert!(pv["status"]["lastPhaseTransitionTime"].is_string());

    // A node keeps what it registers with, over the empty status's zero values.
    let addresses = json!([{"type": "InternalIP", "address": "192.0.2.7"}]);
    let node = create(
        &api,
        "/api/v1/nodes",
        json!({"metadata": {"name": "n1"}, "status": {
            "addresses": addresses,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        }}),
    )
    .await;
    assert_eq!(node["status"]["addresses"], addresses, "{node}");
    assert_eq!(
        node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250,
        "{node}"
    );
    let bare = create(&api, "/api/v1/nodes", json!({"metadata": {"name": "n2"}})).await;
    assert_eq!(
        bare["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"], 0,
        "a node created without a status starts from the empty one: {bare}"
    );
}

#[tokio::test]
async fn a_role_bindings_empty_role_ref_api_group_is_rbacs() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path()).await;
    let cases = [
        (
            "role_binding",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
            "RoleBinding",
        ),
        (
            "cluster_role_binding",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            "ClusterRoleBinding",
        ),
    ];
    for (case, uri, kind) in cases {
        let created = create(
            &api,
            uri,
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
                "metadata": {"name": "b"},
                "roleRef": {"apiGroup": "", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "User", "name": "u", "apiGroup": "rbac.authorization.k8s.io"}]}),
        )
        .await;
        assert_eq!(
            created["roleRef"]["apiGroup"], "rbac.authorization.k8s.io",
            "{case}"
        );
    }
}

#[tokio::test]
async fn a_replication_controller_name_may_be_a_dns_subdomain() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path()).await;
    create(
        &api,
        "/api/v1/namespaces/default/replicationcontrollers",
        json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "rc.v1"},
            "spec": {"selector": {"app": "a"}, "template": {"metadata": {"labels": {"app": "a"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}),
    )
    .await;
}

#[tokio::test]
async fn a_secret_with_an_empty_data_key_is_refused_with_upstreams_message() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path()).await;
    let (code, out) = call(
        &api,
        Method::POST,
        "/api/v1/namespaces/default/secrets",
        Some(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"": "dmFsdWU="}}),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(
        out["message"],
        "Secret \"s\" is invalid: data[]: Invalid value: \"\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
    );
}

#[tokio::test]
async fn a_merge_patch_to_status_keeps_the_annotations_it_sets() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path()).await;
    create(&api, SERVICES, service("s")).await;
    let req = Request::builder()
        .method(Method::PATCH)
        .uri(format!("{SERVICES}/s/status"))
        .header("content-type", "application/merge-patch+json")
        .body(Full::new(bytes::Bytes::from(
            serde_json::to_vec(
                &json!({"metadata": {"annotations": {"patchedstatus": "true"}},
                "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}}}),
            )
            .unwrap(),
        )))
        .unwrap();
    let resp = api.clone().handle(req, Some(admin())).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (_, got) = call(&api, Method::GET, &format!("{SERVICES}/s"), None).await;
    assert_eq!(got["metadata"]["annotations"]["patchedstatus"], "true");
    assert_eq!(
        got["status"]["loadBalancer"]["ingress"][0]["ip"],
        "203.0.113.1"
    );
}

#[tokio::test]
async fn a_priority_class_value_cannot_change() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path()).await;
    let uri = "/apis/scheduling.k8s.io/v1/priorityclasses";
    let mut pc = create(
        &api,
        uri,
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": "high"}, "value": 1000}),
    )
    .await;
    pc["value"] = json!(2000);
    let (code, out) = call(&api, Method::PUT, &format!("{uri}/high"), Some(pc)).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(
        out["message"],
        "PriorityClass.scheduling.k8s.io \"high\" is invalid: value: Forbidden: may not be changed in an update."
    );
}

#[tokio::test]
async fn version_reports_a_hex_git_commit() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path()).await;
    let (code, out) = call(&api, Method::GET, "/version", None).await;
    assert_eq!(code, StatusCode::OK);
    let commit = out["gitCommit"].as_str().unwrap();
    assert_eq!(commit.len(), 40, "{commit}");
    assert!(commit.bytes().all(|b| b.is_ascii_hexdigit()), "{commit}");
}

fn statefulset(name: &str) -> Value {
    let mut s = deployment(name);
    s["kind"] = json!("StatefulSet");
    s["spec"]["serviceName"] = json!(name);
    s["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]);
    s
}

const STATEFULSETS: &str = "/apis/apps/v1/namespaces/default/statefulsets";

async fn apply(api: &Arc<Api>, uri: &str, body: &Value) -> Value {
    let (code, out) = send(
        api,
        Method::PATCH,
        &format!("{uri}?fieldManager=tests"),
        "application/apply-patch+yaml",
        serde_json::to_vec(body).unwrap(),
    )
    .await;
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert!(code.is_success(), "{code}: {out}");
    out
}

#[tokio::test]
async fn a_write_that_changes_nothing_after_defaulting_keeps_the_generation() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path()).await;
    let mut with_nulls = deployment("nulls");
    with_nulls["spec"]["minReadySeconds"] = Value::Null;
    with_nulls["spec"]["template"]["spec"]["nodeSelector"] = Value::Null;
    let cases = [
        (
            "identical_reapply",
            DEPLOYMENTS,
            deployment("same"),
            deployment("same"),
        ),
        (
            "explicit_nulls",
            DEPLOYMENTS,
            deployment("nulls"),
            with_nulls,
        ),
        (
            "claim_templates_without_kind",
            STATEFULSETS,
            statefulset("sts"),
            statefulset("sts"),
        ),
    ];
    for (case, uri, first, second) in cases {
        let name = first["metadata"]["name"].as_str().unwrap().to_string();
        let at = format!("{uri}/{name}");
        let created = apply(&api, &at, &first).await;
        assert_eq!(created["metadata"]["generation"], 1, "{case}");
        let again = apply(&api, &at, &second).await;
        assert_eq!(again["metadata"]["generation"], 1, "{case}: {again}");
    }
    // A PUT of the object as first sent (without what defaulting added) changes nothing.
    let (code, out) = call(
        &api,
        Method::PUT,
        &format!("{STATEFULSETS}/sts"),
        Some(statefulset("sts")),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{out}");
    assert_eq!(out["metadata"]["generation"], 1, "{out}");
}

#[tokio::test]
async fn kinds_without_generation_upstream_have_none() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path()).await;
    let cases = [
        ("service", SERVICES, service("s")),
        ("claim", PVCS, claim("c")),
        (
            "namespace",
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}),
        ),
    ];
    for (case, uri, body) in cases {
        let created = create(&api, uri, body).await;
        assert!(
            created["metadata"].get("generation").is_none(),
            "{case}: {created}"
        );
    }
    let created = create(&api, PODS, pod("p")).await;
    assert_eq!(
        created["metadata"]["generation"], 1,
        "pods have one since 1.33"
    );
}

#[tokio::test]
async fn empty_optional_values_are_neither_stored_nor_returned() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path()).await;
    let mut d = deployment("d");
    d["metadata"]["annotations"] = json!({});
    d["metadata"]["labels"] = Value::Null;
    let spec = &mut d["spec"]["template"]["spec"];
    spec["tolerations"] = json!([]);
    spec["nodeSelector"] = json!({});
    spec["containers"][0]["env"] = json!([]);
    spec["containers"][0]["resources"] = json!({});
    let created = create(&api, DEPLOYMENTS, d).await;
    let meta = created["metadata"].as_object().unwrap();
    assert!(
        !meta.contains_key("annotations") && !meta.contains_key("labels"),
        "{created}"
    );
    let spec = &created["spec"]["template"]["spec"];
    assert!(spec.get("tolerations").is_none(), "{spec}");
    assert!(spec.get("nodeSelector").is_none(), "{spec}");
    assert!(spec["containers"][0].get("env").is_none(), "{spec}");
    assert_eq!(
        spec["containers"][0]["resources"],
        json!({}),
        "empty structs stay"
    );
    assert_eq!(spec["securityContext"], json!({}), "empty structs stay");

    let mut status = created.clone();
    status["status"] = json!({"replicas": 1, "readyReplicas": 0, "availableReplicas": 0,
        "observedGeneration": 1, "collisionCount": 0});
    let (code, out) = call(
        &api,
        Method::PUT,
        &format!("{DEPLOYMENTS}/d/status"),
        Some(status),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{out}");
    assert_eq!(
        out["status"],
        json!({"replicas": 1, "observedGeneration": 1, "collisionCount": 0}),
        "zero counts are omitted, a pointer's zero is kept"
    );
}

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

async fn create_protobuf(api: &Arc<Api>, uri: &str, body: Vec<u8>) -> Value {
    let (code, out) = send(api, Method::POST, uri, PROTOBUF, body).await;
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(code, StatusCode::CREATED, "{out}");
    out
}

#[tokio::test]
async fn a_deployment_kubectl_creates_over_protobuf_is_stored_as_its_json_would_be() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path()).await;
    let pb = include_bytes!("../../protobuf/testdata/kubectl-create-deployment.pb");
    let d = create_protobuf(&api, DEPLOYMENTS, pb.to_vec()).await;
    for (field, at) in [
        ("paused", "/spec"),
        ("minReadySeconds", "/spec"),
        ("generation", "/spec/template/metadata"),
        ("hostNetwork", "/spec/template/spec"),
        ("stdin", "/spec/template/spec/containers/0"),
        ("tty", "/spec/template/spec/containers/0"),
        ("hostPort", "/spec/template/spec/containers/0/ports/0"),
    ] {
        assert!(
            d.pointer(&format!("{at}/{field}")).is_none(),
            "{at}/{field}: {d}"
        );
    }
    assert_eq!(
        d["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    assert_eq!(d["spec"]["replicas"], 3);
}

#[tokio::test]
async fn a_service_over_protobuf_keeps_its_target_port_and_gets_a_node_port_for_zero() {
    use crate::protobuf::tests::encode::{body, Msg};
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path()).await;
    let pb = include_bytes!("../../protobuf/testdata/kubectl-create-service.pb");
    let svc = create_protobuf(&api, SERVICES, pb.to_vec()).await;
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert!(svc["spec"]["ports"][0].get("nodePort").is_none(), "{svc}");

    // As Go writes a NodePort Service with neither targetPort nor nodePort set.
    let unset_target = Msg::new().int(1, 0).int(2, 0).str(3, "");
    let port = Msg::new()
        .str(1, "")
        .str(2, "TCP")
        .int(3, 80)
        .msg(4, unset_target)
        .int(5, 0);
    let spec = Msg::new().msg(1, port).str(3, "").str(4, "NodePort");
    let meta = Msg::new().str(1, "np").str(3, "default");
    let svc = create_protobuf(
        &api,
        SERVICES,
        body("v1", "Service", Msg::new().msg(1, meta).msg(2, spec)),
    )
    .await;
    let p = &svc["spec"]["ports"][0];
    assert_eq!(
        p["targetPort"], 80,
        "an unset targetPort is the port: {svc}"
    );
    let node_port = p["nodePort"].as_u64().unwrap_or(0);
    assert!(
        (30000..=32767).contains(&node_port),
        "nodePort 0 means allocate one: {svc}"
    );
}

#[tokio::test]
async fn a_scale_sent_over_protobuf_scales_the_deployment() {
    use crate::protobuf::tests::encode::{body, Msg};
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path()).await;
    create(&api, DEPLOYMENTS, deployment("d")).await;
    let scale = Msg::new()
        .msg(1, Msg::new().str(1, "d").str(3, "default"))
        .msg(2, Msg::new().int(1, 4));
    let (code, out) = send(
        &api,
        Method::PUT,
        &format!("{DEPLOYMENTS}/d/scale"),
        PROTOBUF,
        body("autoscaling/v1", "Scale", scale),
    )
    .await;
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(code, StatusCode::OK, "{out}");
    assert_eq!(out["spec"]["replicas"], 4);
    let (_, d) = call(&api, Method::GET, &format!("{DEPLOYMENTS}/d"), None).await;
    assert_eq!(d["spec"]["replicas"], 4);
}

const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

fn widget_crd() -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "size": {"type": "integer", "default": 3},
                        "color": {"type": "string"}}},
                    "status": {"type": "object", "properties": {
                        "conditions": {"type": "array", "items": {"type": "object",
                            "properties": {"type": {"type": "string"}, "status": {"type": "string"},
                                "reason": {"type": "string"}}}}}}}}}}]}})
}

#[tokio::test]
async fn conditions_written_through_status_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path()).await;
    let mut crd = create(&api, CRDS, widget_crd()).await;
    let extra = json!({"type": "StatusUpdated", "status": "True", "reason": "E2E",
        "message": "Set from an e2e test", "lastTransitionTime": "2024-01-02T03:04:05Z"});
    crd["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .push(extra.clone());
    let (code, out) = call(
        &api,
        Method::PUT,
        &format!("{CRDS}/widgets.example.com/status"),
        Some(crd),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{out}");
    let (_, crd) = call(
        &api,
        Method::GET,
        &format!("{CRDS}/widgets.example.com"),
        None,
    )
    .await;
    let conditions = crd["status"]["conditions"].as_array().unwrap();
    assert!(
        conditions.contains(&extra),
        "the CRD's own condition: {crd}"
    );
    assert!(conditions.iter().any(|c| c["type"] == "Established"));

    let widgets = "/apis/example.com/v1/namespaces/default/widgets";
    let mut w = create(
        &api,
        widgets,
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}}),
    )
    .await;
    w["status"] = json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Done"}]});
    let (code, out) = call(&api, Method::PUT, &format!("{widgets}/w/status"), Some(w)).await;
    assert_eq!(code, StatusCode::OK, "{out}");
    let (_, w) = call(&api, Method::GET, &format!("{widgets}/w"), None).await;
    assert_eq!(
        w["status"]["conditions"][0]["type"], "Ready",
        "a custom resource's: {w}"
    );
}

#[tokio::test]
async fn schema_defaults_added_later_show_on_objects_read_from_storage() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path()).await;
    let mut crd = create(&api, CRDS, widget_crd()).await;
    let widgets = "/apis/example.com/v1/namespaces/default/widgets";
    create(
        &api,
        widgets,
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}}),
    )
    .await;
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["color"]["default"] = json!("blue");
    let (code, out) = call(
        &api,
        Method::PUT,
        &format!("{CRDS}/widgets.example.com"),
        Some(crd),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{out}");
    let (_, w) = call(&api, Method::GET, &format!("{widgets}/w"), None).await;
    assert_eq!(w["spec"], json!({"size": 3, "color": "blue"}), "get: {w}");
    let (_, list) = call(&api, Method::GET, widgets, None).await;
    assert_eq!(list["items"][0]["spec"]["color"], "blue", "list: {list}");
}
