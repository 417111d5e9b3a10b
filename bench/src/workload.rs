//! The request workload against one server, reached through a kubeconfig.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::io::AsyncBufReadExt;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde::Deserialize;

use super::report::Samples;

/// Builds client configuration from a kubeconfig file.
pub(crate) async fn client_config(path: &Path) -> Result<kube::Config> {
    let kc = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("client configuration from {}", path.display()))?;
    Ok(cfg)
}

/// `n` clients, each with its own connection pool.
pub(crate) fn clients(cfg: &kube::Config, n: usize) -> Result<Vec<Client>> {
    (0..n)
        .map(|_| Client::try_from(cfg.clone()).context("building a kube client"))
        .collect()
}

pub(crate) fn object_name(i: usize) -> String {
    format!("cm-{i:05}")
}

fn config_map(ns: &str, name: String) -> ConfigMap {
    let payload: String = (0..1024).map(|_| fastrand::alphanumeric()).collect();
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(ns.to_string()),
            labels: Some(BTreeMap::from([(
                "app".to_string(),
                "kybern-bench".to_string(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("payload".to_string(), payload)])),
        ..Default::default()
    }
}

/// Outcome of a phase run by several concurrent clients.
pub(crate) struct Parallel {
    pub latencies: Samples,
    pub wall: Duration,
    pub ok: usize,
    pub errors: usize,
    pub first_error: Option<String>,
}

impl Parallel {
    pub(crate) fn per_sec(&self) -> f64 {
        self.ok as f64 / self.wall.as_secs_f64()
    }

    pub(crate) fn error_note(&self, what: &str) -> Option<String> {
        (self.errors > 0).then(|| {
            format!(
                "{what}: {} of {} requests failed; first: {}",
                self.errors,
                self.errors + self.ok,
                self.first_error.as_deref().unwrap_or("?")
            )
        })
    }
}

/// Runs `total` operations spread over `clients` (one task per client, each
/// taking the next index), timing each operation.
pub(crate) async fn parallel<F, Fut>(clients: &[Client], total: usize, op: F) -> Parallel
where
    F: Fn(Client, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), kube::Error>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new((0usize, None::<String>)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in clients {
        let (c, op, next, errors) = (c.clone(), op.clone(), next.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let t = Instant::now();
                match op(c.clone(), i).await {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(e) => {
                        let mut g = errors.lock().unwrap();
                        g.0 += 1;
                        g.1.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        if let Ok(l) = t.await {
            all.extend(l);
        }
    }
    let wall = started.elapsed();
    let (errors, first_error) = std::mem::take(&mut *errors.lock().unwrap());
    Parallel {
        ok: all.len(),
        latencies: Samples::new(all),
        wall,
        errors,
        first_error,
    }
}

/// Sequential timing of `n` runs of `op` after `warm` untimed ones.
pub(crate) async fn sequential<F, Fut>(warm: usize, n: usize, mut op: F) -> Result<Samples>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    for _ in 0..warm {
        op().await?;
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        op().await?;
        v.push(t.elapsed());
    }
    Ok(Samples::new(v))
}

pub(crate) async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

/// Opens each client's connection (TLS handshake included) before anything is timed.
pub(crate) async fn warm_up(clients: &[Client], ns: &str) -> Result<()> {
    let gets = clients.iter().map(|c| {
        let api = Api::<Namespace>::all(c.clone());
        async move { api.get(ns).await }
    });
    for r in futures::future::join_all(gets).await {
        r.context("warming up a client connection")?;
    }
    Ok(())
}

pub(crate) async fn delete_namespace(client: &Client, name: &str) -> Result<()> {
    Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await
        .with_context(|| format!("deleting namespace {name}"))?;
    Ok(())
}

/// Creates `n` ConfigMaps of ~1 KiB with the given clients.
pub(crate) async fn create_objects(clients: &[Client], ns: &str, n: usize) -> Parallel {
    let ns = ns.to_string();
    parallel(clients, n, move |c, i| {
        let ns = ns.clone();
        async move {
            let api = Api::<ConfigMap>::namespaced(c, &ns);
            api.create(&PostParams::default(), &config_map(&ns, object_name(i)))
                .await
                .map(drop)
        }
    })
    .await
}

#[derive(Deserialize)]
struct ListMeta {
    #[serde(default, rename = "continue")]
    cont: Option<String>,
    #[serde(default, rename = "resourceVersion")]
    resource_version: Option<String>,
}

#[derive(Deserialize)]
struct ListBody {
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<serde::de::IgnoredAny>,
}

fn get(path: String) -> http::Request<Vec<u8>> {
    http::Request::get(path)
        .body(Vec::new())
        .expect("valid request")
}

/// A raw LIST: returns (items, continue token, resourceVersion, body bytes).
pub(crate) async fn raw_list(
    client: &Client,
    path: String,
) -> Result<(usize, Option<String>, String, usize)> {
    let text = client
        .request_text(get(path.clone()))
        .await
        .with_context(|| format!("GET {path}"))?;
    let body: ListBody =
        serde_json::from_str(&text).with_context(|| format!("decoding GET {path}"))?;
    let cont = body.metadata.cont.filter(|c| !c.is_empty());
    Ok((
        body.items.len(),
        cont,
        body.metadata.resource_version.unwrap_or_default(),
        text.len(),
    ))
}

pub(crate) fn collection(ns: &str) -> String {
    format!("/api/v1/namespaces/{ns}/configmaps")
}

/// LIST timing: consistent, resourceVersion=0 and paginated walks.
pub(crate) struct ListFigures {
    pub consistent: Samples,
    pub rv0: Samples,
    pub paged: Samples,
    pub pages: usize,
    pub body_bytes: usize,
    pub notes: Vec<String>,
}

pub(crate) async fn list_phase(
    client: &Client,
    ns: &str,
    expect: usize,
    n: usize,
) -> Result<ListFigures> {
    let base = collection(ns);
    let mut notes = Vec::new();
    let (count, _, _, body_bytes) = raw_list(client, base.clone()).await?;
    if count != expect {
        notes.push(format!(
            "consistent LIST returned {count} items, expected {expect}"
        ));
    }
    let (count0, _, _, _) = raw_list(client, format!("{base}?resourceVersion=0")).await?;
    if count0 != expect {
        notes.push(format!(
            "LIST resourceVersion=0 returned {count0} items, expected {expect}"
        ));
    }
    eprintln!("  LIST consistent x{n}");
    let consistent = sequential(2, n, || async {
        raw_list(client, base.clone()).await?;
        Ok(())
    })
    .await?;
    eprintln!("  LIST resourceVersion=0 x{n}");
    let rv0 = sequential(2, n, || async {
        raw_list(client, format!("{base}?resourceVersion=0")).await?;
        Ok(())
    })
    .await?;
    eprintln!("  LIST limit=500 walks x{n}");
    let pages = Arc::new(AtomicUsize::new(0));
    let walked = Arc::new(AtomicUsize::new(0));
    let paged = sequential(1, n, || {
        let (pages, walked, base) = (pages.clone(), walked.clone(), base.clone());
        async move {
            let mut cont: Option<String> = None;
            let mut p = 0;
            let mut total = 0;
            loop {
                let path = match &cont {
                    None => format!("{base}?limit=500"),
                    Some(c) => format!("{base}?limit=500&continue={}", urlencode(c)),
                };
                let (items, next, _, _) = raw_list(client, path).await?;
                p += 1;
                total += items;
                match next {
                    Some(c) => cont = Some(c),
                    None => break,
                }
                if p > 10_000 {
                    bail!("pagination did not end after {p} pages");
                }
            }
            pages.store(p, Ordering::Relaxed);
            walked.store(total, Ordering::Relaxed);
            Ok(())
        }
    })
    .await?;
    let walked = walked.load(Ordering::Relaxed);
    if walked != expect {
        notes.push(format!(
            "paginated walk returned {walked} items, expected {expect}"
        ));
    }
    Ok(ListFigures {
        consistent,
        rv0,
        paged,
        pages: pages.load(Ordering::Relaxed),
        body_bytes,
        notes,
    })
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// GETs of one object: one client sequentially.
pub(crate) async fn get_one(client: &Client, ns: &str, n: usize) -> Result<Samples> {
    let api = Api::<ConfigMap>::namespaced(client.clone(), ns);
    let name = object_name(0);
    sequential(20, n, || async {
        api.get(&name).await?;
        Ok(())
    })
    .await
}

/// GETs of random objects from several clients.
pub(crate) async fn get_parallel(
    clients: &[Client],
    ns: &str,
    objects: usize,
    n: usize,
) -> Parallel {
    let ns = ns.to_string();
    parallel(clients, n, move |c, _| {
        let ns = ns.clone();
        async move {
            let api = Api::<ConfigMap>::namespaced(c, &ns);
            api.get(&object_name(fastrand::usize(..objects)))
                .await
                .map(drop)
        }
    })
    .await
}

/// Watch delivery after the update response.
pub(crate) struct WatchFigures {
    pub latencies: Samples,
    /// From sending the PUT to the event reaching the watcher.
    pub from_request: Samples,
    /// Events that reached a watcher before the PUT response reached us (counted as 0).
    pub early: usize,
    pub missed: usize,
    pub rv_mismatch: usize,
}

#[derive(Deserialize)]
struct EventMeta {
    #[serde(default, rename = "resourceVersion")]
    resource_version: Option<String>,
}

#[derive(Deserialize)]
struct EventObject {
    metadata: EventMeta,
    #[serde(default)]
    data: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    object: EventObject,
}

/// What a watcher saw: (sequence number from the object's data, resourceVersion, arrival).
type Seen = (u64, String, Instant);

/// Opens `watchers` watches (each on its own client) from the current
/// resourceVersion of the namespace's ConfigMaps, then updates one object
/// `updates` times sequentially and times, per watcher, from the PUT
/// response to the arrival of the event.
pub(crate) async fn watch_phase(
    cfg: &kube::Config,
    client: &Client,
    ns: &str,
    watchers: usize,
    updates: usize,
) -> Result<WatchFigures> {
    let base = collection(ns);
    let (_, _, rv, _) = raw_list(client, format!("{base}?limit=1")).await?;
    let watch_clients = clients(cfg, watchers)?;
    let mut receivers = Vec::new();
    let mut tasks = Vec::new();
    for c in &watch_clients {
        let path = format!("{base}?watch=true&resourceVersion={rv}&timeoutSeconds=600");
        let stream = c
            .request_stream(get(path))
            .await
            .context("opening a watch")?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Seen>();
        receivers.push(rx);
        tasks.push(tokio::spawn(async move {
            let mut lines = Box::pin(stream.lines());
            while let Some(Ok(line)) = lines.next().await {
                let at = Instant::now();
                let Ok(ev) = serde_json::from_str::<WatchEvent>(&line) else {
                    continue;
                };
                if ev.kind != "MODIFIED" {
                    continue;
                }
                let seq = ev
                    .object
                    .data
                    .as_ref()
                    .and_then(|d| d.get("seq"))
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(u64::MAX);
                let _ = tx.send((
                    seq,
                    ev.object.metadata.resource_version.unwrap_or_default(),
                    at,
                ));
            }
        }));
    }
    let api = Api::<ConfigMap>::namespaced(client.clone(), ns);
    let name = object_name(1);
    let mut obj = api
        .get(&name)
        .await
        .context("reading the object to update")?;
    let mut lat = Vec::new();
    let mut from_req = Vec::new();
    let (mut early, mut missed, mut mismatch) = (0, 0, 0);
    // Update 0 is a warm-up: it makes sure every watch is live.
    for seq in 0..=updates as u64 {
        obj.data
            .get_or_insert_with(Default::default)
            .insert("seq".into(), seq.to_string());
        let sent = Instant::now();
        let updated = api
            .replace(&name, &PostParams::default(), &obj)
            .await
            .context("PUT during the watch phase")?;
        let responded = Instant::now();
        let new_rv = updated
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        obj = updated;
        let wait = if seq == 0 {
            Duration::from_secs(30)
        } else {
            Duration::from_secs(10)
        };
        for rx in receivers.iter_mut() {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some((s, erv, at))) if s == seq => {
                        if erv != new_rv {
                            mismatch += 1;
                        }
                        if seq > 0 {
                            if at < responded {
                                early += 1;
                            }
                            lat.push(at.saturating_duration_since(responded));
                            from_req.push(at.saturating_duration_since(sent));
                        }
                        break;
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => {
                        if seq == 0 {
                            bail!("a watcher did not receive the warm-up update within {wait:?}");
                        }
                        missed += 1;
                        break;
                    }
                }
            }
        }
    }
    for t in tasks {
        t.abort();
    }
    Ok(WatchFigures {
        latencies: Samples::new(lat),
        from_request: Samples::new(from_req),
        early,
        missed,
        rv_mismatch: mismatch,
    })
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// PUT with resourceVersion of every object (each exactly once, so no conflicts).
pub(crate) async fn put_phase(clients: &[Client], ns: &str) -> Result<(Parallel, usize)> {
    let api = Api::<ConfigMap>::namespaced(clients[0].clone(), ns);
    let objects = Arc::new(
        api.list(&ListParams::default())
            .await
            .context("listing before the PUTs")?
            .items,
    );
    let conflicts = Arc::new(AtomicUsize::new(0));
    let n = objects.len();
    let ns = ns.to_string();
    let c2 = conflicts.clone();
    let res = parallel(clients, n, move |c, i| {
        let (ns, objects, conflicts) = (ns.clone(), objects.clone(), c2.clone());
        async move {
            let api = Api::<ConfigMap>::namespaced(c, &ns);
            let mut obj = objects[i].clone();
            let name = obj.metadata.name.clone().unwrap_or_default();
            obj.data
                .get_or_insert_with(Default::default)
                .insert("put".into(), "1".into());
            let r = api
                .replace(&name, &PostParams::default(), &obj)
                .await
                .map(drop);
            if let Err(e) = &r {
                if is_conflict(e) {
                    conflicts.fetch_add(1, Ordering::Relaxed);
                }
            }
            r
        }
    })
    .await;
    Ok((res, conflicts.load(Ordering::Relaxed)))
}

/// JSON merge patch of every object.
pub(crate) async fn patch_phase(clients: &[Client], ns: &str, n: usize) -> Parallel {
    let ns = ns.to_string();
    parallel(clients, n, move |c, i| {
        let ns = ns.clone();
        async move {
            let api = Api::<ConfigMap>::namespaced(c, &ns);
            let patch = serde_json::json!({"data": {"patched": i.to_string()}});
            api.patch(
                &object_name(i),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map(drop)
        }
    })
    .await
}

/// deletecollection, then polls until a LIST is empty. Returns (time of the
/// deletecollection call, time until empty).
pub(crate) async fn delete_phase(client: &Client, ns: &str) -> Result<(Duration, Duration)> {
    let api = Api::<ConfigMap>::namespaced(client.clone(), ns);
    let started = Instant::now();
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .context("deletecollection")?;
    let call = started.elapsed();
    let path = format!("{}?limit=1", collection(ns));
    loop {
        let (items, _, _, _) = raw_list(client, path.clone()).await?;
        if items == 0 {
            return Ok((call, started.elapsed()));
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("the namespace still had ConfigMaps 300 s after deletecollection");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
