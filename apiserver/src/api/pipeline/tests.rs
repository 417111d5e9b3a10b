//! The pipeline's stages, driven through `Api::handle` with plugins of the tests' own:
//! each stage runs in upstream's order, and a refusal at any stage stores nothing.

use std::sync::{Arc, Mutex};

use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use super::*;
use crate::storage::embedded::EmbeddedStore;

fn alice() -> ClientIdentity {
    ClientIdentity {
        user: "alice".into(),
        groups: vec!["dev".into()],
    }
}

async fn api_with(dir: &std::path::Path, pipeline: Pipeline) -> Arc<Api> {
    std::fs::create_dir_all(dir).unwrap();
    let store = EmbeddedStore::open(&dir.join("db")).unwrap();
    let registry = Arc::new(crate::registry::Registry::with_builtins().unwrap());
    let api = Api::with_pipeline(store, registry, "127.0.0.1:6443".into(), pipeline);
    crate::api::bootstrap(&api).await.unwrap();
    api
}

async fn call(
    api: &Arc<Api>,
    method: Method,
    uri: &str,
    body: Option<Value>,
    identity: Option<ClientIdentity>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    let bytes = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            serde_json::to_vec(&b).unwrap()
        }
        None => Vec::new(),
    };
    let resp = api
        .clone()
        .handle(
            req.body(Full::new(bytes::Bytes::from(bytes))).unwrap(),
            identity,
        )
        .await;
    let code = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

/// Denies everything, with a reason.
struct DenyAll;

impl Authorizer for DenyAll {
    fn authorize(&self, _: &Attributes) -> Verdict {
        Verdict::Deny("not today".into())
    }
}

/// Has no opinion on anything.
struct Abstain;

impl Authorizer for Abstain {
    fn authorize(&self, _: &Attributes) -> Verdict {
        Verdict::NoOpinion
    }
}

fn pipeline(authorizers: Vec<Box<dyn Authorizer>>) -> Pipeline {
    Pipeline {
        authorizers,
        ..Pipeline::default()
    }
}

#[tokio::test]
async fn a_request_without_credentials_is_anonymous_and_may_only_read_health_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_with(dir.path(), Pipeline::default()).await;
    let (code, status) = call(&api, Method::GET, CONFIGMAPS, None, None).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        status["message"],
        "configmaps is forbidden: User \"system:anonymous\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );
    let (code, _) = call(&api, Method::GET, "/apis", None, None).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (code, _) = call(&api, Method::GET, "/version", None, None).await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test]
async fn an_invalid_bearer_token_is_401_even_where_anonymous_would_be_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_with(dir.path(), Pipeline::default()).await;
    for uri in [CONFIGMAPS, "/version"] {
        let req = Request::builder()
            .uri(uri)
            .header("authorization", "Bearer not-a-token")
            .body(Full::new(bytes::Bytes::new()))
            .unwrap();
        let resp = api.clone().handle(req, None).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{uri}");
    }
}

#[tokio::test]
async fn a_denied_request_is_upstreams_403_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_with(dir.path(), pipeline(vec![Box::new(DenyAll)])).await;
    let (code, status) = call(&api, Method::GET, CONFIGMAPS, None, Some(alice())).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(
        status["message"],
        "configmaps is forbidden: User \"alice\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\": not today"
    );
    let (code, status) = call(
        &api,
        Method::POST,
        CONFIGMAPS,
        Some(configmap("c")),
        Some(alice()),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{status}");
    let stored = api
        .storage
        .get("/registry/core/configmaps/default/c")
        .await
        .unwrap();
    assert!(stored.is_none(), "a denied create stored the object");
    let (code, status) = call(&api, Method::GET, "/apis", None, Some(alice())).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        status["message"],
        "forbidden: User \"alice\" cannot get path \"/apis\": not today"
    );
}

#[tokio::test]
async fn a_request_no_authorizer_has_an_opinion_on_is_denied() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_with(dir.path(), pipeline(vec![Box::new(Abstain)])).await;
    let (code, status) = call(
        &api,
        Method::DELETE,
        "/api/v1/namespaces/default",
        None,
        Some(alice()),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        status["message"],
        "namespaces \"default\" is forbidden: User \"alice\" cannot delete resource \"namespaces\" in API group \"\" at the cluster scope"
    );
    // The first authorizer with an opinion decides.
    let api = api_with(
        dir.path().join("2").as_path(),
        pipeline(vec![
            Box::new(Abstain),
            Box::new(AlwaysAllow),
            Box::new(DenyAll),
        ]),
    )
    .await;
    let (code, _) = call(&api, Method::GET, CONFIGMAPS, None, Some(alice())).await;
    assert_eq!(code, StatusCode::OK);
}

