//! The API objects volumes and env read (ConfigMaps, Secrets, the node's allocatable
//! resources), fetched once per call and told apart as present, absent or unreachable.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Node, ResourceFieldSelector, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::Api;
use tokio::sync::Mutex;

use super::VolumeHost;

/// A client error as a user reads it: the apiserver's own message for API errors (`the
/// server could not find the requested resource`), the transport error otherwise.
pub(super) fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

/// Per-call cache of the objects of one pod's namespace.
pub(super) struct Objects<'a> {
    host: &'a VolumeHost,
    namespace: String,
    config_maps: Mutex<BTreeMap<String, Option<ConfigMap>>>,
    secrets: Mutex<BTreeMap<String, Option<Secret>>>,
    allocatable: Mutex<Option<BTreeMap<String, Quantity>>>,
}

impl<'a> Objects<'a> {
    pub(super) fn new(host: &'a VolumeHost, namespace: &str) -> Self {
        Objects {
            host,
            namespace: namespace.to_string(),
            config_maps: Mutex::default(),
            secrets: Mutex::default(),
            allocatable: Mutex::default(),
        }
    }

    /// The ConfigMap, `None` when it does not exist; other failures as their message.
    pub(super) async fn config_map(&self, name: &str) -> Result<Option<ConfigMap>, String> {
        let mut cache = self.config_maps.lock().await;
        if let Some(found) = cache.get(name) {
            return Ok(found.clone());
        }
        let api: Api<ConfigMap> = Api::namespaced(self.host.client.clone(), &self.namespace);
        let found = api.get_opt(name).await.map_err(|e| {
            format!(
                "failed to get configmap {}/{name}: {}",
                self.namespace,
                api_message(&e)
            )
        })?;
        cache.insert(name.to_string(), found.clone());
        Ok(found)
    }

    pub(super) async fn secret(&self, name: &str) -> Result<Option<Secret>, String> {
        let mut cache = self.secrets.lock().await;
        if let Some(found) = cache.get(name) {
            return Ok(found.clone());
        }
        let api: Api<Secret> = Api::namespaced(self.host.client.clone(), &self.namespace);
        let found = api.get_opt(name).await.map_err(|e| {
            format!(
                "failed to get secret {}/{name}: {}",
                self.namespace,
                api_message(&e)
            )
        })?;
        cache.insert(name.to_string(), found.clone());
        Ok(found)
    }

    /// `status.allocatable` of this node, what unset limits default to in the downward API.
    pub(super) async fn node_allocatable(&self) -> Result<BTreeMap<String, Quantity>, String> {
        let mut cache = self.allocatable.lock().await;
        if let Some(found) = cache.as_ref() {
            return Ok(found.clone());
        }
        let api: Api<Node> = Api::all(self.host.client.clone());
        let node = api
            .get_opt(&self.host.node_name)
            .await
            .map_err(|e| {
                format!(
                    "failed to get node {}: {}",
                    self.host.node_name,
                    api_message(&e)
                )
            })?
            .ok_or_else(|| format!("node \"{}\" not found", self.host.node_name))?;
        let allocatable = node
            .status
            .and_then(|s| s.allocatable.or(s.capacity))
            .unwrap_or_default();
        *cache = Some(allocatable.clone());
        Ok(allocatable)
    }

    /// A `resourceFieldRef` of `container`; the node's allocatable resources are read only
    /// when a limit it asks for is not set.
    pub(super) async fn resource_value(
        &self,
        selector: &ResourceFieldSelector,
        container: &Container,
    ) -> Result<String, String> {
        let limit_missing = selector
            .resource
            .strip_prefix("limits.")
            .is_some_and(|resource| {
                !container
                    .resources
                    .as_ref()
                    .and_then(|r| r.limits.as_ref())
                    .is_some_and(|l| l.contains_key(resource))
            });
        let allocatable = if limit_missing {
            self.node_allocatable().await?
        } else {
            BTreeMap::new()
        };
        super::downward::resource_value(selector, container, &allocatable)
    }
}
