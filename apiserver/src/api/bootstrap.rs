//! The objects every cluster has and the API server keeps in place itself, as
//! kube-apiserver's bootstrap controllers do: the `kubernetes` Service with its Endpoints
//! and EndpointSlice at the advertised address, the default `ServiceCIDR`, the built-in
//! system-node-critical and system-cluster-critical PriorityClasses, and (kybern's
//! addition) the `kube-dns` Service at the cluster DNS address. Made at start-up and
//! re-made every [`INTERVAL`] when someone deleted or changed them.

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::{Method, Response};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::{pipeline, Accept, Api, ApiRequest, Body, Warnings};
use crate::request::{Query, ResourcePath};
use crate::status::{ApiError, Result};

/// How often the objects are checked (kube-apiserver's endpoint reconciler interval).
pub const INTERVAL: Duration = Duration::from_secs(10);

/// The name of the default ServiceCIDR and of the apiserver's Service.
const KUBERNETES: &str = "kubernetes";

/// Makes or repairs every bootstrap object. The `kubernetes` Service and its endpoints
/// must succeed; `kube-dns` and the ServiceCIDR are logged and retried on the next
/// round when they fail (another Service may hold the DNS address).
pub async fn ensure(api: &Arc<Api>) -> Result<()> {
    kubernetes_service(api).await?;
    if let Err(e) = kube_dns_service(api).await {
        tracing::warn!(error = %e, "creating the kube-dns Service failed");
    }
    if let Err(e) = default_service_cidr(api).await {
        tracing::warn!(error = %e, "creating the default ServiceCIDR failed");
    }
    if let Err(e) = system_priority_classes(api).await {
        tracing::warn!(error = %e, "creating the system PriorityClasses failed");
    }
    Ok(())
}

/// system-node-critical and system-cluster-critical, as kube-apiserver makes them.
async fn system_priority_classes(api: &Arc<Api>) -> Result<()> {
    let at = Object {
        group: "scheduling.k8s.io",
        namespace: None,
        resource: "priorityclasses",
    };
    for (name, value, description) in pipeline::priority::SYSTEM_CLASSES {
        let class = json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value, "description": description,
            "preemptionPolicy": "PreemptLowerPriority",
        });
        create_if_missing(api, &at, name, &class).await?;
    }
    Ok(())
}

/// Repeats [`ensure`] every `interval` while the API lives.
pub async fn run(api: Weak<Api>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(api) = api.upgrade() else { return };
        if let Err(e) = ensure(&api).await {
            tracing::warn!(error = %e, "repairing the kubernetes Service failed");
        }
    }
}

/// Where the `kubernetes` Service's endpoints point: the advertised address, else the
/// address clients use.
fn endpoint(api: &Api) -> (String, u16) {
    if let Some(addr) = api.advertise.get() {
        return (addr.ip().to_string(), addr.port());
    }
    let (host, port) = api
        .server_address
        .rsplit_once(':')
        .unwrap_or((&api.server_address, "6443"));
    (host.to_string(), port.parse().unwrap_or(6443))
}

async fn kubernetes_service(api: &Arc<Api>) -> Result<()> {
    let (host, port) = endpoint(api);
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": KUBERNETES, "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": api.service_net().kubernetes_ip().to_string(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
    });
    create_if_missing(
        api,
        &Object::core("default", "services"),
        KUBERNETES,
        &service,
    )
    .await?;
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": KUBERNETES, "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": host}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": KUBERNETES, "namespace": "default", "labels": {"kubernetes.io/service-name": KUBERNETES, "endpointslice.kubernetes.io/managed-by": "kybern-apiserver"}},
        "endpoints": [{"addresses": [host], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    let endpoints_at = Object::core("default", "endpoints");
    keep_equal(api, &endpoints_at, KUBERNETES, &endpoints, &["subsets"]).await?;
    let slices_at = Object {
        group: "discovery.k8s.io",
        namespace: Some("default"),
        resource: "endpointslices",
    };
    keep_equal(api, &slices_at, KUBERNETES, &slice, &["endpoints", "ports"]).await
}

/// kube-dns in kube-system at the cluster DNS address, with upstream's labels and
/// ports. It selects nothing and has no endpoints: every agent answers on that address
/// itself, and the service proxy leaves it alone.
async fn kube_dns_service(api: &Arc<Api>) -> Result<()> {
    let dns = api.service_net().dns_ip().to_string();
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {
            "k8s-app": "kube-dns",
            "kubernetes.io/cluster-service": "true",
            "kubernetes.io/name": "KubeDNS",
        }},
        "spec": {"clusterIP": dns, "clusterIPs": [dns], "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
        ]},
    });
    create_if_missing(
        api,
        &Object::core("kube-system", "services"),
        "kube-dns",
        &service,
    )
    .await
}

