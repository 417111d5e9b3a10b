//! Watches: resuming from a resourceVersion, kube-rs's watcher, and the initial-events
//! bookmark of streaming lists. (410 Gone after compaction is tested on continue tokens in
//! `selectors`: like upstream, a watch is served from the watch cache's own history, which
//! compaction of storage does not shorten.)

use std::time::Duration;

use futures::stream::BoxStream;
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde_json::{json, Value};

use crate::common::{Backend, InProcess};
use crate::configmap;

const WAIT: Duration = Duration::from_secs(10);

fn rv(cm: &ConfigMap) -> String {
    cm.metadata.resource_version.clone().unwrap()
}

async fn watch_resumes_from_a_resource_version(backend: Backend) {
    let s = InProcess::start_on(backend).await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let before = api
        .create(&PostParams::default(), &configmap("before", json!({})))
        .await
        .unwrap();
    let after = api
        .create(
            &PostParams::default(),
            &configmap("after", json!({"k": "v"})),
        )
        .await
        .unwrap();

    let mut stream = api
        .watch(&WatchParams::default().timeout(30), &rv(&before))
        .await
        .unwrap()
        .boxed();
    api.delete("before", &DeleteParams::default())
        .await
        .unwrap();

    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = tokio::time::timeout(WAIT, stream.try_next())
            .await
            .expect("an event within 10s")
            .unwrap()
            .expect("stream open");
        match event {
            WatchEvent::Added(cm) => {
                seen.push(("ADDED", cm.metadata.name.clone().unwrap(), rv(&cm)))
            }
            WatchEvent::Deleted(cm) => {
                seen.push(("DELETED", cm.metadata.name.clone().unwrap(), rv(&cm)))
            }
            WatchEvent::Bookmark(_) => {}
            other => panic!("{backend:?}: unexpected {other:?}"),
        }
    }
    assert_eq!(
        seen[0],
        ("ADDED", "after".to_string(), rv(&after)),
        "{backend:?}: only changes after the given version"
    );
    assert_eq!(
        (seen[1].0, seen[1].1.as_str()),
        ("DELETED", "before"),
        "{backend:?}"
    );
    assert!(
        seen[1].2.parse::<i64>().unwrap() > rv(&after).parse::<i64>().unwrap(),
        "{backend:?}: a delete has its own version"
    );
}

#[tokio::test]
async fn a_watch_from_a_resource_version_sees_every_later_change_on_embedded_storage() {
    watch_resumes_from_a_resource_version(Backend::Embedded).await;
}

#[tokio::test]
async fn a_watch_from_a_resource_version_sees_every_later_change_on_etcd() {
    watch_resumes_from_a_resource_version(Backend::Etcd).await;
}

#[tokio::test]
async fn kube_runtime_watcher_lists_then_follows_changes() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    api.create(&PostParams::default(), &configmap("existing", json!({})))
        .await
        .unwrap();
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut initial = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, events.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            watcher::Event::Init => {}
            watcher::Event::InitApply(cm) => initial.push(cm.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            other => panic!("unexpected {other:?} before InitDone"),
        }
    }
    assert_eq!(initial, ["existing"]);
    api.create(&PostParams::default(), &configmap("fresh", json!({})))
        .await
        .unwrap();
    match tokio::time::timeout(WAIT, events.try_next())
        .await
        .expect("the create within 10s")
        .unwrap()
        .unwrap()
    {
        watcher::Event::Apply(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("fresh")),
        other => panic!("expected Apply(fresh), got {other:?}"),
    }
}

#[tokio::test]
async fn streaming_initial_events_end_with_an_annotated_bookmark() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let a = api
        .create(&PostParams::default(), &configmap("a", json!({})))
        .await
        .unwrap();
    let b = api
        .create(&PostParams::default(), &configmap("b", json!({})))
        .await
        .unwrap();

    let uri = "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true\
               &resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=20";
    let req = http::Request::get(uri).body(Vec::new()).unwrap();
    let mut lines = s.client.request_stream(req).await.unwrap().lines();
    let mut added = Vec::new();
    let bookmark = loop {
        let line = tokio::time::timeout(WAIT, lines.next())
            .await
            .expect("a line within 10s")
            .expect("stream open")
            .unwrap();
        let event: Value = serde_json::from_str(&line).unwrap();
        match event["type"].as_str() {
            Some("ADDED") => added.push(
                event["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ),
            Some("BOOKMARK") => break event,
            other => panic!("unexpected event type {other:?}: {line}"),
        }
    };
    added.sort();
    assert_eq!(added, ["a", "b"]);
    let meta = &bookmark["object"]["metadata"];
    assert_eq!(
        meta["annotations"]["k8s.io/initial-events-end"], "true",
        "{bookmark}"
    );
    let at: i64 = meta["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(
        at >= rv(&b).parse().unwrap() && at >= rv(&a).parse().unwrap(),
        "bookmark at {at}"
    );

    // Changes after the bookmark follow on the same stream.
    api.create(&PostParams::default(), &configmap("c", json!({})))
        .await
        .unwrap();
    let line = tokio::time::timeout(WAIT, lines.next())
        .await
        .expect("the create within 10s")
        .unwrap()
        .unwrap();
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (
            event["type"].as_str(),
            event["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("c"))
    );
}

#[tokio::test]
async fn a_selector_watch_reports_objects_leaving_and_entering_the_selection() {
    let s = InProcess::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "mover", "labels": {"team": "a"}}}))
            .unwrap();
    let created = api.create(&PostParams::default(), &cm).await.unwrap();
    let mut stream = api
        .watch(
            &WatchParams::default().labels("team=a").timeout(30),
            &rv(&created),
        )
        .await
        .unwrap()
        .boxed();

    let patch = |team: &'static str| {
        let api = api.clone();
        async move {
            let p = kube::api::Patch::Merge(json!({"metadata": {"labels": {"team": team}}}));
            api.patch("mover", &kube::api::PatchParams::default(), &p)
                .await
                .unwrap();
        }
    };
    patch("b").await;
    let (kind, cm) = next_change(&mut stream).await;
    assert_eq!(
        kind, "DELETED",
        "leaving the selection is a DELETED event for the watcher"
    );
    assert_eq!(cm.metadata.labels.unwrap()["team"], "b");
    patch("a").await;
    assert_eq!(
        next_change(&mut stream).await.0,
        "ADDED",
        "coming back into the selection is an ADDED event"
    );
}

/// The next ADDED, MODIFIED or DELETED event of a watch, skipping bookmarks.
async fn next_change(
    stream: &mut BoxStream<'_, kube::Result<WatchEvent<ConfigMap>>>,
) -> (&'static str, ConfigMap) {
    loop {
        match tokio::time::timeout(WAIT, stream.try_next())
            .await
            .expect("an event within 10s")
            .unwrap()
            .expect("stream open")
        {
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Added(cm) => return ("ADDED", cm),
            WatchEvent::Modified(cm) => return ("MODIFIED", cm),
            WatchEvent::Deleted(cm) => return ("DELETED", cm),
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        }
    }
}
