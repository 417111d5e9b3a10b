//! A bounded fuzz run against the in-process server: valid bodies of Pods, Deployments,
//! ConfigMaps, a custom resource and CRDs, mutated at random (values of the wrong type,
//! removed and added fields, deep nesting, long strings, bytes of broken JSON), sent to
//! create, update and every patch type. Whatever the server answers, it must answer
//! with a `Status` that is not a 500 (503 storage unavailability aside), never drop the
//! connection, stay alive, and keep every stored object readable.
//!
//! `KYBERN_FUZZ_ITERATIONS` (default 400) and `KYBERN_FUZZ_SECONDS` (default 90) bound
//! the run, whichever ends first; `KYBERN_FUZZ_SEED` replays a run (the seed is printed).

use std::time::{Duration, Instant};

use apiserver::json;
use kube::Client;
use serde_json::{json, Map, Value};

use crate::common::{client_without_retries, InProcess};

/// A small deterministic generator (xorshift64*), so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

struct Kind {
    collection: &'static str,
    seed: Value,
    strategic: bool,
}

fn kinds() -> Vec<Kind> {
    vec![
        Kind {
            collection: "/api/v1/namespaces/fuzz/configmaps",
            seed: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "labels": {"a": "b"}},
                "data": {"k": "v", "other": "x"}}),
            strategic: true,
        },
        Kind {
            collection: "/api/v1/namespaces/fuzz/pods",
            seed: json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1"],
                    "ports": [{"containerPort": 80}], "env": [{"name": "A", "value": "1"}],
                    "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}}}],
                    "tolerations": [{"key": "k", "operator": "Exists"}], "restartPolicy": "Always"}}),
            strategic: true,
        },
        Kind {
            collection: "/apis/apps/v1/namespaces/fuzz/deployments",
            seed: json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}),
            strategic: true,
        },
        Kind {
            collection: "/apis/fuzz.example.com/v1/namespaces/fuzz/gizmos",
            seed: json!({"apiVersion": "fuzz.example.com/v1", "kind": "Gizmo", "metadata": {"name": "g"},
                "spec": {"size": 3, "color": "red", "tags": ["a", "b"], "extra": {"free": {"form": [1, 2]}}}}),
            strategic: false,
        },
        Kind {
            collection: "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            seed: gizmo_crd("widgets.fuzz.example.com", "Widget", "widgets"),
            strategic: false,
        },
    ]
}

fn gizmo_crd(name: &str, kind: &str, plural: &str) -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": name},
        "spec": {"group": "fuzz.example.com", "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind, "listKind": format!("{kind}List")},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
                    "size": {"type": "integer", "minimum": 0, "maximum": 10},
                    "color": {"type": "string", "enum": ["red", "blue"]},
                    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}}}]}})
}

/// A random JSON value, at most `depth` levels deep.
fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth == 0 { 6 } else { 9 }) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => json!(*rng.pick(&[0i64, -1, 1, i64::MAX, i64::MIN, 3])),
        3 => json!(*rng.pick(&[0.5f64, -1e300, 1e300, 3.0])),
        4 => json!(*rng.pick(&[
            "",
            "x",
            "Ünïcödé",
            "a:b/c",
            "-",
            "UPPER",
            "{{[[",
            "\\\"",
            "0"
        ])),
        5 => json!("y".repeat(rng.below(3000))),
        6 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        7 => {
            let keys = [
                "name",
                "spec",
                "metadata",
                "items",
                "x",
                "$patch",
                "$retainKeys",
                "$setElementOrder/containers",
            ];
            let mut m = Map::new();
            for _ in 0..rng.below(4) {
                m.insert(rng.pick(&keys).to_string(), random_value(rng, depth - 1));
            }
            Value::Object(m)
        }
        _ => {
            // Deep nesting, in objects or arrays.
            let levels = *rng.pick(&[50usize, 130, 300, 1000]);
            let mut v = json!(1);
            for _ in 0..levels {
                v = if rng.chance(50) {
                    json!({ "n": v })
                } else {
                    json!([v])
                };
            }
            v
        }
    }
}

/// Every path (as a list of keys and indexes) in a value.
fn paths(v: &Value) -> Vec<Vec<Value>> {
    let mut out = vec![Vec::new()];
    let mut stack = vec![(v, Vec::new())];
    while let Some((v, path)) = stack.pop() {
        let children: Vec<(Value, &Value)> = match v {
            Value::Object(m) => m.iter().map(|(k, c)| (json!(k), c)).collect(),
            Value::Array(a) => a.iter().enumerate().map(|(i, c)| (json!(i), c)).collect(),
            _ => continue,
        };
        for (k, c) in children {
            let mut p = path.clone();
            p.push(k);
            if p.len() < 12 {
                out.push(p.clone());
                stack.push((c, p));
            }
        }
    }
    out
}

