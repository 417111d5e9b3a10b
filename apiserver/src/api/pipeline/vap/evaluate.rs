//! One policy evaluated for one binding and param, as upstream's validator: match
//! conditions, then every validation (a false one, or under failurePolicy Fail one
//! that errs, is a decision the binding's actions act on), then the audit annotations
//! (string values are published, null or empty ones left out; under Fail an error, or
//! a value of another type, denies whatever the actions). `variables` are evaluated
//! lazily, once for all the expressions that read them.

use serde_json::Value;

use super::policy::Policy;
use crate::cel::Activation;

/// Upstream's limit on an audit annotation's value; longer values are cut.
const MAX_ANNOTATION_VALUE: usize = 10 * 1024;

/// A validation that failed (or erred under Fail).
#[derive(Debug, PartialEq)]
pub(crate) struct Decision {
    /// The validation's index (upstream's `expressionIndex`).
    pub(crate) index: usize,
    pub(crate) message: String,
    /// `reason` of the validation; empty for errors (Invalid).
    pub(crate) reason: String,
}

/// What one evaluation found.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) decisions: Vec<Decision>,
    /// Audit annotations to publish, by key (without the policy's name).
    pub(crate) annotations: Vec<(String, String)>,
    /// Audit annotations that failed under Fail: each denies the request.
    pub(crate) errors: Vec<String>,
}

pub(crate) fn evaluate(p: &Policy, base: &Activation, param: &Value) -> Outcome {
    let mut a = base.clone();
    a.bind_json("params", param);
    a.bind_variables(p.variables.clone());
    let mut out = Outcome::default();
    let mut errors = Vec::new();
    for c in &p.match_conditions {
        match c.expression.eval_bool(&a) {
            Ok(false) => return out,
            Ok(true) => {}
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        if !p.ignore_failures {
            out.decisions.push(Decision {
                index: 0,
                message: errors.join(", "),
                reason: String::new(),
            });
        }
        return out;
    }
    for (index, v) in p.validations.iter().enumerate() {
        let message = match v.expression.eval_bool(&a) {
            Ok(true) => continue,
            Err(_) if p.ignore_failures => continue,
            Err(e) => {
                out.decisions.push(Decision {
                    index,
                    message: e,
                    reason: String::new(),
                });
                continue;
            }
            Ok(false) => message(v, &a),
        };
        out.decisions.push(Decision {
            index,
            message,
            reason: v.reason.clone(),
        });
    }
    for annotation in &p.audit_annotations {
        let e = &annotation.value_expression;
        match e.eval(&a) {
            Ok(crate::cel::Value::String(s)) => {
                let mut value = s.trim().to_string();
                if value.is_empty() {
                    continue;
                }
                if value.len() > MAX_ANNOTATION_VALUE {
                    let mut end = MAX_ANNOTATION_VALUE;
                    while !value.is_char_boundary(end) {
                        end -= 1;
                    }
                    value.truncate(end);
                }
                out.annotations.push((annotation.key.clone(), value));
            }
            Ok(crate::cel::Value::Null) => {}
            _ if p.ignore_failures => {}
            Ok(other) => out.errors.push(format!(
                "valueExpression '{}' resulted in unsupported return type: {}. Return type must be either string or null.",
                e.source(),
                other.type_of()
            )),
            Err(why) => out.errors.push(why),
        }
    }
    out
}

/// A false validation's message: its messageExpression's (a non-empty single line),
/// else its message, else the failed expression.
fn message(v: &super::policy::Validation, a: &Activation) -> String {
    let from_expression = v.message_expression.as_ref().and_then(|m| match m.eval(a) {
        Ok(crate::cel::Value::String(s)) if !s.trim().is_empty() && !s.contains('\n') => {
            Some(s.trim().to_string())
        }
        _ => None,
    });
    from_expression.unwrap_or_else(|| {
        if v.message.trim().is_empty() {
            format!("failed expression: {}", v.expression.source().trim())
        } else {
            v.message.trim().to_string()
        }
    })
}
