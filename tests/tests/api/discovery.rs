//! What clients learn before they ask for objects: discovery, /version, Table output.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::discovery::{verbs, Discovery, Scope};
use serde_json::{json, Value};

use crate::common::InProcess;

#[tokio::test]
async fn aggregated_discovery_finds_apps_v1_deployments() {
    let s = InProcess::start().await;
    let discovery = Discovery::new(s.client.clone())
        .run_aggregated()
        .await
        .expect("aggregated discovery");
    let apps = discovery.get("apps").expect("the apps group");
    let (resource, caps) = apps
        .versioned_resources("v1")
        .into_iter()
        .find(|(r, _)| r.kind == "Deployment")
        .expect("apps/v1 Deployment");
    assert_eq!(resource.plural, "deployments");
    assert_eq!(caps.scope, Scope::Namespaced);
    assert!(caps.supports_operation(verbs::WATCH) && caps.supports_operation(verbs::PATCH));
    let core = discovery.get("").expect("the core group");
    assert!(core
        .recommended_resources()
        .iter()
        .any(|(r, _)| r.kind == "ConfigMap"));
}

#[tokio::test]
async fn version_reports_a_real_kubernetes_git_version() {
    let s = InProcess::start().await;
    let info = s.client.apiserver_version().await.unwrap();
    assert_eq!(
        (info.major.as_str(), info.minor.as_str()),
        ("1", "33"),
        "{info:?}"
    );
    assert!(
        info.git_version.starts_with("v1.33."),
        "{}",
        info.git_version
    );
}

#[tokio::test]
async fn pods_print_as_a_table_with_upstreams_columns() {
    let s = InProcess::start().await;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();

    let req = http::Request::get("/api/v1/namespaces/default/pods")
        .header("accept", "application/json;as=Table;g=meta.k8s.io;v=v1")
        .body(Vec::new())
        .unwrap();
    let table: Value = serde_json::from_str(&s.client.request_text(req).await.unwrap()).unwrap();
    assert_eq!(
        (table["kind"].as_str(), table["apiVersion"].as_str()),
        (Some("Table"), Some("meta.k8s.io/v1")),
        "{table}"
    );
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns[..5],
        ["Name", "Ready", "Status", "Restarts", "Age"],
        "{columns:?}"
    );
    let rows = table["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let cells = rows[0]["cells"].as_array().unwrap();
    assert_eq!(
        (cells[0].as_str(), cells[1].as_str(), cells[2].as_str()),
        (Some("p"), Some("0/2"), Some("Pending")),
        "{cells:?}"
    );
    assert_eq!(cells[3], json!("0"), "{cells:?}");
}
