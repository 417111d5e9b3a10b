//! admissionregistration.k8s.io kinds: upstream's validation of ValidatingAdmissionPolicies
//! and their bindings (required fields, CEL expressions that compile) and of webhooks'
//! `matchConditions` (422 otherwise).

use serde_json::Value;

use super::KindHooks;
use crate::api::pipeline::vap::policy;
use crate::registry::Resource;
use crate::status::Cause;

pub(super) struct AdmissionRegistration;

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
}
