//! The HorizontalPodAutoscaler loop (upstream pkg/controller/podautoscaler), every 15 s
//! per autoscaler: read the target's replicas through its `/scale` subresource, keep
//! them within [minReplicas, maxReplicas] (scaling up to min and down to max even
//! before any metric exists, as upstream), and within range scale on Resource metrics
//! (CPU and memory, Utilization and AverageValue, also per container) read from
//! metrics.k8s.io PodMetrics: `metrics` proposes (upstream's replica calculator in
//! `replicas`), `behavior` stabilizes and rate-limits, and the status carries
//! currentMetrics and the AbleToScale, ScalingActive and ScalingLimited conditions with
//! upstream's reasons. Pods, Object and External metrics need custom and external
//! metrics APIs kybern does not serve: they report ScalingActive False.

mod apply;
pub mod behavior;
mod metrics;
mod plan;
pub mod replicas;
mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::Controller;
use kube::{Api, ResourceExt};
use tracing::{info, instrument, warn};

pub use plan::{decide, metric_failure, rescaled_within_period, Decision};
pub use status::{set_condition, ABLE_TO_SCALE, SCALING_ACTIVE, SCALING_LIMITED};

use crate::{Context, LoopFuture};

/// Upstream's --horizontal-pod-autoscaler-sync-period.
pub const SYNC_PERIOD: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("horizontalpodautoscaler {0} has no namespace")]
    NoNamespace(String),
    #[error("writing status of {key}: {source}")]
    Status { key: String, source: kube::Error },
}

impl crate::runtime::retry::ReconcileError for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub struct State {
    pub client: kube::Client,
    /// Recommendations and rescales of each autoscaler (by key), for the
    /// stabilization windows and scaling policies.
    history: std::sync::Mutex<std::collections::HashMap<String, behavior::History>>,
}

/// The loop entry for [`crate::loops`].
pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        let hpas = ctx.informers.all::<HorizontalPodAutoscaler>();
        hpas.synced().await;
        let state = Arc::new(State {
            client: ctx.informers.client().clone(),
            history: Default::default(),
        });
        Controller::for_shared_stream(hpas.touched(), hpas.store())
            .run(
                crate::runtime::metrics::metered(reconcile),
                crate::runtime::retry::error_policy,
                state,
            )
            .for_each(|result| async move {
                if let Err(e) = result {
                    warn!(error = %e, "horizontalpodautoscaler reconcile failed");
                }
            })
            .await;
        anyhow::bail!("the horizontalpodautoscaler controller stopped")
    })
}

