//! Admission webhooks as an operator installs them: a Mutating/ValidatingWebhookConfiguration
//! pointing at an HTTPS server on loopback (its own CA in `caBundle`), which patches,
//! denies, fails, hangs or warns; the client sees upstream's answers.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::common::webhook::{admission_response, patch_field, Reply, WebhookServer};
use crate::common::{free_port, Cluster};
use crate::status;

/// Creates a webhook configuration and waits until the server's cache, which admission
/// reads, has it.
pub(crate) async fn configure<K>(c: &Cluster, plural: &str, config: Value)
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let object: K = serde_json::from_value(config).expect("a valid configuration");
    let created = Api::<K>::all(c.client.clone())
        .create(&PostParams::default(), &object)
        .await
        .expect("creating the webhook configuration");
    admission_sees(c, plural, &created).await;
}

/// Waits until the server's cache of the admissionregistration kind `plural`, which
/// admission reads, has `object` as written.
pub(crate) async fn admission_sees<K: kube::Resource>(c: &Cluster, plural: &str, object: &K) {
    let rv: i64 = object
        .meta()
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .expect("a resourceVersion");
    let api = c.apiserver();
    let snap = api.registry.snapshot();
    let r = snap
        .get("admissionregistration.k8s.io", "v1", plural)
        .expect("admission configurations are served");
    let cache = api.cache(r).await.expect("the configurations' cache");
    assert!(
        cache.wait_for(rv, Duration::from_secs(30)).await,
        "the cache caught up"
    );
}

pub(crate) async fn mutating(c: &Cluster, webhooks: Value) {
    let config = json!({"metadata": {"name": "test-mutating"}, "webhooks": webhooks});
    configure::<MutatingWebhookConfiguration>(c, "mutatingwebhookconfigurations", config).await;
}

pub(crate) async fn validating(c: &Cluster, name: &str, webhooks: Value) {
    let config = json!({"metadata": {"name": name}, "webhooks": webhooks});
    configure::<ValidatingWebhookConfiguration>(c, "validatingwebhookconfigurations", config).await;
}

