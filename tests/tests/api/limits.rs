//! Upstream's limits on what a write may store: nesting depth, object size, JSON patch
//! operations and copies, YAML nesting, and an object's identity. Each refused write
//! gets a `Status` and changes nothing; everything that is accepted stays readable,
//! also after a restart.

use apiserver::json::{self, MAX_DEPTH};
use kube::Client;
use serde_json::{json, Value};

use crate::common::{client_from_kubeconfig, client_without_retries, Binary, InProcess};
use crate::{raw, status};

const BLOBS: &str = "/apis/example.com/v1/namespaces/default/blobs";
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

/// A CRD whose objects keep whatever their spec holds (x-kubernetes-preserve-unknown-fields),
/// so nothing but the server's own limits bounds their depth and size.
async fn install_blob_crd(client: &Client) {
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "blobs.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "blobs", "singular": "blob", "kind": "Blob", "listKind": "BlobList"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}
    });
    send(
        client,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "application/json",
        &crd.to_string(),
    )
    .await
    .expect("creating the blobs CRD");
}

/// `{"a": {"a": ... leaf ...}}`, `levels` objects deep.
fn nested(levels: usize, leaf: Value) -> Value {
    let mut v = leaf;
    for _ in 0..levels {
        v = json!({ "a": v });
    }
    v
}

/// The text of a nested object, built without recursion (serde_json would need a deep
/// stack to print a deep `Value`, which is what the server is tested on, not the test).
fn nested_text(levels: usize, leaf: &str) -> String {
    format!("{}{leaf}{}", "{\"a\":".repeat(levels), "}".repeat(levels))
}

fn blob_text(name: &str, spec_text: &str) -> String {
    format!(
        r#"{{"apiVersion":"example.com/v1","kind":"Blob","metadata":{{"name":"{name}"}},"spec":{spec_text}}}"#
    )
}

/// Sends a raw request; the body of a success, parsed with the server's own reader (a
/// deep object is beyond what serde_json reads by default).
async fn send(
    client: &Client,
    method: &str,
    uri: &str,
    content_type: &str,
    body: &str,
) -> Result<Value, kube::Error> {
    let text = client
        .request_text(raw(method, uri, content_type, body.as_bytes().to_vec()))
        .await?;
    Ok(json::from_stored(text.as_bytes()).expect("the server answers JSON it can read itself"))
}

async fn get(client: &Client, uri: &str) -> Value {
    let req = http::Request::get(uri).body(Vec::new()).unwrap();
    let text = client
        .request_text(req)
        .await
        .unwrap_or_else(|e| panic!("GET {uri}: {e}"));
    json::from_stored(text.as_bytes()).expect("readable JSON")
}

fn rv(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .expect("a resourceVersion")
        .to_string()
}

#[tokio::test]
async fn objects_nest_up_to_upstreams_depth_and_no_deeper() {
    let s = InProcess::start().await;
    install_blob_crd(&s.client).await;
    // The body is MAX_DEPTH deep: the object, its spec, and the nesting below it.
    let ok = blob_text("deep", &nested_text(MAX_DEPTH - 2, "1"));
    let created = send(&s.client, "POST", BLOBS, "application/json", &ok)
        .await
        .expect("10,000 levels are accepted");
    assert_eq!(json::depth(&created["spec"]), MAX_DEPTH - 2);
    let read = get(&s.client, &format!("{BLOBS}/deep")).await;
    assert_eq!(
        json::depth(&read["spec"]),
        MAX_DEPTH - 2,
        "the stored object reads back whole"
    );
    let listed = get(&s.client, &format!("{BLOBS}?resourceVersion=0")).await;
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(1),
        "the watch cache holds it"
    );

    let too_deep = blob_text("deeper", &nested_text(MAX_DEPTH, "1"));
    let st = status(send(&s.client, "POST", BLOBS, "application/json", &too_deep).await);
    assert_eq!((st.code, st.reason.as_str()), (400, "BadRequest"), "{st:?}");
    assert!(
        st.message.contains("exceeded max depth of 10000"),
        "{}",
        st.message
    );
    let listed = get(&s.client, BLOBS).await;
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(1),
        "the refused object was not stored"
    );
}

