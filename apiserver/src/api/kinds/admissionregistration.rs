//! admissionregistration.k8s.io kinds: upstream's validation of ValidatingAdmissionPolicies
//! and their bindings (required fields, CEL expressions that compile) and of webhooks'
//! `matchConditions` (422 otherwise); and, as upstream's policy status controller, a
//! policy's `status.typeChecking` and `observedGeneration` written after each change of
//! its spec.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::KindHooks;
use crate::api::guarded::{self, Decision};
use crate::api::pipeline::vap::{policy, typecheck};
use crate::api::Api;
use crate::registry::Resource;
use crate::status::{Cause, Result, Target};

pub(super) struct AdmissionRegistration;

const GROUP: &str = "admissionregistration.k8s.io";

#[async_trait]
impl KindHooks for AdmissionRegistration {
    fn validate(&self, r: &Resource, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        match r.plural.as_str() {
            "validatingadmissionpolicies" => policy::validate_policy(obj),
            "validatingadmissionpolicybindings" => policy::validate_binding(obj),
            "validatingwebhookconfigurations" | "mutatingwebhookconfigurations" => {
                policy::validate_webhook_configuration(obj)
            }
            _ => Vec::new(),
        }
    }

    async fn after_write(&self, api: &Arc<Api>, obj: &Value, _old: Option<&Value>, deleted: bool) {
        if deleted || obj.get("kind").and_then(Value::as_str) != Some("ValidatingAdmissionPolicy") {
            return;
        }
        let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64);
        let observed = obj
            .pointer("/status/observedGeneration")
            .and_then(Value::as_i64);
        let Some(generation) = generation.filter(|g| Some(*g) != observed) else {
            return;
        };
        let (api, policy) = (api.clone(), obj.clone());
        tokio::spawn(async move {
            if let Err(e) = write_type_checking(&api, &policy, generation).await {
                tracing::warn!(policy = crate::object::name(&policy), error = %e, "writing a policy's type checking failed");
            }
        });
    }
}

/// Type checks `policy` against the schemas of the kinds it matches and stores the
/// result in its status, unless its spec changed again meanwhile.
async fn write_type_checking(api: &Api, policy: &Value, generation: i64) -> Result<()> {
    let snap = api.registry.snapshot();
    let kinds: Vec<typecheck::Kind> = typecheck::resources(policy)
        .iter()
        .filter_map(|(g, v, plural)| {
            let r = snap.get(g, v, plural)?;
            Some(typecheck::Kind {
                gvk: format!("{g}/{v}, Kind={}", r.kind),
                schema: r.schema()?,
            })
        })
        .collect();
    let warnings = typecheck::expression_warnings(policy, &kinds);
    let Some(r) = snap.get(GROUP, "v1", "validatingadmissionpolicies") else {
        return Ok(());
    };
    let name = crate::object::name(policy);
    let target = Target::new(GROUP, &r.plural, name);
    guarded::update(api, &r.key(None, name), &target, |current| {
        let Some(current) = current else {
            return Ok(Decision::Unchanged);
        };
        if current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            != Some(generation)
        {
            return Ok(Decision::Unchanged);
        }
        let mut next = current.clone();
        let mut type_checking = json!({});
        if !warnings.is_empty() {
            type_checking["expressionWarnings"] = json!(warnings);
        }
        let status = next
            .as_object_mut()
            .expect("a stored object is a JSON object")
            .entry("status")
            .or_insert_with(|| json!({}));
        if !status.is_object() {
            *status = json!({});
        }
        status["observedGeneration"] = json!(generation);
        status["typeChecking"] = type_checking;
        Ok(Decision::Write(next))
    })
    .await?;
    Ok(())
}
