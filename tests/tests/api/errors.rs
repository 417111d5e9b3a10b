//! Rejected requests: each gets upstream's status code, reason and message, and leaves
//! nothing behind.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::common::InProcess;
use crate::{configmap, raw, status};

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

async fn assert_no_configmaps(api: &Api<ConfigMap>, case: &str) {
    let left = api.list(&ListParams::default()).await.unwrap().items;
    assert!(
        left.is_empty(),
        "{case} left {} configmaps behind",
        left.len()
    );
}

#[tokio::test]
async fn malformed_json_is_a_bad_request_that_creates_nothing() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let st = status(
        s.client
            .request_text(raw(
                "POST",
                CONFIGMAPS,
                "application/json",
                "{\"metadata\": {\"name\": ",
            ))
            .await,
    );
    assert_eq!((st.code, st.reason.as_str()), (400, "BadRequest"), "{st:?}");
    assert_no_configmaps(&api, "malformed JSON").await;
}

#[tokio::test]
async fn an_unknown_resource_is_not_found() {
    let s = InProcess::start().await;
    for uri in [
        "/api/v1/namespaces/default/widgets",
        "/apis/example.com/v1/widgets",
        "/api/v1/namespaces/default/configmaps/x/bogus",
    ] {
        let st = status(
            s.client
                .request_text(http::Request::get(uri).body(Vec::new()).unwrap())
                .await,
        );
        assert_eq!(
            (st.code, st.reason.as_str()),
            (404, "NotFound"),
            "GET {uri}: {st:?}"
        );
        assert_eq!(
            st.message, "the server could not find the requested resource",
            "GET {uri}"
        );
    }
}

#[tokio::test]
async fn an_invalid_name_is_unprocessable_with_upstreams_message() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let st = status(
        api.create(&PostParams::default(), &configmap("Bad_Name", json!({})))
            .await,
    );
    assert_eq!((st.code, st.reason.as_str()), (422, "Invalid"), "{st:?}");
    assert_eq!(
        st.message,
        "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain \
         must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric \
         character (e.g. 'example.com', regex used for validation is \
         '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    );
    let details = st.details.expect("Invalid carries details");
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("Bad_Name", "ConfigMap"),
        "upstream puts the Kind in Invalid details"
    );
    assert_no_configmaps(&api, "an invalid name").await;
}

#[tokio::test]
async fn a_body_over_three_mebibytes_is_too_large_and_creates_nothing() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let big = "x".repeat(3 * 1024 * 1024 + 1024);
    let body = serde_json::to_vec(&configmap("big", json!({"blob": big}))).unwrap();
    let st = status(
        s.client
            .request_text(raw("POST", CONFIGMAPS, "application/json", body))
            .await,
    );
    assert_eq!(
        (st.code, st.reason.as_str()),
        (413, "RequestEntityTooLarge"),
        "{st:?}"
    );
    assert_no_configmaps(&api, "a 3 MiB body").await;

    // Just under the limit is not rejected for its size (a ConfigMap's own 1 MiB data
    // limit may still apply, with 422).
    let fits =
        serde_json::to_vec(&configmap("fits", json!({"blob": "y".repeat(512 * 1024)}))).unwrap();
    s.client
        .request_text(raw("POST", CONFIGMAPS, "application/json", fits))
        .await
        .expect("a 512 KiB ConfigMap is fine");
}