/// A webhook on ConfigMap creates (and updates) with `client` as its clientConfig.
pub(crate) fn configmap_hook(name: &str, client: Value, extra: Value) -> Value {
    let mut hook = json!({
        "name": name,
        "clientConfig": client,
        "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    });
    if let (Some(h), Value::Object(extra)) = (hook.as_object_mut(), extra) {
        h.extend(extra);
    }
    hook
}

pub(crate) fn configmap(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

#[tokio::test]
async fn a_mutating_webhook_adds_a_label_with_a_json_patch_and_sees_upstreams_review() {
    let c = Cluster::builder("wh-mutate").start().await;
    let hook = WebhookServer::start(|_, review| {
        Reply::Json(admission_response(
            review,
            true,
            json!({"patchType": "JSONPatch", "patch": patch_field(json!([
                {"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}
            ]))}),
        ))
    })
    .await;
    mutating(
        &c,
        json!([configmap_hook(
            "label.example.com",
            hook.client_config("/mutate"),
            json!({})
        )]),
    )
    .await;
    let created = c
        .api::<ConfigMap>()
        .create(&PostParams::default(), &configmap("cm", json!({"a": "b"})))
        .await
        .expect("the webhook allows it");
    let labels = created.metadata.labels.unwrap_or_default();
    assert_eq!(labels.get("mutated").map(String::as_str), Some("yes"));
    assert_eq!(labels.get("a").map(String::as_str), Some("b"));

    let requests = hook.requests();
    assert_eq!(requests.len(), 1, "one call: {requests:?}");
    let (path, review) = &requests[0];
    assert_eq!(path, "/mutate");
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    let r = &review["request"];
    assert!(!r["uid"].as_str().unwrap_or("").is_empty());
    assert_eq!(
        r["kind"],
        json!({"group": "", "version": "v1", "kind": "ConfigMap"})
    );
    assert_eq!(
        r["resource"],
        json!({"group": "", "version": "v1", "resource": "configmaps"})
    );
    assert_eq!(r["requestKind"], r["kind"]);
    assert_eq!(r["requestResource"], r["resource"]);
    assert_eq!(r["name"], "cm");
    assert_eq!(r["namespace"], "wh-mutate");
    assert_eq!(r["operation"], "CREATE");
    assert!(r["userInfo"]["username"].is_string());
    assert_eq!(r["object"]["data"], json!({"k": "v"}));
    assert_eq!(r["oldObject"], Value::Null);
    assert_eq!(r["dryRun"], false);
    assert_eq!(r["options"]["kind"], "CreateOptions");
}

#[tokio::test]
async fn a_validating_webhooks_denial_is_the_clients_answer_with_its_code() {
    let c = Cluster::builder("wh-deny").start().await;
    let hook = WebhookServer::start(|_, review| {
        let allowed = review["request"]["object"]["metadata"]["name"] != "bad";
        Reply::Json(admission_response(
            review,
            allowed,
            json!({"status": {"code": 403, "message": "bad names are refused"}}),
        ))
    })
    .await;
    validating(
        &c,
        "test-deny",
        json!([configmap_hook(
            "deny.example.com",
            hook.client_config("/validate"),
            json!({})
        )]),
    )
    .await;
    let cms = c.api::<ConfigMap>();
    cms.create(&PostParams::default(), &configmap("good", json!({})))
        .await
        .expect("allowed");
    let s = status(
        cms.create(&PostParams::default(), &configmap("bad", json!({})))
            .await,
    );
    assert_eq!(s.code, 403);
    assert_eq!(
        s.message,
        "admission webhook \"deny.example.com\" denied the request: bad names are refused"
    );
    assert!(
        cms.get_opt("bad").await.unwrap().is_none(),
        "nothing stored"
    );
}

#[tokio::test]
async fn failure_policy_decides_what_a_down_or_slow_webhook_means() {
    let c = Cluster::builder("wh-fail").start().await;
    let slow = WebhookServer::start(|_, _| Reply::Hang).await;
    let down = format!("https://127.0.0.1:{}/validate", free_port());
    let cases = [
        (
            "down, Fail",
            json!({"url": down}),
            "Fail",
            Some("connect: connection refused"),
        ),
        ("down, Ignore", json!({"url": down}), "Ignore", None),
        (
            "slow, Fail",
            slow.client_config("/validate"),
            "Fail",
            Some("context deadline exceeded"),
        ),
        (
            "slow, Ignore",
            slow.client_config("/validate"),
            "Ignore",
            None,
        ),
    ];
    for (i, (name, client, policy, error)) in cases.into_iter().enumerate() {
        let config = format!("test-failure-{i}");
        let hook_name = format!("failure{i}.example.com");
        validating(
            &c,
            &config,
            json!([configmap_hook(
                &hook_name,
                client.clone(),
                json!({"failurePolicy": policy, "timeoutSeconds": 1})
            )]),
        )
        .await;
        let result = c
            .api::<ConfigMap>()
            .create(
                &PostParams::default(),
                &configmap(&format!("cm{i}"), json!({})),
            )
            .await;
        match error {
            Some(text) => {
                let s = status(result);
                assert_eq!(s.code, 500, "{name}");
                let url = client["url"].as_str().unwrap();
                let prefix = format!(
                    "Internal error occurred: failed calling webhook \"{hook_name}\": failed to call webhook: Post \"{url}?timeout=1s\": "
                );
                assert!(s.message.starts_with(&prefix), "{name}: {}", s.message);
                assert!(s.message.ends_with(text), "{name}: {}", s.message);
            }
            None => {
                result.unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
        Api::<ValidatingWebhookConfiguration>::all(c.client.clone())
            .delete(&config, &Default::default())
            .await
            .expect("removing the configuration");
    }
}

#[tokio::test]
async fn namespace_and_object_selectors_choose_which_writes_reach_a_webhook() {
    let c = Cluster::builder("wh-select").start().await;
    let namespaces = Api::<Namespace>::all(c.client.clone());
    for (name, labels) in [("wh-on", json!({"webhook": "on"})), ("wh-off", json!({}))] {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
    }
    let hook = WebhookServer::start(|_, review| {
        Reply::Json(admission_response(
            review,
            false,
            json!({"status": {"message": "selected"}}),
        ))
    })
    .await;
    validating(
        &c,
        "test-selectors",
        json!([configmap_hook(
            "select.example.com",
            hook.client_config("/validate"),
            json!({
                "namespaceSelector": {"matchLabels": {"webhook": "on"}},
                "objectSelector": {"matchExpressions": [{"key": "skip-webhook", "operator": "DoesNotExist"}]}
            })
        )]),
    )
    .await;
    let cases = [
        (
            "a namespace the selector leaves out",
            "wh-off",
            json!({}),
            true,
        ),
        (
            "an object the selector leaves out",
            "wh-on",
            json!({"skip-webhook": "yes"}),
            true,
        ),
        ("both selected", "wh-on", json!({}), false),
    ];
    for (i, (name, ns, labels, allowed)) in cases.into_iter().enumerate() {
        let result = Api::<ConfigMap>::namespaced(c.client.clone(), ns)
            .create(
                &PostParams::default(),
                &configmap(&format!("cm{i}"), labels),
            )
            .await;
        if allowed {
            result.unwrap_or_else(|e| panic!("{name}: {e}"));
        } else {
            assert_eq!(
                status(result).message,
                "admission webhook \"select.example.com\" denied the request: selected",
                "{name}"
            );
        }
    }
    assert_eq!(hook.requests().len(), 1, "only the selected write was sent");
}

#[tokio::test]
async fn a_dry_run_is_refused_by_a_webhook_with_side_effects_and_sent_to_one_without() {
    let c = Cluster::builder("wh-dry").start().await;
    let hook =
        WebhookServer::start(|_, review| Reply::Json(admission_response(review, true, json!({}))))
            .await;
    validating(
        &c,
        "test-dry-run",
        json!([
            configmap_hook(
                "none.example.com",
                hook.client_config("/none"),
                json!({"sideEffects": "None"})
            ),
            configmap_hook(
                "some.example.com",
                hook.client_config("/some"),
                json!({
                    "sideEffects": "Some",
                    "objectSelector": {"matchLabels": {"side": "effects"}}
                })
            ),
        ]),
    )
    .await;
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let cms = c.api::<ConfigMap>();
    cms.create(&dry, &configmap("plain", json!({})))
        .await
        .expect("a webhook without side effects takes a dry run");
    let requests = hook.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].0, "/none");
    assert_eq!(requests[0].1["request"]["dryRun"], true);
    assert_eq!(
        requests[0].1["request"]["options"]["dryRun"],
        json!(["All"])
    );

    let s = status(
        cms.create(&dry, &configmap("effects", json!({"side": "effects"})))
            .await,
    );
    assert_eq!(s.code, 400);
    assert_eq!(
        s.message,
        "admission webhook \"some.example.com\" does not support dry run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_warnings_reach_kubectl() {
    let c = Cluster::builder("wh-warn").start().await;
    let hook = WebhookServer::start(|_, review| {
        Reply::Json(admission_response(
            review,
            true,
            json!({"warnings": ["configmaps here are audited"]}),
        ))
    })
    .await;
    validating(
        &c,
        "test-warnings",
        json!([configmap_hook(
            "warn.example.com",
            hook.client_config("/warn"),
            json!({})
        )]),
    )
    .await;
    let out = c.kubectl_output(&["create", "configmap", "warned", "--from-literal=k=v"]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Warning: configmaps here are audited"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_webhook_with_reinvocation_if_needed_sees_a_later_webhooks_change() {
    let c = Cluster::builder("wh-reinvoke").start().await;
    let hook = WebhookServer::start(|path, review| {
        let labels = &review["request"]["object"]["metadata"]["labels"];
        let ops = match path {
            // The first webhook records whether it has seen the second one's label.
            "/first" => json!([{"op": "add", "path": "/metadata/annotations",
                "value": {"saw-second": labels.get("second").is_some().to_string()}}]),
            _ => json!([{"op": "add", "path": "/metadata/labels/second", "value": "yes"}]),
        };
        Reply::Json(admission_response(
            review,
            true,
            json!({"patchType": "JSONPatch", "patch": patch_field(ops)}),
        ))
    })
    .await;
    mutating(
        &c,
        json!([
            configmap_hook(
                "first.example.com",
                hook.client_config("/first"),
                json!({"reinvocationPolicy": "IfNeeded"})
            ),
            configmap_hook(
                "second.example.com",
                hook.client_config("/second"),
                json!({})
            ),
        ]),
    )
    .await;
    let created = c
        .api::<ConfigMap>()
        .create(&PostParams::default(), &configmap("cm", json!({})))
        .await
        .unwrap();
    let paths: Vec<String> = hook.requests().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["/first", "/second", "/first"]);
    assert_eq!(
        created
            .metadata
            .annotations
            .unwrap_or_default()
            .get("saw-second")
            .map(String::as_str),
        Some("true")
    );
}

/// A v1 Gadget's `spec.color` is a v2 Gadget's `spec.colour`: the conversion webhook
/// renames it either way.
pub(crate) fn convert_gadgets(review: &Value) -> Reply {
    let request = &review["request"];
    let desired = request["desiredAPIVersion"].as_str().unwrap_or("");
    let objects: Vec<Value> = request["objects"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut o| {
            let spec = o["spec"].as_object_mut().expect("a spec");
            let (from, to) = match desired {
                "example.com/v2" => ("color", "colour"),
                _ => ("colour", "color"),
            };
            if let Some(v) = spec.remove(from) {
                spec.insert(to.into(), v);
            }
            o["apiVersion"] = json!(desired);
            o
        })
        .collect();
    Reply::Json(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "response": {"uid": request["uid"], "result": {"status": "Success"}, "convertedObjects": objects},
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_with_a_conversion_webhook_serves_each_object_in_both_versions() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    use kube::runtime::wait::{await_condition, conditions};

    let c = Cluster::builder("wh-convert").start().await;
    let hook = WebhookServer::start(|_, review| convert_gadgets(review)).await;
    let version = |name: &str, storage: bool, field: &str| {
        json!({"name": name, "served": true, "storage": storage, "schema": {"openAPIV3Schema": {
            "type": "object", "properties": {"spec": {"type": "object", "properties": {field: {"type": "string"}}}}
        }}})
    };
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget", "listKind": "GadgetList"},
            "scope": "Namespaced",
            "versions": [version("v1", true, "color"), version("v2", false, "colour")],
            "conversion": {"strategy": "Webhook", "webhook": {
                "clientConfig": hook.client_config("/convert"),
                "conversionReviewVersions": ["v1"],
            }},
        }
    }))
    .unwrap();
    let crds = Api::<CustomResourceDefinition>::all(c.client.clone());
    crds.create(&PostParams::default(), &crd).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(
            crds,
            "gadgets.example.com",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("the CRD is established")
    .unwrap();
    let at = |v: &str| {
        let gvk = GroupVersionKind::gvk("example.com", v, "Gadget");
        Api::<DynamicObject>::namespaced_with(c.client.clone(), &c.ns, &ApiResource::from_gvk(&gvk))
    };
    let gadget = |v: &str, name: &str, spec: Value| -> DynamicObject {
        serde_json::from_value(
            json!({"apiVersion": format!("example.com/{v}"), "kind": "Gadget",
            "metadata": {"name": name}, "spec": spec}),
        )
        .unwrap()
    };
    let pp = PostParams::default();
    let cases = [
        ("created in v1", "v1", "from-v1", json!({"color": "red"})),
        ("created in v2", "v2", "from-v2", json!({"colour": "blue"})),
    ];
    for (name, created_in, object, spec) in cases {
        at(created_in)
            .create(&pp, &gadget(created_in, object, spec.clone()))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let colour = spec.as_object().unwrap().values().next().unwrap().clone();
        let v1 = at("v1").get(object).await.unwrap();
        assert_eq!(
            v1.types.as_ref().unwrap().api_version,
            "example.com/v1",
            "{name}"
        );
        assert_eq!(
            v1.data["spec"],
            json!({"color": colour}),
            "{name}: read in v1"
        );
        let v2 = at("v2").get(object).await.unwrap();
        assert_eq!(
            v2.types.as_ref().unwrap().api_version,
            "example.com/v2",
            "{name}"
        );
        assert_eq!(
            v2.data["spec"],
            json!({"colour": colour}),
            "{name}: read in v2"
        );
    }
    let listed = at("v2").list(&Default::default()).await.unwrap();
    let colours: Vec<&Value> = listed
        .items
        .iter()
        .map(|g| &g.data["spec"]["colour"])
        .collect();
    assert_eq!(
        colours,
        [&json!("red"), &json!("blue")],
        "a v2 list converts every object"
    );
    assert!(
        hook.requests()
            .iter()
            .all(|(_, r)| r["apiVersion"] == "apiextensions.k8s.io/v1"
                && r["kind"] == "ConversionReview"),
        "ConversionReview v1 requests"
    );
}

#[tokio::test]
async fn match_policy_equivalent_sends_a_write_in_another_version_as_the_rules_version() {
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;

    let c = Cluster::builder("wh-equivalent").start().await;
    let hook =
        WebhookServer::start(|_, review| Reply::Json(admission_response(review, true, json!({}))))
            .await;
    let v1_rule = |name: &str, policy: &str| {
        json!({
            "name": name,
            "clientConfig": hook.client_config(&format!("/{policy}")),
            "rules": [{"operations": ["CREATE"], "apiGroups": ["autoscaling"], "apiVersions": ["v1"], "resources": ["horizontalpodautoscalers"]}],
            "matchPolicy": policy,
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        })
    };
    validating(
        &c,
        "test-equivalent",
        json!([
            v1_rule("exact.example.com", "Exact"),
            v1_rule("equivalent.example.com", "Equivalent")
        ]),
    )
    .await;
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 1, "maxReplicas": 3}
    }))
    .unwrap();
    c.api::<HorizontalPodAutoscaler>()
        .create(&PostParams::default(), &hpa)
        .await
        .expect("allowed");
    let requests = hook.requests();
    let paths: Vec<&str> = requests.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["/Equivalent"], "an Exact rule does not match v2");
    let r = &requests[0].1["request"];
    assert_eq!(
        r["kind"],
        json!({"group": "autoscaling", "version": "v1", "kind": "HorizontalPodAutoscaler"})
    );
    assert_eq!(
        r["requestKind"],
        json!({"group": "autoscaling", "version": "v2", "kind": "HorizontalPodAutoscaler"})
    );
    assert_eq!(r["resource"]["version"], "v1");
    assert_eq!(r["requestResource"]["version"], "v2");
    assert_eq!(r["object"]["apiVersion"], "autoscaling/v1");
    assert_eq!(r["object"]["spec"]["maxReplicas"], 3);
}

