//! Admission webhooks registered for DELETE, as upstream calls them: mutating and
//! validating ones, for one object and for each object of a collection, with the object
//! being deleted as `oldObject`, no `object`, and the DeleteOptions the client sent.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, PostParams, PropagationPolicy};
use serde_json::{json, Value};

use crate::common::webhook::{admission_response, patch_field, Reply, WebhookServer};
use crate::common::Cluster;
use crate::status;
use crate::webhooks::{configmap, configmap_hook, mutating, validating};

/// A webhook on ConfigMap deletes only.
fn delete_hook(name: &str, client: Value, extra: Value) -> Value {
    let mut hook = configmap_hook(name, client, extra);
    hook["rules"][0]["operations"] = json!(["DELETE"]);
    hook
}

/// A server that allows everything and patches nothing.
async fn allowing() -> WebhookServer {
    WebhookServer::start(|_, review| Reply::Json(admission_response(review, true, json!({})))).await
}

#[tokio::test]
async fn mutating_and_validating_webhooks_see_each_delete_with_the_old_object_and_its_options() {
    let c = Cluster::builder("wh-delete").start().await;
    let hook = allowing().await;
    mutating(
        &c,
        json!([delete_hook(
            "m.example.com",
            hook.client_config("/mutate"),
            json!({})
        )]),
    )
    .await;
    validating(
        &c,
        "test-delete",
        json!([delete_hook(
            "v.example.com",
            hook.client_config("/validate"),
            json!({})
        )]),
    )
    .await;
    let cms = c.api::<ConfigMap>();
    for name in ["one", "batch-a", "batch-b"] {
        let labels = if name.starts_with("batch") {
            json!({"batch": "yes"})
        } else {
            json!({})
        };
        cms.create(&PostParams::default(), &configmap(name, labels))
            .await
            .unwrap();
    }
    assert!(
        hook.requests().is_empty(),
        "creates do not match DELETE rules"
    );

    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    cms.delete("one", &dp).await.expect("allowed");
    let requests = hook.requests();
    let paths: Vec<&str> = requests.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["/mutate", "/validate"],
        "mutating first, then validating"
    );
    for (path, review) in &requests {
        let r = &review["request"];
        assert_eq!(r["operation"], "DELETE", "{path}");
        assert_eq!(r["name"], "one", "{path}");
        assert_eq!(r["object"], Value::Null, "{path}");
        assert_eq!(r["oldObject"]["metadata"]["name"], "one", "{path}");
        assert_eq!(r["oldObject"]["data"], json!({"k": "v"}), "{path}");
        assert_eq!(r["dryRun"], false, "{path}");
        assert_eq!(r["options"]["kind"], "DeleteOptions", "{path}");
        assert_eq!(r["options"]["propagationPolicy"], "Background", "{path}");
    }

    cms.delete_collection(&dp, &ListParams::default().labels("batch=yes"))
        .await
        .expect("allowed");
    let mut mutated: Vec<String> = hook
        .requests()
        .iter()
        .skip(2)
        .filter(|(p, _)| p == "/mutate")
        .map(|(_, r)| {
            r["request"]["oldObject"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    mutated.sort();
    assert_eq!(
        mutated,
        ["batch-a", "batch-b"],
        "each object of a collection"
    );
    assert!(cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .all(|cm| {
            !["one", "batch-a", "batch-b"].contains(&cm.metadata.name.as_deref().unwrap_or(""))
        }));
}

#[tokio::test]
async fn a_mutating_webhook_cannot_patch_or_silently_refuse_a_delete() {
    let c = Cluster::builder("wh-delete-patch").start().await;
    let hook = WebhookServer::start(|path, review| {
        let extra = match path {
            "/patch" => json!({"patchType": "JSONPatch", "patch": patch_field(json!([
                {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}
            ]))}),
            _ => json!({"status": {"code": 403, "message": "keep it"}}),
        };
        Reply::Json(admission_response(review, path == "/patch", extra))
    })
    .await;
    mutating(
        &c,
        json!([
            delete_hook(
                "patch.example.com",
                hook.client_config("/patch"),
                json!({"objectSelector": {"matchLabels": {"hook": "patch"}}})
            ),
            delete_hook(
                "deny.example.com",
                hook.client_config("/deny"),
                json!({"objectSelector": {"matchLabels": {"hook": "deny"}}})
            ),
        ]),
    )
    .await;
    let cms = c.api::<ConfigMap>();
    let cases = [
        (
            "patch",
            500,
            "Internal error occurred: admission webhook \"patch.example.com\" attempted to modify the object, which is not supported for this operation",
        ),
        (
            "deny",
            403,
            "admission webhook \"deny.example.com\" denied the request: keep it",
        ),
    ];
    for (name, code, message) in cases {
        cms.create(
            &PostParams::default(),
            &configmap(name, json!({"hook": name})),
        )
        .await
        .unwrap();
        let s = status(cms.delete(name, &DeleteParams::default()).await);
        assert_eq!((s.code, s.message.as_str()), (code, message), "{name}");
        assert!(
            cms.get_opt(name).await.unwrap().is_some(),
            "{name}: still there"
        );
    }
}

#[tokio::test]
async fn a_delete_dry_run_sent_in_the_body_reaches_webhooks_as_a_dry_run() {
    let c = Cluster::builder("wh-delete-dry").start().await;
    let hook = allowing().await;
    mutating(
        &c,
        json!([
            delete_hook("none.example.com", hook.client_config("/none"), json!({})),
            delete_hook(
                "unknown.example.com",
                hook.client_config("/unknown"),
                json!({"sideEffects": "Unknown", "objectSelector": {"matchLabels": {"side": "effects"}}})
            ),
        ]),
    )
    .await;
    let cms = c.api::<ConfigMap>();
    for (name, labels) in [
        ("plain", json!({})),
        ("effects", json!({"side": "effects"})),
    ] {
        cms.create(&PostParams::default(), &configmap(name, labels))
            .await
            .unwrap();
    }
    // kube-rs, like kubectl --dry-run=server, puts dryRun in the DeleteOptions body.
    let dry = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    cms.delete("plain", &dry)
        .await
        .expect("a dry run is allowed");
    let requests = hook.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].0, "/none");
    assert_eq!(requests[0].1["request"]["dryRun"], true);
    assert_eq!(
        requests[0].1["request"]["options"]["dryRun"],
        json!(["All"])
    );

    let s = status(cms.delete("effects", &dry).await);
    assert_eq!(s.code, 400);
    assert_eq!(
        s.message,
        "admission webhook \"unknown.example.com\" does not support dry run"
    );
    for name in ["plain", "effects"] {
        assert!(
            cms.get_opt(name).await.unwrap().is_some(),
            "{name}: a dry run deletes nothing"
        );
    }
}