#[tokio::test]
async fn a_json_patch_that_doubles_an_objects_depth_stores_an_object_that_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let server = Binary::start(&dir.path().join("data"), 0, None);
    let client = client_from_kubeconfig(&server.kubeconfig).await;
    install_blob_crd(&client).await;
    let blob = blob_text(
        "doubled",
        &serde_json::to_string(&nested(100, json!("leaf"))).unwrap(),
    );
    send(&client, "POST", BLOBS, "application/json", &blob)
        .await
        .unwrap();
    // Copy the 100-level spec under its own deepest object: 200 levels.
    let deepest = format!("/spec{}", "/a".repeat(99));
    let patch =
        json!([{"op": "copy", "from": "/spec", "path": format!("{deepest}/copy")}]).to_string();
    let patched = send(
        &client,
        "PATCH",
        &format!("{BLOBS}/doubled"),
        "application/json-patch+json",
        &patch,
    )
    .await
    .unwrap();
    assert_eq!(json::depth(&patched["spec"]), 200);

    // Readable by GET, by a cached list with a later object beside it, by a watch.
    send(
        &client,
        "POST",
        BLOBS,
        "application/json",
        &blob_text("later", "{}"),
    )
    .await
    .unwrap();
    assert_eq!(
        json::depth(&get(&client, &format!("{BLOBS}/doubled")).await["spec"]),
        200
    );
    let cached = get(&client, &format!("{BLOBS}?resourceVersion=0")).await;
    let names: Vec<&str> = cached["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["doubled", "later"]);

    // And after a crash and restart on the same data dir.
    let (data_dir, port) = (server.data_dir.clone(), server.port);
    server.kill();
    let server = Binary::start(&data_dir, port, None);
    let client = client_from_kubeconfig(&server.kubeconfig).await;
    let after = get(&client, &format!("{BLOBS}/doubled")).await;
    assert_eq!(json::depth(&after["spec"]), 200);
    assert_eq!(after, patched, "the object survives the restart unchanged");
}

#[tokio::test]
async fn a_json_patch_may_not_nest_an_object_deeper_than_the_limit() {
    let s = InProcess::start().await;
    install_blob_crd(&s.client).await;
    let depth = MAX_DEPTH / 2 + 10;
    let created = send(
        &s.client,
        "POST",
        BLOBS,
        "application/json",
        &blob_text("half", &nested_text(depth, "1")),
    )
    .await
    .unwrap();
    let deepest = format!("/spec{}", "/a".repeat(depth - 1));
    let patch =
        json!([{"op": "copy", "from": "/spec", "path": format!("{deepest}/copy")}]).to_string();
    let st = status(
        send(
            &s.client,
            "PATCH",
            &format!("{BLOBS}/half"),
            "application/json-patch+json",
            &patch,
        )
        .await,
    );
    assert_eq!((st.code, st.reason.as_str()), (422, "Invalid"), "{st:?}");
    assert!(
        st.message.contains("exceeded max depth of 10000"),
        "{}",
        st.message
    );
    assert_eq!(
        rv(&get(&s.client, &format!("{BLOBS}/half")).await),
        rv(&created),
        "the object is unchanged"
    );
}

#[tokio::test]
async fn json_patch_operations_are_limited_to_ten_thousand() {
    let s = InProcess::start().await;
    let api = format!("{CONFIGMAPS}/ops");
    send(
        &s.client,
        "POST",
        CONFIGMAPS,
        "application/json",
        r#"{"metadata":{"name":"ops"},"data":{"a":"1"}}"#,
    )
    .await
    .unwrap();
    let ops = |n: usize| {
        Value::Array(vec![
            json!({"op": "test", "path": "/data/a", "value": "1"});
            n
        ])
        .to_string()
    };
    send(
        &s.client,
        "PATCH",
        &api,
        "application/json-patch+json",
        &ops(10_000),
    )
    .await
    .expect("10,000 operations are allowed");
    let st = status(
        send(
            &s.client,
            "PATCH",
            &api,
            "application/json-patch+json",
            &ops(10_001),
        )
        .await,
    );
    assert_eq!(
        (st.code, st.reason.as_str()),
        (413, "RequestEntityTooLarge"),
        "{st:?}"
    );
    assert!(
        st.message
            .contains("The allowed maximum operations in a JSON patch is 10000, got 10001"),
        "{}",
        st.message
    );
}

