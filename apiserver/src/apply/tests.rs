//! Unit tests of server-side apply and managedFields tracking.

use serde_json::{json, Value};

use super::*;

const T1: &str = "2026-01-01T00:00:00Z";
const T2: &str = "2026-01-01T00:01:00Z";

fn builtin() -> SchemaFromOpenApi {
    SchemaFromOpenApi::new(None).with_fallback(Box::new(builtin_list_type))
}

/// An object's first apply by `manager`, at T1.
fn created(obj: &Value, manager: &str) -> Value {
    apply(&Value::Null, obj, manager, false, &builtin(), T1).unwrap()
}

/// An object created by an update (not an apply) from `manager`, at T1.
fn updated_first(obj: &Value, manager: &str) -> Value {
    track_update(&Value::Null, obj, manager, None, &builtin(), T1)
}

fn entries(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn entry(obj: &Value, manager: &str) -> Value {
    entries(obj)
        .into_iter()
        .find(|e| e["manager"] == manager)
        .unwrap_or(Value::Null)
}

fn cm(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d"}, "data": data})
}

fn deploy(replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"app": "web"}},
           "spec": {"replicas": replicas}})
}

#[test]
fn first_apply_creates_managed_fields() {
    let out = created(&deploy(2), "kubectl");
    assert_eq!(out["spec"]["replicas"], 2);
    assert_eq!(
        entries(&out),
        vec![
            json!({"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": T1,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:replicas": {}}}})
        ]
    );
}

#[test]
fn reapply_with_field_removed_removes_it() {
    let s = builtin();
    let live = created(&cm(json!({"a": "1", "b": "2"})), "m");
    let out = apply(&live, &cm(json!({"a": "1"})), "m", false, &s, T2).unwrap();
    assert_eq!(out["data"], json!({"a": "1"}));
    assert_eq!(entry(&out, "m")["fieldsV1"], json!({"f:data": {"f:a": {}}}));
    assert_eq!(entry(&out, "m")["time"], T2);
    // Dropping the last key removes the emptied map too.
    let mut none = cm(json!({}));
    none.as_object_mut().unwrap().remove("data");
    let out = apply(&out, &none, "m", false, &s, T2).unwrap();
    assert!(out.get("data").is_none(), "{out}");
    assert!(out.pointer("/metadata/managedFields").is_none());
}

#[test]
fn reapply_keeps_removed_field_another_manager_owns() {
    let s = builtin();
    let live = created(&cm(json!({"a": "1", "b": "2"})), "m");
    let live = apply(&live, &cm(json!({"b": "2"})), "other", false, &s, T1).unwrap();
    let out = apply(&live, &cm(json!({"a": "1"})), "m", false, &s, T2).unwrap();
    assert_eq!(out["data"], json!({"a": "1", "b": "2"}));
}

#[test]
fn two_managers_same_field_conflict_with_upstream_message() {
    let s = builtin();
    let created = updated_first(&deploy(1), "kubectl-client-side-apply");
    let err = apply(&created, &deploy(3), "kubectl", false, &s, T2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    let ApplyError::Conflict(c) = err else {
        panic!()
    };
    assert_eq!(c[0].field, ".spec.replicas");
    assert_eq!(
        c[0].cause_message(),
        "conflict with \"kubectl-client-side-apply\" using apps/v1"
    );

    // Setting the same value is not a conflict: ownership is shared.
    let out = apply(&created, &deploy(1), "kubectl", false, &s, T2).unwrap();
    assert_eq!(
        entry(&out, "kubectl")["fieldsV1"]["f:spec"],
        json!({"f:replicas": {}})
    );
    assert_eq!(
        entry(&out, "kubectl-client-side-apply")["fieldsV1"]["f:spec"],
        json!({"f:replicas": {}})
    );
}

#[test]
fn multiple_conflicts_are_grouped_by_manager() {
    let s = builtin();
    let live = updated_first(&cm(json!({"a": "1", "b": "2"})), "mgr");
    let live = apply(&live, &cm(json!({"c": "3"})), "applier", false, &s, T1).unwrap();
    let err = apply(
        &live,
        &cm(json!({"a": "x", "b": "y", "c": "z"})),
        "me",
        false,
        &s,
        T2,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 3 conflicts: conflicts with \"applier\":\n- .data.c\nconflicts with \"mgr\" using v1:\n- .data.a\n- .data.b"
    );
    let two = apply(&live, &cm(json!({"a": "x", "b": "y"})), "me", false, &s, T2).unwrap_err();
    assert_eq!(
        two.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"mgr\" using v1:\n- .data.a\n- .data.b"
    );
}

#[test]
fn force_takes_ownership() {
    let s = builtin();
    let live = created(&deploy(1), "a");
    let out = apply(&live, &deploy(5), "b", true, &s, T2).unwrap();
    assert_eq!(out["spec"]["replicas"], 5);
    // "a" keeps the label it shares, loses replicas.
    assert_eq!(
        entry(&out, "a")["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:app": {}}}})
    );
    assert_eq!(
        entry(&out, "b")["fieldsV1"]["f:spec"],
        json!({"f:replicas": {}})
    );
    // Now "a" conflicts with "b", an applier, printed without apiVersion.
    let err = apply(&out, &deploy(1), "a", false, &s, T2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"b\": .spec.replicas"
    );
}

