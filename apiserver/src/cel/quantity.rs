//! Upstream's Kubernetes quantity library for CEL: `isQuantity(s)`, `quantity(s)` and,
//! on a quantity, `isInteger()`, `asInteger()`, `asApproximateFloat()`, `sign()`,
//! `add(q|int)`, `sub(q|int)`, `compareTo(q)`, `isGreaterThan(q)`, `isLessThan(q)`.
//! Quantities are exact to the thousandth (kybern's quota arithmetic); `==` compares
//! amounts, so `quantity('1') == quantity('1000m')`.

use std::sync::Arc;

use cel::extractors::This;
use cel::objects::Opaque;
use cel::ExecutionError;

use super::Value;
use crate::api::pipeline::quota::quantity::Quantity;

/// Upstream's parse error (`resource.ErrFormatWrong`).
const FORMAT_WRONG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// A quantity as a CEL value.
#[derive(Debug, PartialEq, Eq)]
struct Q(Quantity);

impl Opaque for Q {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.Quantity"
    }
}

fn value(q: Quantity) -> Value {
    Value::Opaque(Arc::new(Q(q)))
}

fn of(function: &str, v: &Arc<dyn Opaque>) -> Result<Quantity, ExecutionError> {
    v.downcast_ref::<Q>().map(|q| q.0).ok_or_else(|| {
        ExecutionError::no_such_overload(function, vec![v.runtime_type_name().into()])
    })
}

/// A quantity or an int (`add` and `sub` take either).
fn operand(function: &str, v: &Value) -> Result<Quantity, ExecutionError> {
    match v {
        Value::Int(i) => Ok(Quantity::count(i128::from(*i))),
        Value::Opaque(o) => of(function, o),
        other => Err(ExecutionError::no_such_overload(
            function,
            vec![format!("{:?}", other.type_of())],
        )),
    }
}

/// The whole number a quantity is, if it is one that fits an int.
fn integer(q: Quantity) -> Option<i64> {
    (q.milli % 1000 == 0)
        .then(|| i64::try_from(q.milli / 1000).ok())
        .flatten()
}

/// Adds the library's functions to `context`.
pub(super) fn install(context: &mut cel::Context<'_, '_>) {
    // Names no standard overload uses, so adding them cannot fail.
    let _ = context.add_function("isQuantity", |s: Arc<String>| -> bool {
        Quantity::parse(&s).is_some()
    });
    let _ = context.add_function(
        "quantity",
        |s: Arc<String>| -> Result<Value, ExecutionError> {
            Quantity::parse(&s)
                .map(value)
                .ok_or_else(|| ExecutionError::function_error("quantity", FORMAT_WRONG))
        },
    );
    let _ = context.add_function(
        "isInteger",
        |This(q): This<Arc<dyn Opaque>>| -> Result<bool, ExecutionError> {
            Ok(integer(of("isInteger", &q)?).is_some())
        },
    );
    let _ = context.add_function(
        "asInteger",
        |This(q): This<Arc<dyn Opaque>>| -> Result<i64, ExecutionError> {
            integer(of("asInteger", &q)?).ok_or_else(|| {
                ExecutionError::function_error("asInteger", "cannot convert value to integer")
            })
        },
    );
    let _ = context.add_function(
        "asApproximateFloat",
        |This(q): This<Arc<dyn Opaque>>| -> Result<f64, ExecutionError> {
            Ok(of("asApproximateFloat", &q)?.milli as f64 / 1000.0)
        },
    );
    let _ = context.add_function(
        "sign",
        |This(q): This<Arc<dyn Opaque>>| -> Result<i64, ExecutionError> {
            Ok(of("sign", &q)?.milli.signum() as i64)
        },
    );
    let _ = context.add_function(
        "add",
        |This(q): This<Arc<dyn Opaque>>, other: Value| -> Result<Value, ExecutionError> {
            Ok(value(of("add", &q)? + operand("add", &other)?))
        },
    );
    let _ = context.add_function(
        "sub",
        |This(q): This<Arc<dyn Opaque>>, other: Value| -> Result<Value, ExecutionError> {
            Ok(value(of("sub", &q)? - operand("sub", &other)?))
        },
    );
    let _ = context.add_function(
        "compareTo",
        |This(q): This<Arc<dyn Opaque>>, other: Arc<dyn Opaque>| -> Result<i64, ExecutionError> {
            Ok(of("compareTo", &q)?.cmp(&of("compareTo", &other)?) as i64)
        },
    );
    let _ = context.add_function(
        "isGreaterThan",
        |This(q): This<Arc<dyn Opaque>>, other: Arc<dyn Opaque>| -> Result<bool, ExecutionError> {
            Ok(of("isGreaterThan", &q)? > of("isGreaterThan", &other)?)
        },
    );
    let _ = context.add_function(
        "isLessThan",
        |This(q): This<Arc<dyn Opaque>>, other: Arc<dyn Opaque>| -> Result<bool, ExecutionError> {
            Ok(of("isLessThan", &q)? < of("isLessThan", &other)?)
        },
    );
}
