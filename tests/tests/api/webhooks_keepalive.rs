//! The server keeps its connections to a webhook alive, as upstream's webhook client
//! does: many calls share few connections, and a changed caBundle is trusted (or
//! distrusted) at once instead of riding on a connection made under the old one.

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::common::webhook::{admission_response, Reply, WebhookServer};
use crate::common::Cluster;
use crate::status;
use crate::webhooks::{admission_sees, configmap, configmap_hook, validating};

const CALLS: usize = 10;

#[tokio::test]
async fn ten_calls_to_a_webhook_share_fewer_than_ten_connections() {
    let c = Cluster::builder("wh-keepalive").start().await;
    let hook =
        WebhookServer::start(|_, review| Reply::Json(admission_response(review, true, json!({}))))
            .await;
    validating(
        &c,
        "test-keepalive",
        json!([configmap_hook(
            "keepalive.example.com",
            hook.client_config("/validate"),
            json!({"failurePolicy": "Fail"})
        )]),
    )
    .await;
    for i in 0..CALLS {
        c.api::<ConfigMap>()
            .create(
                &PostParams::default(),
                &configmap(&format!("cm{i}"), json!({})),
            )
            .await
            .expect("the webhook allows it");
    }
    assert_eq!(
        hook.requests().len(),
        CALLS,
        "every create reached the webhook"
    );
    assert!(
        hook.connections() < CALLS,
        "{CALLS} calls used {} connections",
        hook.connections()
    );
}

#[tokio::test]
async fn a_changed_ca_bundle_is_used_for_the_next_call_despite_a_kept_alive_connection() {
    let c = Cluster::builder("wh-cabundle").start().await;
    let hook =
        WebhookServer::start(|_, review| Reply::Json(admission_response(review, true, json!({}))))
            .await;
    // Only for its CA, which did not sign `hook`'s certificate.
    let stranger = WebhookServer::start(|_, _| Reply::Hang).await;
    validating(
        &c,
        "test-cabundle",
        json!([configmap_hook(
            "cabundle.example.com",
            hook.client_config("/validate"),
            json!({"failurePolicy": "Fail"})
        )]),
    )
    .await;
    let cms = c.api::<ConfigMap>();
    cms.create(&PostParams::default(), &configmap("trusted", json!({})))
        .await
        .expect("the webhook's own CA is trusted");

    let mut client = hook.client_config("/validate");
    client["caBundle"] = json!(stranger.ca_bundle);
    let patch = json!({"webhooks": [configmap_hook(
        "cabundle.example.com", client, json!({"failurePolicy": "Fail"})
    )]});
    let patched = Api::<ValidatingWebhookConfiguration>::all(c.client.clone())
        .patch(
            "test-cabundle",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("changing the caBundle");
    admission_sees(&c, "validatingwebhookconfigurations", &patched).await;
    let s = status(
        cms.create(&PostParams::default(), &configmap("untrusted", json!({})))
            .await,
    );
    assert_eq!(s.code, 500, "{}", s.message);
    assert!(
        s.message
            .contains("failed calling webhook \"cabundle.example.com\""),
        "{}",
        s.message
    );
    assert!(s.message.contains("tls: "), "{}", s.message);
    assert_eq!(
        hook.requests().len(),
        1,
        "no request went over the connection made under the old caBundle"
    );
}