#[test]
fn request_attributes_name_upstreams_verbs() {
    let rows = [
        (
            "list",
            Method::GET,
            "/api/v1/namespaces/ns/pods",
            "",
            "list",
        ),
        (
            "get",
            Method::GET,
            "/api/v1/namespaces/ns/pods/p",
            "",
            "get",
        ),
        (
            "watch_query",
            Method::GET,
            "/api/v1/namespaces/ns/pods",
            "watch=true",
            "watch",
        ),
        (
            "legacy_watch_path",
            Method::GET,
            "/api/v1/watch/namespaces/ns/pods",
            "",
            "watch",
        ),
        (
            "create",
            Method::POST,
            "/api/v1/namespaces/ns/pods",
            "",
            "create",
        ),
        (
            "subresource_create",
            Method::POST,
            "/api/v1/namespaces/ns/pods/p/binding",
            "",
            "create",
        ),
        (
            "update",
            Method::PUT,
            "/api/v1/namespaces/ns/pods/p",
            "",
            "update",
        ),
        (
            "status_update",
            Method::PUT,
            "/api/v1/namespaces/ns/pods/p/status",
            "",
            "update",
        ),
        (
            "patch",
            Method::PATCH,
            "/apis/apps/v1/namespaces/ns/deployments/d",
            "",
            "patch",
        ),
        (
            "delete",
            Method::DELETE,
            "/api/v1/namespaces/ns/pods/p",
            "",
            "delete",
        ),
        (
            "deletecollection",
            Method::DELETE,
            "/api/v1/namespaces/ns/pods",
            "",
            "deletecollection",
        ),
        ("non_resource", Method::GET, "/apis", "", "get"),
    ];
    let user = UserInfo::apiserver();
    for (row, method, path, query, verb) in rows {
        let parsed = crate::request::parse_path(path);
        let rp = match &parsed {
            crate::request::Path::Resource(rp) => Some(rp),
            _ => None,
        };
        let attrs = Attributes::of(user.clone(), &method, path, rp, &Query::parse(Some(query)));
        assert_eq!(attrs.verb, verb, "{row}");
        assert_eq!(attrs.resource.is_some(), row != "non_resource", "{row}");
    }
    let parsed = crate::request::parse_path("/api/v1/namespaces/ns/pods/p/status");
    let crate::request::Path::Resource(rp) = &parsed else {
        panic!("a resource path")
    };
    let attrs = Attributes::of(user, &Method::PUT, "", Some(rp), &Query::default());
    let r = attrs.resource.unwrap();
    assert_eq!(
        (
            r.resource.as_str(),
            r.subresource.as_deref(),
            r.namespace.as_deref(),
            r.name.as_deref()
        ),
        ("pods", Some("status"), Some("ns"), Some("p"))
    );
}

/// Records what the admission stages saw, in order.
#[derive(Clone, Default)]
struct Journal(Arc<Mutex<Vec<String>>>);

impl Journal {
    fn push(&self, entry: String) {
        self.0.lock().unwrap().push(entry);
    }
    fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// Labels every object it is shown with `admitted-by: test` (a delete shows none), and
/// records whether the object was already defaulted (a Pod's `restartPolicy`) when it ran.
struct Labeler(Journal);

#[async_trait]
impl MutatingAdmission for Labeler {
    fn handles(&self, _: Operation) -> bool {
        true
    }

