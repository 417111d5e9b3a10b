//! A CRD conversion webhook reached through a Service (an EndpointSlice pointing at a
//! loopback server, as an operator's webhook Deployment would be), on every path that
//! serves a version other than the stored one: GET, LIST, WATCH and the answer to a
//! write; a conversion the webhook refuses is upstream's 500 with its message.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::{json, Value};

use crate::common::webhook::{Reply, WebhookServer};
use crate::common::Cluster;
use crate::status;
use crate::webhooks::convert_gadgets;

const WAIT: Duration = Duration::from_secs(30);

/// Creates `obj` (JSON) through `api`.
async fn create<K>(api: &Api<K>, obj: Value) -> K
where
    K: Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(obj).expect("a valid object");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("created")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversion_webhook_behind_a_service_converts_gets_lists_watches_and_writes() {
    let c = Cluster::builder("wh-convert-svc").start().await;
    let host = format!("gadget-conversion.{}.svc", c.ns);
    let hook = WebhookServer::start_as(&[&host], convert_unless_broken).await;
    create(
        &Api::<Service>::namespaced(c.client.clone(), &c.ns),
        json!({"metadata": {"name": "gadget-conversion"},
               "spec": {"ports": [{"name": "https", "port": 443, "targetPort": hook.port()}]}}),
    )
    .await;
    create(
        &Api::<EndpointSlice>::namespaced(c.client.clone(), &c.ns),
        json!({"metadata": {"name": "gadget-conversion-1",
                            "labels": {"kubernetes.io/service-name": "gadget-conversion"}},
               "addressType": "IPv4",
               "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
               "ports": [{"name": "https", "port": hook.port(), "protocol": "TCP"}]}),
    )
    .await;

    gadgets_converted_by(
        &c,
        json!({
            "service": {"namespace": c.ns, "name": "gadget-conversion", "path": "/convert", "port": 443},
            "caBundle": hook.ca_bundle,
        }),
    )
    .await;
    let at = |v: &str| {
        let gvk = GroupVersionKind::gvk("example.com", v, "Gadget");
        Api::<DynamicObject>::namespaced_with(c.client.clone(), &c.ns, &ApiResource::from_gvk(&gvk))
    };
    let gadget = |v: &str, name: &str, spec: Value| {
        json!({"apiVersion": format!("example.com/{v}"), "kind": "Gadget",
               "metadata": {"name": name}, "spec": spec})
    };

    create(&at("v1"), gadget("v1", "red", json!({"color": "red"}))).await;
    assert!(
        hook.requests().is_empty(),
        "the storage version needs no call"
    );
    let got = at("v2").get("red").await.expect("GET in v2");
    assert_eq!(got.data["spec"], json!({"colour": "red"}), "GET");
    let listed = at("v2")
        .list(&Default::default())
        .await
        .expect("LIST in v2");
    let specs: Vec<&Value> = listed.items.iter().map(|g| &g.data["spec"]).collect();
    assert_eq!(specs, [&json!({"colour": "red"})], "LIST");
    let mut events = at("v2")
        .watch(&WatchParams::default(), "0")
        .await
        .expect("WATCH in v2")
        .boxed();
    let first = tokio::time::timeout(WAIT, events.try_next())
        .await
        .expect("an event in time")
        .expect("a watch event")
        .expect("the stream goes on");
    match first {
        WatchEvent::Added(g) => assert_eq!(g.data["spec"], json!({"colour": "red"}), "WATCH"),
        other => panic!("expected ADDED, got {other:?}"),
    }

    let written = create(&at("v2"), gadget("v2", "blue", json!({"colour": "blue"}))).await;
    assert_eq!(
        written.data["spec"],
        json!({"colour": "blue"}),
        "a write in v2 is stored in v1 and answered in v2"
    );
    let stored = at("v1").get("blue").await.unwrap();
    assert_eq!(stored.data["spec"], json!({"color": "blue"}));
    assert!(
        hook.requests().iter().all(|(path, _)| path == "/convert"),
        "every call went to the service's path"
    );

    create(
        &at("v1"),
        gadget("v1", "broken", json!({"color": "broken"})),
    )
    .await;
    let s = status(at("v2").get("broken").await);
    assert_eq!(s.code, 500);
    assert_eq!(
        s.message,
        "conversion webhook for example.com/v1, Kind=Gadget failed: broken gadgets do not convert"
    );
}