fn at<'a>(v: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, k| match (v, k) {
        (Value::Object(m), Value::String(s)) => m.get_mut(s),
        (Value::Array(a), Value::Number(n)) => n.as_u64().and_then(|i| a.get_mut(i as usize)),
        _ => None,
    })
}

fn pointer(path: &[Value]) -> String {
    path.iter()
        .map(|k| match k {
            Value::String(s) => format!("/{}", s.replace('~', "~0").replace('/', "~1")),
            other => format!("/{other}"),
        })
        .collect()
}

/// One to three random edits of a valid object.
fn mutate(rng: &mut Rng, mut v: Value) -> Value {
    for _ in 0..1 + rng.below(3) {
        let all = paths(&v);
        let path = rng.pick(&all).clone();
        match rng.below(4) {
            0 if !path.is_empty() => {
                let (last, parent) = path.split_last().unwrap();
                match (at(&mut v, parent), last) {
                    (Some(Value::Object(m)), Value::String(k)) => {
                        m.remove(k);
                    }
                    (Some(Value::Array(a)), Value::Number(i)) => {
                        let i = i.as_u64().unwrap() as usize;
                        if i < a.len() {
                            a.remove(i);
                        }
                    }
                    _ => {}
                }
            }
            1 => {
                if let Some(Value::Object(m)) = at(&mut v, &path) {
                    m.insert(
                        rng.pick(&["extra", "status", "x", "$patch"]).to_string(),
                        random_value(rng, 2),
                    );
                }
            }
            _ => {
                let new = random_value(rng, 2);
                if let Some(slot) = at(&mut v, &path) {
                    *slot = new;
                }
            }
        }
    }
    v
}

/// Bytes of a body: the value as JSON, sometimes broken or wrapped in YAML.
fn body_text(rng: &mut Rng, v: &Value) -> (String, Vec<u8>) {
    let text = serde_json::to_vec(v).unwrap();
    match rng.below(10) {
        0 if !text.is_empty() => {
            let mut t = text;
            let cut = rng.below(t.len());
            t.truncate(cut);
            ("application/json".into(), t)
        }
        1 if !text.is_empty() => {
            let mut t = text;
            let i = rng.below(t.len());
            t[i] = *rng.pick(b"{}[]\",:\\\x00\xff");
            ("application/json".into(), t)
        }
        2 => (
            "application/yaml".into(),
            serde_yaml::to_string(v).unwrap_or_default().into_bytes(),
        ),
        _ => ("application/json".into(), text),
    }
}

/// A random JSON patch for `v`.
fn json_patch(rng: &mut Rng, v: &Value) -> Value {
    let all = paths(v);
    let ops: Vec<Value> = (0..1 + rng.below(6))
        .map(|_| {
            let path: &Vec<Value> = rng.pick(&all);
            let path = pointer(path);
            let from: &Vec<Value> = rng.pick(&all);
            let from = pointer(from);
            match rng.below(6) {
                0 => {
                    json!({"op": "add", "path": format!("{path}/-"), "value": random_value(rng, 2)})
                }
                1 => json!({"op": "remove", "path": path}),
                2 => json!({"op": "replace", "path": path, "value": random_value(rng, 2)}),
                3 => json!({"op": "move", "from": from, "path": path}),
                4 => json!({"op": "copy", "from": from, "path": path}),
                _ => json!({"op": "test", "path": path, "value": random_value(rng, 1)}),
            }
        })
        .collect();
    Value::Array(ops)
}

