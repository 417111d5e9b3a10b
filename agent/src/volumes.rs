//! A pod's volumes on the host and the bind mounts containers get from them, plus the
//! environment a container's `env` and `envFrom` resolve to.
//!
//! Layout: `<pods_dir>/<pod uid>/volumes/<plugin>/<volume name>`, as the kubelet lays out
//! /var/lib/kubelet/pods.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::runtime::Mount;

/// Why a pod's volumes or a container's environment could not be prepared. `reason` is the
/// word upstream uses: `FailedMount` (an event; the pod stays ContainerCreating) or
/// `CreateContainerConfigError` (the container's waiting reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct VolumeError {
    pub reason: &'static str,
    pub message: String,
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

impl PodVolumes {
    /// The bind mounts for `container`'s volumeMounts (subPath and readOnly honoured).
    pub fn mounts(&self, _pod: &Pod, _container: &Container) -> Result<Vec<Mount>, VolumeError> {
        Err(VolumeError {
            reason: "CreateContainerConfigError",
            message: "volumes are not implemented yet".into(),
        })
    }
}

/// Prepares (or refreshes) every volume of `pod`. Idempotent.
pub async fn setup(_host: &VolumeHost, _pod: &Pod) -> Result<PodVolumes, VolumeError> {
    Err(VolumeError {
        reason: "FailedMount",
        message: "volumes are not implemented yet".into(),
    })
}

/// Unmounts and removes everything under `<pods_dir>/<uid>`. Absent parts are skipped.
pub async fn teardown(_host: &VolumeHost, _uid: &str) -> std::io::Result<()> {
    Ok(())
}

/// The container's environment as `NAME=value` strings: `envFrom` first, then `env` (later
/// entries win), with `$(VAR)` references expanded, values from ConfigMaps, Secrets, the
/// downward API (fieldRef, resourceFieldRef) resolved.
pub async fn container_env(
    _host: &VolumeHost,
    _pod: &Pod,
    _container: &Container,
) -> Result<Vec<String>, VolumeError> {
    Err(VolumeError {
        reason: "CreateContainerConfigError",
        message: "env is not implemented yet".into(),
    })
}
