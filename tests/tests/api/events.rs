//! core/v1 Event and events.k8s.io/v1 Event are two views of one store, as upstream
//! serves them: what kube-rs's event recorder writes (events.k8s.io) is what
//! `kubectl get events` and `kubectl events` list (core), with upstream's field mapping.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent};
use k8s_openapi::api::events::v1::Event as EventsEvent;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Resource;
use serde_json::json;

use crate::common::{Cluster, InProcess};
use crate::configmap;

fn core_event(name: &str) -> CoreEvent {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "involvedObject": {"kind": "ConfigMap", "namespace": "default", "name": "cfg", "apiVersion": "v1"},
        "reason": "Updated",
        "message": "the config changed",
        "type": "Warning",
        "source": {"component": "old-controller", "host": "node-1"},
        "count": 4,
        "firstTimestamp": "2025-01-01T00:00:00Z",
        "lastTimestamp": "2025-01-01T00:05:00Z",
        "reportingComponent": "old-controller",
        "reportingInstance": "node-1",
        "action": "Update"
    }))
    .unwrap()
}

fn events_event(name: &str) -> EventsEvent {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "regarding": {"kind": "ConfigMap", "namespace": "default", "name": "cfg", "apiVersion": "v1"},
        "reason": "Synced",
        "note": "synced the config",
        "type": "Normal",
        "eventTime": "2025-01-01T00:00:00.000000Z",
        "reportingController": "example.com/ctl",
        "reportingInstance": "ctl-0",
        "action": "Reconcile"
    }))
    .unwrap()
}

// kubectl blocks this thread while the in-process server answers it from another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_kube_rs_recorder_publishes_is_a_core_event_kubectl_lists() {
    let c = Cluster::builder("recorded").start().await;
    let cm = c
        .api::<ConfigMap>()
        .create(&PostParams::default(), &configmap("cfg", json!({})))
        .await
        .unwrap();
    let recorder = Recorder::new(
        c.client.clone(),
        Reporter {
            controller: "example.com/ctl".into(),
            instance: Some("ctl-0".into()),
        },
    );
    let event = Event {
        type_: EventType::Warning,
        reason: "ConfigInvalid".into(),
        note: Some("key x is not a number".into()),
        action: "Validate".into(),
        secondary: None,
    };
    // The second publication is the recorder's merge patch of the same event's series.
    for _ in 0..2 {
        recorder.publish(&event, &cm.object_ref(&())).await.unwrap();
    }

    let listed = c
        .api::<CoreEvent>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1, "{listed:?}");
    let e = &listed.items[0];
    assert_eq!(e.message.as_deref(), Some("key x is not a number"));
    assert_eq!(e.involved_object.kind.as_deref(), Some("ConfigMap"));
    assert_eq!(e.involved_object.name.as_deref(), Some("cfg"));
    assert_eq!(e.reporting_component.as_deref(), Some("example.com/ctl"));
    assert_eq!(e.reporting_instance.as_deref(), Some("ctl-0"));
    assert_eq!(e.reason.as_deref(), Some("ConfigInvalid"));
    assert_eq!(e.action.as_deref(), Some("Validate"));
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert!(e.event_time.is_some(), "{e:?}");
    assert_eq!(e.series.as_ref().and_then(|s| s.count), Some(2), "{e:?}");

    let by_field = c
        .api::<CoreEvent>()
        .list(
            &ListParams::default()
                .fields("involvedObject.name=cfg,reportingComponent=example.com/ctl"),
        )
        .await
        .unwrap();
    assert_eq!(by_field.items.len(), 1, "core field selectors select it");

    let table = c.kubectl(&["get", "events"]);
    let row = table
        .lines()
        .find(|l| l.contains("configmap/cfg"))
        .unwrap_or_else(|| panic!("no row for configmap/cfg in:\n{table}"));
    for want in ["Warning", "ConfigInvalid", "key x is not a number"] {
        assert!(row.contains(want), "{want:?} missing from {row:?}");
    }
    let events = c.kubectl(&["events"]);
    assert!(
        events.contains("ConfigInvalid")
            && events.contains("ConfigMap/cfg")
            && events.contains("key x is not a number"),
        "{events}"
    );
}

