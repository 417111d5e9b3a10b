//! List and watch semantics users rely on beyond plain CRUD: reads at an exact or a
//! minimum resourceVersion, watches that end after timeoutSeconds, deletecollection by
//! selector, and the status codes of requests the API does not take.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{json, Value};

use crate::common::InProcess;
use crate::{configmap, raw, status};

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

async fn get_json(s: &InProcess, uri: &str) -> Value {
    let text = s
        .client
        .request_text(raw("GET", uri, "application/json", Vec::new()))
        .await
        .expect(uri);
    serde_json::from_str(&text).expect("JSON body")
}

#[tokio::test]
async fn a_list_at_an_exact_resource_version_shows_the_past_and_not_older_than_the_present() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let first = api
        .create(&PostParams::default(), &configmap("a", json!({"v": "1"})))
        .await
        .unwrap();
    let old_rv = first.metadata.resource_version.clone().unwrap();
    let mut changed = first.clone();
    changed.data = Some([("v".to_string(), "2".to_string())].into());
    let now = api
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    let now_rv = now.metadata.resource_version.unwrap();

    let past = get_json(
        &s,
        &format!("{CONFIGMAPS}?resourceVersion={old_rv}&resourceVersionMatch=Exact"),
    )
    .await;
    assert_eq!(past["metadata"]["resourceVersion"], json!(old_rv));
    assert_eq!(
        past["items"][0]["data"]["v"], "1",
        "an Exact read shows the object as it was"
    );

    let present = get_json(
        &s,
        &format!("{CONFIGMAPS}?resourceVersion={now_rv}&resourceVersionMatch=NotOlderThan"),
    )
    .await;
    assert_eq!(present["items"][0]["data"]["v"], "2");
    let rv: i64 = present["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        rv >= now_rv.parse::<i64>().unwrap(),
        "NotOlderThan answered at {rv}, before {now_rv}"
    );

    let st = status(
        s.client
            .request_text(raw(
                "GET",
                &format!("{CONFIGMAPS}?resourceVersionMatch=Exact"),
                "application/json",
                Vec::new(),
            ))
            .await,
    );
    assert_eq!((st.code, st.reason.as_str()), (400, "BadRequest"), "{st:?}");
}

#[tokio::test]
async fn a_watch_with_timeout_seconds_ends_by_itself() {
    let s = InProcess::start().await;
    let started = Instant::now();
    let uri = format!("{CONFIGMAPS}?watch=true&timeoutSeconds=1");
    let body = tokio::time::timeout(
        Duration::from_secs(20),
        s.client
            .request_text(raw("GET", &uri, "application/json", Vec::new())),
    )
    .await
    .expect("the watch ended within 20 s")
    .expect("watch request");
    assert!(
        body.is_empty() || body.lines().all(|l| l.contains("\"type\"")),
        "{body}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "ended after {:?}, before its timeout",
        started.elapsed()
    );
}

#[tokio::test]
async fn deletecollection_deletes_only_what_the_selector_matches() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    for (name, tier) in [("a", "web"), ("b", "web"), ("c", "db")] {
        let mut cm = configmap(name, json!({}));
        cm.metadata.labels = Some([("tier".to_string(), tier.to_string())].into());
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("tier=web"),
    )
    .await
    .unwrap();
    let left: Vec<String> = api
        .list(&ListParams::default().labels("tier"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(left, vec!["c"]);
}

#[tokio::test]
async fn methods_and_media_types_the_api_does_not_take_get_405_and_415() {
    let s = InProcess::start().await;
    let st = status(
        s.client
            .request_text(raw("PUT", CONFIGMAPS, "application/json", "{}"))
            .await,
    );
    assert_eq!(
        (st.code, st.reason.as_str()),
        (405, "MethodNotAllowed"),
        "{st:?}"
    );
    let st = status(
        s.client
            .request_text(raw("POST", CONFIGMAPS, "text/plain", "name=x"))
            .await,
    );
    assert_eq!(
        (st.code, st.reason.as_str()),
        (415, "UnsupportedMediaType"),
        "{st:?}"
    );
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "a refused create wrote something"
    );
}