#[tokio::test]
async fn match_conditions_skip_the_webhook_and_an_erroring_one_fails_closed_under_fail() {
    let c = Cluster::builder("wh-conditions").start().await;
    let hook = WebhookServer::start(|_, review| {
        Reply::Json(admission_response(
            review,
            false,
            json!({"status": {"code": 403, "message": "checked and refused"}}),
        ))
    })
    .await;
    let conditions = json!({"matchConditions": [
        {"name": "checked-only", "expression": "object.metadata.name.startsWith('checked-')"},
        {"name": "not-admin", "expression": "!('system:masters' in request.userInfo.groups) || has(object.metadata.labels)"}
    ]});
    let erroring = json!({"matchConditions": [
        {"name": "needs-data", "expression": "object.data.mode == 'strict'"}
    ]});
    validating(
        &c,
        "test-conditions",
        json!([
            configmap_hook(
                "checked.example.com",
                hook.client_config("/checked"),
                conditions
            ),
            configmap_hook(
                "strict.example.com",
                hook.client_config("/strict"),
                erroring
            ),
        ]),
    )
    .await;
    let cms = c.api::<ConfigMap>();
    let s = status(
        cms.create(&PostParams::default(), &configmap("plain", json!({})))
            .await,
    );
    // `plain` has data without `mode`: the second webhook's condition errs (403).
    assert_eq!(s.code, 403, "{s:?}");
    assert_eq!(
        s.message,
        "configmaps \"plain\" is forbidden: expression 'object.data.mode == 'strict'' resulted in error: no such key: mode"
    );
    let mut relaxed: ConfigMap = configmap("plain", json!({}));
    relaxed.data = Some([("mode".to_string(), "relaxed".to_string())].into());
    cms.create(&PostParams::default(), &relaxed)
        .await
        .expect("both conditions false: no webhook is called");
    let mut checked = configmap("checked-1", json!({"a": "b"}));
    checked.data = Some([("mode".to_string(), "relaxed".to_string())].into());
    let s = status(cms.create(&PostParams::default(), &checked).await);
    assert_eq!(
        s.message,
        "admission webhook \"checked.example.com\" denied the request: checked and refused"
    );
    let paths: Vec<String> = hook.requests().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["/checked"], "only the matching webhook was called");
}

