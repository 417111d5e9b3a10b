//! Upstream's `ServiceAccount` admission plugin: a created pod runs as `default` unless it
//! names an account, the account must exist, its imagePullSecrets are copied to a pod
//! without any, and (unless the pod or account opts out) every container and init
//! container mounts a projected `kube-api-access-<5>` volume (a bound token, the cluster
//! CA, the namespace) read-only at /var/run/secrets/kubernetes.io/serviceaccount.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{AdmissionRequest, MutatingAdmission, Operation};
use crate::api::Api;
use crate::object;
use crate::status::{ApiError, Result, Target};

const DEFAULT_SERVICE_ACCOUNT: &str = "default";
const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const VOLUME_PREFIX: &str = "kube-api-access-";
/// Upstream's lifetime of the projected token: an hour, plus 7 s so that it is
/// recognisable as a projected token's.
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// The `default` account is made by the service-account loop right after its namespace;
/// upstream looks it up 10 times 100-200 ms apart before giving up. kybern's loops can lag
/// more on a busy node, so it looks for up to 5 s (50 looks 100 ms apart).
const DEFAULT_ACCOUNT_LOOKS: usize = 50;
const LOOK_INTERVAL: Duration = Duration::from_millis(100);

pub struct ServiceAccount;

#[async_trait]
impl MutatingAdmission for ServiceAccount {
    async fn admit(
        &self,
        api: &Api,
        request: &AdmissionRequest<'_>,
        pod: &mut Value,
        _old: Option<&Value>,
    ) -> Result<()> {
        let r = request.resource;
        let is_pod_create = r.group.is_empty()
            && r.plural == "pods"
            && request.operation == Operation::Create
            && request.subresource.is_none();
        let Some(ns) = request.namespace.filter(|_| is_pod_create) else {
            return Ok(());
        };
        let forbidden =
            |msg: String| ApiError::Forbidden(Target::new("", "pods", request.name), msg, None);
        let annotations = pod.pointer("/metadata/annotations");
        if annotations.is_some_and(|a| a.get(MIRROR_POD_ANNOTATION).is_some()) {
            return check_mirror_pod(pod).map_err(forbidden);
        }
        // A missing or terminating namespace is NamespaceLifecycle's answer, not ours.
        if !namespace_exists(api, ns).await {
            return Ok(());
        }
        let spec = spec_mut(pod);
        let account_name = match spec.get("serviceAccountName").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => {
                spec.insert("serviceAccountName".into(), json!(DEFAULT_SERVICE_ACCOUNT));
                DEFAULT_SERVICE_ACCOUNT.to_string()
            }
        };
        let Some(account) = service_account(api, ns, &account_name).await? else {
            return Err(forbidden(format!(
                "error looking up service account {ns}/{account_name}: serviceaccount \"{account_name}\" not found"
            )));
        };
        if should_automount(&account, pod) {
            mount_token(pod, &object::name_suffix());
        }
        let spec = spec_mut(pod);
        let no_pull_secrets = spec
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        let account_pull_secrets = account["imagePullSecrets"].as_array().cloned();
        if let Some(secrets) = account_pull_secrets.filter(|s| no_pull_secrets && !s.is_empty()) {
            let refs: Vec<Value> = secrets.iter().map(|s| json!({"name": s["name"]})).collect();
            spec.insert("imagePullSecrets".into(), Value::Array(refs));
        }
        Ok(())
    }
}

/// Mirror pods (a node's static pods) may not use an account or secrets.
fn check_mirror_pod(pod: &Value) -> std::result::Result<(), String> {
    let spec = &pod["spec"];
    if spec["serviceAccountName"]
        .as_str()
        .is_some_and(|s| !s.is_empty())
    {
        return Err("a mirror pod may not reference service accounts".into());
    }
    let volumes = spec["volumes"].as_array().into_iter().flatten();
    for v in volumes {
        if v.get("secret").is_some() {
            return Err("a mirror pod may not reference secrets".into());
        }
        let sources = v.pointer("/projected/sources").and_then(Value::as_array);
        for s in sources.into_iter().flatten() {
            if s.get("secret").is_some() {
                return Err("a mirror pod may not reference secrets".into());
            }
            if s.get("serviceAccountToken").is_some() {
                return Err(
                    "a mirror pod may not use ServiceAccountToken volume projections".into(),
                );
            }
        }
    }
    Ok(())
}

fn spec_mut(pod: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !pod["spec"].is_object() {
        pod["spec"] = json!({});
    }
    pod["spec"]
        .as_object_mut()
        .expect("spec was made an object")
}

