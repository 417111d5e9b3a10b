//! CustomResourceDefinitions as kube-rs users write them: derived with
//! `#[derive(CustomResource)]`, applied server-side, validated against their schema,
//! printed as Tables, served in several versions and removed with their objects.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::common::InProcess;
use crate::status;

/// A widget as a kube-rs operator defines it: the CRD comes from this type.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    scale(
        spec_replicas_path = ".spec.size",
        status_replicas_path = ".status.size"
    ),
    printcolumn(name = "Color", type_ = "string", json_path = ".spec.color"),
    printcolumn(name = "Size", type_ = "integer", json_path = ".spec.size")
)]
pub(crate) struct WidgetSpec {
    color: String,
    #[schemars(range(min = 1, max = 10))]
    size: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub(crate) struct WidgetStatus {
    ready: bool,
    size: i32,
}

const WIDGETS: &str = "widgets.example.com";

/// Creates the Widget CRD and waits, as an operator does, until it is Established.
async fn install_widget_crd(client: &Client) -> CustomResourceDefinition {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Widget::crd())
        .await
        .unwrap();
    let established = await_condition(crds.clone(), WIDGETS, conditions::is_crd_established());
    tokio::time::timeout(Duration::from_secs(10), established)
        .await
        .expect("the CRD is Established within 10s")
        .unwrap()
        .expect("the CRD still exists")
}

fn widget(name: &str, color: &str, size: i32) -> Widget {
    Widget::new(
        name,
        WidgetSpec {
            color: color.into(),
            size,
        },
    )
}

fn ssa() -> PatchParams {
    PatchParams::apply("mgr").force()
}

#[tokio::test]
async fn a_derived_crd_is_established_and_its_objects_and_status_are_applied_server_side() {
    let s = InProcess::start().await;
    let crd = install_widget_crd(&s.client).await;
    let conditions = crd.status.unwrap().conditions.unwrap();
    let established = conditions
        .iter()
        .find(|c| c.type_ == "Established")
        .unwrap();
    assert_eq!(established.status, "True");

    let api: Api<Widget> = Api::namespaced(s.client.clone(), "default");
    let applied = api
        .patch("w1", &ssa(), &Patch::Apply(widget("w1", "red", 3)))
        .await
        .unwrap();
    assert_eq!(
        applied.spec,
        WidgetSpec {
            color: "red".into(),
            size: 3
        }
    );
    assert!(applied.status.is_none(), "a new object has no status");

    let status = json!({
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "status": {"ready": true, "size": 3}
    });
    let with_status = api
        .patch_status("w1", &ssa(), &Patch::Apply(status))
        .await
        .unwrap();
    assert_eq!(
        with_status.status,
        Some(WidgetStatus {
            ready: true,
            size: 3
        })
    );
    assert_eq!(
        with_status.spec.color, "red",
        "a status apply keeps the spec"
    );

    // Re-applying the spec leaves the status alone, and each write has its own entry.
    let again = api
        .patch("w1", &ssa(), &Patch::Apply(widget("w1", "green", 3)))
        .await
        .unwrap();
    assert_eq!(again.spec.color, "green");
    assert_eq!(
        again.status,
        Some(WidgetStatus {
            ready: true,
            size: 3
        })
    );
    let entries: Vec<(String, Option<String>)> = again
        .managed_fields()
        .iter()
        .map(|m| {
            (
                m.operation.clone().unwrap_or_default(),
                m.subresource.clone(),
            )
        })
        .collect();
    assert!(entries.contains(&("Apply".into(), None)), "{entries:?}");
    assert!(
        entries.contains(&("Apply".into(), Some("status".into()))),
        "{entries:?}"
    );
}

