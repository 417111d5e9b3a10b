//! OpenAPI v3 documents generated from the served CRD schemas: the `/openapi/v3` index
//! and one document per group-version, with the paths, the
//! `x-kubernetes-group-version-kind` extensions and the query parameters kubectl looks
//! for (it validates on the server when PATCH accepts `fieldValidation`).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::registry::{Resource, Snapshot};

mod gnostic;

pub(super) use gnostic::MEDIA_TYPE as V2_PROTOBUF;

/// Generated documents, kept while the registry snapshot they came from is current.
#[derive(Default)]
pub(super) struct OpenApiCache {
    docs: Mutex<HashMap<String, (usize, Bytes, String)>>,
}

/// `api/v1` or `apis/apps/v1`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The schema name upstream uses (`io.k8s.api.apps.v1.Deployment`), or the reversed
/// group for user CRDs (`com.example.v1.Widget`).
pub(super) fn schema_name(r: &Resource) -> String {
    if r.builtin {
        match r.group.as_str() {
            "apiextensions.k8s.io" => format!(
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{}.{}",
                r.version, r.kind
            ),
            "apiregistration.k8s.io" => format!(
                "io.k8s.kube-aggregator.pkg.apis.apiregistration.{}.{}",
                r.version, r.kind
            ),
            g => format!(
                "io.k8s.api.{}.{}.{}",
                g.split('.')
                    .next()
                    .filter(|s| !s.is_empty())
                    .unwrap_or("core"),
                r.version,
                r.kind
            ),
        }
    } else {
        let reversed: Vec<&str> = r.group.split('.').rev().collect();
        format!("{}.{}.{}", reversed.join("."), r.version, r.kind)
    }
}

