//! Node, pod, namespace, PDB, claim and StorageClass watchers feeding the cache and
//! the queue. A re-list (after a watch
//! gap) replaces the set: objects missing from it are treated as deleted.

use std::collections::HashSet;
use std::sync::Arc;

use futures::TryStreamExt;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use tokio::sync::Notify;

use super::cache::{ClaimInfo, Pdb, PodInfo};
use super::framework::{event, plugin};
use super::objects::{Namespace, Node, PersistentVolumeClaim, Pod};
use super::Scheduler;

/// The scheduler's list+watch options. Consistent, paginated lists (25 objects a page)
/// rather than resourceVersion=0, which the watch cache answers in one response with
/// every object: with 10000 pods that single response and its decoded objects were the
/// largest part of the scheduler's peak memory. Each page's body and its decoded objects
/// exist at once; at 500 a page the body buffer alone was ~1 MiB of a 12 MiB peak heap
/// (`kybern bench scheduler`, 3000 pods); at 100 a page and its pods were still ~1 MiB
/// of a 7 MiB peak heap, at 25 a quarter of that for 120 requests of a few ms each.
fn list_options() -> watcher::Config {
    watcher::Config::default()
        .list_semantic(watcher::ListSemantic::MostRecent)
        .page_size(25)
}

pub(crate) async fn watch_nodes(s: Arc<Scheduler>, synced: Arc<Notify>) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(s.client.clone());
    let mut stream = std::pin::pin!(watcher::watcher(api, list_options()).default_backoff());
    let mut seen: HashSet<String> = HashSet::new();
    while let Some(ev) = stream.try_next().await? {
        match ev {
            Event::Init => seen.clear(),
            Event::InitApply(n) => {
                seen.insert(n.metadata.name.clone().unwrap_or_default());
                s.cache().apply_node(n);
            }
            Event::InitDone => {
                let gone: Vec<String> = {
                    let cache = s.cache();
                    cache
                        .nodes()
                        .iter()
                        .map(|n| n.name.clone())
                        .filter(|n| !seen.contains(n))
                        .collect()
                };
                for n in gone {
                    s.cache().delete_node(&n);
                }
                seen = HashSet::new();
                synced.notify_one();
                s.queue.move_for(event::NODE_ADD);
            }
            Event::Apply(n) => {
                let ev = s.cache().apply_node(n);
                if ev != 0 {
                    s.queue.move_for(ev);
                }
            }
            Event::Delete(n) => s
                .cache()
                .delete_node(n.metadata.name.as_deref().unwrap_or("")),
        }
    }
    Ok(())
}

/// Namespace labels for namespaceSelector. A label change may let a pod parked by
/// InterPodAffinity fit.
pub(crate) async fn watch_namespaces(s: Arc<Scheduler>, synced: Arc<Notify>) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(s.client.clone());
    let mut stream = std::pin::pin!(watcher::watcher(api, list_options()).default_backoff());
    let mut seen: HashSet<String> = HashSet::new();
    let name = |n: &Namespace| n.metadata.name.clone().unwrap_or_default();
    while let Some(ev) = stream.try_next().await? {
        match ev {
            Event::Init => seen.clear(),
            Event::InitApply(n) => {
                let key = name(&n);
                seen.insert(key.clone());
                s.cache()
                    .namespaces
                    .insert(key, n.metadata.labels.unwrap_or_default());
            }
            Event::InitDone => {
                s.cache().namespaces.retain(|k, _| seen.contains(k));
                synced.notify_one();
            }
            Event::Apply(n) => {
                let labels = n.metadata.labels.clone().unwrap_or_default();
                let old = s.cache().namespaces.insert(name(&n), labels.clone());
                if old.is_none_or(|o| o != labels) {
                    s.queue.move_for(plugin::INTER_POD_AFFINITY);
                }
            }
            Event::Delete(n) => {
                s.cache().namespaces.remove(&name(&n));
            }
        }
    }
    Ok(())
}

/// PodDisruptionBudgets, which preemption avoids violating.
pub(crate) async fn watch_pdbs(s: Arc<Scheduler>) -> anyhow::Result<()> {
    let api: Api<PodDisruptionBudget> = Api::all(s.client.clone());
    let mut stream = std::pin::pin!(watcher::watcher(api, list_options()).default_backoff());
    let mut seen: HashSet<String> = HashSet::new();
    let key = |p: &PodDisruptionBudget| {
        format!(
            "{}/{}",
            p.metadata.namespace.as_deref().unwrap_or(""),
            p.metadata.name.as_deref().unwrap_or("")
        )
    };
    while let Some(ev) = stream.try_next().await? {
        match ev {
            Event::Init => seen.clear(),
            Event::InitApply(p) => {
                seen.insert(key(&p));
                s.cache().set_pdb(key(&p), Some(Pdb::new(&p)));
            }
            Event::InitDone => {
                let gone: Vec<String> = s
                    .cache()
                    .pdbs
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                for k in gone {
                    s.cache().set_pdb(k, None);
                }
            }
            Event::Apply(p) => s.cache().set_pdb(key(&p), Some(Pdb::new(&p))),
            Event::Delete(p) => s.cache().set_pdb(key(&p), None),
        }
    }
    Ok(())
}