/// As upstream, a matchCondition may ask the authorizer about the requesting user: here
/// the webhook is called only for users who may not list the namespace's secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_match_condition_asks_the_authorizer_about_the_requesting_user() {
    let c = Cluster::builder("wh-condition-authz").start().await;
    let hook = WebhookServer::start(|_, review| {
        Reply::Json(admission_response(
            review,
            false,
            json!({"status": {"code": 403, "message": "only for the unprivileged"}}),
        ))
    })
    .await;
    let unprivileged = json!({"matchConditions": [{
        "name": "cannot-list-secrets",
        "expression": "!authorizer.group('').resource('secrets').namespace(object.metadata.namespace).check('list').allowed()"
    }]});
    validating(
        &c,
        "test-condition-authz",
        json!([configmap_hook(
            "unprivileged.example.com",
            hook.client_config("/unprivileged"),
            unprivileged
        )]),
    )
    .await;
    let role: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(json!({
        "metadata": {"name": "configmaps"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}]
    }))
    .unwrap();
    c.api().create(&PostParams::default(), &role).await.unwrap();
    let binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "carol-configmaps"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmaps"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"}]
    }))
    .unwrap();
    c.api()
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let carol = crate::common::users::User::new(&c.kubeconfig, "carol", None).await;

    c.api::<ConfigMap>()
        .create(&PostParams::default(), &configmap("by-admin", json!({})))
        .await
        .expect("the admin may list secrets: the webhook is not called");
    let as_carol = Api::<ConfigMap>::namespaced(carol.client.clone(), &c.ns);
    let s = crate::common::eventually("carol's role to reach the authorizer", || async {
        match as_carol
            .create(&PostParams::default(), &configmap("by-carol", json!({})))
            .await
        {
            Err(kube::Error::Api(s)) if s.message.contains("admission webhook") => Ok(*s),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(
        s.message,
        "admission webhook \"unprivileged.example.com\" denied the request: only for the unprivileged"
    );
    let paths: Vec<String> = hook.requests().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["/unprivileged"], "called for carol only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_that_refuse_everything_cannot_stop_their_own_change_or_removal() {
    let c = Cluster::builder("wh-exempt").start().await;
    let down = format!("https://127.0.0.1:{}/refuse", free_port());
    let everything = |name: &str| {
        json!({
            "name": name,
            "clientConfig": {"url": down},
            "rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        })
    };
    validating(&c, "refuse-all", json!([everything("refuse.example.com")])).await;
    mutating(&c, json!([everything("refuse-too.example.com")])).await;
    let refused = c
        .api::<ConfigMap>()
        .create(&PostParams::default(), &configmap("cm", json!({})))
        .await;
    assert_eq!(status(refused).code, 500, "the webhooks are called");

    // As upstream: webhook configurations are never sent to webhooks.
    for (kind, name) in [
        ("validatingwebhookconfiguration", "refuse-all"),
        ("mutatingwebhookconfiguration", "test-mutating"),
    ] {
        let labelled = c.kubectl_output(&["label", kind, name, "fixed=yes"]);
        assert!(
            labelled.status.success(),
            "labelling {kind} {name}: {}",
            String::from_utf8_lossy(&labelled.stderr)
        );
        let deleted = c.kubectl_output(&["delete", kind, name]);
        assert!(
            deleted.status.success(),
            "deleting {kind} {name}: {}",
            String::from_utf8_lossy(&deleted.stderr)
        );
    }
    crate::common::eventually("a ConfigMap once the webhooks are gone", || {
        let api = c.api::<ConfigMap>();
        async move {
            api.create(&PostParams::default(), &configmap("after", json!({})))
                .await
                .map_err(|e| e.to_string())
        }
    })
    .await;
}
