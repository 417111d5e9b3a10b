//! CEL as Kubernetes admission uses it (ValidatingAdmissionPolicy, webhook
//! `matchConditions`), on the `cel` crate: the standard library with its macros
//! (`has`, `all`, `exists`, `exists_one`, `map`, `filter`), the strings extension
//! Kubernetes enables (`lowerAscii`, `upperAscii`, `trim`, `split`, `join`, `replace`,
//! `substring`, `indexOf`, `charAt`, ...), the lists extension, and objects given as
//! JSON with Kubernetes' number rules (integers are `int`).
//!
//! An [`Expression`] is parsed once (callers keep them per policy generation) and
//! evaluated against an [`Activation`] per request. Errors read as upstream's:
//! `compilation failed: ERROR: <input>:1:5: Syntax error: ...` and
//! `expression '...' resulted in error: no such key: x`.
//!
//! `authorizer` (upstream's authorizer library) is there when the caller gives a
//! [`Check`]: `authorizer.group(g).resource(r).namespace(n).name(x).subresource(s)
//! .check(verb)`, `authorizer.path(p).check(verb)`, `authorizer.requestResource
//! .check(verb)` and `authorizer.serviceAccount(ns, name)...` (asking about that
//! service account instead), then `.allowed()`, `.reason()`, `.errored()`, `.error()`.
//! Kubernetes quantities (`quantity()`, `isQuantity()` and their methods) are in
//! [`quantity`], URLs (`url()`, `isURL()` and their getters) in [`url`]; a policy's
//! `variables` are evaluated lazily ([`variables`]).
//!
//! Not done: a full type checker (beyond what a policy's `vap::typecheck` warns of, a
//! type error shows at evaluation, not when a policy is written), timestamps and durations (the `cel` crate has them only with chrono and
//! its time-zone database, which kybern does not carry).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value as Json;

pub(crate) use cel::Value;

/// The environment every expression compiles and runs in, built once.
fn env() -> &'static Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = cel::Env::stdlib();
        env.add_extension(cel::extensions::strings)
            .expect("the strings extension declares no conflicting overload");
        env.add_extension(cel::extensions::lists)
            .expect("the lists extension declares no conflicting overload");
        Arc::new(env)
    })
}

/// One compiled expression and the text it came from.
pub(crate) struct Expression {
    source: String,
    program: cel::Program,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.source).finish()
    }
}

impl Expression {
    /// Parses `source`; the error is upstream's `compilation failed: ERROR: ...` text.
    pub(crate) fn compile(source: &str) -> Result<Expression, String> {
        env()
            .compile(source)
            .map(|program| Expression {
                source: source.to_string(),
                program,
            })
            .map_err(|e| format!("compilation failed: {e}"))
    }

    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// The parsed program (its syntax tree, for the type checks of policies).
    pub(crate) fn program(&self) -> &cel::Program {
        &self.program
    }

    /// The expression's value, or upstream's `expression '...' resulted in error: ...`.
    pub(crate) fn eval(&self, activation: &Activation) -> Result<Value, String> {
        self.run(activation).map_err(|e| {
            format!(
                "expression '{}' resulted in error: {}",
                self.source,
                error_text(&e)
            )
        })
    }

    fn run(&self, activation: &Activation) -> Result<Value, cel::ExecutionError> {
        let mut context = cel::Context::with_env(Arc::clone(env()));
        for (name, value) in &activation.vars {
            context.add_variable_from_value(name.as_str(), value.clone());
        }
        if let Some(lazy) = &activation.variables {
            context.add_variable_as_val("variables", Box::new(lazy.clone()));
        }
        if let Some((check, request)) = &activation.authorizer {
            authorizer::install(&mut context, Arc::clone(check), request);
        }
        quantity::install(&mut context);
        url::install(&mut context);
        self.program.execute(&context)
    }

    /// The expression's value, which must be a bool.
    pub(crate) fn eval_bool(&self, activation: &Activation) -> Result<bool, String> {
        match self.eval(activation)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!(
                "expression '{}' resulted in error: expected type bool, got {}",
                self.source,
                other.type_of()
            )),
        }
    }
}

