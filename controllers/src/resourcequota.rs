//! The resource quota controller (upstream's `pkg/controller/resourcequota`): each
//! ResourceQuota's `status.hard` follows its `spec.hard`, and `status.used` is
//! recounted from the namespace's objects (a consistent LIST of each kind a quota
//! limits, so nothing a create's admission already charged is missed once stored)
//! when a quota is new or its limits changed, when a tracked object is deleted or a
//! pod finishes (replenishment), and every five minutes in any case. The admission
//! plugin (`apiserver::api::pipeline::quota`) charges creates between recounts; this
//! loop never reacts to those charges themselves, or a recount racing a create that
//! was charged but not yet stored could hand its slot out twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use apiserver::api::pipeline::quota::quantity::Quantity;
use apiserver::api::pipeline::quota::usage::{self, parse_list, ResourceList};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ResourceQuota, Secret, Service,
};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::discovery::{ApiResource, Discovery};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use serde_json::{json, Value};

use crate::runtime::informers::{Informer, Kind, Touched};
use crate::{Context, LoopFuture};

/// How often every quota is recounted (upstream's `--resource-quota-sync-period`).
pub const FULL_RECALCULATION: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} for quota {key}: {source}")]
    Api {
        what: &'static str,
        key: String,
        source: kube::Error,
    },
    #[error("quota {key} limits {resource}, which this server does not serve")]
    UnknownResource { key: String, resource: String },
}

impl crate::runtime::retry::ReconcileError for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        let quotas = ctx.informers.all::<ResourceQuota>();
        quotas.synced().await;
        let store = quotas.store();
        // Deletions free what they used; a pod also frees its compute once finished.
        let pods = replenish::<Pod>(&ctx, store.clone(), |t| match t {
            Touched::Deleted(_) => true,
            Touched::Applied(p) => p
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|p| p == "Succeeded" || p == "Failed"),
        });
        let services = replenish::<Service>(&ctx, store.clone(), deleted);
        let claims = replenish::<PersistentVolumeClaim>(&ctx, store.clone(), deleted);
        let maps = replenish::<ConfigMap>(&ctx, store.clone(), deleted);
        let secrets = replenish::<Secret>(&ctx, store.clone(), deleted);
        let changed = quotas.events().filter_map(|t| async move {
            match t {
                Touched::Applied(q) if needs_count(&q) => Some(q),
                _ => None,
            }
        });
        Controller::for_shared_stream(changed, store)
            .reconcile_on(pods)
            .reconcile_on(services)
            .reconcile_on(claims)
            .reconcile_on(maps)
            .reconcile_on(secrets)
            .run(
                crate::runtime::metrics::metered(reconcile),
                crate::runtime::retry::error_policy,
                ctx,
            )
            .for_each(|r| async move {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "resourcequota reconcile failed");
                }
            })
            .await;
        Ok(())
    })
}

fn deleted<K>(t: &Touched<K>) -> bool {
    matches!(t, Touched::Deleted(_))
}

/// Every quota of the namespace of each `K` that `frees` says gave something back.
fn replenish<K: Kind>(
    ctx: &Context,
    quotas: Store<ResourceQuota>,
    frees: impl Fn(&Touched<K>) -> bool + Send + Sync + 'static,
) -> impl Stream<Item = ObjectRef<ResourceQuota>> + Send + 'static {
    let informer: Informer<K> = ctx.informers.all::<K>();
    informer
        .events()
        .filter(move |t| futures::future::ready(frees(t)))
        .flat_map(move |t| {
            let ns = t.object().namespace();
            let refs: Vec<ObjectRef<ResourceQuota>> = quotas
                .state()
                .iter()
                .filter(|q| q.namespace() == ns)
                .map(|q| ObjectRef::from_obj(q.as_ref()))
                .collect();
            futures::stream::iter(refs)
        })
}

/// A quota not counted yet, or whose limits changed since it was.
fn needs_count(q: &ResourceQuota) -> bool {
    let spec = q.spec.as_ref().and_then(|s| s.hard.as_ref());
    let status = q.status.as_ref();
    let to_list = |m: Option<
        &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >|
     -> ResourceList {
        m.into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), Quantity::parse(&v.0)?)))
            .collect()
    };
    let hard = to_list(spec);
    let used = to_list(status.and_then(|s| s.used.as_ref()));
    hard != to_list(status.and_then(|s| s.hard.as_ref()))
        || hard.keys().any(|k| !used.contains_key(k))
}

/// The kinds whose objects the quota resource `name` counts: `(group, plural)`.
pub fn kinds_of(name: &str) -> Vec<(String, String)> {
    let core = |p: &str| vec![(String::new(), p.to_string())];
    if let Some(rest) = name.strip_prefix("count/") {
        return match rest.split_once('.') {
            Some((plural, group)) => vec![(group.to_string(), plural.to_string())],
            None => core(rest),
        };
    }
    for plural in [
        "pods",
        "services",
        "persistentvolumeclaims",
        "configmaps",
        "secrets",
        "replicationcontrollers",
        "resourcequotas",
    ] {
        if usage::tracks("", plural, name) {
            return core(plural);
        }
    }
    Vec::new()
}

/// The quota's status for the namespace's objects (upstream's `CalculateUsage`): hard
/// as the spec says, used for each hard resource, zero when nothing uses it.
pub fn calculate_status(quota: &Value, objects: &BTreeMap<(String, String), Vec<Value>>) -> Value {
    let hard = parse_list(quota.pointer("/spec/hard"));
    let mut used: ResourceList = hard
        .keys()
        .map(|k| (k.clone(), Quantity::default()))
        .collect();
    for ((group, plural), items) in objects {
        for obj in items {
            if !usage::quota_matches(quota, &hard, group, plural, obj) {
                continue;
            }
            let counted: ResourceList = usage::usage(group, plural, obj)
                .into_iter()
                .filter(|(k, _)| hard.contains_key(k))
                .collect();
            usage::add_into(&mut used, &counted);
        }
    }
    json!({"hard": usage::to_json(&hard), "used": usage::to_json(&used)})
}