#[tokio::test]
async fn json_patch_copies_are_bounded_and_a_refused_patch_changes_nothing() {
    let s = InProcess::start().await;
    install_blob_crd(&s.client).await;
    // 1.9 KB of patch that doubles a 4 KB spec sixteen times would be 256 MB.
    let spec = json!({"seed": "x".repeat(4096)}).to_string();
    let created = send(
        &s.client,
        "POST",
        BLOBS,
        "application/json",
        &blob_text("copies", &spec),
    )
    .await
    .unwrap();
    let ops: Vec<Value> = (0..16)
        .map(|i| json!({"op": "copy", "from": "/spec", "path": format!("/spec/c{i}")}))
        .collect();
    let patch = Value::Array(ops).to_string();
    let st = status(
        send(
            &s.client,
            "PATCH",
            &format!("{BLOBS}/copies"),
            "application/json-patch+json",
            &patch,
        )
        .await,
    );
    assert_eq!((st.code, st.reason.as_str()), (422, "Invalid"), "{st:?}");
    assert!(
        st.message.contains("accumulated size increase of copy"),
        "{}",
        st.message
    );
    assert_eq!(
        rv(&get(&s.client, &format!("{BLOBS}/copies")).await),
        rv(&created),
        "the object is unchanged"
    );
}

#[tokio::test]
async fn an_object_over_the_storage_limit_is_refused_and_not_stored() {
    let s = InProcess::start().await;
    let big = "x".repeat(json::MAX_OBJECT_BYTES + 1);
    let cm = json!({"metadata": {"name": "big"}, "data": {"d": big}}).to_string();
    let st = status(send(&s.client, "POST", CONFIGMAPS, "application/json", &cm).await);
    assert_eq!(
        (st.code, st.reason.as_str()),
        (413, "RequestEntityTooLarge"),
        "{st:?}"
    );
    let listed = get(&s.client, CONFIGMAPS).await;
    assert_eq!(listed["items"], json!([]), "nothing was stored");

    // A patch that grows an object past the limit is refused the same way.
    let small =
        json!({"metadata": {"name": "grows"}, "data": {"d": "x".repeat(1_000_000)}}).to_string();
    let created = send(&s.client, "POST", CONFIGMAPS, "application/json", &small)
        .await
        .unwrap();
    let patch = json!({"data": {"e": "y".repeat(1_000_000)}}).to_string();
    let st = status(
        send(
            &s.client,
            "PATCH",
            &format!("{CONFIGMAPS}/grows"),
            "application/merge-patch+json",
            &patch,
        )
        .await,
    );
    assert_eq!(
        (st.code, st.reason.as_str()),
        (413, "RequestEntityTooLarge"),
        "{st:?}"
    );
    assert_eq!(
        rv(&get(&s.client, &format!("{CONFIGMAPS}/grows")).await),
        rv(&created),
        "the object is unchanged"
    );
}

