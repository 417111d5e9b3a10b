//! One volume of a pod made ready on the host, plugin by plugin (emptyDir, hostPath,
//! persistentVolumeClaim, and the configMap, secret, downwardAPI and projected volumes the
//! agent writes itself).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Pod, ProjectedVolumeSource, Volume};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::objects::Objects;
use super::sources::{self, Source, DEFAULT_MODE};
use super::{atomic, host_path, mount, ownership, quantity, volume_kind, VolumeHost};

pub(super) async fn setup_volume(
    host: &VolumeHost,
    pod: &Pod,
    objects: &Objects<'_>,
    volumes_dir: &Path,
    volume: &Volume,
) -> Result<PathBuf, String> {
    if !super::is_path_component(&volume.name) {
        return Err(format!("invalid volume name {:?}", volume.name));
    }
    let dir = |plugin: &str| {
        volumes_dir
            .join(format!("kubernetes.io~{plugin}"))
            .join(&volume.name)
    };
    let io_error = |e: io::Error| e.to_string();
    if let Some(empty) = &volume.empty_dir {
        let path = dir("empty-dir");
        fs::create_dir_all(&path).map_err(io_error)?;
        match empty.medium.as_deref().unwrap_or_default() {
            "" => {}
            "Memory" => mount::mount_tmpfs(&path, memory_size(pod, empty.size_limit.as_ref()))
                .await
                .map_err(io_error)?,
            other => return Err(format!("emptyDir medium {other:?} is not supported")),
        }
        // As the kubelet: world-writable whatever the umask, so any container user can write.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).map_err(io_error)?;
        if let Some(gid) = ownership::fs_group(pod) {
            ownership::chown_dir(&path, gid).map_err(io_error)?;
        }
        return Ok(path);
    }
    if let Some(hp) = &volume.host_path {
        let path = PathBuf::from(&hp.path);
        host_path::check_and_prepare(&path, hp.type_.as_deref())?;
        return Ok(path);
    }
    if let Some(claim) = &volume.persistent_volume_claim {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        return host_path::claim_path(host, namespace, &claim.claim_name).await;
    }
    let (path, payload) = if let Some(cm) = &volume.config_map {
        let optional = cm.optional == Some(true);
        let mode = cm.default_mode.unwrap_or(DEFAULT_MODE);
        let payload = match sources::config_map_source(objects, &cm.name, optional).await? {
            Source::Found(found) => {
                sources::config_map_payload(cm.items.as_deref(), &found, mode, optional)?
            }
            Source::OptionalMissing => atomic::Payload::new(),
        };
        (dir("configmap"), payload)
    } else if let Some(secret) = &volume.secret {
        let optional = secret.optional == Some(true);
        let mode = secret.default_mode.unwrap_or(DEFAULT_MODE);
        let name = secret.secret_name.as_deref().unwrap_or_default();
        let payload = match sources::secret_source(objects, name, optional).await? {
            Source::Found(found) => {
                sources::secret_payload(secret.items.as_deref(), &found, mode, optional)?
            }
            Source::OptionalMissing => atomic::Payload::new(),
        };
        (dir("secret"), payload)
    } else if let Some(downward) = &volume.downward_api {
        let mode = downward.default_mode.unwrap_or(DEFAULT_MODE);
        let items = downward.items.as_deref().unwrap_or_default();
        (
            dir("downward-api"),
            sources::downward_payload(items, pod, objects, mode).await?,
        )
    } else if let Some(projected) = &volume.projected {
        let path = dir("projected");
        let payload = projected_payload(host, pod, objects, &path, projected).await?;
        (path, payload)
    } else {
        return Err(format!(
            "volume type {:?} is not supported by this node",
            volume_kind(volume)
        ));
    };
    let mut payload = payload;
    let fs_group = ownership::fs_group(pod);
    if fs_group.is_some() {
        ownership::group_readable(&mut payload);
    }
    atomic::write(&path, &payload).map_err(|e| format!("writing {}: {e}", path.display()))?;
    if let Some(gid) = fs_group {
        ownership::chown_tree(&path, gid, true)
            .map_err(|e| format!("setting fsGroup on {}: {e}", path.display()))?;
    }
    Ok(path)
}

