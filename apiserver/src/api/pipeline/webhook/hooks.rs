//! One webhook of a Mutating/ValidatingWebhookConfiguration, read from its JSON with
//! admissionregistration/v1's defaults, and upstream's decision whether a request goes
//! to it: rules (operations, groups, versions, resources with subresources, scope),
//! then the namespace and object selectors. Pure; the plugin supplies the labels.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::selectors::LabelSelector;

/// Upstream's default `timeoutSeconds`, and what a larger value is cut to.
const DEFAULT_TIMEOUT_SECONDS: u64 = 10;
const MAX_TIMEOUT_SECONDS: u64 = 30;

/// One webhook, with the name of the configuration it came from.
#[derive(Clone, Debug)]
pub(crate) struct Hook {
    pub(crate) name: String,
    pub(crate) configuration: String,
    /// `clientConfig` as written (`url` or `service`, `caBundle`).
    pub(crate) client: Value,
    rules: Vec<Rule>,
    /// `failurePolicy: Ignore` (v1's default is Fail).
    pub(crate) ignore_failures: bool,
    /// `matchPolicy: Exact` (v1's default is Equivalent).
    pub(crate) exact: bool,
    namespace_selector: LabelSelector,
    object_selector: LabelSelector,
    /// `sideEffects`; None or NoneOnDryRun let a dry-run request through.
    pub(crate) side_effects: String,
    pub(crate) timeout: Duration,
    /// `reinvocationPolicy: IfNeeded` (mutating webhooks only).
    pub(crate) reinvoke: bool,
    /// `matchConditions`: (name, CEL expression) pairs, compiled through
    /// [`crate::cel::cached`].
    pub(crate) match_conditions: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default)]
struct Rule {
    operations: Vec<String>,
    groups: Vec<String>,
    versions: Vec<String>,
    resources: Vec<String>,
    scope: String,
}

/// What a request is, as the rules see it.
#[derive(Clone, Debug)]
pub(crate) struct Request<'a> {
    /// CREATE, UPDATE, DELETE or CONNECT.
    pub(crate) operation: &'a str,
    pub(crate) group: &'a str,
    pub(crate) version: &'a str,
    pub(crate) resource: &'a str,
    pub(crate) subresource: &'a str,
    /// The namespace of a namespaced object; empty for a cluster-scoped one.
    pub(crate) namespace: &'a str,
}

