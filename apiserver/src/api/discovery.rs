//! Non-resource endpoints: legacy and aggregated (v2) discovery, `/version`, health.

use http::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::{bytes_response, json_response, Accept, Api, Body};
use crate::registry::{Resource, Snapshot};
use crate::request::Path;
use crate::status::{ApiError, Result};

pub(super) async fn serve(
    api: &Api,
    method: &Method,
    path: &Path,
    accept: &Accept,
    if_none_match: Option<&str>,
) -> Result<Response<Body>> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::MethodNotAllowed);
    }
    let snap = api.registry.snapshot();
    let value = match path {
        Path::Other(p) if matches!(p.as_str(), "/healthz" | "/livez" | "/readyz") => {
            return health(api, p).await;
        }
        Path::Other(p) if p == "/version" => version(),
        Path::Other(p) if p == "/openapi/v3" => api.openapi.index(&snap),
        Path::Other(p) if p == "/openapi/v2" => {
            // JSON, or gnostic's protobuf when the client prefers it (client-go's
            // OpenAPISchema asks for protobuf alone), with upstream's ETag revalidation.
            let protobuf = accept.openapi_v2_protobuf;
            if !protobuf {
                accept.require_json()?;
            }
            let (doc, hash) = api.openapi.v2(&snap, protobuf);
            let etag = format!("\"{hash}\"");
            let ctype = if protobuf {
                super::openapi::V2_PROTOBUF
            } else {
                "application/json"
            };
            let mut resp = if if_none_match.is_some_and(|m| m.split(',').any(|t| t.trim() == etag))
            {
                bytes_response(StatusCode::NOT_MODIFIED, ctype, bytes::Bytes::new())
            } else {
                bytes_response(StatusCode::OK, ctype, doc)
            };
            if let Ok(v) = http::HeaderValue::from_str(&etag) {
                resp.headers_mut().insert(http::header::ETAG, v);
            }
            resp.headers_mut()
                .insert(http::header::VARY, http::HeaderValue::from_static("Accept"));
            return Ok(resp);
        }
        Path::Other(p) if p.starts_with("/openapi/v3/") => {
            let doc = api
                .openapi
                .group_version(&snap, &p["/openapi/v3/".len()..])
                .ok_or(ApiError::NoSuchResource)?;
            return Ok(bytes_response(StatusCode::OK, "application/json", doc));
        }
        Path::DiscoveryRoot { core } => {
            if let Some(v) = &accept.aggregated_discovery {
                let body = aggregated(&snap, *core, v);
                let ctype = format!(
                    "application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"
                );
                return Ok(bytes_response(
                    StatusCode::OK,
                    &ctype,
                    serde_json::to_vec(&body).unwrap_or_default().into(),
                ));
            }
            if *core {
                json!({
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": api.server_address}],
                })
            } else {
                let groups: Vec<Value> = snap
                    .groups()
                    .iter()
                    .filter(|(g, _)| !g.is_empty())
                    .map(|(g, vs)| api_group(g, vs))
                    .collect();
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
            }
        }
        Path::Group { group } => {
            let groups = snap.groups();
            let (g, vs) = groups
                .iter()
                .find(|(g, _)| g == group)
                .ok_or(ApiError::NoSuchResource)?;
            let mut v = api_group(g, vs);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            v
        }
        Path::GroupVersion { group, version } => {
            let resources = snap.group_version(group, version);
            if resources.is_empty() {
                return Err(ApiError::NoSuchResource);
            }
            let gv = if group.is_empty() {
                version.clone()
            } else {
                format!("{group}/{version}")
            };
            let list: Vec<Value> = resources.iter().flat_map(|r| legacy_entries(r)).collect();
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list})
        }
        _ => return Err(ApiError::NoSuchResource),
    };
    accept.require_json()?;
    Ok(json_response(StatusCode::OK, &value))
}

async fn health(api: &Api, path: &str) -> Result<Response<Body>> {
    // Ready means storage answers; live and healthz mean the process serves requests.
    if path == "/readyz" {
        if let Err(e) = api.storage.current_revision().await {
            let body = format!("[-]etcd failed: {e}\nreadyz check failed\n");
            return Ok(bytes_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                body.into(),
            ));
        }
    }
    Ok(bytes_response(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        "ok".into(),
    ))
}

/// The commit the server was built from (40 hex digits, as upstream's gitCommit), or
/// zeros when the build knew none.
pub(super) fn git_commit() -> &'static str {
    option_env!("KYBERN_GIT_COMMIT")
        .filter(|c| c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or("0000000000000000000000000000000000000000")
}

fn version() -> Value {
    let v = super::KUBERNETES_VERSION;
    let minor = v.trim_start_matches('v').split('.').nth(1).unwrap_or("0");
    json!({
        "major": "1",
        "minor": minor,
        "gitVersion": v,
        "gitCommit": git_commit(),
        "gitTreeState": "clean",
        "buildDate": "2026-11-23T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else if cfg!(target_arch = "aarch64") { "arm64" } else { std::env::consts::ARCH }),
    })
}

fn api_group(group: &str, versions: &[String]) -> Value {
    let gvs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
}