#[instrument(skip_all, fields(key = %format!("{}/{}", hpa.namespace().unwrap_or_default(), hpa.name_any())))]
pub async fn reconcile(hpa: Arc<HorizontalPodAutoscaler>, state: Arc<State>) -> Result<Action> {
    let ns = hpa
        .namespace()
        .ok_or_else(|| Error::NoNamespace(hpa.name_any()))?;
    let key = format!("{ns}/{}", hpa.name_any());
    let Some(spec) = hpa.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let client = &state.client;
    let old = hpa.status.clone();
    let mut status = old.clone().unwrap_or_default();
    status.observed_generation = hpa.metadata.generation;
    let now = Timestamp::now();
    let target = &spec.scale_target_ref;

    let scale = match apply::scale_api(client, &ns, target).await {
        Ok(api) => apply::get_scale(&api, &target.name).await.map(|s| (api, s)),
        Err(e) => Err(e),
    };
    let (scale_api, scale) = match scale {
        Ok(found) => found,
        Err(e) => {
            let message =
                format!("the HPA controller was unable to get the target's current scale: {e}");
            if !status::has_reason(old.as_ref(), ABLE_TO_SCALE, "FailedGetScale") {
                apply::event(client, &hpa, "Warning", "FailedGetScale", &e.to_string()).await;
            }
            set_condition(
                &mut status,
                ABLE_TO_SCALE,
                false,
                "FailedGetScale",
                &message,
                now,
            );
            write_status(client, &hpa, &key, old.as_ref(), &status).await?;
            return Ok(Action::requeue(SYNC_PERIOD));
        }
    };
    set_condition(
        &mut status,
        ABLE_TO_SCALE,
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
        now,
    );
    let current = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
    status.current_replicas = Some(current);

    let mut requeue = SYNC_PERIOD;
    match decide(spec, current) {
        Decision::Disabled => {
            status.desired_replicas = 0;
            set_condition(
                &mut status,
                SCALING_ACTIVE,
                false,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
                now,
            );
        }
        Decision::Rescale { desired, reason } => {
            match apply::set_replicas(&scale_api, &target.name, desired).await {
                Ok(_) => {
                    info!(from = current, to = desired, reason, "rescaled the target");
                    let message = format!("New size: {desired}; reason: {reason}");
                    apply::event(client, &hpa, "Normal", "SuccessfulRescale", &message).await;
                    set_condition(
                        &mut status,
                        ABLE_TO_SCALE,
                        true,
                        "SucceededRescale",
                        &format!(
                            "the HPA controller was able to update the target scale to {desired}"
                        ),
                        now,
                    );
                    status.desired_replicas = desired;
                    status.last_scale_time = Some(Time(now));
                }
                Err(e) => {
                    let message = format!("New size: {desired}; reason: {reason}; error: {e}");
                    apply::event(client, &hpa, "Warning", "FailedRescale", &message).await;
                    set_condition(
                        &mut status,
                        ABLE_TO_SCALE,
                        false,
                        "FailedUpdateScale",
                        &format!("the HPA controller was unable to update the target scale: {e}"),
                        now,
                    );
                }
            }
        }
        Decision::WithinRange => {
            let selector = scale.status.as_ref().and_then(|s| s.selector.clone());
            let wait = plan::rescaled_within_period(status.last_scale_time.as_ref(), now);
            match (wait, selector.filter(|s| !s.is_empty())) {
                // Rescaled less than a period ago: the next sync is when it ends.
                (Some(wait), _) => requeue = wait,
                (None, None) => {
                    if !status::has_reason(old.as_ref(), SCALING_ACTIVE, "InvalidSelector") {
                        apply::event(
                            client,
                            &hpa,
                            "Warning",
                            "SelectorRequired",
                            "selector is required",
                        )
                        .await;
                    }
                    set_condition(
                        &mut status,
                        SCALING_ACTIVE,
                        false,
                        "InvalidSelector",
                        "the HPA target's scale is missing a selector",
                        now,
                    );
                }
                (None, Some(selector)) => {
                    let computed =
                        metrics::compute(client, &ns, spec, &selector, current, now).await;
                    scale_on_metrics(
                        &state,
                        &hpa,
                        &key,
                        &scale_api,
                        computed,
                        current,
                        &mut status,
                        now,
                    )
                    .await;
                }
            }
        }
    }
    write_status(client, &hpa, &key, old.as_ref(), &status).await?;
    Ok(Action::requeue(requeue))
}

async fn write_status(
    client: &kube::Client,
    hpa: &HorizontalPodAutoscaler,
    key: &str,
    old: Option<&k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerStatus>,
    new: &k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerStatus,
) -> Result<()> {
    if old == Some(new) {
        return Ok(());
    }
    Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), &hpa.namespace().unwrap_or_default())
        .patch_status(
            &hpa.name_any(),
            &PatchParams::default(),
            &Patch::Merge(status::status_patch(new)),
        )
        .await
        .map(drop)
        .map_err(|source| Error::Status {
            key: key.to_string(),
            source,
        })
}