impl<'a> Request<'a> {
    fn is_namespace(&self) -> bool {
        self.group.is_empty() && self.resource == "namespaces"
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A selector field; absent or unparsable selects everything (the API validates them
/// when the configuration is written).
fn selector(v: Option<&Value>) -> LabelSelector {
    match v {
        Some(v @ Value::Object(_)) => {
            LabelSelector::from_label_selector(v).unwrap_or_else(|_| LabelSelector::nothing())
        }
        _ => LabelSelector::everything(),
    }
}

impl Hook {
    /// Every webhook of a configuration, in the order written.
    pub(crate) fn all_of(configuration: &Value) -> Vec<Hook> {
        let config_name = crate::object::name(configuration).to_string();
        configuration
            .get("webhooks")
            .and_then(Value::as_array)
            .map(|hooks| hooks.iter().map(|h| Hook::parse(&config_name, h)).collect())
            .unwrap_or_default()
    }

    fn parse(configuration: &str, h: &Value) -> Hook {
        let text = |field: &str| h.get(field).and_then(Value::as_str).unwrap_or("");
        let rules = h
            .get("rules")
            .and_then(Value::as_array)
            .map(|rules| {
                rules
                    .iter()
                    .map(|r| Rule {
                        operations: strings(r.get("operations")),
                        groups: strings(r.get("apiGroups")),
                        versions: strings(r.get("apiVersions")),
                        resources: strings(r.get("resources")),
                        scope: r
                            .get("scope")
                            .and_then(Value::as_str)
                            .unwrap_or("*")
                            .to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let timeout = h
            .get("timeoutSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_TIMEOUT_SECONDS)
            .clamp(1, MAX_TIMEOUT_SECONDS);
        Hook {
            name: text("name").to_string(),
            configuration: configuration.to_string(),
            client: h.get("clientConfig").cloned().unwrap_or(Value::Null),
            rules,
            ignore_failures: text("failurePolicy") == "Ignore",
            exact: text("matchPolicy") == "Exact",
            namespace_selector: selector(h.get("namespaceSelector")),
            object_selector: selector(h.get("objectSelector")),
            side_effects: text("sideEffects").to_string(),
            timeout: Duration::from_secs(timeout),
            reinvoke: text("reinvocationPolicy") == "IfNeeded",
            match_conditions: h
                .get("matchConditions")
                .and_then(Value::as_array)
                .map(|conditions| {
                    conditions
                        .iter()
                        .map(|c| {
                            let text = |f: &str| {
                                c.get(f).and_then(Value::as_str).unwrap_or("").to_string()
                            };
                            (text("name"), text("expression"))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Whether a dry-run request may be sent to this webhook.
    pub(crate) fn dry_run_safe(&self) -> bool {
        matches!(self.side_effects.as_str(), "None" | "NoneOnDryRun")
    }

    /// Whether one of the rules matches `request` (upstream's `rules.Matcher`).
    pub(crate) fn rules_match(&self, request: &Request<'_>) -> bool {
        self.rules.iter().any(|r| r.matches(request))
    }

    /// Upstream's namespace selector check: a cluster-scoped object other than a
    /// Namespace always passes; otherwise the namespace's labels (a Namespace's own
    /// labels for a Namespace) must match.
    pub(crate) fn namespace_matches(
        &self,
        request: &Request<'_>,
        namespace_labels: Option<&Map<String, Value>>,
    ) -> bool {
        if request.namespace.is_empty() && !request.is_namespace() {
            return true;
        }
        self.namespace_selector.matches(namespace_labels)
    }

    /// Upstream's object selector check: the new or the old object's labels match.
    pub(crate) fn object_matches(&self, obj: Option<&Value>, old: Option<&Value>) -> bool {
        if self.object_selector == LabelSelector::everything() {
            return true;
        }
        [obj, old]
            .into_iter()
            .flatten()
            .any(|o| self.object_selector.matches(crate::object::labels(o)))
    }
}

fn any_or(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

impl Rule {
    fn matches(&self, r: &Request<'_>) -> bool {
        self.scope_matches(r)
            && any_or(&self.operations, r.operation)
            && any_or(&self.groups, r.group)
            && any_or(&self.versions, r.version)
            && self.resources.iter().any(|res| {
                // `pods` is the resource alone, `*` every resource without subresource,
                // `pods/*` pods and its subresources, `*/status` every status.
                let (res, sub) = res.split_once('/').unwrap_or((res, ""));
                (res == "*" || res == r.resource) && (sub == "*" || sub == r.subresource)
            })
    }

    /// A Namespace is cluster-scoped even though its requests name a namespace.
    fn scope_matches(&self, r: &Request<'_>) -> bool {
        match self.scope.as_str() {
            "Namespaced" => !r.is_namespace() && !r.namespace.is_empty(),
            "Cluster" => r.is_namespace() || r.namespace.is_empty(),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request<'a>(resource: &'a str, subresource: &'a str, namespace: &'a str) -> Request<'a> {
        Request {
            operation: "CREATE",
            group: "",
            version: "v1",
            resource,
            subresource,
            namespace,
        }
    }

    fn hook(rule: Value) -> Hook {
        let config = json!({"metadata": {"name": "c"}, "webhooks": [
            {"name": "h.example.com", "rules": [rule]}
        ]});
        Hook::all_of(&config).remove(0)
    }

    #[test]
    fn rules_match_resources_subresources_operations_and_scope_as_upstream() {
        let cases = [
            (
                "star matches a resource",
                json!({"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["*"]}),
                request("pods", "", "ns"),
                true,
            ),
            (
                "star does not match a subresource",
                json!({"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["*"]}),
                request("pods", "status", "ns"),
                false,
            ),
            (
                "star slash star matches a subresource",
                json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"]}),
                request("pods", "status", "ns"),
                true,
            ),
            // upstream's matcher lets a `*` subresource match none too
            (
                "pods slash star matches pods itself",
                json!({"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/*"]}),
                request("pods", "", "ns"),
                true,
            ),
            (
                "pods slash star matches a pod subresource",
                json!({"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/*"]}),
                request("pods", "status", "ns"),
                true,
            ),
            (
                "star slash status",
                json!({"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["*/status"]}),
                request("services", "status", "ns"),
                true,
            ),
            (
                "other operation",
                json!({"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}),
                request("pods", "", "ns"),
                false,
            ),
            (
                "other group",
                json!({"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["pods"]}),
                request("pods", "", "ns"),
                false,
            ),
            (
                "namespaced scope skips a cluster object",
                json!({"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["*"], "scope": "Namespaced"}),
                request("nodes", "", ""),
                false,
            ),
            (
                "cluster scope takes a namespace",
                json!({"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["*"], "scope": "Cluster"}),
                request("namespaces", "", "a"),
                true,
            ),
            (
                "cluster scope skips a namespaced object",
                json!({"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["*"], "scope": "Cluster"}),
                request("pods", "", "a"),
                false,
            ),
        ];
        for (name, rule, req, want) in cases {
            assert_eq!(hook(rule).rules_match(&req), want, "{name}");
        }
    }

    #[test]
    fn defaults_are_v1s_and_the_timeout_is_capped_at_thirty_seconds() {
        let config = json!({"metadata": {"name": "c"}, "webhooks": [
            {"name": "a"},
            {"name": "b", "timeoutSeconds": 90, "failurePolicy": "Ignore", "matchPolicy": "Exact",
             "sideEffects": "NoneOnDryRun", "reinvocationPolicy": "IfNeeded"}
        ]});
        let hooks = Hook::all_of(&config);
        assert_eq!(hooks[0].timeout, Duration::from_secs(10));
        assert!(!hooks[0].ignore_failures && !hooks[0].exact && !hooks[0].reinvoke);
        assert!(!hooks[0].dry_run_safe());
        assert_eq!(hooks[1].timeout, Duration::from_secs(30));
        assert!(hooks[1].ignore_failures && hooks[1].exact && hooks[1].reinvoke);
        assert!(hooks[1].dry_run_safe());
    }

    #[test]
    fn selectors_skip_what_they_do_not_select() {
        let config = json!({"metadata": {"name": "c"}, "webhooks": [{
            "name": "a",
            "namespaceSelector": {"matchLabels": {"webhook": "on"}},
            "objectSelector": {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}
        }]});
        let h = Hook::all_of(&config).remove(0);
        let on = json!({"webhook": "on"});
        let off = json!({"webhook": "off"});
        assert!(h.namespace_matches(&request("pods", "", "ns"), on.as_object()));
        assert!(!h.namespace_matches(&request("pods", "", "ns"), off.as_object()));
        assert!(!h.namespace_matches(&request("pods", "", "ns"), None));
        assert!(
            h.namespace_matches(&request("nodes", "", ""), None),
            "cluster-scoped objects are never skipped by a namespace selector"
        );
        let plain = json!({"metadata": {"name": "x"}});
        let skipped = json!({"metadata": {"name": "x", "labels": {"skip": "yes"}}});
        assert!(h.object_matches(Some(&plain), None));
        assert!(!h.object_matches(Some(&skipped), None));
        assert!(
            h.object_matches(Some(&skipped), Some(&plain)),
            "the old object matching is enough"
        );
    }
}
