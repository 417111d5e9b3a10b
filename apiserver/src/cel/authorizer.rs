//! Upstream's CEL authorizer library on the `cel` crate: the builder steps are member
//! functions on a string that carries the request built so far (JSON), `check` asks
//! the caller's [`super::Check`] and gives a decision string `check` results answer
//! `allowed()`, `reason()`, `errored()` and `error()` from. `authorizer` itself is a
//! map whose `requestResource` is the builder for the request's own resource; the
//! builder steps on it start from an empty request.

use std::sync::Arc;

use cel::extractors::This;
use serde::{Deserialize, Serialize};

use super::{Check, Value};

/// What an authorizer check is about, as upstream's builder collects it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) group: Option<String>,
    pub(crate) resource: Option<String>,
    pub(crate) subresource: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) path: Option<String>,
    /// `serviceAccount(namespace, name)`: ask about that service account instead of
    /// the requesting user.
    pub(crate) service_account: Option<(String, String)>,
}

const BUILDER: &str = "authorizer:";
const DECISION: &str = "decision:";

fn builder(r: &Request) -> Value {
    Value::String(Arc::new(format!(
        "{BUILDER}{}",
        serde_json::to_string(r).unwrap_or_default()
    )))
}

fn parse(this: &str) -> Request {
    this.strip_prefix(BUILDER)
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default()
}

/// The request a builder value carries: `authorizer` (a map) starts empty.
fn request_of(this: &Value) -> Request {
    match this {
        Value::String(s) => parse(s),
        _ => Request::default(),
    }
}

/// Binds `authorizer` and its functions in `context`; `request` is the request's own
/// resource (`authorizer.requestResource`).
pub(super) fn install(context: &mut cel::Context<'_, '_>, check: Check, request: &Request) {
    let root: std::collections::HashMap<String, Value> =
        [("requestResource".to_string(), builder(request))].into();
    context.add_variable_from_value("authorizer", Value::from(root));
    let _ = context.add_function(
        "serviceAccount",
        |This(this): This<Value>, namespace: Arc<String>, name: Arc<String>| -> Value {
            let mut r = request_of(&this);
            r.service_account = Some((namespace.to_string(), name.to_string()));
            builder(&r)
        },
    );
    type Step = fn(&mut Request, String);
    let steps: [(&str, Step); 6] = [
        ("group", |r, v| r.group = Some(v)),
        ("resource", |r, v| r.resource = Some(v)),
        ("subresource", |r, v| r.subresource = Some(v)),
        ("namespace", |r, v| r.namespace = Some(v)),
        ("name", |r, v| r.name = Some(v)),
        ("path", |r, v| r.path = Some(v)),
    ];
    for (name, step) in steps {
        // Names no standard overload uses, so adding them cannot fail.
        let _ = context.add_function(
            name,
            move |This(this): This<Value>, v: Arc<String>| -> Value {
                let mut r = request_of(&this);
                step(&mut r, v.to_string());
                builder(&r)
            },
        );
    }
    let _ = context.add_function(
        "check",
        move |This(this): This<Arc<String>>, verb: Arc<String>| -> Value {
            let (allowed, reason) = check(&parse(&this), &verb);
            let decision = if allowed { "allow" } else { "deny" };
            Value::String(Arc::new(format!("{DECISION}{decision}:{reason}")))
        },
    );
    let _ = context.add_function("allowed", |This(this): This<Arc<String>>| -> bool {
        this.strip_prefix(DECISION)
            .is_some_and(|d| d.starts_with("allow:"))
    });
    let _ = context.add_function("reason", |This(this): This<Arc<String>>| -> Value {
        let reason = this
            .strip_prefix(DECISION)
            .and_then(|d| d.split_once(':'))
            .map(|(_, r)| r.to_string())
            .unwrap_or_default();
        Value::String(Arc::new(reason))
    });
    // kybern's authorizers decide or have no opinion; none fails to evaluate.
    let _ = context.add_function("errored", |This(this): This<Arc<String>>| -> bool {
        !this.starts_with(DECISION)
    });
    let _ = context.add_function("error", |This(_): This<Arc<String>>| -> Value {
        Value::String(Arc::new(String::new()))
    });
}