/// The metric-driven part of a sync within [min, max]: the proposal, stabilized and
/// rate-limited, set on the target when it differs; or the failure, reported.
#[allow(clippy::too_many_arguments)]
async fn scale_on_metrics(
    state: &State,
    hpa: &HorizontalPodAutoscaler,
    key: &str,
    scale_api: &Api<kube::api::DynamicObject>,
    computed: Result<metrics::Computed, metrics::Failed>,
    current: i32,
    status: &mut k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerStatus,
    now: Timestamp,
) {
    let client = &state.client;
    let spec = hpa.spec.as_ref().expect("checked by reconcile");
    let old = hpa.status.as_ref();
    let computed = match computed {
        Ok(c) => c,
        Err(failed) => {
            // Upstream keeps desiredReplicas and the last currentMetrics.
            if !status::has_reason(old, SCALING_ACTIVE, failed.reason) {
                apply::event(client, hpa, "Warning", failed.reason, &failed.error).await;
                apply::event(
                    client,
                    hpa,
                    "Warning",
                    "FailedComputeMetricsReplicas",
                    &failed.summary,
                )
                .await;
            }
            set_condition(
                status,
                SCALING_ACTIVE,
                false,
                failed.reason,
                &format!(
                    "the HPA was unable to compute the replica count: {}",
                    failed.error
                ),
                now,
            );
            return;
        }
    };
    set_condition(
        status,
        SCALING_ACTIVE,
        true,
        "ValidMetricFound",
        &format!(
            "the HPA was able to successfully calculate a replica count from {}",
            computed.metric
        ),
        now,
    );
    status.current_metrics = Some(computed.statuses);
    let reason = if computed.replicas > current {
        format!("{} above target", computed.metric)
    } else {
        "All metrics below target".to_string()
    };
    let min = spec.min_replicas.unwrap_or(1);
    let (normalized, longest_period, with_behavior) = {
        let mut histories = state.history.lock().expect("hpa history lock poisoned");
        let history = histories.entry(key.to_string()).or_default();
        match &spec.behavior {
            None => (
                behavior::normalize(
                    history,
                    now,
                    current,
                    computed.replicas,
                    min,
                    spec.max_replicas,
                ),
                0,
                false,
            ),
            Some(b) => {
                let (up, down) = behavior::with_defaults(b);
                let longest = up
                    .policies
                    .iter()
                    .chain(down.policies.iter())
                    .flatten()
                    .map(|p| p.period_seconds)
                    .max()
                    .unwrap_or(0);
                (
                    behavior::normalize_with_behavior(
                        history,
                        now,
                        &up,
                        &down,
                        current,
                        computed.replicas,
                        min,
                        spec.max_replicas,
                    ),
                    longest,
                    true,
                )
            }
        }
    };
    set_condition(
        status,
        ABLE_TO_SCALE,
        true,
        normalized.able_reason,
        normalized.able_message,
        now,
    );
    set_condition(
        status,
        SCALING_LIMITED,
        normalized.limited,
        normalized.limited_reason,
        normalized.limited_message,
        now,
    );
    let desired = normalized.replicas;
    status.desired_replicas = desired;
    if desired == current {
        return;
    }
    let target = &spec.scale_target_ref;
    match apply::set_replicas(scale_api, &target.name, desired).await {
        Ok(_) => {
            info!(from = current, to = desired, reason = %reason, "rescaled the target");
            let message = format!("New size: {desired}; reason: {reason}");
            apply::event(client, hpa, "Normal", "SuccessfulRescale", &message).await;
            set_condition(
                status,
                ABLE_TO_SCALE,
                true,
                "SucceededRescale",
                &format!("the HPA controller was able to update the target scale to {desired}"),
                now,
            );
            status.last_scale_time = Some(Time(now));
            if with_behavior {
                let mut histories = state.history.lock().expect("hpa history lock poisoned");
                let history = histories.entry(key.to_string()).or_default();
                behavior::record_rescale(history, now, current, desired, longest_period);
            }
        }
        Err(e) => {
            status.desired_replicas = old.map(|s| s.desired_replicas).unwrap_or(0);
            let message = format!("New size: {desired}; reason: {reason}; error: {e}");
            apply::event(client, hpa, "Warning", "FailedRescale", &message).await;
            set_condition(
                status,
                ABLE_TO_SCALE,
                false,
                "FailedUpdateScale",
                &format!("the HPA controller was unable to update the target scale: {e}"),
                now,
            );
        }
    }
}