    async fn admit(
        &self,
        _: &Api,
        request: &AdmissionRequest<'_>,
        obj: &mut Value,
        _: Option<&Value>,
    ) -> Result<()> {
        self.0.push(format!(
            "mutating {:?} {} by {}",
            request.operation, request.name, request.user.name
        ));
        if obj.is_object() {
            crate::object::metadata_mut(obj)
                .entry("labels")
                .or_insert_with(|| json!({}))["admitted-by"] = json!("test");
        }
        Ok(())
    }
}

/// A mutating plugin that keeps the default of being asked about creates and updates
/// only; records what it was shown.
struct Plain(Journal);

#[async_trait]
impl MutatingAdmission for Plain {
    async fn admit(
        &self,
        _: &Api,
        request: &AdmissionRequest<'_>,
        _: &mut Value,
        _: Option<&Value>,
    ) -> Result<()> {
        self.0
            .push(format!("plain {:?} {}", request.operation, request.name));
        Ok(())
    }
}

/// Refuses objects labelled `refuse: "yes"` and deletes of objects named `keep`;
/// records the label the mutating stage set.
struct Refuser(Journal);

#[async_trait]
impl ValidatingAdmission for Refuser {
    async fn validate(
        &self,
        _: &Api,
        request: &AdmissionRequest<'_>,
        obj: &Value,
        _: Option<&Value>,
    ) -> Result<()> {
        self.0.push(format!(
            "validating {:?} {} labelled {}",
            request.operation,
            request.name,
            obj.pointer("/metadata/labels/admitted-by")
                .unwrap_or(&Value::Null)
        ));
        let refused = obj.pointer("/metadata/labels/refuse") == Some(&json!("yes"))
            || (request.operation == Operation::Delete && request.name == "keep");
        if refused {
            return Err(ApiError::Forbidden(
                Target::new("", &request.resource.plural, request.name),
                "refused by the test plugin".into(),
                None,
            ));
        }
        Ok(())
    }
}

/// The default pipeline with every request authorized (what admission sees, whoever
/// may write).
fn allow_all() -> Pipeline {
    Pipeline {
        authorizers: vec![Box::new(AlwaysAllow)],
        ..Pipeline::default()
    }
}

fn admission_pipeline(journal: &Journal) -> Pipeline {
    let mut p = allow_all();
    p.mutating.push(Box::new(Labeler(journal.clone())));
    p.validating.push(Box::new(Refuser(journal.clone())));
    p
}

#[tokio::test]
async fn mutating_admission_runs_before_validation_and_validating_admission_after() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::default();
    let api = api_with(dir.path(), admission_pipeline(&journal)).await;
    // The server's own writes at start-up went through the same stages.
    assert!(journal
        .entries()
        .contains(&"mutating Create kubernetes by system:apiserver".to_string()));
    journal.clear();
    let (code, created) = call(
        &api,
        Method::POST,
        CONFIGMAPS,
        Some(configmap("c")),
        Some(alice()),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["metadata"]["labels"]["admitted-by"], "test");
    assert_eq!(
        journal.entries(),
        [
            "mutating Create c by alice",
            "validating Create c labelled \"test\""
        ]
    );
    // A mutation is validated like the client's own change: a label value with a
    // space is refused by validation, which runs after the mutating stage.
    struct BadLabel;
    #[async_trait]
    impl MutatingAdmission for BadLabel {
        async fn admit(
            &self,
            _: &Api,
            request: &AdmissionRequest<'_>,
            obj: &mut Value,
            _: Option<&Value>,
        ) -> Result<()> {
            if request.resource.plural == "configmaps" {
                crate::object::metadata_mut(obj).insert("labels".into(), json!({"bad": "a b"}));
            }
            Ok(())
        }
    }
    let mut p = allow_all();
    p.mutating.push(Box::new(BadLabel));
    let api = api_with(dir.path().join("2").as_path(), p).await;
    let (code, status) = call(
        &api,
        Method::POST,
        CONFIGMAPS,
        Some(configmap("c")),
        Some(alice()),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.labels");
}

#[tokio::test]
async fn a_validating_admission_refusal_stores_nothing_on_create_update_or_delete() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::default();
    let mut pipeline = admission_pipeline(&journal);
    pipeline.mutating.push(Box::new(Plain(journal.clone())));
    let api = api_with(dir.path(), pipeline).await;
    let mut refused = configmap("r");
    refused["metadata"]["labels"] = json!({"refuse": "yes"});
    let (code, _) = call(&api, Method::POST, CONFIGMAPS, Some(refused), Some(alice())).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let key = |n: &str| format!("/registry/core/configmaps/default/{n}");
    assert!(api.storage.get(&key("r")).await.unwrap().is_none());

