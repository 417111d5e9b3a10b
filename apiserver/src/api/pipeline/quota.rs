//! Upstream's `ResourceQuota` admission plugin: a create (or an update that grows what
//! an object uses) is refused with 403 when it would take a namespace's usage past a
//! quota's `status.hard`, and otherwise charged to the quota's `status.used` before
//! the object is stored.
//!
//! As upstream's quota evaluator, the charges waiting in a namespace are taken as one
//! batch: each is checked in turn against the usage the ones before it left, and each
//! quota the batch touches is written once, with a compare-and-swap on its revision.
//! Of two writes racing for the last slot one therefore sees the other's charge and is
//! refused, and concurrent creates cost one quota write per batch instead of one each.
//! A lost race (another server, the controller) re-reads that quota and checks the
//! batch again. The batch runs in its own task, so a client that goes away cannot
//! leave the others' charges half made. The quota controller
//! (`controllers/src/resourcequota.rs`) sets `status.hard` and recounts `status.used`
//! as objects come and go; a quota it has not counted yet limits nothing, as upstream.

pub mod quantity;
pub mod usage;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::oneshot;

use super::{AdmissionRequest, Operation, ValidatingAdmission};
use crate::api::guarded::{Attempts, Decision};
use crate::api::Api;
use crate::status::{ApiError, Result, Target};
use usage::{parse_list, pretty, quota_matches, tracks, ResourceList};

#[derive(Default)]
pub struct ResourceQuota {
    /// The server, once it runs: batches are evaluated in tasks of their own.
    api: OnceLock<Weak<Api>>,
    /// The charges waiting in each namespace with a batch in flight.
    queues: Arc<Mutex<HashMap<String, Vec<Charge>>>>,
}

/// One write's claim on its namespace's quotas, waiting for its batch.
struct Charge {
    group: String,
    plural: String,
    obj: Value,
    /// What the write adds to the namespace's usage.
    delta: ResourceList,
    dry_run: bool,
    target: Target,
    reply: oneshot::Sender<Result<()>>,
}

#[async_trait]
impl ValidatingAdmission for ResourceQuota {
    fn start(&self, api: &Arc<Api>) {
        let _ = self.api.set(Arc::downgrade(api));
    }

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
        if quota_names(api, ns).await?.is_empty() {
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
        let (reply, answer) = oneshot::channel();
        let charge = Charge {
            group: r.group.clone(),
            plural: r.plural.clone(),
            obj: obj.clone(),
            delta,
            dry_run: request.dry_run,
            target: Target::new(&r.group, &r.plural, request.name),
            reply,
        };
        match self.api.get().and_then(Weak::upgrade) {
            Some(server) => self.enqueue(server, ns, charge),
            // Not started (a pipeline driven by a test without a server): a batch of one.
            None => evaluate(api, ns, vec![charge]).await,
        }
        answer.await.unwrap_or_else(|_| {
            Err(ApiError::Internal(
                "the quota evaluation of this request stopped; retry the request".into(),
            ))
        })
    }
}

impl ResourceQuota {
    /// Queues `charge` behind its namespace's batch in flight, or starts one.
    fn enqueue(&self, api: Arc<Api>, ns: &str, charge: Charge) {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(waiting) = queues.get_mut(ns) {
            waiting.push(charge);
            return;
        }
        queues.insert(ns.to_string(), Vec::new());
        drop(queues);
        let (queues, ns) = (self.queues.clone(), ns.to_string());
        tokio::spawn(async move {
            let mut batch = vec![charge];
            loop {
                evaluate(&api, &ns, batch).await;
                let mut all = queues.lock().unwrap_or_else(|e| e.into_inner());
                match all.get_mut(&ns) {
                    Some(waiting) if !waiting.is_empty() => batch = std::mem::take(waiting),
                    _ => {
                        all.remove(&ns);
                        return;
                    }
                }
            }
        });
    }
}

/// The names of the quotas in `ns`, sorted (the order their charges are taken in).
async fn quota_names(api: &Api, ns: &str) -> Result<Vec<String>> {
    let snap = api.registry.snapshot();
    let Some(quotas) = snap.get("", "v1", "resourcequotas") else {
        return Ok(Vec::new());
    };
    let (listed, _) = api.cache(quotas).await?.list(&quotas.prefix_in(Some(ns)));
    let mut names: Vec<String> = listed
        .iter()
        .map(|q| crate::object::name(q).to_string())
        .collect();
    names.sort();
    Ok(names)
}

