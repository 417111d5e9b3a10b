//! Upstream's `ResourceQuota` admission plugin: a create (or an update that grows what
//! an object uses) is refused with 403 when it would take a namespace's usage past a
//! quota's `status.hard`, and otherwise charged to the quota's `status.used` before
//! the object is stored. The charge is a compare-and-swap on the quota's revision, so
//! of two creates racing for the last slot one sees the other's charge and is refused.
//! Within one server the charges of a namespace are taken one at a time (upstream's
//! quota evaluator queues them per namespace), so concurrent creates there do not race
//! each other into the compare-and-swap's retries and clients never see a 409 for a
//! quota they did not write; the retries remain for other servers and the controller.
//! The quota controller (`controllers/src/resourcequota.rs`) sets `status.hard` and
//! recounts `status.used` as objects come and go; a quota it has not counted yet
//! limits nothing, as upstream.

pub mod quantity;
pub mod usage;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use super::{AdmissionRequest, Operation, ValidatingAdmission};
use crate::api::guarded::{Attempts, Decision};
use crate::api::Api;
use crate::status::{ApiError, Result, Target};
use usage::{parse_list, pretty, quota_matches, tracks, ResourceList};

#[derive(Default)]
pub struct ResourceQuota {
    /// One lock per namespace with charges in flight; dropped when the last is done.
    namespaces: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ResourceQuota {
    fn lock_of(&self, ns: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, l| Arc::strong_count(l) > 1);
        map.entry(ns.to_string()).or_default().clone()
    }
}

#[async_trait]
impl ValidatingAdmission for ResourceQuota {
    async fn validate(
        &self,
        api: &Api,
        request: &AdmissionRequest<'_>,
        obj: &Value,
        old: Option<&Value>,
    ) -> Result<()> {
        let r = request.resource;
        let Some(ns) = request.namespace else {
            return Ok(());
        };
        let counted_update = r.group.is_empty()
            && matches!(
                r.plural.as_str(),
                "pods" | "services" | "persistentvolumeclaims"
            );
        match request.operation {
            Operation::Create => {}
            Operation::Update if counted_update => {}
            _ => return Ok(()),
        }
        if request.subresource.is_some() {
            return Ok(());
        }
        let snap = api.registry.snapshot();
        let Some(quotas) = snap.get("", "v1", "resourcequotas") else {
            return Ok(());
        };
        let (listed, _) = api.cache(quotas).await?.list(&quotas.prefix_in(Some(ns)));
        if listed.is_empty() {
            return Ok(());
        }
        let mut delta = usage::usage(&r.group, &r.plural, obj);
        if let Some(old) = old {
            let before = usage::usage(&r.group, &r.plural, old);
            for (k, q) in &before {
                if let Some(d) = delta.get_mut(k) {
                    *d = *d - *q;
                }
            }
            delta.retain(|_, q| q.milli > 0);
        }
        if delta.is_empty() {
            return Ok(());
        }
        let target = Target::new(&r.group, &r.plural, request.name);
        let mut names: Vec<String> = listed
            .iter()
            .map(|q| crate::object::name(q).to_string())
            .collect();
        names.sort();
        let lock = self.lock_of(ns);
        let _one_at_a_time = lock.lock().await;
        let mut charged: Vec<(String, ResourceList)> = Vec::new();
        for quota in &names {
            let key = quotas.key(Some(ns), quota);
            match charge(api, &key, quota, request, obj, &delta, &target).await {
                Ok(Some(amount)) => charged.push((key, amount)),
                Ok(None) => {}
                Err(e) => {
                    // Give back what the quotas checked before this one were charged.
                    for (key, amount) in &charged {
                        refund(api, key, amount, &target).await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

/// Checks one quota and charges it (unless a dry run): what was charged, `None` when
/// the quota does not apply.
async fn charge(
    api: &Api,
    key: &str,
    quota_name: &str,
    request: &AdmissionRequest<'_>,
    obj: &Value,
    delta: &ResourceList,
    target: &Target,
) -> Result<Option<ResourceList>> {
    let r = request.resource;
    let forbidden = |msg: String| ApiError::Forbidden(target.clone(), msg, None);
    let quota_target = Target::new("", "resourcequotas", quota_name);
    let mut attempts = Attempts::new(api, key, &quota_target);
    loop {
        let Some(mut quota) = attempts.read().await? else {
            return Ok(None);
        };
        let hard = parse_list(quota.pointer("/status/hard"));
        if !quota_matches(&quota, &hard, &r.group, &r.plural, obj) {
            return Ok(None);
        }
        let restricted: BTreeSet<&str> = hard
            .keys()
            .map(String::as_str)
            .filter(|k| tracks(&r.group, &r.plural, k))
            .collect();
        if r.group.is_empty() && r.plural == "pods" {
            usage::pod_constraints(obj, &restricted)
                .map_err(|e| forbidden(format!("failed quota: {quota_name}: {e}")))?;
        }
        let used = parse_list(quota.pointer("/status/used"));
        let unknown: Vec<&str> = restricted
            .iter()
            .copied()
            .filter(|k| !used.contains_key(*k))
            .collect();
        if !unknown.is_empty() {
            return Err(forbidden(format!(
                "status unknown for quota: {quota_name}, resources: {}",
                unknown.join(",")
            )));
        }
        let requested: ResourceList = delta
            .iter()
            .filter(|(k, _)| hard.contains_key(*k))
            .map(|(k, q)| (k.clone(), *q))
            .collect();
        if requested.is_empty() {
            return Ok(None);
        }
        let mut new_used = used.clone();
        usage::add_into(&mut new_used, &requested);
        let exceeded: Vec<&String> = requested
            .keys()
            .filter(|k| new_used[*k] > hard[*k])
            .collect();
        if !exceeded.is_empty() {
            let mask = |list: &ResourceList| -> ResourceList {
                exceeded
                    .iter()
                    .filter_map(|k| Some(((*k).clone(), *list.get(*k)?)))
                    .collect()
            };
            return Err(forbidden(format!(
                "exceeded quota: {quota_name}, requested: {}, used: {}, limited: {}",
                pretty(&mask(&requested)),
                pretty(&mask(&used)),
                pretty(&mask(&hard))
            )));
        }
        if request.dry_run {
            return Ok(None);
        }
        quota["status"]["used"] = usage::to_json(&new_used);
        if attempts.store(Decision::Write(quota)).await?.is_some() {
            return Ok(Some(requested));
        }
    }
}

/// Takes a charge back from a quota (never below zero); a failure only leaves the
/// quota over-counted until the controller recounts it.
async fn refund(api: &Api, key: &str, amount: &ResourceList, target: &Target) {
    let result = crate::api::guarded::update(api, key, target, |current| {
        let Some(current) = current else {
            return Ok(Decision::Unchanged);
        };
        let mut quota = current.clone();
        let mut used = parse_list(quota.pointer("/status/used"));
        for (k, q) in amount {
            if let Some(u) = used.get_mut(k) {
                *u = *u - *q;
                if u.milli < 0 {
                    u.milli = 0;
                }
            }
        }
        quota["status"]["used"] = usage::to_json(&used);
        Ok(Decision::Write(quota))
    })
    .await;
    if let Err(e) = result {
        tracing::warn!(key, error = %e, "could not give back a quota charge");
    }
}