/// The ServiceCIDR `kubernetes` holding `--service-cidr`, Ready as kube-apiserver's
/// default-servicecidr controller marks it. One whose range differs (the flag changed)
/// is left as it is, as upstream leaves it.
async fn default_service_cidr(api: &Arc<Api>) -> Result<()> {
    let at = Object {
        group: "networking.k8s.io",
        namespace: None,
        resource: "servicecidrs",
    };
    let cidr = api.service_net().cidr();
    let wanted = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
        "metadata": {"name": KUBERNETES},
        "spec": {"cidrs": [cidr]},
    });
    create_if_missing(api, &at, KUBERNETES, &wanted).await?;
    let Some(mut stored) = get(api, &at, KUBERNETES).await? else {
        return Ok(());
    };
    let same = stored.pointer("/spec/cidrs") == Some(&json!([cidr]));
    let ready = stored
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready"));
    if !same || ready || stored.pointer("/metadata/deletionTimestamp").is_some() {
        return Ok(());
    }
    stored["status"] = json!({"conditions": [{
        "type": "Ready", "status": "True", "reason": "",
        "message": "Kubernetes default Service CIDR is ready",
        "lastTransitionTime": crate::object::now_rfc3339(),
    }]});
    request(
        api,
        Method::PUT,
        &at,
        Some(KUBERNETES),
        Some("status"),
        &stored,
    )
    .await?;
    Ok(())
}

/// Where an object lives: group (version v1), namespace, resource.
pub(super) struct Object {
    pub(super) group: &'static str,
    pub(super) namespace: Option<&'static str>,
    pub(super) resource: &'static str,
}

impl Object {
    fn core(namespace: &'static str, resource: &'static str) -> Self {
        Object {
            group: "",
            namespace: Some(namespace),
            resource,
        }
    }
}

/// Creates `body` unless an object of that name exists (kept as it is: a Service kept
/// from an earlier start would fail again on its own clusterIP, "provided IP is already
/// allocated").
async fn create_if_missing(api: &Arc<Api>, at: &Object, name: &str, body: &Value) -> Result<()> {
    if get(api, at, name).await?.is_some() {
        return Ok(());
    }
    match request(api, Method::POST, at, None, None, body).await {
        Ok(_) | Err(ApiError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `body`, or rewrites the stored object when one of `fields` differs from it
/// (nothing is written when they match, so watchers see no event every round).
async fn keep_equal(
    api: &Arc<Api>,
    at: &Object,
    name: &str,
    body: &Value,
    fields: &[&str],
) -> Result<()> {
    let Some(mut stored) = get(api, at, name).await? else {
        return match request(api, Method::POST, at, None, None, body).await {
            Ok(_) | Err(ApiError::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        };
    };
    if fields.iter().all(|f| stored.get(*f) == body.get(*f)) {
        return Ok(());
    }
    for f in fields {
        stored[*f] = body[*f].clone();
    }
    request(api, Method::PUT, at, Some(name), None, &stored).await?;
    Ok(())
}

pub(super) async fn get(api: &Arc<Api>, at: &Object, name: &str) -> Result<Option<Value>> {
    match request(api, Method::GET, at, Some(name), None, &Value::Null).await {
        Ok(resp) => {
            let bytes = resp.into_body().collect().await.map(|b| b.to_bytes());
            let bytes = bytes.unwrap_or_else(|never| match never {});
            let obj = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::Internal(format!("reading {name}: {e}")))?;
            Ok(Some(obj))
        }
        Err(ApiError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A request the server makes of itself, through the same path as a client's.
pub(super) async fn request(
    api: &Arc<Api>,
    method: Method,
    at: &Object,
    name: Option<&str>,
    subresource: Option<&str>,
    body: &Value,
) -> Result<Response<Body>> {
    let req = ApiRequest {
        method,
        path: ResourcePath {
            group: at.group.into(),
            version: "v1".into(),
            namespace: at.namespace.map(str::to_string),
            resource: at.resource.into(),
            name: name.map(str::to_string),
            subresource: subresource.map(str::to_string),
            legacy_watch: false,
        },
        query: Query::default(),
        accept: Accept {
            json: true,
            ..Default::default()
        },
        content_type: "application/json".into(),
        user_agent: "kybern-apiserver".into(),
        body: bytes::Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
        warnings: Warnings::default(),
        user: pipeline::UserInfo::apiserver(),
    };
    api.resource_request(req).await
}
