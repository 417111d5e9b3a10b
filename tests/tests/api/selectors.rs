//! Filtering and paging lists: label selectors, field selectors, limit/continue, and a
//! continue token that outlives its revision.

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::common::{Backend, InProcess};
use crate::{code, configmap, status};

async fn labelled(api: &Api<ConfigMap>, name: &str, labels: serde_json::Value) {
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
}

async fn names(api: &Api<ConfigMap>, lp: &ListParams) -> Vec<String> {
    let mut names: Vec<String> = api
        .list(lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn label_selectors_filter_lists_by_equality_and_by_set() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    labelled(&api, "web-prod", json!({"app": "web", "env": "prod"})).await;
    labelled(&api, "web-dev", json!({"app": "web", "env": "dev"})).await;
    labelled(&api, "db-prod", json!({"app": "db", "env": "prod"})).await;
    labelled(&api, "bare", json!({})).await;

    let cases = [
        ("app=web", vec!["web-dev", "web-prod"]),
        ("app==web,env=prod", vec!["web-prod"]),
        ("app!=web", vec!["bare", "db-prod"]),
        ("env in (prod,staging)", vec!["db-prod", "web-prod"]),
        ("env notin (prod)", vec!["bare", "web-dev"]),
        ("app", vec!["db-prod", "web-dev", "web-prod"]),
        ("!app", vec!["bare"]),
    ];
    for (selector, want) in cases {
        assert_eq!(
            names(&api, &ListParams::default().labels(selector)).await,
            want,
            "selector {selector}"
        );
    }
    assert_eq!(
        code(api.list(&ListParams::default().labels("app in web")).await),
        400,
        "malformed selector"
    );
}

#[tokio::test]
async fn field_selectors_filter_by_name_and_pods_by_node_and_phase() {
    let s = InProcess::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    labelled(&cms, "a", json!({})).await;
    labelled(&cms, "b", json!({})).await;
    assert_eq!(
        names(&cms, &ListParams::default().fields("metadata.name=b")).await,
        ["b"]
    );
    assert_eq!(
        names(&cms, &ListParams::default().fields("metadata.name!=b")).await,
        ["a"]
    );

    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    for (name, node) in [("p1", "n1"), ("p2", "n2"), ("p3", "n1")] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let mut running = pods.get_status("p3").await.unwrap();
    running.status.get_or_insert_with(Default::default).phase = Some("Running".into());
    pods.replace_status("p3", &PostParams::default(), &running)
        .await
        .unwrap();

    let pod_names = |lp: ListParams| {
        let pods = pods.clone();
        async move {
            let mut n: Vec<String> = pods
                .list(&lp)
                .await
                .unwrap()
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect();
            n.sort();
            n
        }
    };
    assert_eq!(
        pod_names(ListParams::default().fields("spec.nodeName=n1")).await,
        ["p1", "p3"]
    );
    assert_eq!(
        pod_names(ListParams::default().fields("status.phase=Running")).await,
        ["p3"]
    );
    assert_eq!(
        pod_names(ListParams::default().fields("spec.nodeName=n1,status.phase!=Running")).await,
        ["p1"]
    );
    assert_eq!(
        code(
            pods.list(&ListParams::default().fields("spec.bogus=x"))
                .await
        ),
        400,
        "unsupported field"
    );
}

async fn pages_cover_every_object_once(backend: Backend) {
    let s = InProcess::start_on(backend).await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    for i in 0..7 {
        api.create(
            &PostParams::default(),
            &configmap(&format!("cm-{i}"), json!({})),
        )
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().limit(3);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await.unwrap();
        assert!(page.items.len() <= 3);
        pages += 1;
        seen.extend(page.items.into_iter().filter_map(|c| c.metadata.name));
        if pages == 1 {
            // Written between pages: a paged list is a snapshot, so this is not seen.
            api.create(&PostParams::default(), &configmap("cm-late", json!({})))
                .await
                .unwrap();
        }
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    let want: Vec<String> = (0..7).map(|i| format!("cm-{i}")).collect();
    assert_eq!(
        seen, want,
        "{backend:?}: every object once, in order, at the first page's revision"
    );
    assert_eq!(pages, 3, "{backend:?}");
}

#[tokio::test]
async fn limit_and_continue_page_through_a_snapshot_on_embedded_storage() {
    pages_cover_every_object_once(Backend::Embedded).await;
}

#[tokio::test]
async fn limit_and_continue_page_through_a_snapshot_on_etcd() {
    pages_cover_every_object_once(Backend::Etcd).await;
}

async fn continue_token_after_compaction_is_gone(backend: Backend) {
    let s = InProcess::start_on(backend).await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    for i in 0..4 {
        api.create(
            &PostParams::default(),
            &configmap(&format!("cm-{i}"), json!({})),
        )
        .await
        .unwrap();
    }
    let page = api.list(&ListParams::default().limit(2)).await.unwrap();
    let token = page.metadata.continue_.expect("more pages");
    let last = api
        .create(&PostParams::default(), &configmap("cm-new", json!({})))
        .await
        .unwrap();
    let rev: i64 = last.metadata.resource_version.unwrap().parse().unwrap();
    s.server.api.storage.compact(rev).await.unwrap();

    let st = status(
        api.list(&ListParams::default().limit(2).continue_token(&token))
            .await,
    );
    assert_eq!(
        (st.code, st.reason.as_str()),
        (410, "Expired"),
        "{backend:?}: {st:?}"
    );
}

#[tokio::test]
async fn a_continue_token_older_than_compaction_is_gone_on_embedded_storage() {
    continue_token_after_compaction_is_gone(Backend::Embedded).await;
}

#[tokio::test]
async fn a_continue_token_older_than_compaction_is_gone_on_etcd() {
    continue_token_after_compaction_is_gone(Backend::Etcd).await;
}
