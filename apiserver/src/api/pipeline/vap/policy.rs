//! A ValidatingAdmissionPolicy compiled once per resourceVersion, its bindings, and
//! the checks a policy write gets (expressions that do not parse are 422, as
//! upstream's validation refuses them). Pure: the plugin supplies objects and labels.

use serde_json::{json, Value};

use super::super::webhook::hooks::Hook;
use crate::cel::Expression;
use crate::selectors::LabelSelector;
use crate::status::Cause;

/// One named expression (a match condition or a variable).
#[derive(Debug)]
pub(crate) struct Named {
    pub(crate) name: String,
    pub(crate) expression: Expression,
}

#[derive(Debug)]
pub(crate) struct Validation {
    pub(crate) expression: Expression,
    pub(crate) message: String,
    pub(crate) message_expression: Option<Expression>,
    /// `reason`: Unauthorized, Forbidden, Invalid (the default), RequestEntityTooLarge.
    pub(crate) reason: String,
}

/// An `auditAnnotations` item: its key (without the policy's name) and value.
#[derive(Debug)]
pub(crate) struct AuditAnnotation {
    pub(crate) key: String,
    pub(crate) value_expression: Expression,
}

/// `matchConstraints` or a binding's `matchResources`: each rule as a webhook-style
/// [`Hook`] (rules, selectors, matchPolicy) with its resourceNames, and the excluded
/// rules.
#[derive(Debug)]
pub(crate) struct Matcher {
    pub(crate) rules: Vec<(Hook, Vec<String>)>,
    pub(crate) excluded: Vec<(Hook, Vec<String>)>,
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

fn text(v: &Value, field: &str) -> String {
    v.get(field)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

impl Matcher {
    /// A policy's `matchConstraints` (its resourceRules are required).
    pub(crate) fn parse(m: &Value) -> Matcher {
        Matcher::parse_or(m, None)
    }

    /// A binding's `matchResources`: without resourceRules it takes every resource
    /// its policy matches, narrowed by its selectors alone.
    pub(crate) fn parse_binding(m: &Value) -> Matcher {
        let everything = json!([{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"],
                                  "resources": ["*", "*/*"]}]);
        Matcher::parse_or(m, Some(everything))
    }

    fn parse_or(m: &Value, default_rules: Option<Value>) -> Matcher {
        let hooks = |field: &str| -> Vec<(Hook, Vec<String>)> {
            let rules = m
                .get(field)
                .filter(|r| r.as_array().is_some_and(|a| !a.is_empty()))
                .or(default_rules.as_ref().filter(|_| field == "resourceRules"));
            rules
                .and_then(Value::as_array)
                .map(|rules| {
                    rules
                        .iter()
                        .map(|rule| {
                            let config = json!({"metadata": {"name": ""}, "webhooks": [{
                                "name": "",
                                "rules": [rule],
                                "matchPolicy": m.get("matchPolicy").cloned().unwrap_or(json!("Equivalent")),
                                "namespaceSelector": m.get("namespaceSelector").cloned().unwrap_or(json!({})),
                                "objectSelector": m.get("objectSelector").cloned().unwrap_or(json!({})),
                            }]});
                            let hook = Hook::all_of(&config).remove(0);
                            (hook, strings(rule.get("resourceNames")))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        Matcher {
            rules: hooks("resourceRules"),
            excluded: hooks("excludeResourceRules"),
        }
    }
}

/// A policy as the plugin evaluates it.
#[derive(Debug)]
pub(crate) struct Policy {
    pub(crate) name: String,
    pub(crate) ignore_failures: bool,
    pub(crate) constraints: Matcher,
    /// `paramKind` as (apiVersion, kind).
    pub(crate) param_kind: Option<(String, String)>,
    pub(crate) match_conditions: Vec<Named>,
    /// `variables`, (name, expression) in order, evaluated lazily.
    pub(crate) variables: crate::cel::Definitions,
    pub(crate) validations: Vec<Validation>,
    pub(crate) audit_annotations: Vec<AuditAnnotation>,
    /// Why the policy cannot be evaluated (an expression that does not compile): its
    /// failurePolicy decides what a matching request gets.
    pub(crate) error: Option<String>,
}

impl Policy {
    pub(crate) fn compile(obj: &Value) -> Policy {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let mut error = None;
        let mut compile = |field: String, source: &str| match Expression::compile(source) {
            Ok(e) => Some(e),
            Err(e) => {
                error.get_or_insert(format!("{field}: {e}"));
                None
            }
        };
        let named = |list: &str, compile: &mut dyn FnMut(String, &str) -> Option<Expression>| {
            spec.get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
                .filter_map(|(i, c)| {
                    let expression = compile(
                        format!("spec.{list}[{i}].expression"),
                        c.get("expression").and_then(Value::as_str).unwrap_or(""),
                    )?;
                    Some(Named {
                        name: text(c, "name"),
                        expression,
                    })
                })
                .collect::<Vec<_>>()
        };
        let match_conditions = named("matchConditions", &mut compile);
        let variables = named("variables", &mut compile)
            .into_iter()
            .map(|n| (n.name, n.expression))
            .collect::<Vec<_>>();
        let validations = spec
            .get("validations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, v)| {
                let expression = compile(
                    format!("spec.validations[{i}].expression"),
                    v.get("expression").and_then(Value::as_str).unwrap_or(""),
                )?;
                let message_expression = match v.get("messageExpression").and_then(Value::as_str) {
                    Some(m) if !m.is_empty() => Some(compile(
                        format!("spec.validations[{i}].messageExpression"),
                        m,
                    )?),
                    _ => None,
                };
                Some(Validation {
                    expression,
                    message: text(v, "message"),
                    message_expression,
                    reason: text(v, "reason"),
                })
            })
            .collect();
        let audit_annotations = spec
            .get("auditAnnotations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, a)| {
                Some(AuditAnnotation {
                    key: text(a, "key"),
                    value_expression: compile(
                        format!("spec.auditAnnotations[{i}].valueExpression"),
                        a.get("valueExpression")
                            .and_then(Value::as_str)
                            .unwrap_or(""),
                    )?,
                })
            })
            .collect();
        let param_kind = spec
            .get("paramKind")
            .filter(|p| p.is_object())
            .map(|p| (text(p, "apiVersion"), text(p, "kind")));
        Policy {
            name: crate::object::name(obj).to_string(),
            ignore_failures: text(spec, "failurePolicy") == "Ignore",
            constraints: Matcher::parse(spec.get("matchConstraints").unwrap_or(&Value::Null)),
            param_kind,
            match_conditions,
            variables: std::sync::Arc::new(variables),
            validations,
            audit_annotations,
            error,
        }
    }
}

/// `paramRef` of a binding.
#[derive(Debug)]
pub(crate) struct ParamRef {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) selector: Option<LabelSelector>,
    /// `parameterNotFoundAction: Deny` (Allow otherwise).
    pub(crate) deny_if_missing: bool,
}

#[derive(Debug)]
pub(crate) struct Binding {
    pub(crate) name: String,
    pub(crate) policy_name: String,
    pub(crate) param_ref: Option<ParamRef>,
    pub(crate) matcher: Option<Matcher>,
    /// `validationActions` as written (upstream's audit annotation lists them).
    pub(crate) actions: Vec<String>,
    pub(crate) deny: bool,
    pub(crate) warn: bool,
    pub(crate) audit: bool,
}

impl Binding {
    pub(crate) fn parse(obj: &Value) -> Binding {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let actions = strings(spec.get("validationActions"));
        let has = |a: &str| actions.iter().any(|x| x == a);
        let param_ref = spec
            .get("paramRef")
            .filter(|p| p.is_object())
            .map(|p| ParamRef {
                name: text(p, "name"),
                namespace: text(p, "namespace"),
                selector: p.get("selector").filter(|s| s.is_object()).map(|s| {
                    LabelSelector::from_label_selector(s)
                        .unwrap_or_else(|_| LabelSelector::nothing())
                }),
                deny_if_missing: text(p, "parameterNotFoundAction") == "Deny",
            });
        Binding {
            name: crate::object::name(obj).to_string(),
            policy_name: text(spec, "policyName"),
            param_ref,
            matcher: spec
                .get("matchResources")
                .filter(|m| m.is_object())
                .map(Matcher::parse_binding),
            deny: has("Deny"),
            warn: has("Warn"),
            audit: has("Audit"),
            actions,
        }
    }
}

/// Upstream's checks of a policy when it is written: match rules and at least one
/// validation are required, and each expression must compile.
pub(crate) fn validate_policy(obj: &Value) -> Vec<Cause> {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let mut causes = Vec::new();
    let nonempty = |v: Option<&Value>| v.and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    match spec.get("matchConstraints").filter(|m| m.is_object()) {
        None => causes.push(Cause::required("spec.matchConstraints", "")),
        Some(m) if !nonempty(m.get("resourceRules")) => {
            causes.push(Cause::required("spec.matchConstraints.resourceRules", ""))
        }
        Some(_) => {}
    }
    if !nonempty(spec.get("validations")) && !nonempty(spec.get("auditAnnotations")) {
        causes.push(Cause::required(
            "spec.validations",
            "validations or auditAnnotations must contain at least one item",
        ));
    }
    validate_audit_annotations(obj, &mut causes);
    let mut check = |field: String, source: &str| {
        if let Err(e) = Expression::compile(source) {
            causes.push(Cause::invalid(field, source, &e));
        }
    };
    for (list, fields) in [
        ("matchConditions", &["expression"][..]),
        ("variables", &["expression"][..]),
        ("validations", &["expression", "messageExpression"][..]),
        ("auditAnnotations", &["valueExpression"][..]),
    ] {
        let items = spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for (i, item) in items.enumerate() {
            for f in fields {
                if let Some(source) = item.get(*f).and_then(Value::as_str) {
                    if !source.trim().is_empty() || *f == "expression" {
                        check(format!("spec.{list}[{i}].{f}"), source);
                    }
                }
            }
        }
    }
    causes
}

/// Upstream's most audit annotations a policy may have, and longest value expression.
const MAX_AUDIT_ANNOTATIONS: usize = 20;
const MAX_VALUE_EXPRESSION: usize = 5 * 1024;

/// Upstream's checks of `auditAnnotations`: each `<policy name>/<key>` a qualified
/// name, keys unique, value expressions present and at most 5 KiB.
fn validate_audit_annotations(obj: &Value, causes: &mut Vec<Cause>) {
    let Some(items) = obj
        .pointer("/spec/auditAnnotations")
        .and_then(Value::as_array)
    else {
        return;
    };
    if items.len() > MAX_AUDIT_ANNOTATIONS {
        causes.push(Cause::invalid(
            "spec.auditAnnotations",
            &format!("{} items", items.len()),
            &format!("must not have more than {MAX_AUDIT_ANNOTATIONS} auditAnnotations"),
        ));
    }
    let policy = crate::object::name(obj);
    let mut keys = std::collections::HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let field = |f: &str| format!("spec.auditAnnotations[{i}].{f}");
        let key = text(item, "key");
        if policy.is_empty() {
            causes.push(Cause::invalid(
                field("key"),
                &key,
                "requires metadata.name be non-empty",
            ));
        } else {
            let full = format!("{policy}/{key}");
            for problem in crate::validation::key_problems(&full) {
                causes.push(Cause::invalid(field("key"), &full, &problem));
            }
        }
        if !keys.insert(key.clone()) {
            causes.push(Cause {
                reason: "FieldValueDuplicate",
                field: field("key"),
                message: format!("Duplicate value: {}", json!(key)),
            });
        }
        let value = text(item, "valueExpression");
        if value.trim().is_empty() {
            causes.push(Cause::required(
                field("valueExpression"),
                "valueExpression is not specified",
            ));
        } else if value.trim().len() > MAX_VALUE_EXPRESSION {
            causes.push(Cause::required(
                field("valueExpression"),
                &format!("must not exceed {MAX_VALUE_EXPRESSION} bytes in length"),
            ));
        }
    }
}

/// Upstream's checks of a binding when it is written: its policy, at least one action
/// (not both Deny and Warn) and, with a paramRef, its parameterNotFoundAction.
pub(crate) fn validate_binding(obj: &Value) -> Vec<Cause> {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let mut causes = Vec::new();
    if text(spec, "policyName").is_empty() {
        causes.push(Cause::required("spec.policyName", ""));
    }
    let actions = strings(spec.get("validationActions"));
    for (i, a) in actions.iter().enumerate() {
        if !matches!(a.as_str(), "Deny" | "Warn" | "Audit") {
            causes.push(Cause {
                reason: "FieldValueNotSupported",
                field: format!("spec.validationActions[{i}]"),
                message: format!(
                    "Unsupported value: {}: supported values: \"Audit\", \"Deny\", \"Warn\"",
                    json!(a)
                ),
            });
        }
    }
    let has = |a: &str| actions.iter().any(|x| x == a);
    if has("Deny") && has("Warn") {
        causes.push(Cause::invalid(
            "spec.validationActions",
            &format!("{actions:?}"),
            "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
        ));
    }
    if actions.is_empty() {
        causes.push(Cause::required(
            "spec.validationActions",
            "at least one validation action is required",
        ));
    }
    if let Some(p) = spec.get("paramRef").filter(|p| p.is_object()) {
        if text(p, "parameterNotFoundAction").is_empty() {
            causes.push(Cause::required("spec.paramRef.parameterNotFoundAction", ""));
        }
    }
    causes
}

/// The same check of a webhook configuration's `matchConditions`.
pub(crate) fn validate_webhook_configuration(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let hooks = obj
        .get("webhooks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for (i, hook) in hooks.enumerate() {
        let conditions = hook
            .get("matchConditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for (j, c) in conditions.enumerate() {
            let source = c.get("expression").and_then(Value::as_str).unwrap_or("");
            if let Err(e) = Expression::compile(source) {
                causes.push(Cause::invalid(
                    format!("webhooks[{i}].matchConditions[{j}].expression"),
                    source,
                    &e,
                ));
            }
        }
    }
    causes
}