/// What one request got: an answer with its code, or a failure of the connection.
async fn send(
    client: &Client,
    method: &str,
    uri: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<u16, String> {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(body)
        .unwrap();
    match client.request_text(req).await {
        Ok(_) => Ok(200),
        Err(kube::Error::Api(status)) => {
            if status.code == 500 {
                Err(format!("500 {}: {}", status.reason, status.message))
            } else {
                Ok(status.code)
            }
        }
        Err(e) => Err(format!(
            "no Status answer (dropped connection or unreadable body): {e}"
        )),
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_bodies_never_crash_the_server_or_leave_an_unreadable_object() {
    let iterations: usize = env_or("KYBERN_FUZZ_ITERATIONS", 400);
    let budget = Duration::from_secs(env_or("KYBERN_FUZZ_SECONDS", 90));
    let seed: u64 = env_or("KYBERN_FUZZ_SEED", 0x5eed_1234_abcd_0001);
    println!("fuzz seed {seed:#x}, {iterations} iterations, {budget:?} at most");
    let s = InProcess::start().await;
    let client = client_without_retries(&s.server.kubeconfig).await;
    let ok = |r: Result<u16, String>| r.expect("setting up");
    ok(send(
        &client,
        "POST",
        "/api/v1/namespaces",
        "application/json",
        br#"{"metadata":{"name":"fuzz"}}"#.to_vec(),
    )
    .await);
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let gizmos = gizmo_crd("gizmos.fuzz.example.com", "Gizmo", "gizmos")
        .to_string()
        .into_bytes();
    ok(send(&client, "POST", crds, "application/json", gizmos).await);

    let kinds = kinds();
    let mut rng = Rng(seed | 1);
    let mut failures = Vec::new();
    let started = Instant::now();
    let mut done = 0;
    let mut codes = std::collections::BTreeMap::new();
    while done < iterations && started.elapsed() < budget {
        done += 1;
        let kind = rng.pick(&kinds);
        let name = format!(
            "{}-{}",
            kind.seed["metadata"]["name"].as_str().unwrap(),
            rng.below(4)
        );
        let mut valid = kind.seed.clone();
        valid["metadata"]["name"] = json!(name);
        let item = format!("{}/{name}", kind.collection);
        // The object exists for most operations; creating it may fail when it already does.
        let _ = send(
            &client,
            "POST",
            kind.collection,
            "application/json",
            serde_json::to_vec(&valid).unwrap(),
        )
        .await;
        let mutated = mutate(&mut rng, valid.clone());
        let (what, method, uri, content_type, body) = match rng.below(7) {
            0 => {
                let (ct, b) = body_text(&mut rng, &mutated);
                ("create", "POST", kind.collection.to_string(), ct, b)
            }
            1 => {
                let (ct, b) = body_text(&mut rng, &mutated);
                ("update", "PUT", item.clone(), ct, b)
            }
            2 => ("merge patch", "PATCH", item.clone(), "application/merge-patch+json".into(), serde_json::to_vec(&mutate(&mut rng, json!({"metadata": {}, "spec": mutated.get("spec").cloned().unwrap_or(Value::Null)}))).unwrap()),
            3 if kind.strategic => ("strategic merge patch", "PATCH", item.clone(), "application/strategic-merge-patch+json".into(), serde_json::to_vec(&mutated).unwrap()),
            4 => ("json patch", "PATCH", item.clone(), "application/json-patch+json".into(), serde_json::to_vec(&json_patch(&mut rng, &valid)).unwrap()),
            5 => ("apply", "PATCH", format!("{item}?fieldManager=fuzz&force={}", rng.chance(50)), "application/apply-patch+yaml".into(), serde_json::to_vec(&mutated).unwrap()),
            _ => ("status patch", "PATCH", format!("{item}/status"), "application/merge-patch+json".into(), serde_json::to_vec(&json!({"status": random_value(&mut rng, 2)})).unwrap()),
        };
        match send(&client, method, &uri, &content_type, body.clone()).await {
            Ok(code) => *codes.entry(code).or_insert(0) += 1,
            Err(e) => failures.push(format!(
                "{what} {method} {uri} ({content_type}): {e}\n  body: {}",
                String::from_utf8_lossy(&body[..body.len().min(600)])
            )),
        }
        if failures.len() >= 5 {
            break;
        }
    }
    println!(
        "{done} requests in {:?}; answers by code: {codes:?}",
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "seed {seed:#x}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The server is alive, and every object of every fuzzed resource reads back, from
    // storage and from the watch cache.
    let ready = client
        .request_text(http::Request::get("/readyz").body(Vec::new()).unwrap())
        .await;
    assert_eq!(
        ready.as_deref().map(str::trim).ok(),
        Some("ok"),
        "the server is alive: {ready:?}"
    );
    let mut collections: Vec<String> = kinds.iter().map(|k| k.collection.to_string()).collect();
    collections.push("/apis/fuzz.example.com/v1/namespaces/fuzz/widgets".into());
    for collection in collections {
        for query in ["", "?resourceVersion=0"] {
            let uri = format!("{collection}{query}");
            let text = match client
                .request_text(http::Request::get(&uri).body(Vec::new()).unwrap())
                .await
            {
                Ok(t) => t,
                // A CRD created by the run may have been mutated into another group.
                Err(kube::Error::Api(st)) if st.code == 404 => continue,
                Err(e) => panic!("LIST {uri}: {e}"),
            };
            let list: Value = json::from_stored(text.as_bytes())
                .unwrap_or_else(|e| panic!("LIST {uri} is readable JSON: {e}"));
            for obj in list["items"].as_array().unwrap() {
                let name = obj["metadata"]["name"].as_str().unwrap();
                let one = format!("{collection}/{name}");
                let got = client
                    .request_text(http::Request::get(&one).body(Vec::new()).unwrap())
                    .await;
                assert!(got.is_ok(), "GET {one} after the run: {got:?}");
            }
        }
    }
}