#[tokio::test]
async fn an_object_breaking_the_derived_schema_is_rejected_with_upstreams_message() {
    let s = InProcess::start().await;
    install_widget_crd(&s.client).await;
    let api: Api<Widget> = Api::namespaced(s.client.clone(), "default");

    let too_big = status(
        api.patch("big", &ssa(), &Patch::Apply(widget("big", "red", 11)))
            .await,
    );
    assert_eq!(too_big.code, 422, "{too_big:?}");
    assert!(
        too_big.message.contains(
            "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"
        ),
        "{}",
        too_big.message
    );

    let wrong_type = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "typed"}, "spec": {"color": 5, "size": 2}});
    let err = status(api.patch("typed", &ssa(), &Patch::Apply(wrong_type)).await);
    assert_eq!(err.code, 422, "{err:?}");
    assert!(
        err.message.contains(
            "spec.color: Invalid value: \"integer\": spec.color in body must be of type string"
        ),
        "{}",
        err.message
    );

    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "nothing invalid was stored"
    );
}

#[tokio::test]
async fn a_replicas_value_set_through_scale_conflicts_with_a_later_apply() {
    let s = InProcess::start().await;
    install_widget_crd(&s.client).await;
    let api: Api<Widget> = Api::namespaced(s.client.clone(), "default");
    api.patch(
        "w",
        &PatchParams::apply("mgr"),
        &Patch::Apply(widget("w", "red", 2)),
    )
    .await
    .unwrap();

    let scale = api
        .patch_scale(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(5));
    assert_eq!(api.get("w").await.unwrap().spec.size, 5);

    let conflict = status(
        api.patch(
            "w",
            &PatchParams::apply("mgr"),
            &Patch::Apply(widget("w", "red", 2)),
        )
        .await,
    );
    assert_eq!(conflict.code, 409, "{conflict:?}");
    assert!(
        conflict
            .message
            .starts_with("Apply failed with 1 conflict: conflict with"),
        "{}",
        conflict.message
    );
    assert!(
        conflict.message.ends_with(".spec.size"),
        "{}",
        conflict.message
    );

    let forced = api
        .patch("w", &ssa(), &Patch::Apply(widget("w", "red", 2)))
        .await
        .unwrap();
    assert_eq!(forced.spec.size, 2);
}

#[tokio::test]
async fn a_crd_with_printer_columns_is_served_as_a_table() {
    let s = InProcess::start().await;
    install_widget_crd(&s.client).await;
    let api: Api<Widget> = Api::namespaced(s.client.clone(), "default");
    api.patch("t1", &ssa(), &Patch::Apply(widget("t1", "teal", 4)))
        .await
        .unwrap();

    let req = http::Request::get("/apis/example.com/v1/namespaces/default/widgets")
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let table: Value = s.client.request(req).await.unwrap();
    assert_eq!(table["kind"], "Table", "{table}");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    // Upstream adds Age only to CRDs that declare no columns of their own.
    assert_eq!(columns, ["Name", "Color", "Size"], "{table}");
    let cells = &table["rows"][0]["cells"];
    assert_eq!(
        (&cells[0], &cells[1], &cells[2]),
        (&json!("t1"), &json!("teal"), &json!(4)),
        "{table}"
    );
}

#[tokio::test]
async fn every_served_version_reads_the_same_objects_from_one_storage_version() {
    let s = InProcess::start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(s.client.clone());
    let schema = json!({"openAPIV3Schema": {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {"color": {"type": "string"}}}
    }}});
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "gizmos.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo", "listKind": "GizmoList"},
            "versions": [
                {"name": "v1alpha1", "served": true, "storage": false, "schema": schema},
                {"name": "v1beta1", "served": false, "storage": false, "schema": schema},
                {"name": "v1", "served": true, "storage": true, "schema": schema}
            ]
        }
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let stored = crds.get("gizmos.example.com").await.unwrap();
    assert_eq!(
        stored.status.unwrap().stored_versions,
        Some(vec!["v1".to_string()])
    );

    let path = |v: &str| format!("/apis/example.com/{v}/namespaces/default/gizmos");
    let create = http::Request::post(path("v1alpha1"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!({"apiVersion": "example.com/v1alpha1", "kind": "Gizmo", "metadata": {"name": "g"}, "spec": {"color": "red"}})).unwrap())
        .unwrap();
    let created: Value = s.client.request(create).await.unwrap();
    assert_eq!(created["apiVersion"], "example.com/v1alpha1");

    let get = |v: &str| {
        http::Request::get(format!("{}/g", path(v)))
            .body(Vec::new())
            .unwrap()
    };
    let through_v1: Value = s.client.request(get("v1")).await.unwrap();
    assert_eq!(through_v1["apiVersion"], "example.com/v1");
    assert_eq!(through_v1["spec"]["color"], "red");
    assert_eq!(through_v1["metadata"]["uid"], created["metadata"]["uid"]);

    let unserved = s.client.request::<Value>(get("v1beta1")).await;
    assert_eq!(
        crate::code(unserved),
        404,
        "a version with served: false is not served"
    );
}

