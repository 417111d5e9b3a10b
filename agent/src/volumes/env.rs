//! A container's environment as the kubelet builds it (`makeEnvironmentVariables`):
//! `envFrom` sources first, then `env` entries in order, each `value` with `$(VAR)`
//! references to the variables defined before it expanded; a later entry with the same name
//! replaces the earlier value. Service variables ([`super::services`]) can be referenced
//! and are added last for names the container does not define.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};

use super::downward::{field_value, find_container};
use super::expand::expand;
use super::objects::Objects;
use super::services::{service_env, services_for};
use super::{VolumeError, VolumeHost};

/// A resolved environment plus the warnings the kubelet turns into events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerEnv {
    /// In the order names first appeared.
    pub vars: Vec<(String, String)>,
    /// Messages for an `InvalidEnvironmentVariableNames` warning event, one per envFrom
    /// source that had keys which cannot be environment variable names.
    pub invalid_names: Vec<String>,
}

impl ContainerEnv {
    fn set(&mut self, name: String, value: String) {
        match self.vars.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value,
            None => self.vars.push((name, value)),
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    /// `NAME=value` strings, the form the runtime takes.
    pub fn strings(&self) -> Vec<String> {
        self.vars.iter().map(|(n, v)| format!("{n}={v}")).collect()
    }
}

/// Whether `name` can be an environment variable name: the API's relaxed rule (printable
/// ASCII, no `=`), which is also all an `envp` entry can carry.
pub fn is_env_var_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'=')
}

fn config_error(message: String) -> VolumeError {
    VolumeError {
        reason: "CreateContainerConfigError",
        message,
    }
}

pub(super) async fn resolve(
    host: &VolumeHost,
    pod: &Pod,
    container: &Container,
) -> Result<ContainerEnv, VolumeError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let objects = Objects::new(host, namespace);
    let mut env = ContainerEnv::default();
    let services = services_for(host, pod).await.map_err(config_error)?;
    let service_vars = service_env(&services);

    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or_default();
        let (kind, name, data): (&str, &str, BTreeMap<String, String>) = if let Some(r) =
            &source.config_map_ref
        {
            match objects.config_map(&r.name).await.map_err(config_error)? {
                Some(cm) => ("configMap", &r.name, cm.data.unwrap_or_default()),
                None if r.optional == Some(true) => continue,
                None => return Err(config_error(format!("configmap \"{}\" not found", r.name))),
            }
        } else if let Some(r) = &source.secret_ref {
            match objects.secret(&r.name).await.map_err(config_error)? {
                Some(s) => {
                    let data = s.data.unwrap_or_default();
                    let data = data
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()));
                    ("secret", &r.name, data.collect())
                }
                None if r.optional == Some(true) => continue,
                None => return Err(config_error(format!("secret \"{}\" not found", r.name))),
            }
        } else {
            continue;
        };
        let mut invalid = Vec::new();
        for (key, value) in data {
            let key = format!("{prefix}{key}");
            if is_env_var_name(&key) {
                env.set(key, value);
            } else {
                invalid.push(key);
            }
        }
        if !invalid.is_empty() {
            env.invalid_names.push(format!(
                "Keys [{}] from the EnvFrom {kind} {namespace}/{name} were skipped since they are considered invalid environment variable names.",
                invalid.join(", ")
            ));
        }
    }

    for var in container.env.iter().flatten() {
        let literal = var.value.as_deref().unwrap_or_default();
        let value = if !literal.is_empty() {
            expand(literal, |name| {
                env.get(name).or_else(|| {
                    service_vars
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.clone())
                })
            })
        } else if let Some(from) = &var.value_from {
            if let Some(field) = &from.field_ref {
                field_value(pod, field).map_err(config_error)?
            } else if let Some(resource) = &from.resource_field_ref {
                container_resource(&objects, pod, container, resource).await?
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional == Some(true);
                let cm = match objects.config_map(&r.name).await.map_err(config_error)? {
                    Some(cm) => cm,
                    None if optional => continue,
                    None => {
                        return Err(config_error(format!("configmap \"{}\" not found", r.name)))
                    }
                };
                match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => v.clone(),
                    None if optional => continue,
                    None => {
                        return Err(config_error(format!(
                            "couldn't find key {} in ConfigMap {namespace}/{}",
                            r.key, r.name
                        )))
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional == Some(true);
                let secret = match objects.secret(&r.name).await.map_err(config_error)? {
                    Some(s) => s,
                    None if optional => continue,
                    None => return Err(config_error(format!("secret \"{}\" not found", r.name))),
                };
                match secret.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                    None if optional => continue,
                    None => {
                        return Err(config_error(format!(
                            "couldn't find key {} in Secret {namespace}/{}",
                            r.key, r.name
                        )))
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(var.name.clone(), value);
    }
    // Service variables come last and never replace a variable the container defines.
    for (name, value) in service_vars {
        if env.get(&name).is_none() {
            env.vars.push((name, value));
        }
    }
    Ok(env)
}

/// A `resourceFieldRef` of this container (or the one it names); the node's allocatable
/// resources are read only when a limit it asks for is not set.
async fn container_resource(
    objects: &Objects<'_>,
    pod: &Pod,
    container: &Container,
    selector: &ResourceFieldSelector,
) -> Result<String, VolumeError> {
    let target = match selector.container_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => find_container(pod, name)
            .ok_or_else(|| config_error(format!("container {name} not found")))?,
        None => container,
    };
    objects
        .resource_value(selector, target)
        .await
        .map_err(config_error)
}

#[cfg(test)]
mod tests {
    #[test]
    fn accepts_env_names_as_relaxed_validation() {
        let cases = [
            ("identifier", "MY_VAR", true),
            ("leading digit", "1badkey", true),
            ("dashes and dots", "my-var.x", true),
            ("empty", "", false),
            ("equals sign", "A=B", false),
            ("newline", "A\nB", false),
            ("non-ASCII", "größe", false),
        ];
        for (name, input, ok) in cases {
            assert_eq!(super::is_env_var_name(input), ok, "{name}");
        }
    }
}
