//! Label selectors: the string syntax (`a=b,c in (x,y),!d`), metav1.LabelSelector objects, matching and canonical text.

use std::fmt;

use serde_json::{Map, Value};

use super::validation::{go_quote, invalid, label_key_errors, label_value_errors};
use super::SelectorError;

/// A label selector operator, as upstream's `selection.Operator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One requirement of a selector; all requirements must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Builds a validated requirement (upstream's NewRequirement), reporting
    /// errors with the same field paths upstream uses.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        let mut errs: Vec<String> = Vec::new();
        let key_errs = label_key_errors(key);
        if !key_errs.is_empty() {
            errs.push(invalid("key", key, &key_errs.join("; ")));
        }
        let values_repr = || {
            let inner: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
            format!("[]string{{{}}}", inner.join(", "))
        };
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => errs.push(format!(
                "values: Invalid value: {}: for 'in', 'notin' operators, values set can't be empty",
                values_repr()
            )),
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
                errs.push(format!(
                    "values: Invalid value: {}: exact-match compatibility requires one single value",
                    values_repr()
                ))
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => errs.push(format!(
                "values: Invalid value: {}: values set must be empty for exists and does not exist",
                values_repr()
            )),
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(format!(
                        "values: Invalid value: {}: for 'Gt', 'Lt' operators, exactly one value is required",
                        values_repr()
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(invalid(
                            &format!("values[{i}]"),
                            v,
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let verrs = label_value_errors(v);
            if !verrs.is_empty() {
                errs.push(invalid(
                    &format!("values[{i}][{key}]"),
                    v,
                    &verrs.join("; "),
                ));
            }
        }
        match errs.len() {
            0 => Ok(Self {
                key: key.to_string(),
                operator,
                values,
            }),
            1 => Err(SelectorError::new(errs.remove(0))),
            _ => Err(SelectorError::new(format!("[{}]", errs.join(", ")))),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let found = labels.and_then(|l| l.get(&self.key));
        let value = found.map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                value.is_some_and(|v| has(&v))
            }
            Operator::NotIn | Operator::NotEquals => value.is_none_or(|v| !has(&v)),
            Operator::Exists => found.is_some(),
            Operator::DoesNotExist => found.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(Ok(have)) = value.map(|v| v.parse::<i64>()) else {
                    return false;
                };
                let Some(Ok(want)) = self.values.first().map(|v| v.parse::<i64>()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
        };
        f.write_str(op)?;
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        if set {
            f.write_str("(")?;
        }
        let mut sorted = self.values.clone();
        sorted.sort();
        f.write_str(&sorted.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A parsed label selector. The empty selector matches everything; the
/// "nothing" selector (from a null metav1.LabelSelector) matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// A selector matching every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// A selector matching no object (upstream's labels.Nothing()).
    pub fn nothing() -> Self {
        Self {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parses the string syntax of `labelSelector` query parameters.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let tokens = lex(s);
        let mut p = Parser { tokens, pos: 0 };
        let mut requirements = p.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    /// Converts a metav1.LabelSelector object (matchLabels + matchExpressions).
    /// A JSON null converts to a selector matching nothing, an empty object to
    /// one matching everything, as upstream's LabelSelectorAsSelector.
    pub fn from_label_selector(v: &Value) -> Result<Self, SelectorError> {
        let obj = match v {
            Value::Null => return Ok(Self::nothing()),
            Value::Object(o) => o,
            other => {
                return Err(SelectorError::new(format!(
                    "json: cannot unmarshal {} into Go value of type v1.LabelSelector",
                    json_kind(other)
                )))
            }
        };
        let mut requirements = Vec::new();
        if let Some(Value::Object(ml)) = obj.get("matchLabels") {
            for (k, val) in ml {
                let val = val.as_str().unwrap_or_default().to_string();
                requirements.push(Requirement::new(k, Operator::Equals, vec![val])?);
            }
        }
        if let Some(Value::Array(exprs)) = obj.get("matchExpressions") {
            for expr in exprs {
                let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
                let op_text = expr
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let op = match op_text {
                    "In" => Operator::In,
                    "NotIn" => Operator::NotIn,
                    "Exists" => Operator::Exists,
                    "DoesNotExist" => Operator::DoesNotExist,
                    other => {
                        return Err(SelectorError::new(format!(
                            "{} is not a valid label selector operator",
                            go_quote(other)
                        )))
                    }
                };
                let values: Vec<String> = expr
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .map(|x| x.as_str().unwrap_or_default().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                requirements.push(Requirement::new(key, op, values)?);
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    /// Whether every requirement matches the given `metadata.labels`.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// True when the selector does not restrict anything.
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// The value a selector requires for `key` with `=`, `==` or a
    /// single-valued `in` (upstream's RequiresExactMatch).
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match r.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In if r.values.len() == 1 => {
                Some(r.values[0].as_str())
            }
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    End,
    ClosedPar,
    Comma,
    Not,
    DoubleEquals,
    Equals,
    GreaterThan,
    Ident(String),
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
    Error(String),
}

impl Tok {
    fn literal(&self) -> String {
        match self {
            Tok::End => String::new(),
            Tok::ClosedPar => ")".into(),
            Tok::Comma => ",".into(),
            Tok::Not => "!".into(),
            Tok::DoubleEquals => "==".into(),
            Tok::Equals => "=".into(),
            Tok::GreaterThan => ">".into(),
            Tok::Ident(s) | Tok::Error(s) => s.clone(),
            Tok::In => "in".into(),
            Tok::LessThan => "<".into(),
            Tok::NotEquals => "!=".into(),
            Tok::NotIn => "notin".into(),
            Tok::OpenPar => "(".into(),
        }
    }

    /// In a values context the keywords `in`/`notin` are plain identifiers.
    fn into_value(self) -> Tok {
        match self {
            Tok::In => Tok::Ident("in".into()),
            Tok::NotIn => Tok::Ident("notin".into()),
            t => t,
        }
    }
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn symbol(s: &[u8]) -> Option<Tok> {
    Some(match s {
        b")" => Tok::ClosedPar,
        b"," => Tok::Comma,
        b"!" => Tok::Not,
        b"==" => Tok::DoubleEquals,
        b"=" => Tok::Equals,
        b">" => Tok::GreaterThan,
        b"<" => Tok::LessThan,
        b"!=" => Tok::NotEquals,
        b"(" => Tok::OpenPar,
        _ => return None,
    })
}

fn lex(s: &str) -> Vec<Tok> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < b.len() && is_space(b[pos]) {
            pos += 1;
        }
        if pos >= b.len() {
            out.push(Tok::End);
            return out;
        }
        if is_special(b[pos]) {
            let start = pos;
            let mut last: Option<(Tok, usize)> = None;
            while pos < b.len() && is_special(b[pos]) {
                pos += 1;
                if let Some(t) = symbol(&b[start..pos]) {
                    last = Some((t, pos));
                } else if last.is_some() {
                    pos -= 1;
                    break;
                }
            }
            match last {
                Some((t, end)) => {
                    pos = end;
                    out.push(t);
                }
                None => out.push(Tok::Error(format!(
                    "error expected: keyword found '{}'",
                    String::from_utf8_lossy(&b[start..pos])
                ))),
            }
        } else {
            let start = pos;
            while pos < b.len() && !is_special(b[pos]) && !is_space(b[pos]) {
                pos += 1;
            }
            let word = &s[start..pos];
            out.push(match word {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                w => Tok::Ident(w.to_string()),
            });
        }
    }
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek_value(&self) -> Tok {
        self.tokens[self.pos.min(self.tokens.len() - 1)]
            .clone()
            .into_value()
    }

    fn next_value(&mut self) -> Tok {
        let t = self.peek_value();
        self.pos += 1;
        t
    }

    fn next_op(&mut self) -> Tok {
        let t = self.tokens[self.pos.min(self.tokens.len() - 1)].clone();
        self.pos += 1;
        t
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut reqs = Vec::new();
        loop {
            match self.peek_value() {
                Tok::Ident(_) | Tok::Not => {
                    let r = self.requirement().map_err(|e| {
                        SelectorError::new(format!("unable to parse requirement: {}", e.message()))
                    })?;
                    reqs.push(r);
                    match self.next_value() {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => {
                            let t = self.peek_value();
                            if !matches!(t, Tok::Ident(_) | Tok::Not) {
                                return Err(SelectorError::new(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.literal()
                                )));
                            }
                        }
                        t => {
                            return Err(SelectorError::new(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.literal()
                            )))
                        }
                    }
                }
                Tok::End => return Ok(reqs),
                t => {
                    return Err(SelectorError::new(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.literal()
                    )))
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let mut negated = false;
        let mut t = self.next_value();
        if t == Tok::Not {
            negated = true;
            t = self.next_value();
        }
        let Tok::Ident(key) = t else {
            return Err(SelectorError::new(format!(
                "found '{}', expected: identifier",
                t.literal()
            )));
        };
        let key_errs = label_key_errors(&key);
        if !key_errs.is_empty() {
            return Err(SelectorError::new(invalid(
                "<nil>",
                &key,
                &key_errs.join("; "),
            )));
        }
        if matches!(self.peek_value(), Tok::End | Tok::Comma) {
            let op = if negated {
                Operator::DoesNotExist
            } else {
                Operator::Exists
            };
            return Requirement::new(&key, op, Vec::new());
        }
        // A `!key` followed by anything else falls through to operator parsing,
        // as upstream does.
        let op = match self.next_op() {
            Tok::In => Operator::In,
            Tok::Equals => Operator::Equals,
            Tok::DoubleEquals => Operator::DoubleEquals,
            Tok::GreaterThan => Operator::GreaterThan,
            Tok::LessThan => Operator::LessThan,
            Tok::NotIn => Operator::NotIn,
            Tok::NotEquals => Operator::NotEquals,
            t => {
                return Err(SelectorError::new(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    t.literal()
                )))
            }
        };
        let values = match op {
            Operator::In | Operator::NotIn => self.set_values()?,
            _ => self.exact_value()?,
        };
        Requirement::new(&key, op, values)
    }

    fn set_values(&mut self) -> Result<Vec<String>, SelectorError> {
        let t = self.next_value();
        if t != Tok::OpenPar {
            return Err(SelectorError::new(format!(
                "found '{}' expected: '('",
                t.literal()
            )));
        }
        let t = self.peek_value();
        match t {
            Tok::Ident(_) | Tok::Comma => {
                let set = self.identifiers()?;
                if self.next_value() != Tok::ClosedPar {
                    return Err(SelectorError::new(format!(
                        "found '{}', expected: ')'",
                        t.literal()
                    )));
                }
                Ok(set)
            }
            Tok::ClosedPar => {
                self.next_value();
                Ok(vec![String::new()])
            }
            t => Err(SelectorError::new(format!(
                "found '{}', expected: ',', ')' or identifier",
                t.literal()
            ))),
        }
    }

    fn identifiers(&mut self) -> Result<Vec<String>, SelectorError> {
        let mut set: Vec<String> = Vec::new();
        let insert = |set: &mut Vec<String>, v: String| {
            if !set.contains(&v) {
                set.push(v);
            }
        };
        loop {
            match self.next_value() {
                Tok::Ident(v) => {
                    insert(&mut set, v);
                    match self.peek_value() {
                        Tok::Comma => continue,
                        Tok::ClosedPar => break,
                        t => {
                            return Err(SelectorError::new(format!(
                                "found '{}', expected: ',' or ')'",
                                t.literal()
                            )))
                        }
                    }
                }
                Tok::Comma => {
                    if set.is_empty() {
                        insert(&mut set, String::new());
                    }
                    match self.peek_value() {
                        Tok::ClosedPar => {
                            insert(&mut set, String::new());
                            break;
                        }
                        Tok::Comma => insert(&mut set, String::new()),
                        _ => {}
                    }
                }
                t => {
                    return Err(SelectorError::new(format!(
                        "found '{}', expected: ',', or identifier",
                        t.literal()
                    )))
                }
            }
        }
        set.sort();
        Ok(set)
    }

    fn exact_value(&mut self) -> Result<Vec<String>, SelectorError> {
        if matches!(self.peek_value(), Tok::End | Tok::Comma) {
            return Ok(vec![String::new()]);
        }
        match self.next_value() {
            Tok::Ident(v) => Ok(vec![v]),
            t => Err(SelectorError::new(format!(
                "found '{}', expected: identifier",
                t.literal()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn parse_and_match_table() {
        struct Case {
            name: &'static str,
            selector: &'static str,
            labels: Value,
            want: bool,
        }
        let cases = [
            Case {
                name: "equality_matches",
                selector: "app=web",
                labels: json!({"app": "web"}),
                want: true,
            },
            Case {
                name: "double_equals_matches",
                selector: "app==web",
                labels: json!({"app": "web"}),
                want: true,
            },
            Case {
                name: "equality_mismatch",
                selector: "app=web",
                labels: json!({"app": "db"}),
                want: false,
            },
            Case {
                name: "equality_missing_label",
                selector: "app=web",
                labels: json!({}),
                want: false,
            },
            Case {
                name: "not_equals_matches_other",
                selector: "app!=web",
                labels: json!({"app": "db"}),
                want: true,
            },
            Case {
                name: "not_equals_matches_missing_label",
                selector: "app!=web",
                labels: json!({}),
                want: true,
            },
            Case {
                name: "not_equals_rejects_same",
                selector: "app!=web",
                labels: json!({"app": "web"}),
                want: false,
            },
            Case {
                name: "set_based_in_matches",
                selector: "tier in (a,b)",
                labels: json!({"tier": "b"}),
                want: true,
            },
            Case {
                name: "set_based_in_rejects",
                selector: "tier in (a,b)",
                labels: json!({"tier": "c"}),
                want: false,
            },
            Case {
                name: "set_based_in_missing_label",
                selector: "tier in (a)",
                labels: json!({}),
                want: false,
            },
            Case {
                name: "set_based_notin_matches_missing_label",
                selector: "tier notin (x)",
                labels: json!({}),
                want: true,
            },
            Case {
                name: "set_based_notin_rejects_listed",
                selector: "tier notin (x)",
                labels: json!({"tier": "x"}),
                want: false,
            },
            Case {
                name: "exists_matches",
                selector: "app",
                labels: json!({"app": ""}),
                want: true,
            },
            Case {
                name: "exists_rejects_missing",
                selector: "app",
                labels: json!({"b": "c"}),
                want: false,
            },
            Case {
                name: "does_not_exist_matches",
                selector: "!app",
                labels: json!({"b": "c"}),
                want: true,
            },
            Case {
                name: "does_not_exist_rejects",
                selector: "!app",
                labels: json!({"app": "x"}),
                want: false,
            },
            Case {
                name: "conjunction_all_match",
                selector: "a=1, b in (2,3), !c",
                labels: json!({"a": "1", "b": "3"}),
                want: true,
            },
            Case {
                name: "conjunction_one_fails",
                selector: "a=1,b in (2,3),!c",
                labels: json!({"a": "1", "b": "3", "c": ""}),
                want: false,
            },
            Case {
                name: "whitespace_tolerant",
                selector: "  a  =  1  ,  b  notin  ( x , y )  ",
                labels: json!({"a": "1"}),
                want: true,
            },
            Case {
                name: "empty_selector_matches_all",
                selector: "",
                labels: json!({"x": "y"}),
                want: true,
            },
            Case {
                name: "empty_value_equality",
                selector: "a=",
                labels: json!({"a": ""}),
                want: true,
            },
            Case {
                name: "in_keyword_as_value",
                selector: "a in (in,notin)",
                labels: json!({"a": "notin"}),
                want: true,
            },
            Case {
                name: "greater_than_matches",
                selector: "n>5",
                labels: json!({"n": "7"}),
                want: true,
            },
            Case {
                name: "less_than_rejects",
                selector: "n<5",
                labels: json!({"n": "7"}),
                want: false,
            },
            Case {
                name: "prefixed_key",
                selector: "app.kubernetes.io/name=web",
                labels: json!({"app.kubernetes.io/name": "web"}),
                want: true,
            },
        ];
        for c in cases {
            let sel = LabelSelector::parse(c.selector)
                .unwrap_or_else(|e| panic!("{}: parse failed: {e}", c.name));
            let l = labels(c.labels);
            assert_eq!(sel.matches(Some(&l)), c.want, "{}", c.name);
        }
    }

    #[test]
    fn matches_without_labels_map() {
        let sel = LabelSelector::parse("!a,b!=c").expect("matches_without_labels_map");
        assert!(sel.matches(None), "matches_without_labels_map");
        let sel = LabelSelector::parse("a").expect("matches_without_labels_map");
        assert!(!sel.matches(None), "matches_without_labels_map_exists");
    }

    #[test]
    fn canonical_string_table() {
        let cases = [
            (
                "sorted_by_key",
                "tier in (b,a),app=web",
                "app=web,tier in (a,b)",
            ),
            ("keeps_double_equals", "a==b", "a==b"),
            ("notin_and_not_exists", "!z, y notin (q)", "y notin (q),!z"),
            ("empty_parens_become_empty_value", "a in ()", "a in ()"),
            ("dedups_values", "a in (x,x,y)", "a in (x,y)"),
            ("empty", "", ""),
        ];
        for (name, input, want) in cases {
            let sel = LabelSelector::parse(input).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(sel.to_string(), want, "{name}");
        }
    }

    #[test]
    fn parse_errors_table() {
        let cases = [
            ("bad_value_chars", "a=b c", "found 'c', expected: ',' or 'end of string'"),
            ("missing_identifier_after_comma", "a=b,", "found '', expected: identifier after ','"),
            ("leading_operator", "=a", "found '=', expected: !, identifier, or 'end of string'"),
            ("missing_open_paren", "a in x", "unable to parse requirement: found 'x' expected: '('"),
            ("unclosed_set", "a in (x", "unable to parse requirement: found '', expected: ',' or ')'"),
            ("bad_operator", "a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
            ("gt_needs_integer", "a>b", "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, the value must be an integer"),
        ];
        for (name, input, want) in cases {
            let err = LabelSelector::parse(input).expect_err(name);
            assert_eq!(err.message(), want, "{name}");
        }
    }

    #[test]
    fn parse_error_invalid_key_and_value() {
        let err = LabelSelector::parse("a/b/c=d").expect_err("invalid_key");
        assert!(
            err.message().starts_with("unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of"),
            "invalid_key: {}",
            err.message()
        );
        let err = LabelSelector::parse("a=-x").expect_err("invalid_value");
        assert!(
            err.message().starts_with("unable to parse requirement: values[0][a]: Invalid value: \"-x\": a valid label must be"),
            "invalid_value: {}",
            err.message()
        );
    }

    #[test]
    fn from_label_selector_table() {
        struct Case {
            name: &'static str,
            selector: Value,
            labels: Value,
            want: bool,
            text: &'static str,
        }
        let cases = [
            Case {
                name: "empty_object_matches_everything",
                selector: json!({}),
                labels: json!({"a": "b"}),
                want: true,
                text: "",
            },
            Case {
                name: "null_matches_nothing",
                selector: Value::Null,
                labels: json!({"a": "b"}),
                want: false,
                text: "",
            },
            Case {
                name: "match_labels_and_expressions",
                selector: json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]}),
                labels: json!({"app": "web", "tier": "a"}),
                want: true,
                text: "app=web,tier in (a,b)",
            },
            Case {
                name: "exists_and_does_not_exist",
                selector: json!({"matchExpressions": [{"key": "x", "operator": "Exists"}, {"key": "y", "operator": "DoesNotExist"}]}),
                labels: json!({"x": "1"}),
                want: true,
                text: "x,!y",
            },
            Case {
                name: "notin_rejects",
                selector: json!({"matchExpressions": [{"key": "x", "operator": "NotIn", "values": ["1"]}]}),
                labels: json!({"x": "1"}),
                want: false,
                text: "x notin (1)",
            },
        ];
        for c in cases {
            let sel = LabelSelector::from_label_selector(&c.selector)
                .unwrap_or_else(|e| panic!("{}: {e}", c.name));
            let l = labels(c.labels);
            assert_eq!(sel.matches(Some(&l)), c.want, "{}", c.name);
            assert_eq!(sel.to_string(), c.text, "{}", c.name);
        }
        assert!(
            LabelSelector::from_label_selector(&json!({}))
                .expect("empty")
                .is_empty(),
            "empty_object_is_empty"
        );
        assert!(
            !LabelSelector::from_label_selector(&Value::Null)
                .expect("null")
                .is_empty(),
            "null_is_not_empty"
        );
    }

    #[test]
    fn from_label_selector_errors() {
        let err = LabelSelector::from_label_selector(
            &json!({"matchExpressions": [{"key": "x", "operator": "Gt", "values": ["1"]}]}),
        )
        .expect_err("bad_operator");
        assert_eq!(
            err.message(),
            "\"Gt\" is not a valid label selector operator",
            "bad_operator"
        );
        let err = LabelSelector::from_label_selector(
            &json!({"matchExpressions": [{"key": "x", "operator": "In", "values": []}]}),
        )
        .expect_err("in_without_values");
        assert_eq!(
            err.message(),
            "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty",
            "in_without_values"
        );
    }

    #[test]
    fn requires_exact_match_cases() {
        let sel = LabelSelector::parse("a=1,b in (2),c in (3,4)").expect("requires_exact_match");
        assert_eq!(sel.requires_exact_match("a"), Some("1"), "exact_equals");
        assert_eq!(sel.requires_exact_match("b"), Some("2"), "exact_single_in");
        assert_eq!(sel.requires_exact_match("c"), None, "exact_multi_in");
    }
}