    let (code, _) = call(
        &api,
        Method::POST,
        CONFIGMAPS,
        Some(configmap("keep")),
        Some(alice()),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    let before = api.storage.get(&key("keep")).await.unwrap().unwrap();
    let uri = format!("{CONFIGMAPS}/keep");
    let (code, _) = call(
        &api,
        Method::PUT,
        &uri,
        Some(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "keep", "labels": {"refuse": "yes"}}, "data": {"k": "changed"}})),
        Some(alice()),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (code, _) = call(&api, Method::DELETE, &uri, None, Some(alice())).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let after = api.storage.get(&key("keep")).await.unwrap().unwrap();
    assert_eq!(
        after.mod_revision, before.mod_revision,
        "a refused write changed the object"
    );
    assert!(journal
        .entries()
        .contains(&"validating Delete keep labelled \"test\"".to_string()));
    assert!(
        journal
            .entries()
            .contains(&"mutating Delete keep by alice".to_string()),
        "a mutating plugin that handles deletes sees them, as upstream's webhooks"
    );
    let plain = journal.entries();
    assert!(
        plain.contains(&"plain Update keep".to_string())
            && !plain.contains(&"plain Delete keep".to_string()),
        "a plugin that does not say it handles deletes is not asked: {plain:?}"
    );
}

#[tokio::test]
async fn admission_sees_a_pod_after_the_servers_defaults_and_initial_status() {
    let dir = tempfile::tempdir().unwrap();
    /// Records the pod's restartPolicy and phase at the validating stage.
    struct Seen(Journal);
    #[async_trait]
    impl ValidatingAdmission for Seen {
        async fn validate(
            &self,
            _: &Api,
            _: &AdmissionRequest<'_>,
            obj: &Value,
            _: Option<&Value>,
        ) -> Result<()> {
            self.0.push(format!(
                "{} {}",
                obj.pointer("/spec/restartPolicy").unwrap_or(&Value::Null),
                obj.pointer("/status/phase").unwrap_or(&Value::Null)
            ));
            Ok(())
        }
    }
    let journal = Journal::default();
    let mut p = allow_all();
    p.validating.push(Box::new(Seen(journal.clone())));
    let api = api_with(dir.path(), p).await;
    // No service-account loop runs here: the pod's account is made by hand.
    let account =
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
    let uri = "/api/v1/namespaces/default/serviceaccounts";
    let (code, _) = call(&api, Method::POST, uri, Some(account), Some(alice())).await;
    assert_eq!(code, StatusCode::CREATED);
    journal.clear();
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let (code, body) = call(
        &api,
        Method::POST,
        "/api/v1/namespaces/default/pods",
        Some(pod),
        Some(alice()),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert_eq!(journal.entries(), ["\"Always\" \"Pending\""]);
}

#[tokio::test]
async fn namespace_lifecycle_is_a_plugin_of_the_default_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_with(dir.path(), allow_all()).await;
    let (code, status) = call(
        &api,
        Method::POST,
        "/api/v1/namespaces/missing/configmaps",
        Some(configmap("c")),
        Some(alice()),
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{status}");
    assert_eq!(status["message"], "namespaces \"missing\" not found");
    let (code, status) = call(
        &api,
        Method::DELETE,
        "/api/v1/namespaces/kube-system",
        None,
        Some(alice()),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{status}");
    // Without the plugin, nothing checks the namespace.
    let api = api_with(
        dir.path().join("2").as_path(),
        Pipeline {
            authorizers: vec![Box::new(AlwaysAllow)],
            validating: Vec::new(),
            ..Pipeline::default()
        },
    )
    .await;
    let (code, _) = call(
        &api,
        Method::POST,
        "/api/v1/namespaces/missing/configmaps",
        Some(configmap("c")),
        Some(alice()),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
}

#[test]
fn a_list_or_watch_by_metadata_name_is_authorized_as_that_name_as_upstreams_request_info() {
    let rows = [
        ("list", "fieldSelector=metadata.name%3Dn1", Some("n1")),
        (
            "watch",
            "watch=true&fieldSelector=metadata.name%3Dn1",
            Some("n1"),
        ),
        ("negated", "fieldSelector=metadata.name!%3Dn1", None),
        (
            "not a path segment",
            "fieldSelector=metadata.name%3D..",
            None,
        ),
        ("deletecollection", "fieldSelector=metadata.name%3Dn1", None),
    ];
    for (row, query, name) in rows {
        let parsed = crate::request::parse_path("/api/v1/nodes");
        let crate::request::Path::Resource(rp) = &parsed else {
            panic!("a resource path")
        };
        let method = if row == "deletecollection" {
            Method::DELETE
        } else {
            Method::GET
        };
        let attrs = Attributes::of(
            UserInfo::apiserver(),
            &method,
            "/api/v1/nodes",
            Some(rp),
            &Query::parse(Some(query)),
        );
        assert_eq!(attrs.resource.unwrap().name.as_deref(), name, "{row}");
    }
}