async fn projected_payload(
    host: &VolumeHost,
    pod: &Pod,
    objects: &Objects<'_>,
    path: &Path,
    projected: &ProjectedVolumeSource,
) -> Result<atomic::Payload, String> {
    let mode = projected.default_mode.unwrap_or(DEFAULT_MODE);
    let mut payload = atomic::Payload::new();
    let mut errors = Vec::new();
    for source in projected.sources.iter().flatten() {
        let part = if let Some(cm) = &source.config_map {
            let optional = cm.optional == Some(true);
            match sources::config_map_source(objects, &cm.name, optional).await {
                Ok(Source::Found(found)) => {
                    sources::config_map_payload(cm.items.as_deref(), &found, mode, optional)
                }
                Ok(Source::OptionalMissing) => Ok(atomic::Payload::new()),
                Err(e) => Err(e),
            }
        } else if let Some(secret) = &source.secret {
            let optional = secret.optional == Some(true);
            match sources::secret_source(objects, &secret.name, optional).await {
                Ok(Source::Found(found)) => {
                    sources::secret_payload(secret.items.as_deref(), &found, mode, optional)
                }
                Ok(Source::OptionalMissing) => Ok(atomic::Payload::new()),
                Err(e) => Err(e),
            }
        } else if let Some(downward) = &source.downward_api {
            sources::downward_payload(
                downward.items.as_deref().unwrap_or_default(),
                pod,
                objects,
                mode,
            )
            .await
        } else if let Some(token) = &source.service_account_token {
            sources::service_account_token(host, pod, token, path)
                .await
                .map(|data| {
                    atomic::Payload::from([(
                        token.path.clone(),
                        atomic::FileProjection {
                            data,
                            // With an fsGroup the token is only for the owner and the
                            // group (0600, made 0640 below), as upstream.
                            mode: if ownership::fs_group(pod).is_some() {
                                0o600
                            } else {
                                mode as u32
                            },
                        },
                    )])
                })
        } else {
            Err("projected volume source is not supported by this node (only configMap, secret, downwardAPI and serviceAccountToken)".into())
        };
        match part {
            Ok(part) => payload.extend(part),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(payload)
    } else {
        Err(errors.join(", "))
    }
}

/// The size of a memory-backed emptyDir: its sizeLimit, capped by the pod's memory limit
/// when every container has one (a 64Mi limit on a 1Gi-limited pod gives 64Mi; no
/// sizeLimit on a pod of two 128Mi containers gives 256Mi). Neither: the kernel default.
fn memory_size(pod: &Pod, size_limit: Option<&Quantity>) -> Option<i128> {
    let bytes =
        |q: &Quantity| quantity::parse_nanos(&q.0).map(|n| quantity::ceil_div(n, 1_000_000_000));
    let limit = size_limit.and_then(bytes).filter(|b| *b > 0);
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let pod_limit: Option<i128> = containers
        .iter()
        .map(|c| {
            c.resources
                .as_ref()?
                .limits
                .as_ref()?
                .get("memory")
                .and_then(bytes)
        })
        .sum::<Option<i128>>()
        .filter(|b| *b > 0);
    match (limit, pod_limit) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_memory_empty_dirs_from_limits() {
        let pod = |limits: &[Option<&str>]| -> Pod {
            let containers: Vec<serde_json::Value> = limits
                .iter()
                .map(|l| match l {
                    Some(l) => serde_json::json!({ "name": "c", "resources": { "limits": { "memory": l } } }),
                    None => serde_json::json!({ "name": "c" }),
                })
                .collect();
            serde_json::from_value(serde_json::json!({ "spec": { "containers": containers } }))
                .unwrap()
        };
        let q = |s: &str| k8s_openapi::apimachinery::pkg::api::resource::Quantity(s.into());
        let mi = 1024 * 1024;
        let cases = [
            (
                "sizeLimit alone",
                pod(&[None]),
                Some(q("64Mi")),
                Some(64 * mi),
            ),
            (
                "capped by the pod limit",
                pod(&[Some("32Mi")]),
                Some(q("64Mi")),
                Some(32 * mi),
            ),
            (
                "pod limit is the sum",
                pod(&[Some("128Mi"), Some("128Mi")]),
                None,
                Some(256 * mi),
            ),
            (
                "one unlimited container: no pod limit",
                pod(&[Some("128Mi"), None]),
                None,
                None,
            ),
            ("nothing", pod(&[None]), None, None),
        ];
        for (name, pod, limit, want) in cases {
            assert_eq!(memory_size(&pod, limit.as_ref()), want, "{name}");
        }
    }
}