/// Upstream's (cel-go's) wording for the errors users meet most.
fn error_text(e: &cel::ExecutionError) -> String {
    match e {
        cel::ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        cel::ExecutionError::UndeclaredReference(n) => {
            format!("undeclared reference to '{n}' (in container '')")
        }
        // The libraries' own errors read as upstream's, without the crate's prefix.
        cel::ExecutionError::FunctionError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// `source` compiled, from a cache shared by every caller (webhook configurations are
/// read afresh on each request; their expressions are compiled once). The cache is
/// emptied when it holds too many, so edited expressions do not pile up.
pub(crate) fn cached(source: &str) -> Arc<Result<Expression, String>> {
    const MAX: usize = 4096;
    type Compiled = Arc<Result<Expression, String>>;
    static CACHE: OnceLock<Mutex<HashMap<String, Compiled>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(e) = cache.lock().expect("cel cache poisoned").get(source) {
        return Arc::clone(e);
    }
    let compiled = Arc::new(Expression::compile(source));
    let mut cache = cache.lock().expect("cel cache poisoned");
    if cache.len() >= MAX {
        cache.clear();
    }
    cache.insert(source.to_string(), Arc::clone(&compiled));
    compiled
}

/// The variables an expression sees, by name.
#[derive(Clone, Default)]
pub(crate) struct Activation {
    vars: Vec<(String, Value)>,
    /// `variables`, when they are evaluated lazily.
    variables: Option<variables::Lazy>,
    /// The check and what `authorizer.requestResource` is about.
    authorizer: Option<(Check, AuthzRequest)>,
}

/// Asks the server's authorizers about the request's user: the attributes (`group`,
/// `resource`, `subresource`, `namespace`, `name`, or `path`) and the verb; answers
/// whether it is allowed and the reason.
pub(crate) type Check = Arc<dyn Fn(&authorizer::Request, &str) -> (bool, String) + Send + Sync>;

impl Activation {
    pub(crate) fn new() -> Self {
        Activation::default()
    }

    /// Binds `name` to a value (replacing an earlier binding of the name).
    pub(crate) fn bind(&mut self, name: &str, value: Value) {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.to_string(), value));
    }

    /// Binds `variables` to `definitions`, each evaluated (in this activation) only
    /// when an expression reads it, and once for all the expressions that do.
    pub(crate) fn bind_variables(&mut self, definitions: variables::Definitions) {
        self.vars.retain(|(n, _)| n != "variables");
        self.variables = Some(variables::Lazy::new(definitions, self.clone()));
    }

    /// Makes `authorizer` available, answering with `check`; `request` is what
    /// `authorizer.requestResource` asks about (the request's resource).
    pub(crate) fn with_authorizer(&mut self, check: Check, request: AuthzRequest) {
        self.authorizer = Some((check, request));
    }

    /// Binds `name` to a JSON value (an object, `null` for an absent one).
    pub(crate) fn bind_json(&mut self, name: &str, value: &Json) {
        self.bind(name, from_json(value));
    }
}

/// A JSON value as CEL sees a Kubernetes object: integers are `int` (`uint` only past
/// i64), other numbers `double`, objects maps with string keys.
pub(crate) fn from_json(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(a) => Value::List(Arc::new(a.iter().map(from_json).collect())),
        Json::Object(o) => {
            let map: HashMap<String, Value> =
                o.iter().map(|(k, v)| (k.clone(), from_json(v))).collect();
            Value::from(map)
        }
    }
}

/// A map value from named values.
#[cfg(test)]
pub(crate) fn map_of(entries: Vec<(String, Value)>) -> Value {
    Value::from(entries.into_iter().collect::<HashMap<String, Value>>())
}

mod authorizer;
mod quantity;
mod url;
mod variables;
pub(crate) use authorizer::Request as AuthzRequest;
pub(crate) use variables::Definitions;
#[cfg(test)]
mod tests;
