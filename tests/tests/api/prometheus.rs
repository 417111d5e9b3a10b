//! The apiserver's own `/metrics`: upstream's request counter and latency histogram,
//! labelled as upstream labels requests, in the Prometheus text format.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, PostParams};

use crate::common::InProcess;

#[tokio::test]
async fn metrics_count_and_time_requests_by_verb_resource_scope_and_code() {
    let server = InProcess::start().await;
    let cms: kube::Api<ConfigMap> = kube::Api::namespaced(server.client.clone(), "default");
    cms.list(&ListParams::default()).await.unwrap();
    cms.create(
        &PostParams::default(),
        &crate::configmap("m1", serde_json::json!({})),
    )
    .await
    .unwrap();
    let _ = cms.get("missing").await;
    let text = server
        .client
        .request_text(http::Request::get("/metrics").body(Vec::new()).unwrap())
        .await
        .unwrap();
    for want in [
        "# TYPE apiserver_request_total counter",
        "apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"configmaps\",scope=\"namespace\",subresource=\"\",verb=\"LIST\",version=\"v1\"} 1",
        "apiserver_request_total{code=\"201\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"configmaps\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} 1",
        "apiserver_request_total{code=\"404\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"configmaps\",scope=\"resource\",subresource=\"\",verb=\"GET\",version=\"v1\"} 1",
        "# TYPE apiserver_request_duration_seconds histogram",
        "apiserver_request_duration_seconds_bucket{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"configmaps\",scope=\"namespace\",subresource=\"\",verb=\"LIST\",version=\"v1\",le=\"60\"} 1",
        "apiserver_request_duration_seconds_count{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"configmaps\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} 1",
        "# TYPE process_resident_memory_bytes gauge",
    ] {
        assert!(
            text.lines().any(|l| l == want || l.starts_with(&format!("{want} "))),
            "missing {want:?} in:\n{text}"
        );
    }
}