async fn namespace_exists(api: &Api, ns: &str) -> bool {
    let snapshot = api.registry.snapshot();
    let Some(r) = snapshot.get("", "v1", "namespaces") else {
        return false;
    };
    match api.cache(r).await {
        Ok(cache) => cache
            .get(&r.key(None, ns))
            .is_some_and(|n| !object::is_deleting(&n)),
        Err(_) => false,
    }
}

/// The account from the watch cache; `default` is waited for a little (see
/// [`DEFAULT_ACCOUNT_LOOKS`]).
async fn service_account(api: &Api, ns: &str, name: &str) -> Result<Option<Value>> {
    let snapshot = api.registry.snapshot();
    let r = snapshot
        .get("", "v1", "serviceaccounts")
        .ok_or(ApiError::NoSuchResource)?;
    let cache = api.cache(r).await?;
    let key = r.key(Some(ns), name);
    let looks = if name == DEFAULT_SERVICE_ACCOUNT {
        DEFAULT_ACCOUNT_LOOKS
    } else {
        1
    };
    for look in 0..looks {
        if look > 0 {
            tokio::time::sleep(LOOK_INTERVAL).await;
        }
        if let Some(sa) = cache.get(&key) {
            return Ok(Some((*sa).clone()));
        }
    }
    Ok(None)
}

/// The pod's `automountServiceAccountToken` if set, else the account's, else true.
fn should_automount(account: &Value, pod: &Value) -> bool {
    pod.pointer("/spec/automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| account["automountServiceAccountToken"].as_bool())
        .unwrap_or(true)
}

/// Mounts the token volume in every container and init container that has nothing at
/// the mount path yet, adding the volume (named `kube-api-access-<suffix>`, or the one
/// already there) when one of them needs it, as upstream's `mountServiceAccountToken`.
fn mount_token(pod: &mut Value, suffix: &str) {
    let spec = spec_mut(pod);
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .find(|n| n.starts_with(VOLUME_PREFIX))
        .map(String::from);
    let volume_name = existing
        .clone()
        .unwrap_or_else(|| format!("{VOLUME_PREFIX}{suffix}"));
    let mount = json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needed = false;
    for field in ["initContainers", "containers"] {
        let containers = spec.get_mut(field).and_then(Value::as_array_mut);
        for c in containers.into_iter().flatten() {
            let mounted = c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["mountPath"] == TOKEN_MOUNT_PATH);
            if mounted {
                continue;
            }
            if !c["volumeMounts"].is_array() {
                c["volumeMounts"] = json!([]);
            }
            if let Some(mounts) = c["volumeMounts"].as_array_mut() {
                mounts.push(mount.clone());
            }
            needed = true;
        }
    }
    if needed && existing.is_none() {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if !volumes.is_array() {
            *volumes = json!([]);
        }
        if let Some(v) = volumes.as_array_mut() {
            v.push(token_volume(&volume_name));
        }
    }
}

/// Upstream's projected token volume.
fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn every_container_mounts_one_projected_token_volume() {
        let mut p = pod(json!({
            "initContainers": [{"name": "init"}],
            "containers": [
                {"name": "a", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "own", "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]},
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        }));
        mount_token(&mut p, "x2b4z");
        let mount = json!({"name": "kube-api-access-x2b4z", "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
        assert_eq!(
            p["spec"]["initContainers"][0]["volumeMounts"],
            json!([mount])
        );
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"][1], mount);
        assert_eq!(
            p["spec"]["containers"][1]["volumeMounts"],
            json!([{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]),
            "a container with its own mount at the path keeps it"
        );
        assert_eq!(
            p["spec"]["volumes"][1],
            token_volume("kube-api-access-x2b4z")
        );
        assert_eq!(
            p["spec"]["volumes"][1]["projected"]["sources"][0]["serviceAccountToken"],
            json!({"expirationSeconds": 3607, "path": "token"})
        );
    }

    #[test]
    fn automounting_follows_the_pod_then_the_account() {
        let cases = [
            ("neither says", json!({}), json!({}), true),
            (
                "account opts out",
                json!({}),
                json!({"automountServiceAccountToken": false}),
                false,
            ),
            (
                "pod opts back in",
                json!({"automountServiceAccountToken": true}),
                json!({"automountServiceAccountToken": false}),
                true,
            ),
            (
                "pod opts out",
                json!({"automountServiceAccountToken": false}),
                json!({}),
                false,
            ),
        ];
        for (name, spec, account, want) in cases {
            assert_eq!(should_automount(&account, &pod(spec)), want, "{name}");
        }
    }
}