#[tokio::test]
async fn a_core_event_reads_back_through_events_k8s_io_with_mapped_fields() {
    let s = InProcess::start().await;
    let core: Api<CoreEvent> = Api::namespaced(s.client.clone(), "default");
    let events: Api<EventsEvent> = Api::namespaced(s.client.clone(), "default");
    core.create(&PostParams::default(), &core_event("old"))
        .await
        .unwrap();

    let e = events.get("old").await.unwrap();
    assert_eq!(e.note.as_deref(), Some("the config changed"));
    let regarding = e.regarding.as_ref().expect("regarding");
    assert_eq!(regarding.kind.as_deref(), Some("ConfigMap"));
    assert_eq!(regarding.name.as_deref(), Some("cfg"));
    let source = e.deprecated_source.as_ref().expect("deprecatedSource");
    assert_eq!(source.component.as_deref(), Some("old-controller"));
    assert_eq!(source.host.as_deref(), Some("node-1"));
    assert_eq!(e.deprecated_count, Some(4));
    assert!(e.deprecated_first_timestamp.is_some() && e.deprecated_last_timestamp.is_some());
    assert_eq!(e.reporting_controller.as_deref(), Some("old-controller"));
    assert_eq!(e.reporting_instance.as_deref(), Some("node-1"));
    assert_eq!(e.reason.as_deref(), Some("Updated"));
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(e.action.as_deref(), Some("Update"));

    for (name, selector, want) in [
        (
            "regarding",
            "regarding.kind=ConfigMap,regarding.name=cfg",
            1,
        ),
        ("regarding_other", "regarding.name=other", 0),
        (
            "reporting_controller",
            "reportingController=old-controller",
            1,
        ),
        ("reason_and_type", "reason=Updated,type=Warning", 1),
    ] {
        let listed = events
            .list(&ListParams::default().fields(selector))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(listed.items.len(), want, "{name}");
    }

    // And an events.k8s.io write reads back through core/v1.
    events
        .create(&PostParams::default(), &events_event("new"))
        .await
        .unwrap();
    let e = core.get("new").await.unwrap();
    assert_eq!(e.message.as_deref(), Some("synced the config"));
    assert_eq!(e.involved_object.name.as_deref(), Some("cfg"));
    assert_eq!(e.reporting_component.as_deref(), Some("example.com/ctl"));
    assert_eq!(e.reporting_instance.as_deref(), Some("ctl-0"));
}

/// A watch of `api` from its current resourceVersion: it sees only what comes next.
async fn watch_from_now<K>(
    api: &Api<K>,
) -> futures::stream::BoxStream<'static, kube::Result<WatchEvent<K>>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    api.watch(&WatchParams::default().timeout(30), &rv)
        .await
        .unwrap()
        .boxed()
}

async fn next_event<K: Clone + serde::de::DeserializeOwned + std::fmt::Debug>(
    stream: &mut futures::stream::BoxStream<'static, kube::Result<WatchEvent<K>>>,
) -> WatchEvent<K> {
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.try_next())
        .await
        .expect("a watch event within 10s")
        .unwrap()
        .expect("stream open")
}

#[tokio::test]
async fn a_watch_on_either_version_sees_writes_through_the_other() {
    let s = InProcess::start().await;
    let core: Api<CoreEvent> = Api::namespaced(s.client.clone(), "default");
    let events: Api<EventsEvent> = Api::namespaced(s.client.clone(), "default");

    // Watch events.k8s.io, write through core/v1.
    let mut stream = watch_from_now(&events).await;
    core.create(&PostParams::default(), &core_event("via-core"))
        .await
        .unwrap();
    match next_event(&mut stream).await {
        WatchEvent::Added(e) => {
            assert_eq!(e.metadata.name.as_deref(), Some("via-core"));
            assert_eq!(e.note.as_deref(), Some("the config changed"));
        }
        other => panic!("expected ADDED, got {other:?}"),
    }

    // Watch core/v1, write through events.k8s.io.
    let mut stream = watch_from_now(&core).await;
    events
        .create(&PostParams::default(), &events_event("via-events"))
        .await
        .unwrap();
    match next_event(&mut stream).await {
        WatchEvent::Added(e) => {
            assert_eq!(e.metadata.name.as_deref(), Some("via-events"));
            assert_eq!(e.message.as_deref(), Some("synced the config"));
        }
        other => panic!("expected ADDED, got {other:?}"),
    }
}

#[tokio::test]
async fn deleting_an_event_through_either_version_deletes_it_for_both() {
    let s = InProcess::start().await;
    let core: Api<CoreEvent> = Api::namespaced(s.client.clone(), "default");
    let events: Api<EventsEvent> = Api::namespaced(s.client.clone(), "default");
    for (name, through_core) in [
        ("delete_through_core", true),
        ("delete_through_events", false),
    ] {
        let event = format!("gone-{}", through_core);
        core.create(&PostParams::default(), &core_event(&event))
            .await
            .unwrap();
        events
            .get(&event)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if through_core {
            core.delete(&event, &DeleteParams::default()).await.unwrap();
        } else {
            events
                .delete(&event, &DeleteParams::default())
                .await
                .unwrap();
        }
        for (version, code) in [
            ("core", crate::code(core.get(&event).await)),
            ("events.k8s.io", crate::code(events.get(&event).await)),
        ] {
            assert_eq!(code, 404, "{name}: still found through {version}");
        }
    }
}