/// Converts Gadgets as [`convert_gadgets`] does, but refuses the whole review, with
/// the webhook's own message, when one of its objects has `spec.color: broken`.
fn convert_unless_broken(_: &str, review: &Value) -> Reply {
    let broken = review["request"]["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|o| o["spec"]["color"] == "broken");
    if broken {
        return Reply::Json(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "response": {"uid": review["request"]["uid"],
                "result": {"status": "Failure", "message": "broken gadgets do not convert"}},
        }));
    }
    convert_gadgets(review)
}

/// A Gadget CRD stored in v1 and served in v2 through the webhook at `client`,
/// established.
async fn gadgets_converted_by(c: &Cluster, client: Value) {
    let version = |name: &str, storage: bool, field: &str| {
        json!({"name": name, "served": true, "storage": storage, "schema": {"openAPIV3Schema": {
            "type": "object", "properties": {"spec": {"type": "object", "properties": {field: {"type": "string"}}}}
        }}})
    };
    let crds = Api::<CustomResourceDefinition>::all(c.client.clone());
    create(
        &crds,
        json!({
            "metadata": {"name": "gadgets.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget", "listKind": "GadgetList"},
                "scope": "Namespaced",
                "versions": [version("v1", true, "color"), version("v2", false, "colour")],
                "conversion": {"strategy": "Webhook", "webhook": {
                    "clientConfig": client, "conversionReviewVersions": ["v1"],
                }},
            }
        }),
    )
    .await;
    tokio::time::timeout(
        WAIT,
        await_condition(
            crds,
            "gadgets.example.com",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("the CRD is established")
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_in_another_version_sends_all_its_objects_in_one_conversion_review() {
    const N: usize = 5;
    let c = Cluster::builder("wh-convert-list").start().await;
    let hook = WebhookServer::start(convert_unless_broken).await;
    gadgets_converted_by(&c, hook.client_config("/convert")).await;
    let at = |v: &str| {
        let gvk = GroupVersionKind::gvk("example.com", v, "Gadget");
        Api::<DynamicObject>::namespaced_with(c.client.clone(), &c.ns, &ApiResource::from_gvk(&gvk))
    };
    for i in 0..N {
        create(
            &at("v1"),
            json!({"apiVersion": "example.com/v1", "kind": "Gadget",
                   "metadata": {"name": format!("g{i}")}, "spec": {"color": format!("c{i}")}}),
        )
        .await;
    }
    assert!(hook.requests().is_empty(), "v1 is stored as it is");

    let listed = at("v2")
        .list(&Default::default())
        .await
        .expect("LIST in v2");
    let colours: Vec<Value> = (listed.items.iter())
        .map(|g| g.data["spec"]["colour"].clone())
        .collect();
    let want: Vec<Value> = (0..N).map(|i| json!(format!("c{i}"))).collect();
    assert_eq!(colours, want, "every object is converted, in order");
    let reviews = hook.requests();
    assert_eq!(reviews.len(), 1, "one ConversionReview for the list");
    assert_eq!(
        reviews[0].1["request"]["objects"].as_array().map(Vec::len),
        Some(N),
        "the review carries the whole list"
    );

    let table: Value = c
        .client
        .request(
            http::Request::get(format!("/apis/example.com/v2/namespaces/{}/gadgets", c.ns))
                .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .expect("a Table in v2");
    assert_eq!(
        table["rows"].as_array().map(Vec::len),
        Some(N),
        "Table rows"
    );
    assert_eq!(hook.requests().len(), 2, "one more review for the Table");

    create(
        &at("v1"),
        json!({"apiVersion": "example.com/v1", "kind": "Gadget",
               "metadata": {"name": "broken"}, "spec": {"color": "broken"}}),
    )
    .await;
    let s = status(at("v2").list(&Default::default()).await);
    assert_eq!(s.code, 500);
    assert_eq!(
        s.message,
        "conversion webhook for example.com/v1, Kind=Gadget failed: broken gadgets do not convert",
        "one object the webhook refuses fails the list"
    );
}
