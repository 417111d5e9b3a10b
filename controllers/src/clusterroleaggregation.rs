//! The ClusterRole aggregation controller (upstream's `clusterrole-aggregation`): a
//! ClusterRole with an `aggregationRule` holds the union of the rules of every other
//! ClusterRole its selectors match, in name order without repeats, and is rewritten
//! whenever any ClusterRole changes (so `admin`, `edit` and `view` pick up the
//! `aggregate-to-*` roles a CRD's operator installs).

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use serde_json::json;

use crate::shared::labels::selector_matches;
use crate::{Context, LoopFuture};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the aggregated rules of ClusterRole {name}: {source}")]
    Write { name: String, source: kube::Error },
}

impl crate::runtime::retry::ReconcileError for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        let roles = ctx.informers.all::<ClusterRole>();
        roles.synced().await;
        let store = roles.store();
        // Any role's change may change what an aggregated role selects: every aggregated
        // role is looked at again.
        let aggregated = {
            let store = store.clone();
            move |_: Arc<ClusterRole>| {
                store
                    .state()
                    .into_iter()
                    .filter(|r| r.aggregation_rule.is_some())
                    .map(|r| ObjectRef::from_obj(&*r))
                    .collect::<Vec<_>>()
            }
        };
        Controller::for_shared_stream(roles.touched(), store)
            .watches_shared_stream(roles.touched(), aggregated)
            .run(
                crate::runtime::metrics::metered(reconcile),
                crate::runtime::retry::error_policy,
                ctx,
            )
            .for_each(|r| async move {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "clusterrole-aggregation reconcile failed");
                }
            })
            .await;
        Ok(())
    })
}

#[tracing::instrument(skip_all, fields(key = %role.name_any()))]
async fn reconcile(role: Arc<ClusterRole>, ctx: Arc<Context>) -> Result<Action> {
    let store = ctx.informers.all::<ClusterRole>().store();
    let Some(rules) = aggregated_rules(&role, &store) else {
        return Ok(Action::await_change());
    };
    if role.rules.as_deref().unwrap_or_default() == rules.as_slice() {
        return Ok(Action::await_change());
    }
    let name = role.name_any();
    Api::<ClusterRole>::all(ctx.client.clone())
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"rules": rules})),
        )
        .await
        .map_err(|source| Error::Write {
            name: name.clone(),
            source,
        })?;
    tracing::info!(rules = rules.len(), "aggregated rules written");
    Ok(Action::await_change())
}

/// The rules `role` should hold: those of every other ClusterRole one of its selectors
/// matches, by name, each rule once; `None` for a role without an aggregation rule.
pub fn aggregated_rules(role: &ClusterRole, roles: &Store<ClusterRole>) -> Option<Vec<PolicyRule>> {
    let selectors = role
        .aggregation_rule
        .as_ref()?
        .cluster_role_selectors
        .clone();
    let mut sources: Vec<Arc<ClusterRole>> = roles
        .state()
        .into_iter()
        .filter(|r| r.name_any() != role.name_any())
        .filter(|r| {
            selectors
                .iter()
                .flatten()
                .any(|s| selector_matches(Some(s), r.labels()))
        })
        .collect();
    sources.sort_by_key(|r| r.name_any());
    let mut rules: Vec<PolicyRule> = Vec::new();
    for rule in sources.iter().flat_map(|r| r.rules.iter().flatten()) {
        if !rules.contains(rule) {
            rules.push(rule.clone());
        }
    }
    Some(rules)
}
