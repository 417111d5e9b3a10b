//! Core `ComponentStatus` (`kubectl get cs`): computed on every read, never stored, as
//! upstream's. The components are upstream's three: `scheduler` and
//! `controller-manager` are healthy while their loops hold a current leader Lease
//! (`kybern-<loop>` in kube-system, renewed every few seconds by whichever process
//! runs them), `etcd-0` while storage answers.

use std::sync::Arc;

use http::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::read::{computed_list, object_response};
use super::{Api, ApiRequest, Body};
use crate::registry::Resource;
use crate::status::{ApiError, Result, Target};
use crate::table::TablePrinter;

/// The components, in upstream's order.
const COMPONENTS: [&str; 3] = ["scheduler", "controller-manager", "etcd-0"];

/// The loop whose Lease stands for the scheduler; every other `kybern-*` Lease is a
/// controller-manager loop.
const SCHEDULER_LEASE: &str = "kybern-scheduler";

pub(super) fn is_componentstatuses(r: &Resource) -> bool {
    r.group.is_empty() && r.plural == "componentstatuses"
}

/// GET of the list or of one component; every other verb is upstream's 405.
pub(super) async fn serve(
    api: &Arc<Api>,
    r: &Resource,
    req: &ApiRequest,
) -> Result<Response<Body>> {
    let p = &req.path;
    if req.method != Method::GET
        || p.subresource.is_some()
        || req.query.flag("watch")
        || p.legacy_watch
    {
        return Err(ApiError::MethodNotAllowed);
    }
    match p.name.as_deref() {
        Some(name) => {
            if !COMPONENTS.contains(&name) {
                return Err(ApiError::NotFound(Target::new(
                    "",
                    "componentstatuses",
                    name,
                )));
            }
            let obj = status_of(api, name).await;
            object_response(api, r, req, StatusCode::OK, &obj)
        }
        None => {
            let mut items = Vec::new();
            for c in COMPONENTS {
                items.push(status_of(api, c).await);
            }
            let printer = TablePrinter::new("", "componentstatuses", None);
            computed_list(req, &printer, &items, "ComponentStatusList", "v1")
        }
    }
}

/// One component's ComponentStatus, probed now.
async fn status_of(api: &Arc<Api>, name: &str) -> Value {
    let verdict = match name {
        "etcd-0" => api
            .storage
            .current_revision()
            .await
            .map(|_| ())
            .map_err(|e| format!("storage does not answer: {e}")),
        "scheduler" => leases_current(api, |n| n == SCHEDULER_LEASE).await,
        _ => leases_current(api, |n| n != SCHEDULER_LEASE).await,
    };
    let condition = match verdict {
        Ok(()) => json!({"type": "Healthy", "status": "True", "message": "ok"}),
        Err(error) => json!({"type": "Healthy", "status": "False", "error": error}),
    };
    json!({
        "kind": "ComponentStatus",
        "apiVersion": "v1",
        "metadata": {"name": name, "creationTimestamp": null},
        "conditions": [condition],
    })
}

/// Whether a `kybern-*` Lease in kube-system whose name `matches` is held and was
/// renewed within its duration.
async fn leases_current(
    api: &Arc<Api>,
    matches: impl Fn(&str) -> bool,
) -> std::result::Result<(), String> {
    let snapshot = api.registry.snapshot();
    let Some(leases) = snapshot.get("coordination.k8s.io", "v1", "leases") else {
        return Err("leases are not served".into());
    };
    let cache = api.cache(leases).await.map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (items, _) = cache.list(&leases.prefix_in(Some("kube-system")));
    let current = items.iter().any(|lease| {
        let name = crate::object::name(lease);
        name.starts_with("kybern-") && matches(name) && held_now(lease, now)
    });
    if current {
        Ok(())
    } else {
        Err("no process holds a current leader Lease for it in kube-system".into())
    }
}

/// A Lease with a holder, renewed less than its duration ago.
fn held_now(lease: &Value, now: i64) -> bool {
    let spec = &lease["spec"];
    if spec["holderIdentity"].as_str().unwrap_or("").is_empty() {
        return false;
    }
    let duration = spec["leaseDurationSeconds"].as_i64().unwrap_or(0);
    spec["renewTime"]
        .as_str()
        .and_then(crate::object::parse_rfc3339)
        .is_some_and(|renewed| now - renewed <= duration)
}