fn param(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(r: &Resource, action: &str, params: &[&str], schema_ref: &str) -> Value {
    json!({
        "operationId": format!("{action}{}", r.kind),
        "parameters": params.iter().map(|p| param(p)).collect::<Vec<_>>(),
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": schema_ref}}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
    })
}

fn document(snap: &Snapshot, group: &str, version: &str) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for r in snap.group_version(group, version) {
        let name = schema_name(r);
        let schema_ref = format!("#/components/schemas/{name}");
        let mut schema = r
            .schema()
            .as_deref()
            .cloned()
            .unwrap_or_else(|| json!({"type": "object"}));
        schema["x-kubernetes-group-version-kind"] =
            json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
        schemas.insert(name, schema);
        let base = format!("/{}", gv_path(group, version));
        let collection = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        let write = ["dryRun", "fieldManager", "fieldValidation"];
        if r.group == super::metrics::GROUP {
            // metrics.k8s.io: computed on read, get and list only.
            let list = ["labelSelector", "fieldSelector"];
            paths.insert(
                collection.clone(),
                json!({"get": operation(r, "list", &list, &schema_ref)}),
            );
            paths.insert(
                format!("{collection}/{{name}}"),
                json!({"get": operation(r, "get", &[], &schema_ref)}),
            );
            continue;
        }
        if !r.stored {
            // A review kind: create only.
            paths.insert(
                collection,
                json!({"post": operation(r, "post", &write, &schema_ref)}),
            );
            continue;
        }
        let patch = ["dryRun", "fieldManager", "fieldValidation", "force"];
        paths.insert(collection.clone(), json!({
            "get": operation(r, "list", &["labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "watch"], &schema_ref),
            "post": operation(r, "post", &write, &schema_ref),
            "delete": operation(r, "deletecollection", &["labelSelector", "fieldSelector", "dryRun"], &schema_ref),
        }));
        let item = format!("{collection}/{{name}}");
        paths.insert(item.clone(), json!({
            "get": operation(r, "get", &[], &schema_ref),
            "put": operation(r, "put", &write, &schema_ref),
            "patch": operation(r, "patch", &patch, &schema_ref),
            "delete": operation(r, "delete", &["dryRun", "gracePeriodSeconds", "propagationPolicy"], &schema_ref),
        }));
        if r.status {
            paths.insert(
                format!("{item}/status"),
                json!({
                    "get": operation(r, "get", &[], &schema_ref),
                    "put": operation(r, "put", &write, &schema_ref),
                    "patch": operation(r, "patch", &patch, &schema_ref),
                }),
            );
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": super::KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// An OpenAPI v3 path item in Swagger 2.0 form (parameters typed inline, responses
/// with a schema, references into `#/definitions/`).
fn v2_path_item(item: &Value) -> Value {
    let mut out = Map::new();
    for (method, op) in item.as_object().into_iter().flatten() {
        let mut op = op.clone();
        if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
            for p in params {
                if let Some(m) = p.as_object_mut() {
                    m.remove("schema");
                    m.insert("type".into(), json!("string"));
                    m.insert("uniqueItems".into(), json!(true));
                }
            }
        }
        if let Some(r) = op
            .pointer("/responses/200/content/application~1json/schema/$ref")
            .and_then(Value::as_str)
        {
            let target = r.replace("#/components/schemas/", "#/definitions/");
            op["responses"] = json!({"200": {"description": "OK", "schema": {"$ref": target}}});
        }
        out.insert(method.clone(), op);
    }
    Value::Object(out)
}

/// The Swagger 2.0 document: every group-version's paths and definitions.
fn v2_document(snap: &Snapshot) -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    for (group, versions) in snap.groups() {
        for version in versions {
            let doc = document(snap, &group, &version);
            if let Some(p) = doc.get("paths").and_then(Value::as_object) {
                for (path, item) in p {
                    paths.insert(path.clone(), v2_path_item(item));
                }
            }
            if let Some(d) = doc
                .pointer("/components/schemas")
                .and_then(Value::as_object)
            {
                definitions.extend(d.clone());
            }
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": super::KUBERNETES_VERSION},
        "paths": paths,
        "definitions": definitions,
    })
}

fn hash_of(bytes: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{:016X}", h.finish())
}

impl OpenApiCache {
    /// The document of one group-version and its hash, generated once per registry state.
    fn get(&self, snap: &Arc<Snapshot>, group: &str, version: &str) -> (Bytes, String) {
        let key = gv_path(group, version);
        let id = Arc::as_ptr(snap) as usize;
        if let Some((sid, doc, hash)) = self.docs.lock().expect("openapi cache poisoned").get(&key)
        {
            if *sid == id {
                return (doc.clone(), hash.clone());
            }
        }
        let doc =
            Bytes::from(serde_json::to_vec(&document(snap, group, version)).unwrap_or_default());
        let hash = hash_of(&doc);
        self.docs
            .lock()
            .expect("openapi cache poisoned")
            .insert(key, (id, doc.clone(), hash.clone()));
        (doc, hash)
    }

    /// `/openapi/v3`: where each group-version's document is.
    pub(super) fn index(&self, snap: &Arc<Snapshot>) -> Value {
        let mut paths = Map::new();
        for (group, versions) in snap.groups() {
            for version in versions {
                let (_, hash) = self.get(snap, &group, &version);
                let p = gv_path(&group, &version);
                paths.insert(
                    p.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
                );
            }
        }
        json!({"paths": paths})
    }

    /// `/openapi/v2` (Swagger 2.0) in JSON, or in protobuf (gnostic's Document), with its
    /// ETag; generated once per registry state.
    pub(super) fn v2(&self, snap: &Arc<Snapshot>, protobuf: bool) -> (Bytes, String) {
        let id = Arc::as_ptr(snap) as usize;
        let key = if protobuf { "v2.pb" } else { "v2" };
        if let Some((sid, doc, hash)) = self.docs.lock().expect("openapi cache poisoned").get(key) {
            if *sid == id {
                return (doc.clone(), hash.clone());
            }
        }
        let doc = v2_document(snap);
        let bytes = Bytes::from(if protobuf {
            gnostic::document(&doc)
        } else {
            serde_json::to_vec(&doc).unwrap_or_default()
        });
        let hash = hash_of(&bytes);
        self.docs
            .lock()
            .expect("openapi cache poisoned")
            .insert(key.into(), (id, bytes.clone(), hash.clone()));
        (bytes, hash)
    }

    /// `/openapi/v3/<gv path>`, if that group-version is served.
    pub(super) fn group_version(&self, snap: &Arc<Snapshot>, path: &str) -> Option<Bytes> {
        let parts: Vec<&str> = path.split('/').collect();
        let (group, version) = match parts.as_slice() {
            ["api", v] => ("", *v),
            ["apis", g, v] => (*g, *v),
            _ => return None,
        };
        if snap.group_version(group, version).is_empty() {
            return None;
        }
        Some(self.get(snap, group, version).0)
    }
}
