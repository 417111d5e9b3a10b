//! The disruption loop (upstream pkg/controller/disruption): keeps every
//! PodDisruptionBudget's status true to its pods, so the eviction API
//! (`apiserver::api::eviction`) can decide from it alone.
//!
//! One sync: the pods the selector finds (nil selects nothing, empty everything), the
//! expected count and desired healthy count (`status::expected_and_desired`, from the
//! controllers' scale where `maxUnavailable` or a percentage `minAvailable` needs it),
//! the evictions still pending in `disruptedPods`, the healthy pods, then the status
//! with `disruptionsAllowed` and the `DisruptionAllowed` condition
//! (SufficientPods/InsufficientPods). A sync that cannot count (a pod whose controller
//! cannot be found) leaves no disruption allowed, reason SyncFailed, as upstream's
//! failSafe. Pod changes bring a sync of every budget selecting the pod; a pending
//! eviction brings one when it would expire.

mod scale;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::Controller;
use kube::{Api, ResourceExt};
use tracing::{instrument, warn};

use crate::shared::labels::selector_matches;
use crate::{Context, LoopFuture};

/// Upstream's disruption controller reports events under this name.
const COMPONENT: &str = "controllermanager";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("poddisruptionbudget {0} has no namespace")]
    NoNamespace(String),
    #[error("writing status of {key}: {source}")]
    Status { key: String, source: kube::Error },
}

impl crate::runtime::retry::ReconcileError for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub struct State {
    pub client: kube::Client,
    pub pods: Store<Pod>,
}

/// The loop entry for [`crate::loops`].
pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        let budgets = ctx.informers.all::<PodDisruptionBudget>();
        let pods = ctx.informers.all::<Pod>();
        budgets.synced().await;
        pods.synced().await;
        let state = Arc::new(State {
            client: ctx.informers.client().clone(),
            pods: pods.store(),
        });
        let for_pods = budgets.store();
        Controller::for_shared_stream(budgets.touched(), budgets.store())
            .watches_shared_stream(pods.touched(), move |pod: Arc<Pod>| {
                budgets_for_pod(&for_pods, &pod)
            })
            .run(
                crate::runtime::metrics::metered(reconcile),
                crate::runtime::retry::error_policy,
                state,
            )
            .for_each(|result| async move {
                if let Err(e) = result {
                    warn!(error = %e, "poddisruptionbudget reconcile failed");
                }
            })
            .await;
        anyhow::bail!("the disruption controller stopped")
    })
}

/// The budgets of the pod's namespace whose selector selects it.
fn budgets_for_pod(
    budgets: &Store<PodDisruptionBudget>,
    pod: &Pod,
) -> Vec<ObjectRef<PodDisruptionBudget>> {
    let ns = pod.namespace().unwrap_or_default();
    budgets
        .state()
        .iter()
        .filter(|b| b.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|b| {
            let selector = b.spec.as_ref().and_then(|s| s.selector.as_ref());
            selector_matches(selector, pod.labels())
        })
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

#[instrument(skip_all, fields(key = %format!("{}/{}", pdb.namespace().unwrap_or_default(), pdb.name_any())))]
pub async fn reconcile(pdb: Arc<PodDisruptionBudget>, state: Arc<State>) -> Result<Action> {
    let ns = pdb
        .namespace()
        .ok_or_else(|| Error::NoNamespace(pdb.name_any()))?;
    let key = format!("{ns}/{}", pdb.name_any());
    let client = &state.client;
    let spec = pdb.spec.clone().unwrap_or_default();
    let all = state.pods.state();
    let pods: Vec<&Pod> = all
        .iter()
        .map(AsRef::as_ref)
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|p| selector_matches(spec.selector.as_ref(), p.labels()))
        .collect();
    if pods.is_empty() {
        event(client, &pdb, "Normal", "NoPods", "No matching pods found").await;
    }
    let count = i32::try_from(pods.len()).unwrap_or(i32::MAX);
    let scale = if status::needs_scale(&spec) {
        match scale::expected_scale(client, &ns, &pods).await {
            Ok((scale, unmanaged)) => {
                if !unmanaged.is_empty() {
                    event(
                        client,
                        &pdb,
                        "Normal",
                        "UnmanagedPods",
                        &unmanaged_message(&pdb),
                    )
                    .await;
                }
                scale
            }
            Err(e) => {
                let message = format!("Failed to calculate the number of expected pods: {e}");
                event(
                    client,
                    &pdb,
                    "Warning",
                    "CalculateExpectedPodCountFailed",
                    &message,
                )
                .await;
                let now = Timestamp::now();
                let failed = status::fail_safe(pdb.status.as_ref(), &e.to_string(), now);
                write_status(client, &pdb, &key, failed).await?;
                return Ok(Action::requeue(crate::runtime::retry::ERROR_RETRY));
            }
        }
    } else {
        0
    };
    let (expected_pods, desired_healthy) = status::expected_and_desired(&spec, count, scale);
    let now = Timestamp::now();
    let recorded = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref());
    let (disrupted_pods, recheck) = status::pending_disruptions(recorded, &pods, now);
    let current_healthy = status::count_healthy(&pods, &disrupted_pods, now);
    let figures = status::Figures {
        current_healthy,
        desired_healthy,
        expected_pods,
        disrupted_pods,
    };
    let new = status::status(pdb.status.as_ref(), pdb.metadata.generation, figures, now);
    write_status(client, &pdb, &key, new).await?;
    Ok(match recheck {
        Some(at) => {
            let wait = at.duration_since(now).unsigned_abs();
            Action::requeue(wait.max(Duration::from_secs(1)))
        }
        None => Action::await_change(),
    })
}

fn unmanaged_message(pdb: &PodDisruptionBudget) -> String {
    let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
    format!(
        "Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
        selector.map(describe_selector).unwrap_or_else(|| "nil".into())
    )
}

/// A selector as Go's `%v` prints a `*metav1.LabelSelector` (its generated String()).
fn describe_selector(s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector) -> String {
    let labels: String = s
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}: {v},"))
        .collect();
    let expressions: String = s
        .match_expressions
        .iter()
        .flatten()
        .map(|e| {
            let values = e.values.clone().unwrap_or_default().join(" ");
            format!(
                "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{values}],}},",
                e.key, e.operator
            )
        })
        .collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{{expressions}}},}}"
    )
}

/// Writes the status when it changed (a PUT on the resourceVersion read, as upstream's
/// UpdateStatus: a conflict means a newer budget, whose event brings another sync).
async fn write_status(
    client: &kube::Client,
    pdb: &PodDisruptionBudget,
    key: &str,
    new: k8s_openapi::api::policy::v1::PodDisruptionBudgetStatus,
) -> Result<()> {
    if pdb.status.as_ref() == Some(&new) {
        return Ok(());
    }
    let mut updated = pdb.clone();
    updated.status = Some(new);
    updated.metadata.managed_fields = None;
    match Api::<PodDisruptionBudget>::namespaced(
        client.clone(),
        &pdb.namespace().unwrap_or_default(),
    )
    .replace_status(&pdb.name_any(), &PostParams::default(), &updated)
    .await
    {
        Ok(_) => Ok(()),
        // A newer budget is on its way from the watch; it brings its own sync.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(source) => Err(Error::Status {
            key: key.to_string(),
            source,
        }),
    }
}

/// An event about the budget; best effort.
async fn event(
    client: &kube::Client,
    pdb: &PodDisruptionBudget,
    type_: &str,
    reason: &str,
    message: &str,
) {
    crate::podcontrol::publish_event(client, pdb, type_, reason, message, COMPONENT).await;
}