#[tracing::instrument(skip_all, fields(key = %format!("{}/{}", q.namespace().unwrap_or_default(), q.name_any())))]
async fn reconcile(q: Arc<ResourceQuota>, ctx: Arc<Context>) -> Result<Action> {
    let ns = q.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", q.name_any());
    let err = |what| {
        let key = key.clone();
        move |source| Error::Api { what, key, source }
    };
    let quotas = Api::<ResourceQuota>::namespaced(ctx.client.clone(), &ns);
    // The quota first, then the objects: a charge made after this read fails our write
    // with a conflict, and we count again.
    let Some(current) = quotas
        .get_opt(&q.name_any())
        .await
        .map_err(err("reading"))?
    else {
        return Ok(Action::await_change());
    };
    let quota = serde_json::to_value(&current).unwrap_or_default();
    let hard = parse_list(quota.pointer("/spec/hard"));
    let kinds: BTreeSet<(String, String)> = hard.keys().flat_map(|k| kinds_of(k)).collect();
    let mut objects = BTreeMap::new();
    let mut discovery: Option<Discovery> = None;
    for (group, plural) in kinds {
        let resource = if group.is_empty() {
            Some(ApiResource {
                group: String::new(),
                version: "v1".into(),
                api_version: "v1".into(),
                kind: String::new(),
                plural: plural.clone(),
            })
        } else {
            if discovery.is_none() {
                discovery = Some(
                    Discovery::new(ctx.client.clone())
                        .run()
                        .await
                        .map_err(err("discovering resources"))?,
                );
            }
            discovery
                .as_ref()
                .and_then(|d| d.get(&group))
                .and_then(|g| {
                    g.recommended_resources()
                        .into_iter()
                        .find(|(r, _)| r.plural == plural)
                })
                .map(|(r, _)| r)
        };
        let Some(resource) = resource else {
            return Err(Error::UnknownResource {
                key,
                resource: usage::count_name(&group, &plural),
            });
        };
        let list = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &ns, &resource)
            .list(&ListParams::default())
            .await
            .map_err(err("listing what it counts"))?;
        let items = list
            .items
            .into_iter()
            .map(|o| serde_json::to_value(o).unwrap_or_default())
            .collect();
        objects.insert((group, plural), items);
    }
    let status = calculate_status(&quota, &objects);
    let unchanged = quota.get("status").is_some_and(|s| {
        parse_list(s.get("hard")) == parse_list(status.get("hard"))
            && parse_list(s.get("used")) == parse_list(status.get("used"))
            && s.get("used").and_then(Value::as_object).map(|m| m.len())
                == status
                    .get("used")
                    .and_then(Value::as_object)
                    .map(|m| m.len())
    });
    if !unchanged {
        let mut next = current.clone();
        next.status = serde_json::from_value(status).ok();
        // Replacing keeps the resourceVersion read: a charge in between is a 409 and a retry.
        quotas
            .replace_status(&q.name_any(), &PostParams::default(), &next)
            .await
            .map_err(err("writing status of"))?;
        tracing::info!("counted usage");
    }
    Ok(Action::requeue(FULL_RECALCULATION))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_counts_matching_objects_for_each_hard_resource() {
        let quota = json!({"spec": {"hard": {"pods": "2", "requests.cpu": "1", "count/deployments.apps": "3", "services.loadbalancers": "1"}}});
        let pod = |cpu: &str, phase: &str| json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": cpu}}}]}, "status": {"phase": phase}});
        let objects = BTreeMap::from([
            (
                (String::new(), "pods".to_string()),
                vec![
                    pod("250m", "Running"),
                    pod("500m", "Pending"),
                    pod("2", "Succeeded"),
                ],
            ),
            (
                ("apps".to_string(), "deployments".to_string()),
                vec![json!({})],
            ),
            (
                (String::new(), "services".to_string()),
                vec![json!({"spec": {"type": "ClusterIP"}})],
            ),
        ]);
        let status = calculate_status(&quota, &objects);
        assert_eq!(
            status["hard"], quota["spec"]["hard"],
            "hard follows the spec"
        );
        assert_eq!(
            status["used"],
            json!({"pods": "2", "requests.cpu": "750m", "count/deployments.apps": "1", "services.loadbalancers": "0"}),
            "a finished pod frees its slot and its cpu; nothing used is zero"
        );
    }

    #[test]
    fn quota_resources_name_the_kinds_they_count() {
        let cases = [
            ("legacy pods", "pods", vec![("", "pods")]),
            ("compute", "limits.memory", vec![("", "pods")]),
            (
                "count of a group's kind",
                "count/deployments.apps",
                vec![("apps", "deployments")],
            ),
            (
                "count of a core kind",
                "count/secrets",
                vec![("", "secrets")],
            ),
            ("node ports", "services.nodeports", vec![("", "services")]),
            (
                "storage per class",
                "gold.storageclass.storage.k8s.io/requests.storage",
                vec![("", "persistentvolumeclaims")],
            ),
        ];
        for (name, resource, want) in cases {
            let want: Vec<(String, String)> = want
                .into_iter()
                .map(|(g, p)| (g.to_string(), p.to_string()))
                .collect();
            assert_eq!(kinds_of(resource), want, "{name}");
        }
    }
}