fn scale_kind() -> Value {
    json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
}

/// `/api/v1`-style entries: the resource and each of its subresources.
fn legacy_entries(r: &Resource) -> Vec<Value> {
    let mut main = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": r.verbs(),
    });
    if !r.short_names.is_empty() {
        main["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        main["categories"] = json!(r.categories);
    }
    let mut out = vec![main];
    if r.status {
        out.push(json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced,
            "kind": r.kind, "verbs": ["get", "patch", "update"]}));
    }
    if r.scale.is_some() {
        out.push(json!({"name": format!("{}/scale", r.plural), "singularName": "", "namespaced": r.namespaced,
            "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
    }
    if super::approval::is_csr(r) {
        out.push(json!({"name": format!("{}/approval", r.plural), "singularName": "", "namespaced": r.namespaced,
            "kind": r.kind, "verbs": ["get", "patch", "update"]}));
    }
    for sub in special_subresources(r) {
        let mut entry = json!({"name": format!("{}/{}", r.plural, sub.name), "singularName": "",
            "namespaced": r.namespaced, "kind": sub.kind, "verbs": sub.verbs});
        if !sub.group.is_empty() || !sub.version.is_empty() {
            entry["group"] = json!(sub.group);
            entry["version"] = json!(sub.version);
        }
        out.push(entry);
    }
    // Upstream lists a resource's subresources by name.
    out[1..].sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    out
}

/// A subresource a built-in kind has beside status and scale, answered by its own handler.
struct Special {
    name: &'static str,
    /// Empty for the resource's own group and version.
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
}

const PROXY_VERBS: &[&str] = &["create", "delete", "get", "patch", "update"];
const CONNECT_VERBS: &[&str] = &["create", "get"];

/// Upstream's subresources of pods (`api::binding`, `api::eviction`, the node proxy's
/// log/exec/attach/portforward/proxy, ephemeral containers), services and nodes (proxy)
/// and service accounts (token).
fn special_subresources(r: &Resource) -> Vec<Special> {
    let sub = |name, group, version, kind, verbs| Special {
        name,
        group,
        version,
        kind,
        verbs,
    };
    if !r.group.is_empty() {
        return Vec::new();
    }
    match r.plural.as_str() {
        "pods" => vec![
            sub("attach", "", "", "PodAttachOptions", CONNECT_VERBS),
            sub("binding", "", "", "Binding", &["create"]),
            sub(
                "ephemeralcontainers",
                "",
                "",
                "Pod",
                &["get", "patch", "update"],
            ),
            // `kubectl drain` evicts only when it finds this entry (else it deletes).
            sub("eviction", "policy", "v1", "Eviction", &["create"]),
            sub("exec", "", "", "PodExecOptions", CONNECT_VERBS),
            sub("log", "", "", "Pod", &["get"]),
            sub(
                "portforward",
                "",
                "",
                "PodPortForwardOptions",
                CONNECT_VERBS,
            ),
            sub("proxy", "", "", "PodProxyOptions", PROXY_VERBS),
        ],
        "services" => vec![sub("proxy", "", "", "ServiceProxyOptions", PROXY_VERBS)],
        "nodes" => vec![sub("proxy", "", "", "NodeProxyOptions", PROXY_VERBS)],
        "serviceaccounts" => vec![sub(
            "token",
            "authentication.k8s.io",
            "v1",
            "TokenRequest",
            &["create"],
        )],
        _ => Vec::new(),
    }
}

/// Aggregated discovery (`apidiscovery.k8s.io` APIGroupDiscoveryList) for `/api` or `/apis`.
fn aggregated(snap: &Snapshot, core: bool, version: &str) -> Value {
    let items: Vec<Value> = snap
        .groups()
        .iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = snap
                        .group_version(g, v)
                        .iter()
                        .map(|r| aggregated_resource(r))
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut metadata = json!({"creationTimestamp": null});
            if !g.is_empty() {
                metadata["name"] = json!(g);
            }
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

fn aggregated_resource(r: &Resource) -> Value {
    let mut v = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs(),
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    let mut subs = Vec::new();
    if super::approval::is_csr(r) {
        subs.push(json!({"subresource": "approval",
            "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
            "verbs": ["get", "patch", "update"]}));
    }
    if r.scale.is_some() {
        subs.push(json!({"subresource": "scale", "responseKind": scale_kind(), "verbs": ["get", "patch", "update"]}));
    }
    if r.status {
        subs.push(json!({"subresource": "status",
            "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
            "verbs": ["get", "patch", "update"]}));
    }
    for sub in special_subresources(r) {
        let (group, version) = if sub.group.is_empty() && sub.version.is_empty() {
            (r.group.as_str(), r.version.as_str())
        } else {
            (sub.group, sub.version)
        };
        subs.push(json!({"subresource": sub.name,
            "responseKind": {"group": group, "version": version, "kind": sub.kind},
            "verbs": sub.verbs}));
    }
    subs.sort_by(|a, b| a["subresource"].as_str().cmp(&b["subresource"].as_str()));
    if !subs.is_empty() {
        v["subresources"] = json!(subs);
    }
    v
}
