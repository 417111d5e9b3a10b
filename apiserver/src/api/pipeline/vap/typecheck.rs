//! Upstream's type checking of a policy, as far as kybern's schemas carry it: each
//! validation's `expression` and `messageExpression` is checked against the schema of
//! every kind its `matchConstraints` name exactly (no wildcards, no subresources, at
//! most 10 kinds); a field selected on `object` or `oldObject` (through fields and
//! indexes) that the schema declares no property for is upstream's
//! `undefined field 'x'`. Parts of a schema that admit any field (no properties,
//! `additionalProperties`, `x-kubernetes-preserve-unknown-fields`) are not checked.
//! An ordering or arithmetic operator whose operands' types are both known (literals,
//! and fields whose schema gives a scalar type) and that CEL has no overload for is
//! upstream's `found no matching overload for '_>_' applied to '(int, string)'`;
//! numbers of different types may be compared, as Kubernetes' CEL allows.
//! The result is what upstream's status controller writes to
//! `status.typeChecking.expressionWarnings`. Pure: the caller resolves kinds.

use cel::common::ast::{Expr, IdedExpr, SourceInfo};
use serde_json::{json, Value};

use crate::cel::Expression;

/// Upstream's most kinds a policy is checked against.
const MAX_TYPES: usize = 10;

/// A matched kind: `group/version, Kind=kind` and its `openAPIV3Schema`.
pub(crate) struct Kind {
    pub(crate) gvk: String,
    pub(crate) schema: std::sync::Arc<Value>,
}

/// The (group, version, resource) triples a policy's rules name exactly, sorted.
pub(crate) fn resources(policy: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let rules = policy
        .pointer("/spec/matchConstraints/resourceRules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    let list = |rule: &Value, field: &str| -> Vec<String> {
        rule.get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    for rule in rules {
        let (groups, versions) = (list(rule, "apiGroups"), list(rule, "apiVersions"));
        if groups.iter().chain(&versions).any(|s| s.contains('*')) {
            continue;
        }
        let resources: Vec<String> = list(rule, "resources")
            .into_iter()
            .filter(|r| !r.contains(['*', '/']))
            .collect();
        for g in &groups {
            for v in &versions {
                for r in &resources {
                    let t = (g.clone(), v.clone(), r.clone());
                    if !out.contains(&t) {
                        out.push(t);
                    }
                }
            }
        }
    }
    out.sort();
    out
}

/// `status.typeChecking.expressionWarnings` for `policy` against `kinds`.
pub(crate) fn expression_warnings(policy: &Value, kinds: &[Kind]) -> Vec<Value> {
    let kinds = &kinds[..kinds.len().min(MAX_TYPES)];
    let mut warnings = Vec::new();
    let validations = policy
        .pointer("/spec/validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for (i, v) in validations.enumerate() {
        for field in ["expression", "messageExpression"] {
            let Some(source) = v.get(field).and_then(Value::as_str) else {
                continue;
            };
            let Ok(e) = Expression::compile(source) else {
                continue;
            };
            let text: Vec<String> = kinds
                .iter()
                .filter_map(|k| {
                    let issues = issues(&e, &k.schema);
                    (!issues.is_empty()).then(|| format!("{}: {}\n", k.gvk, issues.join("\n")))
                })
                .collect();
            if !text.is_empty() {
                warnings.push(json!({
                    "fieldRef": format!("spec.validations[{i}].{field}"),
                    "warning": text.join("\n"),
                }));
            }
        }
    }
    warnings
}

/// What `e` selects that `schema` does not declare, as cel-go prints its errors.
fn issues(e: &Expression, schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(
        e.program().expression(),
        schema,
        e.program().source_info(),
        e.source(),
        &mut out,
    );
    out
}

fn walk(node: &IdedExpr, schema: &Value, info: &SourceInfo, source: &str, out: &mut Vec<String>) {
    match &node.expr {
        Expr::Select(s) => {
            if let Some(Some(parent)) = resolve(&s.operand, schema) {
                if undeclared(parent, &s.field) {
                    out.push(error(info, source, node.id, &s.operand, &s.field));
                }
            }
            walk(&s.operand, schema, info, source, out);
        }
        Expr::Call(c) => {
            if let (None, [left, right]) = (&c.target, c.args.as_slice()) {
                if let (Some(l), Some(r)) = (scalar(left, schema), scalar(right, schema)) {
                    if !overloaded(&c.func_name, l, r) {
                        out.push(no_overload(info, source, node.id, &c.func_name, (l, r)));
                    }
                }
            }
            for a in c.target.iter().map(|t| &**t).chain(&c.args) {
                walk(a, schema, info, source, out);
            }
        }
        Expr::Comprehension(c) => {
            for a in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                walk(a, schema, info, source, out);
            }
        }
        Expr::List(l) => {
            for a in &l.elements {
                walk(a, schema, info, source, out);
            }
        }
        _ => {}
    }
}

