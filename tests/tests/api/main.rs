//! Integration tests: the apiserver in-process on a free port, driven by kube-rs as a
//! controller or a user's program would drive it.

use kybern_testkit as common;

mod apply;
mod authn;
mod crds;
mod crud;
mod discovery;
mod encryption;
mod errors;
mod events;
mod fuzz;
mod groups;
mod limitranger;
mod limits;
mod metadata;
mod nodes;
mod open_files;
mod patch;
mod podsecurity;
mod policies;
mod priority;
mod prometheus;
mod proxy;
mod rbac;
mod selectors;
mod semantics;
mod storage;
mod subresources;
mod tolerationseconds;
mod top;
mod versions;
mod watch;
mod webhooks;
mod webhooks_conversion;
mod webhooks_delete;
mod webhooks_keepalive;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::json;

/// The HTTP status code of a failed API call.
pub fn code(result: Result<impl std::fmt::Debug, kube::Error>) -> u16 {
    match result {
        Err(kube::Error::Api(status)) => status.code,
        other => panic!("expected an API error status, got {other:?}"),
    }
}

/// The `Status` of a failed API call.
pub fn status(result: Result<impl std::fmt::Debug, kube::Error>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error status, got {other:?}"),
    }
}

pub fn configmap(name: &str, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap()
}

/// A request with a JSON body (or none), answered as JSON.
pub async fn call(
    client: &kube::Client,
    method: &str,
    uri: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, kube::Error> {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(
            body.map(|b| serde_json::to_vec(&b).unwrap())
                .unwrap_or_default(),
        )
        .unwrap();
    client.request::<serde_json::Value>(req).await
}

/// A raw request with a body, as a client not using kube-rs's typed API sends it.
pub fn raw(
    method: &str,
    uri: &str,
    content_type: &str,
    body: impl Into<Vec<u8>>,
) -> http::Request<Vec<u8>> {
    http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(body.into())
        .unwrap()
}