/// PersistentVolumeClaims, for VolumeBinding: any change may let a parked pod with
/// claims fit (a bind completed, a claim created or gone).
pub(crate) async fn watch_claims(s: Arc<Scheduler>, synced: Arc<Notify>) -> anyhow::Result<()> {
    let api: Api<PersistentVolumeClaim> = Api::all(s.client.clone());
    let mut stream = std::pin::pin!(watcher::watcher(api, list_options()).default_backoff());
    let mut seen: HashSet<String> = HashSet::new();
    let key = |c: &PersistentVolumeClaim| {
        format!(
            "{}/{}",
            c.metadata.namespace.as_deref().unwrap_or(""),
            c.metadata.name.as_deref().unwrap_or("")
        )
    };
    while let Some(ev) = stream.try_next().await? {
        match ev {
            Event::Init => seen.clear(),
            Event::InitApply(c) => {
                seen.insert(key(&c));
                s.cache().volumes.claims.insert(key(&c), ClaimInfo::new(&c));
            }
            Event::InitDone => {
                s.cache().volumes.claims.retain(|k, _| seen.contains(k));
                seen = HashSet::new();
                synced.notify_one();
                s.queue.move_for(event::VOLUMES);
            }
            Event::Apply(c) => {
                let info = ClaimInfo::new(&c);
                let old = s.cache().volumes.claims.insert(key(&c), info.clone());
                if old.is_none_or(|o| o != info) {
                    s.queue.move_for(event::VOLUMES);
                }
            }
            Event::Delete(c) => {
                s.cache().volumes.claims.remove(&key(&c));
                s.queue.move_for(event::VOLUMES);
            }
        }
    }
    Ok(())
}

/// StorageClasses: which ones delay binding until a pod is scheduled.
pub(crate) async fn watch_classes(s: Arc<Scheduler>, synced: Arc<Notify>) -> anyhow::Result<()> {
    let api: Api<StorageClass> = Api::all(s.client.clone());
    let mut stream = std::pin::pin!(watcher::watcher(api, list_options()).default_backoff());
    let mut delayed: HashSet<String> = HashSet::new();
    let name = |c: &StorageClass| c.metadata.name.clone().unwrap_or_default();
    let delays =
        |c: &StorageClass| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer");
    while let Some(ev) = stream.try_next().await? {
        match ev {
            Event::Init => delayed.clear(),
            Event::InitApply(c) => {
                if delays(&c) {
                    delayed.insert(name(&c));
                }
            }
            Event::InitDone => {
                s.cache().volumes.delayed_classes = std::mem::take(&mut delayed);
                synced.notify_one();
                s.queue.move_for(event::VOLUMES);
            }
            Event::Apply(c) => {
                let classes = &mut s.cache().volumes.delayed_classes;
                let changed = if delays(&c) {
                    classes.insert(name(&c))
                } else {
                    classes.remove(&name(&c))
                };
                if changed {
                    s.queue.move_for(event::VOLUMES);
                }
            }
            Event::Delete(c) => {
                s.cache().volumes.delayed_classes.remove(&name(&c));
            }
        }
    }
    Ok(())
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

pub(crate) async fn watch_pods(s: Arc<Scheduler>, synced: Arc<Notify>) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::all(s.client.clone());
    let mut stream = std::pin::pin!(watcher::watcher(api, list_options()).default_backoff());
    // The uids of a (re-)list, kept only until it is done.
    let mut seen: HashSet<String> = HashSet::new();
    while let Some(ev) = stream.try_next().await? {
        match ev {
            Event::Init => seen.clear(),
            Event::InitApply(p) => {
                seen.insert(uid(&p));
                apply_pod(&s, p);
            }
            Event::InitDone => {
                // Only the gone ones are copied (not every uid, at the peak of memory).
                let mut gone = s.cache().pod_uids_except(|u| seen.contains(u));
                gone.extend(s.queue.uids_except(|u| seen.contains(u)));
                for gone in gone {
                    delete_pod(&s, &gone);
                }
                seen = HashSet::new();
                synced.notify_one();
            }
            Event::Apply(p) => apply_pod(&s, p),
            Event::Delete(p) => delete_pod(&s, &uid(&p)),
        }
    }
    Ok(())
}

fn apply_pod(s: &Scheduler, pod: Pod) {
    let phase = pod.status.as_ref().and_then(|st| st.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        // Finished pods hold no resources.
        delete_pod(s, &uid(&pod));
        return;
    }
    let spec = pod.spec.as_ref();
    let assigned = spec
        .and_then(|sp| sp.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    if assigned {
        s.queue.delete(&uid(&pod));
        if s.cache().apply_pod(Arc::new(pod)) {
            s.queue.move_for(event::ASSIGNED_POD_ADD);
        }
        return;
    }
    let name = spec
        .and_then(|sp| sp.scheduler_name.as_deref())
        .unwrap_or("default-scheduler");
    if name != s.config.scheduler_name || pod.metadata.deletion_timestamp.is_some() {
        return;
    }
    // A pod we assumed but whose binding the informer has not shown yet stays out.
    if s.cache().has_pod(&uid(&pod)) {
        return;
    }
    s.queue.add(Arc::new(PodInfo::new(Arc::new(pod))));
}

fn delete_pod(s: &Scheduler, uid: &str) {
    let was_assigned = s.cache().delete_pod(uid);
    s.queue.delete(uid);
    if was_assigned {
        s.queue.move_for(event::ASSIGNED_POD_DELETE);
    }
}
