//! Upstream's `NamespaceLifecycle` admission plugin: nothing is created in a namespace
//! that is missing or terminating, and the system namespaces cannot be deleted.

use async_trait::async_trait;
use serde_json::Value;

use super::{AdmissionRequest, Operation, ValidatingAdmission};
use crate::api::strategy::SYSTEM_NAMESPACES;
use crate::api::Api;
use crate::object;
use crate::status::{ApiError, Cause, Result, Target};
use crate::watchcache::decode;

pub struct NamespaceLifecycle;

#[async_trait]
impl ValidatingAdmission for NamespaceLifecycle {
    async fn validate(
        &self,
        api: &Api,
        request: &AdmissionRequest<'_>,
        _obj: &Value,
        _old: Option<&Value>,
    ) -> Result<()> {
        let r = request.resource;
        let is_namespace = r.group.is_empty() && r.plural == "namespaces";
        match request.operation {
            Operation::Delete if is_namespace && SYSTEM_NAMESPACES.contains(&request.name) => {
                Err(ApiError::Forbidden(
                    Target::new(&r.group, &r.plural, request.name),
                    "this namespace may not be deleted".to_string(),
                    None,
                ))
            }
            Operation::Create => match request.namespace {
                Some(ns) if request.subresource.is_none() => {
                    check_namespace(api, &r.group, &r.plural, ns, request.name).await
                }
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

/// Refuses a create in a namespace that is missing (404) or terminating (403).
async fn check_namespace(api: &Api, group: &str, plural: &str, ns: &str, name: &str) -> Result<()> {
    let snap = api.registry.snapshot();
    let ns_res = snap
        .get("", "v1", "namespaces")
        .ok_or(ApiError::NoSuchResource)?;
    let key = ns_res.key(None, ns);
    // The cache is almost always current; a miss may only mean it has not caught up yet.
    let cached = api.cache(ns_res).await?.get(&key);
    let namespace = match cached {
        Some(n) => Some((*n).clone()),
        None => api
            .storage
            .get(&key)
            .await?
            .map(|kv| decode(&kv.value, kv.mod_revision))
            .transpose()?,
    };
    match namespace {
        None => Err(ApiError::NotFound(Target::new("", "namespaces", ns))),
        Some(n)
            if n.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating")
                || object::is_deleting(&n) =>
        {
            Err(ApiError::Forbidden(
                Target::new(group, plural, name),
                format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
                Some(Cause {
                    reason: "NamespaceTerminating",
                    field: "metadata.namespace".into(),
                    message: format!("namespace {ns} is being terminated"),
                }),
            ))
        }
        Some(_) => Ok(()),
    }
}
