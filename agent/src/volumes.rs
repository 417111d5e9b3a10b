//! A pod's volumes on the host and the bind mounts containers get from them, plus the
//! environment a container's `env` and `envFrom` resolve to.
//!
//! Layout: `<pods_dir>/<pod uid>/volumes/<plugin>/<volume name>`, as the kubelet lays out
//! /var/lib/kubelet/pods. emptyDir is a directory there (a tmpfs for `medium: Memory`);
//! configMap, secret, downwardAPI and projected volumes are written there by the
//! [`atomic`] writer, so calling [`setup`] again refreshes them without a reader ever seeing
//! half an update; hostPath and persistentVolumeClaim volumes are paths elsewhere on the
//! host and are only checked (or created, for the `...OrCreate` types).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, Volume, VolumeMount};

use crate::runtime::Mount;

pub mod atomic;
pub mod downward;
mod env;
pub mod expand;
mod host_path;
mod mount;
mod objects;
mod ownership;
mod plugins;
pub mod quantity;
pub mod services;
mod sources;

pub use env::{is_env_var_name, ContainerEnv};
use objects::Objects;

/// Why a pod's volumes or a container's environment could not be prepared. `reason` is the
/// word upstream uses: `FailedMount` (an event; the pod stays ContainerCreating) or
/// `CreateContainerConfigError` (the container's waiting reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct VolumeError {
    pub reason: &'static str,
    pub message: String,
}

impl VolumeError {
    fn config(message: String) -> Self {
        VolumeError {
            reason: "CreateContainerConfigError",
            message,
        }
    }
}

/// What volume plugins need from the agent.
#[derive(Clone)]
pub struct VolumeHost {
    pub client: kube::Client,
    /// `<data dir>/pods`.
    pub pods_dir: PathBuf,
    pub node_name: String,
}

/// A pod's prepared volumes: volume name → directory (or file) on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodVolumes {
    pub paths: BTreeMap<String, PathBuf>,
}

/// Volume kinds whose content the kubelet owns; containers always get them read-only.
const WRITTEN_BY_AGENT: [&str; 4] = ["configMap", "secret", "downwardAPI", "projected"];

impl PodVolumes {
    /// The bind mounts for `container`'s volumeMounts (subPath and readOnly honoured).
    /// `subPathExpr` needs the container's environment: use [`PodVolumes::mounts_with_env`].
    pub fn mounts(&self, pod: &Pod, container: &Container) -> Result<Vec<Mount>, VolumeError> {
        self.mounts_with_env(pod, container, &[])
    }

    /// As [`PodVolumes::mounts`], expanding `subPathExpr` with `env` (`NAME=value`).
    pub fn mounts_with_env(
        &self,
        pod: &Pod,
        container: &Container,
        env: &[String],
    ) -> Result<Vec<Mount>, VolumeError> {
        let volumes = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_deref())
            .unwrap_or_default();
        let mut mounts = Vec::new();
        for vm in container.volume_mounts.iter().flatten() {
            let not_found = || {
                VolumeError::config(format!(
                    "cannot find volume \"{}\" to mount into container \"{}\"",
                    vm.name, container.name
                ))
            };
            let volume = volumes
                .iter()
                .find(|v| v.name == vm.name)
                .ok_or_else(not_found)?;
            let path = self.paths.get(&vm.name).ok_or_else(not_found)?;
            let kind = volume_kind(volume);
            let forced_readonly = WRITTEN_BY_AGENT.contains(&kind.as_str())
                || volume
                    .persistent_volume_claim
                    .as_ref()
                    .is_some_and(|c| c.read_only == Some(true));
            let source = match sub_path(vm, env)? {
                None => path.clone(),
                Some(sub) => sub_path_source(path, &sub).map_err(|e| {
                    VolumeError::config(format!(
                        "failed to prepare subPath for volumeMount \"{}\" of container \"{}\": {e}",
                        vm.name, container.name
                    ))
                })?,
            };
            mounts.push(Mount {
                destination: vm.mount_path.clone(),
                source,
                readonly: vm.read_only == Some(true) || forced_readonly,
            });
        }
        Ok(mounts)
    }
}

