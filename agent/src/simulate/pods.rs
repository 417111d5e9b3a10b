//! Reports the pods bound to simulated nodes: one kube-runtime Controller over all pods
//! (the apiserver's field selectors match one node name, not a set, so the watch is
//! filtered here), at most `max_in_flight` reconciles at once. A pod is reported Running
//! through pods/status, and removed (delete with grace 0) once it is being deleted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;

use super::ipam::PodAddresses;
use super::status::{self, Addresses};
use super::{is_status, Context, Error, Result, Shared, SimNode, FIELD_MANAGER};

struct Ctx {
    shared: Arc<Shared>,
    by_name: HashMap<String, SimNode>,
    addresses: PodAddresses,
    store: Store<Pod>,
}

/// Runs the pod controller; it only stops if its watch stream ends.
pub(super) async fn report_forever(shared: Arc<Shared>) -> Result<()> {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let controller = Controller::new(api, watcher::Config::default().any_semantic()).with_config(
        controller::Config::default()
            .concurrency(shared.config.max_in_flight.clamp(1, u16::MAX as usize) as u16),
    );
    let ctx = Arc::new(Ctx {
        by_name: shared
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.clone()))
            .collect(),
        shared: shared.clone(),
        addresses: PodAddresses::default(),
        store: controller.store(),
    });
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok(_) => {}
                // A pod deleted before its turn came: nothing left to do.
                Err(controller::Error::ObjectNotFound(_)) => {}
                Err(e) => tracing::warn!(error = %e, "pod reporting"),
            }
        })
        .await;
    Ok(())
}

fn error_policy(pod: Arc<Pod>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(pod = %key(&pod), %error, "reporting the pod failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

fn key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action> {
    let Some(node) = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .and_then(|n| ctx.by_name.get(n))
    else {
        return Ok(Action::await_change());
    };
    let key = key(&pod);
    let api: Api<Pod> = Api::namespaced(
        ctx.shared.client.clone(),
        &pod.namespace().unwrap_or_default(),
    );

    if let Some(wait) = status::termination_delay(
        &pod,
        Timestamp::now(),
        ctx.shared.config.max_termination_delay,
    ) {
        if !wait.is_zero() {
            return Ok(Action::requeue(wait));
        }
        // Containers "stopped": the kubelet's final delete, for this very pod only (a
        // StatefulSet may already have made a new one with the same name).
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..Default::default()
        };
        let result = {
            let _permit = ctx.shared.limit.acquire().await;
            api.delete(&pod.name_any(), &params).await
        };
        ctx.addresses.release(&node.name, &key);
        return match result {
            Ok(_) => Ok(Action::await_change()),
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(Action::await_change()),
            Err(e) => Err(e).context(|| format!("deleting pod {key}")),
        };
    }
    if status::is_terminal(&pod) {
        ctx.addresses.release(&node.name, &key);
        return Ok(Action::await_change());
    }

    let pod_ip = if status::uses_host_network(&pod) {
        node.ip
    } else {
        let reported = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref());
        let live = |k: &str, uid: &str| {
            let (ns, name) = k.split_once('/').unwrap_or(("", k));
            ctx.store
                .get(&ObjectRef::new(name).within(ns))
                .is_some_and(|p| p.uid().as_deref() == Some(uid) && !status::is_terminal(&p))
        };
        let uid = pod.uid().unwrap_or_default();
        ctx.addresses
            .assign(&node.name, node.pod_prefix, &key, &uid, reported, live)
            .ok_or_else(|| Error::AddressesExhausted {
                node: node.name.clone(),
            })?
    };
    let addresses = Addresses {
        host_ip: node.ip.to_string(),
        pod_ip: pod_ip.to_string(),
    };
    let desired = status::desired_status(&pod, &addresses, &status::now());
    if !status::needs_update(pod.status.as_ref(), &desired) {
        return Ok(Action::await_change());
    }
    let patch = json!({ "status": desired });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let result = {
        let _permit = ctx.shared.limit.acquire().await;
        api.patch_status(&pod.name_any(), &params, &Patch::Merge(&patch))
            .await
    };
    match result {
        Ok(_) => Ok(Action::await_change()),
        // Gone meanwhile; its delete event ends the story.
        Err(e) if is_status(&e, 404) => Ok(Action::await_change()),
        Err(e) => Err(e).context(|| format!("reporting the status of pod {key}")),
    }
}
