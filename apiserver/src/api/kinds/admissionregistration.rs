//! admissionregistration.k8s.io kinds: the CEL expressions of ValidatingAdmissionPolicies
//! and of webhooks' `matchConditions` must compile when written (422 otherwise, as
//! upstream's validation).

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
            "validatingwebhookconfigurations" | "mutatingwebhookconfigurations" => {
                policy::validate_webhook_configuration(obj)
            }
            _ => Vec::new(),
        }
    }
}
