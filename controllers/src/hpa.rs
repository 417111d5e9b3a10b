//! The HorizontalPodAutoscaler loop (upstream pkg/controller/podautoscaler), every 15 s
//! per autoscaler: read the target's replicas through its `/scale` subresource, keep
//! them within [minReplicas, maxReplicas] (scaling up to min and down to max even
//! before any metric exists, as upstream), and report currentReplicas, desiredReplicas
//! and the AbleToScale and ScalingActive conditions with upstream's reasons.
//!
//! Not done: the metric-driven part. kybern serves no metrics API yet, so an autoscaler
//! within its range reports ScalingActive False (FailedGetResourceMetric and the like)
//! and never changes the target; nothing is scaled on invented figures. ScalingLimited
//! is set by upstream only after a metric-based recommendation, so never here.

mod apply;
mod plan;
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

pub use plan::{decide, metric_failure, Decision};
pub use status::{set_condition, ABLE_TO_SCALE, SCALING_ACTIVE};

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
}

/// The loop entry for [`crate::loops`].
pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        let hpas = ctx.informers.all::<HorizontalPodAutoscaler>();
        hpas.synced().await;
        let state = Arc::new(State {
            client: ctx.informers.client().clone(),
        });
        Controller::for_shared_stream(hpas.touched(), hpas.store())
            .run(reconcile, crate::runtime::retry::error_policy, state)
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
            // Upstream records the current count and leaves desiredReplicas as it was
            // when no metric can be computed.
            let (reason, error) = metric_failure(spec);
            if !status::has_reason(old.as_ref(), SCALING_ACTIVE, reason) {
                apply::event(client, &hpa, "Warning", reason, &error).await;
            }
            set_condition(
                &mut status,
                SCALING_ACTIVE,
                false,
                reason,
                &format!("the HPA was unable to compute the replica count: {error}"),
                now,
            );
        }
    }
    write_status(client, &hpa, &key, old.as_ref(), &status).await?;
    Ok(Action::requeue(SYNC_PERIOD))
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