#[tokio::test]
async fn deleting_a_crd_deletes_its_objects_and_stops_serving_them() {
    let s = InProcess::start().await;
    let uid = install_widget_crd(&s.client).await.uid().unwrap();
    let api: Api<Widget> = Api::namespaced(s.client.clone(), "default");
    for name in ["a", "b"] {
        api.patch(name, &ssa(), &Patch::Apply(widget(name, "red", 1)))
            .await
            .unwrap();
    }

    let crds: Api<CustomResourceDefinition> = Api::all(s.client.clone());
    crds.delete(WIDGETS, &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        await_condition(crds.clone(), WIDGETS, conditions::is_deleted(&uid)),
    )
    .await
    .expect("the CRD is gone within 10s")
    .unwrap();
    assert_eq!(crate::code(api.list(&ListParams::default()).await), 404);

    // The same CRD created again starts empty: the old objects went with the old CRD.
    install_widget_crd(&s.client).await;
    let again = api.list(&ListParams::default()).await.unwrap();
    assert!(
        again.items.is_empty(),
        "{:?}",
        again
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_deleted_crd_terminates_until_its_objects_finalizers_are_removed() {
    let s = InProcess::start().await;
    let uid = install_widget_crd(&s.client).await.uid().unwrap();
    let api: Api<Widget> = Api::namespaced(s.client.clone(), "default");
    api.patch("free", &ssa(), &Patch::Apply(widget("free", "red", 1)))
        .await
        .unwrap();
    let mut held = widget("held", "blue", 2);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &held).await.unwrap();

    let crds: Api<CustomResourceDefinition> = Api::all(s.client.clone());
    crds.delete(WIDGETS, &DeleteParams::default())
        .await
        .unwrap();

    // The object without finalizers goes; the held one is only marked deleted, and
    // the CRD waits for it, saying so.
    crate::common::eventually("the unheld widget to be deleted", || async {
        match api.get_opt("free").await.unwrap() {
            None => Ok(()),
            Some(w) => Err(format!("{:?}", w.metadata)),
        }
    })
    .await;
    let marked = crate::common::eventually("the held widget to be marked deleted", || async {
        let w = api.get("held").await.unwrap();
        match w.metadata.deletion_timestamp {
            Some(_) => Ok(w),
            None => Err(format!("{:?}", w.metadata)),
        }
    })
    .await;
    assert_eq!(marked.finalizers(), ["example.com/hold"]);
    let crd = crds.get(WIDGETS).await.unwrap();
    assert!(crd.metadata.deletion_timestamp.is_some());
    assert_eq!(
        crd.finalizers(),
        ["customresourcecleanup.apiextensions.k8s.io"]
    );
    let terminating = crd
        .status
        .as_ref()
        .and_then(|st| st.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Terminating"))
        .cloned()
        .expect("a Terminating condition");
    assert_eq!(
        (terminating.status.as_str(), terminating.reason.as_deref()),
        ("True", Some("InstanceDeletionInProgress"))
    );

    // No new object while the CRD terminates: upstream's Forbidden.
    let refused = status(
        api.create(&PostParams::default(), &widget("late", "red", 1))
            .await,
    );
    assert_eq!(refused.code, 403);
    assert_eq!(
        refused.message,
        "widgets.example.com \"late\" is forbidden: create not allowed while custom resource definition is terminating"
    );

    // The finalizer's owner finishes: the object goes, and the CRD after it.
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    tokio::time::timeout(
        Duration::from_secs(20),
        await_condition(crds.clone(), WIDGETS, conditions::is_deleted(&uid)),
    )
    .await
    .expect("the CRD is gone within 20s of its last object")
    .unwrap();
}