fn pod(containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}})
}

#[test]
fn apply_merges_containers_by_name_and_keeps_other_managers_container() {
    let s = builtin();
    let live = created(&pod(json!([{"name": "web", "image": "nginx:1"}])), "a");
    let live = apply(
        &live,
        &pod(json!([{"name": "sidecar", "image": "envoy"}])),
        "b",
        false,
        &s,
        T1,
    )
    .unwrap();
    let out = apply(
        &live,
        &pod(json!([{"name": "web", "image": "nginx:2"}])),
        "a",
        false,
        &s,
        T2,
    )
    .unwrap();
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "web", "image": "nginx:2"}, {"name": "sidecar", "image": "envoy"}])
    );
    assert_eq!(
        entry(&out, "a")["fieldsV1"],
        json!({"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}}})
    );
    // "a" applying no containers removes only its own.
    let out = apply(&out, &pod(json!([])), "a", false, &s, T2).unwrap();
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "sidecar", "image": "envoy"}])
    );
}

fn crd_schema() -> SchemaFromOpenApi {
    SchemaFromOpenApi::new(Some(
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "args": {"type": "array", "items": {"type": "string"}}}}}}),
    ))
}

fn widget(spec: Value) -> Value {
    json!({"apiVersion": "x.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec})
}

#[test]
fn set_list_union() {
    let s = crd_schema();
    let live = apply(
        &Value::Null,
        &widget(json!({"tags": ["a", "b"]})),
        "m1",
        false,
        &s,
        T1,
    )
    .unwrap();
    let live = apply(
        &live,
        &widget(json!({"tags": ["b", "c"]})),
        "m2",
        false,
        &s,
        T1,
    )
    .unwrap();
    assert_eq!(live["spec"]["tags"], json!(["a", "b", "c"]));
    assert_eq!(
        entry(&live, "m2")["fieldsV1"],
        json!({"f:spec": {"f:tags": {"v:\"b\"": {}, "v:\"c\"": {}}}})
    );
    // m1 dropping "b" keeps it (m2 owns it); dropping "a" removes it.
    let out = apply(&live, &widget(json!({"tags": []})), "m1", false, &s, T2).unwrap();
    assert_eq!(out["spec"]["tags"], json!(["b", "c"]));
}

#[test]
fn associative_lists_merge_in_upstream_order() {
    let s = crd_schema();
    let merged = |live: Value, applied: Value| {
        let live = apply(
            &Value::Null,
            &widget(json!({"tags": live})),
            "other",
            false,
            &s,
            T1,
        )
        .unwrap();
        apply(
            &live,
            &widget(json!({"tags": applied})),
            "me",
            false,
            &s,
            T2,
        )
        .unwrap()["spec"]["tags"]
            .clone()
    };
    assert_eq!(
        merged(json!(["a", "b", "c"]), json!(["c", "d"])),
        json!(["a", "b", "c", "d"])
    );
    assert_eq!(
        merged(json!(["a", "b"]), json!(["b", "a"])),
        json!(["b", "a"])
    );
    assert_eq!(
        merged(json!(["x", "a", "y", "b"]), json!(["b", "new", "a"])),
        json!(["x", "y", "b", "new", "a"])
    );
}

#[test]
fn atomic_list_replaced() {
    let s = crd_schema();
    let live = apply(
        &Value::Null,
        &widget(json!({"args": ["x", "y"]})),
        "m",
        false,
        &s,
        T1,
    )
    .unwrap();
    let out = apply(&live, &widget(json!({"args": ["z"]})), "m", false, &s, T2).unwrap();
    assert_eq!(out["spec"]["args"], json!(["z"]));
    assert_eq!(
        entry(&out, "m")["fieldsV1"],
        json!({"f:spec": {"f:args": {}}})
    );
    // Another manager changing an atomic list it does not own conflicts as a whole.
    let err = apply(&out, &widget(json!({"args": ["q"]})), "n", false, &s, T2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"m\": .spec.args"
    );
}

#[test]
fn update_entry_records_changed_fields() {
    let s = builtin();
    let created = updated_first(&cm(json!({"a": "1"})), "kubectl-create");
    assert_eq!(
        entry(&created, "kubectl-create"),
        json!({"manager": "kubectl-create", "operation": "Update", "apiVersion": "v1", "time": T1,
               "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}})
    );
    let mut edited = created.clone();
    edited["data"] = json!({"a": "2", "b": "3"});
    let out = track_update(&created, &edited, "kubectl-edit", None, &s, T2);
    // The edit took "a" from kubectl-create, whose entry became empty and went away.
    assert!(entry(&out, "kubectl-create").is_null());
    assert_eq!(
        entry(&out, "kubectl-edit")["fieldsV1"],
        json!({"f:data": {"f:a": {}, "f:b": {}}})
    );
    // A no-op write records nothing.
    assert_eq!(track_update(&out, &out, "x", None, &s, T2), out);
    // An empty managedFields list in the request resets tracking to this write's changes.
    let mut reset = out.clone();
    reset["metadata"]["managedFields"] = json!([]);
    reset["data"]["c"] = json!("4");
    let r = track_update(&out, &reset, "y", None, &s, T2);
    assert_eq!(entries(&r).len(), 1);
    assert_eq!(entry(&r, "y")["fieldsV1"], json!({"f:data": {"f:c": {}}}));
}

#[test]
fn update_that_only_removes_records_no_entry() {
    let s = builtin();
    let created = updated_first(&cm(json!({"a": "1", "b": "2"})), "creator");
    let mut smaller = created.clone();
    smaller["data"].as_object_mut().unwrap().remove("b");
    let out = track_update(&created, &smaller, "remover", None, &s, T2);
    assert!(entry(&out, "remover").is_null());
    assert_eq!(
        entry(&out, "creator")["fieldsV1"],
        json!({"f:data": {"f:a": {}}})
    );
    assert_eq!(entry(&out, "creator")["time"], T1);
    // Undecodable managedFields in the request fall back to the stored ones.
    let mut garbled = smaller.clone();
    garbled["metadata"]["managedFields"] = json!([{"manager": "x", "fieldsV1": {"bad": {}}}]);
    let out2 = track_update(&out, &garbled, "remover", None, &s, T2);
    assert_eq!(entries(&out2), entries(&out));
    // A subresource write ignores managedFields in the request.
    let mut forged = out.clone();
    forged["metadata"]["managedFields"] = json!([]);
    forged["status"] = json!({"ok": true});
    let out3 = track_update(&out, &forged, "kubelet", Some("status"), &s, T2);
    assert_eq!(entries(&out3).len(), 2);
    assert_eq!(
        entry(&out3, "kubelet")["fieldsV1"],
        json!({"f:status": {"f:ok": {}}})
    );
}

#[test]
fn managed_fields_round_trip_through_fields_v1() {
    let v1 = json!({"f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {"f:args": {"i:0": {}}, "f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {},
            "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}},
            "f:finalizers": {"v:\"a\"": {}}}});
    let set = FieldSet::from_fields_v1(&v1).unwrap();
    assert!(set.contains(&[
        PathElement::Field("spec".into()),
        PathElement::Field("containers".into()),
        PathElement::Key(vec![("name".into(), "\"web\"".into())]),
    ]));
    assert_eq!(set.to_fields_v1(), v1);
    // Encoding is canonical: "." first, then elements in order, keys of `k:` sorted.
    assert_eq!(
        serde_json::to_string(&set.to_fields_v1()).unwrap(),
        serde_json::to_string(&v1).unwrap()
    );
    let shuffled = json!({"f:b": {"f:y": {}, ".": {}}, "f:a": {"k:{\"z\":1,\"a\":\"x\"}": {}}});
    let text = serde_json::to_string(&FieldSet::from_fields_v1(&shuffled).unwrap().to_fields_v1())
        .unwrap();
    assert_eq!(
        text,
        r#"{"f:a":{"k:{\"a\":\"x\",\"z\":1}":{}},"f:b":{".":{},"f:y":{}}}"#
    );
    // Whole entries survive a decode/encode, and the stored object decodes to the same sets.
    let s = builtin();
    let live = created(&pod(json!([{"name": "web", "image": "nginx"}])), "a");
    let text = serde_json::to_string(&live).unwrap();
    let back: Value = serde_json::from_str(&text).unwrap();
    let again = apply(
        &back,
        &pod(json!([{"name": "web", "image": "nginx"}])),
        "a",
        false,
        &s,
        T2,
    )
    .unwrap();
    assert_eq!(again, live, "a no-op re-apply keeps the entry and its time");
    assert!(FieldSet::from_fields_v1(&json!({"x:1": {}})).is_err());
}

#[test]
fn status_apply_on_status_subresource_with_force() {
    let s = builtin();
    let live = created(&widget(json!({"size": 1})), "user");
    let mut with_status = live.clone();
    with_status["status"] =
        json!({"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]});
    let live = track_update(
        &live,
        &with_status,
        "old-controller",
        Some("status"),
        &s,
        T1,
    );
    assert_eq!(entry(&live, "old-controller")["subresource"], "status");

    // kube-rs style: only apiVersion, kind and status, forced, on /status.
    let body = json!({"apiVersion": "x.io/v1", "kind": "Widget",
        "status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}, "spec": {"size": 9}});
    let err = apply_to(&live, &body, "operator", Some("status"), false, &s, T2).unwrap_err();
    assert!(err.to_string().contains("conflicts with \"old-controller\" with subresource \"status\" using x.io/v1:\n- .status.phase\n- .status.conditions[type=\"Ready\"].status"), "{err}");
    let out = apply_to(&live, &body, "operator", Some("status"), true, &s, T2).unwrap();
    assert_eq!(out["status"]["phase"], "Ready");
    assert_eq!(
        out["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}])
    );
    assert_eq!(
        out["spec"],
        json!({"size": 1}),
        "spec is untouched by a status apply"
    );
    let op = entry(&out, "operator");
    assert_eq!(op["subresource"], "status");
    assert_eq!(op["operation"], "Apply");
    assert_eq!(op["fieldsV1"]["f:status"]["f:phase"], json!({}));
    assert!(op["fieldsV1"].get("f:spec").is_none());
    // The old controller lost the fields the operator took.
    let old = entry(&out, "old-controller");
    assert!(
        old.is_null() || old["fieldsV1"]["f:status"].get("f:phase").is_none(),
        "{old}"
    );
    assert_eq!(
        entry(&out, "user")["fieldsV1"],
        json!({"f:spec": {"f:size": {}}})
    );
}

#[test]
fn applied_managed_fields_are_rejected() {
    let mut body = cm(json!({"a": "1"}));
    body["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Apply"}]);
    let err = apply(&Value::Null, &body, "m", false, &builtin(), T1).unwrap_err();
    assert_eq!(
        err,
        ApplyError::BadRequest("metadata.managedFields must be nil".into())
    );
    assert!(matches!(
        apply(&Value::Null, &json!([]), "m", false, &builtin(), T1),
        Err(ApplyError::BadRequest(_))
    ));
}

#[test]
fn port_keys_default_protocol_and_duplicates_are_rejected() {
    let s = builtin();
    let live = pod(
        json!([{"name": "web", "image": "nginx", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]),
    );
    let live = updated_first(&live, "creator");
    let applied = pod(json!([{"name": "web", "ports": [{"containerPort": 80, "name": "http"}]}]));
    let out = apply(&live, &applied, "a", false, &s, T2).unwrap();
    assert_eq!(
        out["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80, "protocol": "TCP", "name": "http"}])
    );
    let fields = &entry(&out, "a")["fieldsV1"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
    assert_eq!(
        fields["f:ports"],
        json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:name": {}}})
    );
    // Re-applying without the port prunes it although the item never spelled out its protocol.
    let applied = pod(json!([{"name": "web"}]));
    let live2 = created(
        &pod(json!([{"name": "web", "ports": [{"containerPort": 81}]}])),
        "a",
    );
    let pruned = apply(&live2, &applied, "a", false, &s, T2).unwrap();
    assert_eq!(pruned["spec"]["containers"], json!([{"name": "web"}]));

    let dup = pod(json!([{"name": "web"}, {"name": "web"}]));
    let err = apply(&Value::Null, &dup, "a", false, &s, T1).unwrap_err();
    assert_eq!(
        err.to_string(),
        ".spec.containers: duplicate entries for key [name=\"web\"]"
    );
}

#[test]
fn default_manager_from_user_agent() {
    assert_eq!(
        default_manager("kubectl-edit/v1.30.0 (linux/amd64) kubernetes/abc"),
        "kubectl-edit"
    );
    assert_eq!(
        default_manager("kube-controller-manager/v1.30.0"),
        "kube-controller-manager"
    );
    assert_eq!(default_manager(""), "");
    assert_eq!(default_manager("a\tb/1"), "ab");
    assert_eq!(default_manager(&"x".repeat(300)).len(), 128);
}

#[test]
fn openapi_schema_list_types() {
    let s = SchemaFromOpenApi::new(Some(
        json!({"properties": {"spec": {"properties": {"items": {"type": "array",
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id", "zone"],
        "items": {"properties": {"labels": {"type": "object", "x-kubernetes-map-type": "atomic"}}}}}}}}),
    ));
    let f = |n: &str| PathElement::Field(n.into());
    assert_eq!(
        s.list_type(&[f("spec"), f("items")]),
        ListType::Map(vec!["id".into(), "zone".into()])
    );
    assert_eq!(s.list_type(&[f("spec"), f("other")]), ListType::Atomic);
    let item = PathElement::Key(vec![("id".into(), "1".into())]);
    assert!(s.is_atomic_map(&[f("spec"), f("items"), item, f("labels")]));
    assert_eq!(
        builtin_list_type(&[
            f("spec"),
            f("containers"),
            PathElement::Key(vec![]),
            f("ports")
        ]),
        Some(ListType::Map(vec![
            "containerPort".into(),
            "protocol".into()
        ]))
    );
    assert_eq!(
        builtin_list_type(&[f("spec"), f("ports")]),
        Some(ListType::Map(vec!["port".into(), "protocol".into()]))
    );
}