/// Checks and charges a batch of `ns`'s charges, in order, and answers each. A charge
/// refused by one quota gives back what the quotas before it took.
async fn evaluate(api: &Api, ns: &str, batch: Vec<Charge>) {
    let mut refused: Vec<Option<ApiError>> = batch.iter().map(|_| None).collect();
    let mut taken: Vec<Vec<(String, ResourceList)>> = batch.iter().map(|_| Vec::new()).collect();
    let snap = api.registry.snapshot();
    let names = match quota_names(api, ns).await {
        Ok(names) => names,
        Err(e) => {
            for charge in batch {
                let _ = charge.reply.send(Err(e.clone()));
            }
            return;
        }
    };
    if let Some(quotas) = snap.get("", "v1", "resourcequotas") {
        for name in &names {
            let key = quotas.key(Some(ns), name);
            match charge_one(api, &key, name, &batch, &refused).await {
                Ok((amounts, refusals)) => {
                    for (i, amount) in amounts.into_iter().enumerate() {
                        if let Some(amount) = amount {
                            taken[i].push((key.clone(), amount));
                        }
                    }
                    for (i, e) in refusals {
                        refused[i] = Some(e);
                    }
                }
                Err(e) => {
                    for slot in refused.iter_mut().filter(|r| r.is_none()) {
                        *slot = Some(e.clone());
                    }
                    break;
                }
            }
        }
    }
    // Give back, one write per quota, what the refused charges took from the quotas
    // checked before the one that refused them.
    let mut refunds: HashMap<&str, ResourceList> = HashMap::new();
    for (i, charges) in taken.iter().enumerate() {
        if refused[i].is_some() {
            for (key, amount) in charges {
                usage::add_into(refunds.entry(key.as_str()).or_default(), amount);
            }
        }
    }
    for (key, amount) in &refunds {
        refund(api, key, amount).await;
    }
    for (charge, refusal) in batch.into_iter().zip(refused) {
        let _ = charge.reply.send(refusal.map_or(Ok(()), Err));
    }
}

/// What one quota's write did for a batch: each charge's amount taken (`None`: the
/// quota does not apply, a dry run, or refused) and the charges it refused.
type QuotaOutcome = (Vec<Option<ResourceList>>, Vec<(usize, ApiError)>);

/// Checks the batch's charges not yet `refused` against one quota, in order, and
/// writes the quota once with what they take.
async fn charge_one(
    api: &Api,
    key: &str,
    quota_name: &str,
    batch: &[Charge],
    refused: &[Option<ApiError>],
) -> Result<QuotaOutcome> {
    let quota_target = Target::new("", "resourcequotas", quota_name);
    let mut attempts = Attempts::new(api, key, &quota_target);
    loop {
        let mut amounts: Vec<Option<ResourceList>> = batch.iter().map(|_| None).collect();
        let mut refusals = Vec::new();
        let Some(mut quota) = attempts.read().await? else {
            return Ok((amounts, refusals));
        };
        let hard = parse_list(quota.pointer("/status/hard"));
        let mut used = parse_list(quota.pointer("/status/used"));
        for (i, charge) in batch.iter().enumerate() {
            if refused[i].is_some() {
                continue;
            }
            match check(&quota, quota_name, &hard, &used, charge) {
                Ok(Some(requested)) if !charge.dry_run => {
                    usage::add_into(&mut used, &requested);
                    amounts[i] = Some(requested);
                }
                Ok(_) => {}
                Err(e) => refusals.push((i, e)),
            }
        }
        if amounts.iter().all(Option::is_none) {
            return Ok((amounts, refusals));
        }
        quota["status"]["used"] = usage::to_json(&used);
        if attempts.store(Decision::Write(quota)).await?.is_some() {
            return Ok((amounts, refusals));
        }
    }
}

/// What `charge` would take from a quota with `hard` limits and `used` so far: `None`
/// when the quota does not limit what it adds; a 403 with upstream's message when it
/// would exceed the quota.
fn check(
    quota: &Value,
    quota_name: &str,
    hard: &ResourceList,
    used: &ResourceList,
    charge: &Charge,
) -> Result<Option<ResourceList>> {
    let (group, plural) = (charge.group.as_str(), charge.plural.as_str());
    let forbidden = |msg: String| ApiError::Forbidden(charge.target.clone(), msg, None);
    if !quota_matches(quota, hard, group, plural, &charge.obj) {
        return Ok(None);
    }
    let restricted: BTreeSet<&str> = hard
        .keys()
        .map(String::as_str)
        .filter(|k| tracks(group, plural, k))
        .collect();
    if group.is_empty() && plural == "pods" {
        usage::pod_constraints(&charge.obj, &restricted)
            .map_err(|e| forbidden(format!("failed quota: {quota_name}: {e}")))?;
    }
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
    let requested: ResourceList = charge
        .delta
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
            pretty(&mask(used)),
            pretty(&mask(hard))
        )));
    }
    Ok(Some(requested))
}

/// Takes a charge back from a quota (never below zero); a failure only leaves the
/// quota over-counted until the controller recounts it.
async fn refund(api: &Api, key: &str, amount: &ResourceList) {
    let name = key.rsplit('/').next().unwrap_or(key);
    let target = Target::new("", "resourcequotas", name);
    let result = crate::api::guarded::update(api, key, &target, |current| {
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
