//! One RBAC `PolicyRule` and the two questions asked of rules: does a rule allow a
//! request (upstream's `RuleAllows`), and do some rules cover others (upstream's
//! `Covers`, what escalation checks and the policy reconciler ask).

use serde::{Deserialize, Serialize};

use crate::api::pipeline::{Attributes, ResourceAttributes};

/// rbac.authorization.k8s.io/v1 PolicyRule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    #[serde(
        default,
        rename = "nonResourceURLs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

fn has(set: &[String], want: &str) -> bool {
    set.iter().any(|s| s == want)
}

fn has_or_all(set: &[String], want: &str) -> bool {
    set.iter().any(|s| s == "*" || s == want)
}

impl PolicyRule {
    /// The rules of a Role or ClusterRole object (`rules`, absent or null for none).
    pub fn of(obj: &serde_json::Value) -> Vec<PolicyRule> {
        obj.get("rules")
            .and_then(|r| serde_json::from_value(r.clone()).ok())
            .unwrap_or_default()
    }

    /// Whether this rule allows the request (upstream's `RuleAllows`).
    pub fn allows(&self, attributes: &Attributes) -> bool {
        if !has_or_all(&self.verbs, &attributes.verb) {
            return false;
        }
        match &attributes.resource {
            Some(r) => self.allows_resource(r),
            None => self
                .non_resource_urls
                .iter()
                .any(|url| url_covers(url, &attributes.path)),
        }
    }

    fn allows_resource(&self, r: &ResourceAttributes) -> bool {
        if !has_or_all(&self.api_groups, &r.group) {
            return false;
        }
        let resource_matches = match &r.subresource {
            None => has_or_all(&self.resources, &r.resource),
            Some(sub) => {
                let combined = format!("{}/{sub}", r.resource);
                self.resources.iter().any(|rule| {
                    rule == "*" || *rule == combined || rule.strip_prefix("*/") == Some(sub)
                })
            }
        };
        resource_matches
            && (self.resource_names.is_empty()
                || r.name
                    .as_deref()
                    .is_some_and(|n| has(&self.resource_names, n)))
    }

    /// This rule cut into rules of one verb, group, resource (or URL) and name each
    /// (upstream's `BreakdownRule`).
    fn breakdown(&self) -> Vec<PolicyRule> {
        let one = |v: &str| vec![v.to_string()];
        let mut out = Vec::new();
        for group in &self.api_groups {
            for resource in &self.resources {
                for verb in &self.verbs {
                    if self.resource_names.is_empty() {
                        out.push(PolicyRule {
                            verbs: one(verb),
                            api_groups: one(group),
                            resources: one(resource),
                            ..Default::default()
                        });
                    }
                    for name in &self.resource_names {
                        out.push(PolicyRule {
                            verbs: one(verb),
                            api_groups: one(group),
                            resources: one(resource),
                            resource_names: one(name),
                            ..Default::default()
                        });
                    }
                }
            }
        }
        for url in &self.non_resource_urls {
            for verb in &self.verbs {
                out.push(PolicyRule {
                    verbs: one(verb),
                    non_resource_urls: one(url),
                    ..Default::default()
                });
            }
        }
        out
    }

    /// Whether this rule grants all that `sub` (one broken-down rule) grants (upstream's
    /// `ruleCovers`).
    fn covers(&self, sub: &PolicyRule) -> bool {
        let all =
            |set: &[String], wanted: &[String]| has(set, "*") || wanted.iter().all(|w| has(set, w));
        let resources = has(&self.resources, "*")
            || sub.resources.iter().all(|r| {
                has(&self.resources, r)
                    || r.split_once('/')
                        .is_some_and(|(_, s)| has(&self.resources, &format!("*/{s}")))
            });
        let urls = sub
            .non_resource_urls
            .iter()
            .all(|u| self.non_resource_urls.iter().any(|o| url_covers(o, u)));
        let names = if sub.resource_names.is_empty() {
            self.resource_names.is_empty()
        } else {
            self.resource_names.is_empty()
                || sub
                    .resource_names
                    .iter()
                    .all(|n| has(&self.resource_names, n))
        };
        all(&self.verbs, &sub.verbs)
            && all(&self.api_groups, &sub.api_groups)
            && resources
            && urls
            && names
    }

    /// Upstream's `CompactString`: `{APIGroups:["apps"], Resources:["deployments"],
    /// Verbs:["get" "list"]}`, the form escalation errors list missing rules in.
    pub fn compact_string(&self) -> String {
        let q = |v: &[String]| {
            let parts: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
            format!("[{}]", parts.join(" "))
        };
        let mut parts = Vec::new();
        for (label, v) in [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ] {
            if !v.is_empty() {
                parts.push(format!("{label}:{}", q(v)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }
}

/// A non-resource URL rule: the path itself, or a prefix ending in `*`.
fn url_covers(rule: &str, path: &str) -> bool {
    rule == "*"
        || rule == path
        || rule
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

/// The parts of `servant`'s rules that `owner`'s do not grant, broken down to one verb
/// and resource each; empty when `owner` covers them all (upstream's `Covers`).
pub fn uncovered(owner: &[PolicyRule], servant: &[PolicyRule]) -> Vec<PolicyRule> {
    servant
        .iter()
        .flat_map(PolicyRule::breakdown)
        .filter(|sub| !owner.iter().any(|o| o.covers(sub)))
        .collect()
}

/// Broken-down rules merged back by group and resource, their verbs collected in order
/// (upstream's `CompactRules`); rules with names or URLs are left as they are.
pub fn compact(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    for rule in rules {
        let simple = rule.resource_names.is_empty()
            && rule.non_resource_urls.is_empty()
            && rule.api_groups.len() == 1
            && rule.resources.len() == 1;
        let same = out.iter_mut().find(|o| {
            simple
                && o.resource_names.is_empty()
                && o.non_resource_urls.is_empty()
                && o.api_groups == rule.api_groups
                && o.resources == rule.resources
        });
        match same {
            Some(o) => {
                for v in rule.verbs {
                    if !has(&o.verbs, &v) {
                        o.verbs.push(v);
                    }
                }
            }
            None => out.push(rule),
        }
    }
    out
}