/// The subPath of a volumeMount (`subPathExpr` expanded), checked as upstream checks it.
fn sub_path(vm: &VolumeMount, env: &[String]) -> Result<Option<String>, VolumeError> {
    let sub = match (vm.sub_path.as_deref(), vm.sub_path_expr.as_deref()) {
        (Some(s), _) if !s.is_empty() => s.to_string(),
        (_, Some(expr)) if !expr.is_empty() => {
            let vars: BTreeMap<&str, &str> = env.iter().filter_map(|e| e.split_once('=')).collect();
            let mut missing = std::collections::BTreeSet::new();
            let expanded = expand::expand(expr, |name| match vars.get(name) {
                Some(v) if !v.is_empty() => Some(v.to_string()),
                _ => {
                    missing.insert(name.to_string());
                    Some(String::new())
                }
            });
            if !missing.is_empty() {
                let missing: Vec<_> = missing.into_iter().collect();
                return Err(VolumeError::config(format!(
                    "missing value for {}",
                    missing.join(", ")
                )));
            }
            expanded
        }
        _ => return Ok(None),
    };
    validate_sub_path(&sub).map_err(VolumeError::config)?;
    Ok(Some(sub))
}

/// Upstream refuses an absolute subPath and any `..` element.
pub fn validate_sub_path(sub: &str) -> Result<(), String> {
    if Path::new(sub).is_absolute() {
        return Err(format!(
            "error SubPath `{sub}` must not be an absolute path"
        ));
    }
    if Path::new(sub)
        .components()
        .any(|c| c == Component::ParentDir)
    {
        return Err(format!(
            "unable to provision SubPath `{sub}`: must not contain '..'"
        ));
    }
    Ok(())
}

/// `volume/sub`, created as a directory (with the volume's mode) when missing, resolved
/// through symlinks and required to stay inside the volume.
fn sub_path_source(volume: &Path, sub: &str) -> io::Result<PathBuf> {
    let joined = volume.join(sub);
    if fs::symlink_metadata(&joined).is_err() {
        let mode = fs::metadata(volume)?.permissions().mode() & 0o7777;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(&joined)?;
        fs::set_permissions(&joined, fs::Permissions::from_mode(mode))?;
    }
    let base = volume.canonicalize()?;
    let resolved = joined.canonicalize()?;
    if !resolved.starts_with(&base) {
        return Err(io::Error::other(format!(
            "subpath {:?} not within volume path {:?}",
            resolved.display().to_string(),
            base.display().to_string()
        )));
    }
    Ok(resolved)
}