/// The schema `node` has when it is a path from `object` or `oldObject`: `None` when it
/// is not such a path, `Some(None)` when the schema does not say.
fn resolve<'s>(node: &IdedExpr, schema: &'s Value) -> Option<Option<&'s Value>> {
    match &node.expr {
        Expr::Ident(name) if name == "object" || name == "oldObject" => Some(Some(schema)),
        Expr::Select(s) if !s.test => {
            let parent = resolve(&s.operand, schema)?;
            Some(parent.and_then(|p| {
                p.pointer(&format!("/properties/{}", escape(&s.field)))
                    .or_else(|| map_values(p))
            }))
        }
        Expr::Call(c) if c.func_name == "_[_]" && c.args.len() == 2 => {
            let parent = resolve(&c.args[0], schema)?;
            Some(parent.and_then(|p| p.get("items").or_else(|| map_values(p))))
        }
        _ => None,
    }
}

/// The schema of a map's values (`additionalProperties` given as a schema).
fn map_values(schema: &Value) -> Option<&Value> {
    schema.get("additionalProperties").filter(|v| v.is_object())
}

/// A CEL type the checks below know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Type {
    Int,
    Uint,
    Double,
    String,
    Bool,
    Bytes,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Int => "int",
            Type::Uint => "uint",
            Type::Double => "double",
            Type::String => "string",
            Type::Bool => "bool",
            Type::Bytes => "bytes",
        }
    }

    fn numeric(self) -> bool {
        matches!(self, Type::Int | Type::Uint | Type::Double)
    }
}

/// The type of `node` when it is a literal or a field of `object`/`oldObject` whose
/// schema gives a plain scalar type; `None` when it cannot be told here (a string
/// with a format upstream types otherwise, int-or-string, anything computed).
fn scalar(node: &IdedExpr, schema: &Value) -> Option<Type> {
    use cel::common::ast::LiteralValue as L;
    match &node.expr {
        Expr::Literal(L::Int(_)) => Some(Type::Int),
        Expr::Literal(L::UInt(_)) => Some(Type::Uint),
        Expr::Literal(L::Double(_)) => Some(Type::Double),
        Expr::Literal(L::String(_)) => Some(Type::String),
        Expr::Literal(L::Boolean(_)) => Some(Type::Bool),
        Expr::Literal(L::Bytes(_)) => Some(Type::Bytes),
        _ => {
            let field = resolve(node, schema)??;
            if field.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
                return None;
            }
            match (field.get("type")?.as_str()?, field.get("format")) {
                ("integer", _) => Some(Type::Int),
                ("number", _) => Some(Type::Double),
                ("boolean", _) => Some(Type::Bool),
                ("string", None) => Some(Type::String),
                _ => None,
            }
        }
    }
}

/// Whether CEL has an overload of the operator `function` for `(left, right)`;
/// functions other than the ordering and arithmetic operators are not judged.
fn overloaded(function: &str, left: Type, right: Type) -> bool {
    match function {
        "_<_" | "_<=_" | "_>_" | "_>=_" => left == right || (left.numeric() && right.numeric()),
        "_+_" => left == right && !matches!(left, Type::Bool),
        "_-_" | "_*_" | "_/_" => left == right && left.numeric(),
        "_%_" => left == right && matches!(left, Type::Int | Type::Uint),
        _ => true,
    }
}

/// cel-go's text for an operator without an overload, at the operator.
fn no_overload(
    info: &SourceInfo,
    source: &str,
    call: u64,
    function: &str,
    (left, right): (Type, Type),
) -> String {
    let symbol = function.trim_matches('_');
    let at = info
        .offset_for(call)
        .map(|(start, _)| start as usize)
        .filter(|&i| source.get(i..).is_some_and(|rest| rest.starts_with(symbol)))
        .or_else(|| source.find(symbol))
        .unwrap_or(0);
    located(
        source,
        at,
        &format!(
            "found no matching overload for '{function}' applied to '({}, {})'",
            left.name(),
            right.name()
        ),
    )
}

fn escape(field: &str) -> String {
    field.replace('~', "~0").replace('/', "~1")
}

/// Whether `schema` declares its fields and `field` is not one of them.
fn undeclared(schema: &Value, field: &str) -> bool {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return false;
    };
    let open = schema.get("additionalProperties").is_some()
        || schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    !open && !properties.contains_key(field)
}

/// cel-go's text for an undefined field, at the `.` before it.
fn error(info: &SourceInfo, source: &str, select: u64, operand: &IdedExpr, field: &str) -> String {
    let at = |id: u64| info.offset_for(id).map(|(start, _)| start as usize);
    // The parser places a select at its `.`, a `has()` test at the macro: then the
    // first `.field` after the operand's start.
    let dot = at(select)
        .filter(|&i| source.as_bytes().get(i) == Some(&b'.'))
        .or_else(|| {
            let from = at(operand.id).unwrap_or(0).min(source.len());
            source[from..].find(&format!(".{field}")).map(|i| from + i)
        })
        .unwrap_or(0);
    located(source, dot, &format!("undefined field '{field}'"))
}

/// cel-go's error text: `message` at byte `at` of `source`, with the line and a caret.
fn located(source: &str, at: usize, message: &str) -> String {
    let line_start = source[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_no = source[..at].matches('\n').count() + 1;
    let column = source[line_start..at].chars().count() + 1;
    let line = source[line_start..].lines().next().unwrap_or("");
    format!(
        "ERROR: <input>:{line_no}:{column}: {message}\n | {line}\n | {}^",
        ".".repeat(column - 1)
    )
}