#[tokio::test]
async fn a_failing_json_patch_after_a_move_is_a_422_not_a_dropped_connection() {
    let s = InProcess::start().await;
    install_blob_crd(&s.client).await;
    let created = send(
        &s.client,
        "POST",
        BLOBS,
        "application/json",
        &blob_text("moved", r#"{"a":{"b":{"c":1}}}"#),
    )
    .await
    .unwrap();
    // Undoing this move in place (what the json-patch crate does on failure) panics.
    let patch = json!([
        {"op": "move", "from": "/spec/a/b", "path": "/spec/a"},
        {"op": "test", "path": "/spec/missing", "value": 1}
    ])
    .to_string();
    let st = status(
        send(
            &s.client,
            "PATCH",
            &format!("{BLOBS}/moved"),
            "application/json-patch+json",
            &patch,
        )
        .await,
    );
    assert_eq!((st.code, st.reason.as_str()), (422, "Invalid"), "{st:?}");
    assert_eq!(
        rv(&get(&s.client, &format!("{BLOBS}/moved")).await),
        rv(&created),
        "the object is unchanged"
    );
}

#[tokio::test]
async fn no_patch_can_rename_an_object_or_move_it_to_another_namespace() {
    let s = InProcess::start().await;
    send(
        &s.client,
        "POST",
        "/api/v1/namespaces",
        "application/json",
        r#"{"metadata":{"name":"other"}}"#,
    )
    .await
    .unwrap();
    let created = send(
        &s.client,
        "POST",
        CONFIGMAPS,
        "application/json",
        r#"{"metadata":{"name":"keep"},"data":{"a":"1"}}"#,
    )
    .await
    .unwrap();
    let uri = format!("{CONFIGMAPS}/keep");
    let renames = [
        (
            "merge_patch_name",
            "application/merge-patch+json",
            r#"{"metadata":{"name":"renamed"}}"#,
            "the name of the object (renamed) does not match the name on the URL (keep)",
        ),
        (
            "strategic_patch_name",
            "application/strategic-merge-patch+json",
            r#"{"metadata":{"name":"renamed"}}"#,
            "the name of the object (renamed) does not match the name on the URL (keep)",
        ),
        (
            "json_patch_name",
            "application/json-patch+json",
            r#"[{"op":"replace","path":"/metadata/name","value":"renamed"}]"#,
            "the name of the object (renamed) does not match the name on the URL (keep)",
        ),
        (
            "json_patch_namespace",
            "application/json-patch+json",
            r#"[{"op":"replace","path":"/metadata/namespace","value":"other"}]"#,
            "the namespace of the object (other) does not match the namespace on the URL (default)",
        ),
        (
            "merge_patch_namespace",
            "application/merge-patch+json",
            r#"{"metadata":{"namespace":"other"}}"#,
            "the namespace of the object (other) does not match the namespace on the URL (default)",
        ),
    ];
    for (name, media, patch, message) in renames {
        let st = status(send(&s.client, "PATCH", &uri, media, patch).await);
        assert_eq!(
            (st.code, st.reason.as_str(), st.message.as_str()),
            (400, "BadRequest", message),
            "{name}"
        );
    }
    let st = status(
        send(
            &s.client,
            "PATCH",
            &format!("{CONFIGMAPS}/keep/status"),
            "application/merge-patch+json",
            r#"{"metadata":{"name":"x"}}"#,
        )
        .await,
    );
    assert_eq!(
        st.code, 404,
        "configmaps have no status subresource: {st:?}"
    );
    assert_eq!(
        rv(&get(&s.client, &uri).await),
        rv(&created),
        "the object is unchanged"
    );
    let listed = get(&s.client, "/api/v1/configmaps").await;
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert!(
        !names.contains(&"renamed") && names.contains(&"keep"),
        "{names:?}"
    );
}

#[tokio::test]
async fn deeply_nested_yaml_is_refused_before_it_is_parsed() {
    let s = InProcess::start().await;
    let levels = 80_000;
    let body = format!(
        "metadata: {{name: y}}\ndata: {}x{}\n",
        "{a: ".repeat(levels),
        "}".repeat(levels)
    );
    let st = status(send(&s.client, "POST", CONFIGMAPS, "application/yaml", &body).await);
    assert_eq!((st.code, st.reason.as_str()), (400, "BadRequest"), "{st:?}");
    assert!(
        st.message.contains("exceeded max depth of 128"),
        "{}",
        st.message
    );
    // A JSON body sent as apply-patch+yaml (what kubectl sends) is read with JSON's limit.
    let apply = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"applied","annotations":{{"deep":"{}"}}}}}}"#,
        "[".repeat(200)
    );
    send(
        &s.client,
        "PATCH",
        &format!("{CONFIGMAPS}/applied?fieldManager=t"),
        "application/apply-patch+yaml",
        &apply,
    )
    .await
    .expect("a JSON apply body is read as JSON");
}

#[tokio::test]
async fn a_crd_whose_schema_nests_sixty_levels_is_served_and_enforced() {
    let s = InProcess::start().await;
    let mut schema = json!({"type": "integer"});
    for _ in 0..60 {
        schema = json!({"type": "object", "properties": {"n": schema}});
    }
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "towers.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "towers", "singular": "tower", "kind": "Tower", "listKind": "TowerList"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": schema}}}}]}
    });
    send(
        &s.client,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "application/json",
        &crd.to_string(),
    )
    .await
    .expect("a 60-level schema is accepted");
    let tower = |leaf: Value| {
        let mut spec = leaf;
        for _ in 0..60 {
            spec = json!({ "n": spec });
        }
        json!({"apiVersion": "example.com/v1", "kind": "Tower", "metadata": {"name": "t"}, "spec": spec}).to_string()
    };
    let uri = "/apis/example.com/v1/namespaces/default/towers";
    let st = status(
        send(
            &s.client,
            "POST",
            uri,
            "application/json",
            &tower(json!("not a number")),
        )
        .await,
    );
    assert_eq!(
        (st.code, st.reason.as_str()),
        (422, "Invalid"),
        "the 60th level is validated: {st:?}"
    );
    send(&s.client, "POST", uri, "application/json", &tower(json!(7)))
        .await
        .expect("a valid tower is stored");
}

