//! The files of configMap, secret, downwardAPI and projected volumes, as payloads for the
//! atomic writer, following the kubelet's plugins (`MakePayload`, `CollectData`, the
//! projected plugin's token request).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, ServiceAccount,
    ServiceAccountTokenProjection,
};
use kube::api::PostParams;
use kube::Api;

use super::atomic::{FileProjection, Payload};
use super::downward::{field_value, find_container};
use super::objects::{api_message, Objects};
use super::VolumeHost;

/// API default of `defaultMode` for configMap, secret, downwardAPI and projected volumes.
pub(super) const DEFAULT_MODE: i32 = 0o644;

/// Files of a ConfigMap: every key, or only `items` (a missing key is an error unless the
/// source is optional). `binaryData` keys are files too.
pub(super) fn config_map_payload(
    items: Option<&[KeyToPath]>,
    cm: &ConfigMap,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, String> {
    let empty = BTreeMap::new();
    let data = cm.data.as_ref().unwrap_or(&empty);
    let empty_binary = BTreeMap::new();
    let binary = cm.binary_data.as_ref().unwrap_or(&empty_binary);
    let lookup = |key: &str| {
        data.get(key)
            .map(|s| s.as_bytes().to_vec())
            .or_else(|| binary.get(key).map(|b| b.0.clone()))
    };
    let keys: Vec<&String> = data.keys().chain(binary.keys()).collect();
    payload(
        items,
        &keys,
        lookup,
        default_mode,
        optional,
        "configmap references non-existent config key",
    )
}

/// Files of a Secret (`data`, already base64-decoded by k8s-openapi).
pub(super) fn secret_payload(
    items: Option<&[KeyToPath]>,
    secret: &Secret,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, String> {
    let empty = BTreeMap::new();
    let data = secret.data.as_ref().unwrap_or(&empty);
    let keys: Vec<&String> = data.keys().collect();
    let lookup = |key: &str| data.get(key).map(|b| b.0.clone());
    payload(
        items,
        &keys,
        lookup,
        default_mode,
        optional,
        "secret references non-existent secret key",
    )
}

fn payload(
    items: Option<&[KeyToPath]>,
    keys: &[&String],
    lookup: impl Fn(&str) -> Option<Vec<u8>>,
    default_mode: i32,
    optional: bool,
    missing: &str,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    match items.filter(|items| !items.is_empty()) {
        None => {
            for key in keys {
                let data = lookup(key).unwrap_or_default();
                out.insert(
                    key.to_string(),
                    FileProjection {
                        data,
                        mode: default_mode as u32,
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let Some(data) = lookup(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(format!("{missing}: {}", item.key));
                };
                let mode = item.mode.unwrap_or(default_mode) as u32;
                out.insert(item.path.clone(), FileProjection { data, mode });
            }
        }
    }
    Ok(out)
}

/// Files of downwardAPI items. Resource values of containers without limits use the node's
/// allocatable resources.
pub(super) async fn downward_payload(
    items: &[DownwardAPIVolumeFile],
    pod: &Pod,
    objects: &Objects<'_>,
    default_mode: i32,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    let mut errors = Vec::new();
    for item in items {
        let mode = item.mode.unwrap_or(default_mode) as u32;
        let value = if let Some(field) = &item.field_ref {
            field_value(pod, field)
        } else if let Some(resource) = &item.resource_field_ref {
            let name = resource.container_name.as_deref().unwrap_or_default();
            match find_container(pod, name) {
                None => Err(format!("container {name} not found")),
                Some(container) => objects.resource_value(resource, container).await,
            }
        } else {
            Ok(String::new())
        };
        match value {
            Ok(value) => {
                out.insert(
                    clean(&item.path),
                    FileProjection {
                        data: value.into_bytes(),
                        mode,
                    },
                );
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors.join(", "))
    }
}

/// `a//b/./c` → `a/b/c`, as Go's `filepath.Clean` does for the relative paths validation lets
/// through.
fn clean(path: &str) -> String {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Outcome of reading a ConfigMap or Secret a volume names.
pub(super) enum Source<T> {
    Found(T),
    /// Absent and optional: the volume is written empty.
    OptionalMissing,
}

pub(super) async fn config_map_source(
    objects: &Objects<'_>,
    name: &str,
    optional: bool,
) -> Result<Source<ConfigMap>, String> {
    match objects.config_map(name).await? {
        Some(cm) => Ok(Source::Found(cm)),
        None if optional => Ok(Source::OptionalMissing),
        None => Err(format!("configmap \"{name}\" not found")),
    }
}

pub(super) async fn secret_source(
    objects: &Objects<'_>,
    name: &str,
    optional: bool,
) -> Result<Source<Secret>, String> {
    match objects.secret(name).await? {
        Some(s) => Ok(Source::Found(s)),
        None if optional => Ok(Source::OptionalMissing),
        None => Err(format!("secret \"{name}\" not found")),
    }
}

/// A bound service-account token for `pod`, reusing the one already in `volume_dir` at
/// `path` while it is fresh: the kubelet renews a token once 80% of its lifetime has passed
/// or it is older than 24 hours (a 3600 s token is renewed after 2880 s).
pub(super) async fn service_account_token(
    host: &VolumeHost,
    pod: &Pod,
    projection: &ServiceAccountTokenProjection,
    volume_dir: &Path,
) -> Result<Vec<u8>, String> {
    if let Ok(existing) = std::fs::read(volume_dir.join(&projection.path)) {
        if token_is_fresh(&existing, now_secs()) {
            return Ok(existing);
        }
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: projection
                .audience
                .iter()
                .filter(|a| !a.is_empty())
                .cloned()
                .collect(),
            expiration_seconds: Some(projection.expiration_seconds.unwrap_or(3600)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(host.client.clone(), namespace);
    let response = api
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .map_err(|e| {
            format!(
                "failed to fetch token for service account {namespace}/{account}: {}",
                api_message(&e)
            )
        })?;
    let token = response.status.map(|s| s.token).unwrap_or_default();
    if token.is_empty() {
        return Err(format!(
            "failed to fetch token for service account {namespace}/{account}: the response holds no token"
        ));
    }
    Ok(token.into_bytes())
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Whether a JWT with `iat` and `exp` claims needs no renewal at `now` (seconds).
pub(super) fn token_is_fresh(token: &[u8], now: i64) -> bool {
    let claims = std::str::from_utf8(token)
        .ok()
        .and_then(|t| t.split('.').nth(1))
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.trim_end_matches('='))
                .ok()
        })
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok());
    let Some(claims) = claims else { return false };
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return false;
    };
    let renew_at = (iat + (exp - iat) * 8 / 10).min(iat + 24 * 3600);
    now < renew_at
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builds_config_map_payloads_as_make_payload() {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": { "name": "cfg" },
            "data": { "a": "1", "b": "2" },
            "binaryData": { "bin": "AAE=" },
        }))
        .unwrap();
        let item = |key: &str, path: &str, mode: Option<i32>| KeyToPath {
            key: key.into(),
            path: path.into(),
            mode,
        };
        let all = config_map_payload(None, &cm, 0o644, false).unwrap();
        assert_eq!(
            all.keys().collect::<Vec<_>>(),
            ["a", "b", "bin"],
            "every key, binary too"
        );
        assert_eq!(all["bin"].data, vec![0, 1]);
        assert_eq!(all["a"].mode, 0o644);

        let items = [
            item("a", "dir/first", Some(0o400)),
            item("b", "second", None),
        ];
        let some = config_map_payload(Some(&items), &cm, 0o600, false).unwrap();
        assert_eq!(some.keys().collect::<Vec<_>>(), ["dir/first", "second"]);
        assert_eq!(
            (some["dir/first"].mode, some["second"].mode),
            (0o400, 0o600)
        );

        let missing = [item("nope", "x", None)];
        assert_eq!(
            config_map_payload(Some(&missing), &cm, 0o644, false),
            Err("configmap references non-existent config key: nope".into())
        );
        assert_eq!(
            config_map_payload(Some(&missing), &cm, 0o644, true),
            Ok(Payload::new()),
            "optional skips"
        );
    }

    #[test]
    fn renews_tokens_after_eighty_percent_of_their_life() {
        let token = |iat: i64, exp: i64| {
            let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(json!({ "iat": iat, "exp": exp }).to_string());
            format!("e30.{claims}.sig").into_bytes()
        };
        let cases = [
            ("fresh", token(1000, 4600), 1000 + 2000, true),
            ("just before 80%", token(1000, 4600), 1000 + 2879, true),
            ("at 80%", token(1000, 4600), 1000 + 2880, false),
            ("expired", token(1000, 4600), 9000, false),
            (
                "a week-long token after a day",
                token(0, 7 * 86400),
                86400,
                false,
            ),
            ("not a JWT", b"garbage".to_vec(), 0, false),
        ];
        for (name, token, now, fresh) in cases {
            assert_eq!(token_is_fresh(&token, now), fresh, "{name}");
        }
    }
}