/// Whether `name` names exactly one directory entry (API names and UIDs always do; this
/// keeps a malformed one from reaching outside the pods dir).
fn is_path_component(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// `<pods_dir>/<uid>`: the pod's own directory (volumes, and the per-pod files the agent
/// mounts into containers such as etc-hosts).
pub fn pod_dir(host: &VolumeHost, uid: &str) -> PathBuf {
    host.pods_dir.join(uid)
}

/// The pod UIDs that have a directory under `pods_dir`, e.g. to tear down leftovers of
/// pods deleted while the agent was down.
pub fn pod_dirs(pods_dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(pods_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut uids = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            uids.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    uids.sort();
    Ok(uids)
}

/// The field of `Volume` that says its type (`emptyDir`, `nfs`, ...).
fn volume_kind(volume: &Volume) -> String {
    match serde_json::to_value(volume) {
        Ok(serde_json::Value::Object(map)) => map
            .keys()
            .find(|k| *k != "name")
            .cloned()
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Prepares (or refreshes) every volume of `pod`. Idempotent. Every volume is attempted;
/// the first failure is returned (with upstream's `MountVolume.SetUp failed` wording).
pub async fn setup(host: &VolumeHost, pod: &Pod) -> Result<PodVolumes, VolumeError> {
    let uid = pod
        .metadata
        .uid
        .as_deref()
        .filter(|u| is_path_component(u))
        .ok_or_else(|| VolumeError {
            reason: "FailedMount",
            message: format!("the pod has no usable uid ({:?})", pod.metadata.uid),
        })?;
    let volumes_dir = pod_dir(host, uid).join("volumes");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(&volumes_dir)
        .map_err(|e| VolumeError {
            reason: "FailedMount",
            message: format!("creating {}: {e}", volumes_dir.display()),
        })?;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let objects = Objects::new(host, namespace);
    let mut prepared = PodVolumes::default();
    let mut first_error = None;
    for volume in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default()
    {
        match plugins::setup_volume(host, pod, &objects, &volumes_dir, volume).await {
            Ok(path) => {
                prepared.paths.insert(volume.name.clone(), path);
            }
            Err(message) => {
                tracing::warn!(pod = ?pod.metadata.name, volume = %volume.name, %message, "volume setup failed");
                first_error.get_or_insert(VolumeError {
                    reason: "FailedMount",
                    message: format!(
                        "MountVolume.SetUp failed for volume \"{}\" : {message}",
                        volume.name
                    ),
                });
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(prepared),
    }
}

/// Unmounts and removes everything under `<pods_dir>/<uid>`. Absent parts are skipped.
/// Refuses to delete anything while a mount below the pod directory remains.
pub async fn teardown(pods_dir: &Path, uid: &str) -> io::Result<()> {
    if !is_path_component(uid) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid pod uid {uid:?}"),
        ));
    }
    let root = pods_dir.join(uid);
    if fs::symlink_metadata(&root).is_err() {
        return Ok(());
    }
    // mountinfo shows resolved paths.
    let root = root.canonicalize()?;
    for mount_point in mount::mounts_under(&root)? {
        mount::unmount(&mount_point).await?;
    }
    let left = mount::mounts_under(&root)?;
    if !left.is_empty() {
        return Err(io::Error::other(format!(
            "still mounted under {}: {left:?}",
            root.display()
        )));
    }
    match fs::remove_dir_all(&root) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The container's environment as `NAME=value` strings: `envFrom` first, then `env` (later
/// entries win), with `$(VAR)` references expanded, values from ConfigMaps, Secrets, the
/// downward API (fieldRef, resourceFieldRef) resolved, and the service variables
/// (`KUBERNETES_SERVICE_HOST`, and with `enableServiceLinks` those of the pod's namespace)
/// added for names the container does not set.
pub async fn container_env(
    host: &VolumeHost,
    pod: &Pod,
    container: &Container,
) -> Result<Vec<String>, VolumeError> {
    Ok(env::resolve(host, pod, container).await?.strings())
}

/// As [`container_env`], also returning the `InvalidEnvironmentVariableNames` warnings for
/// envFrom keys that were skipped.
pub async fn resolve_container_env(
    host: &VolumeHost,
    pod: &Pod,
    container: &Container,
) -> Result<ContainerEnv, VolumeError> {
    env::resolve(host, pod, container).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_single_path_components_as_uids_and_volume_names() {
        let cases = [
            ("uid", "6f1c2f6e-0b7a-4d33-9d0e-1b2c3d4e5f60", true),
            ("volume name", "kube-api-access-x7k2p", true),
            ("empty", "", false),
            ("dot", ".", false),
            ("dot dot", "..", false),
            ("slash", "a/b", false),
            ("NUL", "a\0b", false),
        ];
        for (name, input, ok) in cases {
            assert_eq!(is_path_component(input), ok, "{name}");
        }
    }

    #[test]
    fn validates_sub_paths_as_upstream() {
        let cases = [
            ("plain", "data", Ok(())),
            ("nested", "a/b", Ok(())),
            ("dots in a name", "a..b", Ok(())),
            (
                "absolute",
                "/etc",
                Err("error SubPath `/etc` must not be an absolute path"),
            ),
            (
                "backstep",
                "a/../../etc",
                Err("unable to provision SubPath `a/../../etc`: must not contain '..'"),
            ),
            (
                "leading backstep",
                "../x",
                Err("unable to provision SubPath `../x`: must not contain '..'"),
            ),
        ];
        for (name, sub, want) in cases {
            assert_eq!(validate_sub_path(sub), want.map_err(String::from), "{name}");
        }
    }
}
