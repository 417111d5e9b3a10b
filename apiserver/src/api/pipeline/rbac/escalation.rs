//! Upstream's escalation prevention on RBAC writes (`pkg/registry/rbac/*/policybased`):
//! a Role or ClusterRole may only be written by someone who holds every rule it grants
//! (or may `escalate` it), a binding only by someone who holds every rule of the role it
//! references (or may `bind` that role). `system:masters` is exempt.

use async_trait::async_trait;
use serde_json::Value;

use super::rule::{compact, uncovered, PolicyRule};
use super::{Rbac, GROUP, MASTERS};
use crate::api::pipeline::{
    AdmissionRequest, Attributes, Operation, ResourceAttributes, UserInfo, ValidatingAdmission,
    Verdict,
};
use crate::api::Api;
use crate::status::{ApiError, Result, Target};

/// The check, as a validating plugin sharing the RBAC authorizer's index.
pub struct Escalation {
    pub(super) rbac: Rbac,
}

#[async_trait]
impl ValidatingAdmission for Escalation {
    async fn validate(
        &self,
        api: &Api,
        request: &AdmissionRequest<'_>,
        obj: &Value,
        old: Option<&Value>,
    ) -> Result<()> {
        let r = request.resource;
        if r.group != GROUP
            || request.subresource.is_some()
            || request.operation == Operation::Delete
            || request.user.groups.iter().any(|g| g == MASTERS)
        {
            return Ok(());
        }
        let target = Target::new(&r.group, &r.plural, request.name);
        let forbidden = |why: String| ApiError::Forbidden(target.clone(), why, None);
        let unchanged = |field: &str| old.is_some_and(|o| o.get(field) == obj.get(field));
        let ns = request.namespace;
        match r.plural.as_str() {
            "roles" | "clusterroles" => {
                if unchanged("rules") && unchanged("aggregationRule") {
                    return Ok(());
                }
                if may(api, request.user, "escalate", &r.plural, ns, request.name) {
                    return Ok(());
                }
                // An aggregated role's rules are whatever it selects: only someone
                // holding everything may create one (upstream's `fullAuthority`).
                let rules = if obj.get("aggregationRule").is_some_and(|a| !a.is_null()) {
                    full_authority()
                } else {
                    PolicyRule::of(obj)
                };
                self.confirm_held(request.user, ns, &rules)
                    .map_err(forbidden)
            }
            "rolebindings" | "clusterrolebindings" => {
                if unchanged("roleRef") {
                    return Ok(());
                }
                let role_ref = &obj["roleRef"];
                let (role_plural, kind) = match role_ref["kind"].as_str() {
                    Some("Role") => ("roles", "role"),
                    _ => ("clusterroles", "clusterrole"),
                };
                let name = role_ref["name"].as_str().unwrap_or_default();
                if may(api, request.user, "bind", role_plural, ns, name) {
                    return Ok(());
                }
                let Some(rules) = self.rbac.read().role_rules(ns, role_ref) else {
                    return Err(forbidden(format!("{kind}.{GROUP} {name:?} not found")));
                };
                self.confirm_held(request.user, ns, &rules)
                    .map_err(forbidden)
            }
            _ => Ok(()),
        }
    }
}

impl Escalation {
    /// Upstream's `ConfirmNoEscalation`: the writer holds every rule, else the message
    /// listing what it lacks.
    fn confirm_held(
        &self,
        user: &UserInfo,
        namespace: Option<&str>,
        rules: &[PolicyRule],
    ) -> std::result::Result<(), String> {
        let held = self.rbac.read().rules_for(user, namespace);
        let missing = uncovered(&held, rules);
        if missing.is_empty() {
            return Ok(());
        }
        let mut lines: Vec<String> = compact(missing)
            .iter()
            .map(PolicyRule::compact_string)
            .collect();
        lines.sort();
        lines.dedup();
        let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
        Err(format!(
            "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
            user.name,
            groups.join(" "),
            lines.join("\n")
        ))
    }
}

/// Whether the server's authorizers allow `verb` (escalate, bind) on an RBAC role.
fn may(
    api: &Api,
    user: &UserInfo,
    verb: &str,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> bool {
    let attributes = Attributes {
        user: user.clone(),
        verb: verb.into(),
        resource: Some(ResourceAttributes {
            group: GROUP.into(),
            version: "*".into(),
            resource: plural.into(),
            subresource: None,
            namespace: namespace.map(str::to_string),
            name: Some(name.to_string()).filter(|n| !n.is_empty()),
            selectors: Default::default(),
        }),
        path: String::new(),
    };
    api.pipeline.decide(&attributes) == Verdict::Allow
}

fn full_authority() -> Vec<PolicyRule> {
    let all = || vec!["*".to_string()];
    vec![
        PolicyRule {
            verbs: all(),
            api_groups: all(),
            resources: all(),
            ..Default::default()
        },
        PolicyRule {
            verbs: all(),
            non_resource_urls: all(),
            ..Default::default()
        },
    ]
}