#[tokio::test]
async fn a_watch_or_list_from_a_future_resource_version_is_too_large_after_a_short_wait() {
    let s = InProcess::start().await;
    // kube-rs retries 504s by itself (fifteen times); this test wants the first answer.
    let client = client_without_retries(&s.server.kubeconfig).await;
    let created = send(
        &client,
        "POST",
        CONFIGMAPS,
        "application/json",
        r#"{"metadata":{"name":"now"}}"#,
    )
    .await
    .unwrap();
    let future = rv(&created).parse::<i64>().unwrap() + 1000;
    for uri in [
        format!("{CONFIGMAPS}?watch=true&resourceVersion={future}"),
        format!("{CONFIGMAPS}?resourceVersion={future}&resourceVersionMatch=NotOlderThan"),
    ] {
        let resp = client
            .send(
                http::Request::get(&uri)
                    .body(Vec::new())
                    .unwrap()
                    .map(Into::into),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 504, "{uri}");
        assert_eq!(
            resp.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("1"),
            "{uri}"
        );
        let body = http_body_util_collect(resp).await;
        assert_eq!(body["reason"], "Timeout", "{uri}: {body}");
        assert_eq!(
            body["details"]["causes"][0]["reason"], "ResourceVersionTooLarge",
            "{uri}"
        );
        assert_eq!(body["details"]["retryAfterSeconds"], 1, "{uri}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "Timeout: Too large resource version: {future}, current resource version: "
            )),
            "{message}"
        );
    }
}

async fn http_body_util_collect(resp: http::Response<kube::client::Body>) -> Value {
    use http_body_util::BodyExt;
    let bytes = resp
        .into_body()
        .collect()
        .await
        .expect("reading the response body")
        .to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn list_and_watch_options_out_of_range_are_bad_requests() {
    let s = InProcess::start().await;
    // {"v":"meta.k8s.io/v1","rv":-5,"start":"/"}, base64-encoded as continue tokens are.
    let token = "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6LTUsInN0YXJ0IjoiLyJ9";
    let cases = [
        (
            "match_garbage_list",
            format!("{CONFIGMAPS}?resourceVersion=1&resourceVersionMatch=Garbage"),
            "resourceVersionMatch: Unsupported value: \"Garbage\"",
        ),
        (
            "match_garbage_watch",
            format!("{CONFIGMAPS}?watch=true&resourceVersionMatch=Garbage"),
            "resourceVersionMatch: Unsupported value: \"Garbage\"",
        ),
        (
            "negative_list",
            format!("{CONFIGMAPS}?resourceVersion=-1"),
            "invalid resource version: -1",
        ),
        (
            "negative_watch",
            format!("{CONFIGMAPS}?watch=true&resourceVersion=-3"),
            "invalid resource version: -3",
        ),
        (
            "negative_continue",
            format!("{CONFIGMAPS}?limit=1&continue={token}"),
            "continue key is not valid",
        ),
    ];
    for (name, uri, message) in cases {
        let st = status(
            s.client
                .request_text(http::Request::get(&uri).body(Vec::new()).unwrap())
                .await,
        );
        assert_eq!(
            (st.code, st.reason.as_str()),
            (400, "BadRequest"),
            "{name}: {st:?}"
        );
        assert!(st.message.contains(message), "{name}: {}", st.message);
    }
}

#[tokio::test]
async fn delete_from_primitive_list_with_objects_is_a_bad_request() {
    let s = InProcess::start().await;
    let created = send(
        &s.client,
        "POST",
        CONFIGMAPS,
        "application/json",
        r#"{"metadata":{"name":"f","finalizers":["example.com/a"]}}"#,
    )
    .await
    .unwrap();
    let patch = r#"{"metadata":{"$deleteFromPrimitiveList/finalizers":[{"a":1}]}}"#;
    let st = status(
        send(
            &s.client,
            "PATCH",
            &format!("{CONFIGMAPS}/f"),
            "application/strategic-merge-patch+json",
            patch,
        )
        .await,
    );
    assert_eq!((st.code, st.reason.as_str()), (400, "BadRequest"), "{st:?}");
    assert_eq!(st.message, "invalid patch format of primitive list");
    assert_eq!(
        rv(&get(&s.client, &format!("{CONFIGMAPS}/f")).await),
        rv(&created),
        "the object is unchanged"
    );
}
