//! The field and label selectors authorizers are shown (upstream's AuthorizeWithSelectors,
//! on by default since 1.32): parsed from a list, watch or deletecollection request's
//! query, or from an access review's `resourceAttributes`. A selector that does not
//! parse is ignored (so it restricts nothing) and remembered, as upstream keeps the
//! parsing error beside the requirements: reviews report it as `evaluationError`.

use serde_json::Value;

use crate::request::Query;
use crate::selectors::{parse_field_terms, LabelSelector, Operator, Requirement};

/// One field requirement: `field=value` (`==` too) or, `negated`, `field!=value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub negated: bool,
}

/// What a selector's parse left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ignored {
    #[default]
    Nothing,
    /// Some requirements did not parse; the rest are kept.
    Partly,
    /// The selector did not parse at all.
    All,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selectors {
    pub fields: Vec<FieldRequirement>,
    pub fields_ignored: Ignored,
    pub labels: Vec<Requirement>,
    pub labels_ignored: Ignored,
}

fn field_requirements(raw: &str) -> (Vec<FieldRequirement>, Ignored) {
    match parse_field_terms(raw) {
        Ok(terms) => (
            terms
                .into_iter()
                .map(|(field, value, negated)| FieldRequirement {
                    field,
                    value,
                    negated,
                })
                .collect(),
            Ignored::Nothing,
        ),
        Err(_) => (Vec::new(), Ignored::All),
    }
}

fn label_requirements(raw: &str) -> (Vec<Requirement>, Ignored) {
    match LabelSelector::parse(raw) {
        Ok(s) => (s.requirements().to_vec(), Ignored::Nothing),
        Err(_) => (Vec::new(), Ignored::All),
    }
}

/// `Partly` when some of `total` were dropped, `All` when every one was.
fn ignored(kept: usize, total: usize) -> Ignored {
    match (kept, total) {
        (k, t) if k == t => Ignored::Nothing,
        (0, _) => Ignored::All,
        _ => Ignored::Partly,
    }
}

impl Selectors {
    /// The `fieldSelector` and `labelSelector` of a request with `verb`; only list,
    /// watch and deletecollection carry them, as upstream.
    pub fn of_request(verb: &str, query: &Query) -> Self {
        let mut s = Selectors::default();
        if !matches!(verb, "list" | "watch" | "deletecollection") {
            return s;
        }
        if let Some(raw) = query.value("fieldSelector") {
            (s.fields, s.fields_ignored) = field_requirements(raw);
        }
        if let Some(raw) = query.value("labelSelector") {
            (s.labels, s.labels_ignored) = label_requirements(raw);
        }
        s
    }

    /// An access review's `fieldSelector` and `labelSelector` (`rawSelector` or
    /// `requirements`; a review giving both is refused before it gets here).
    pub fn of_review(resource_attributes: &Value) -> Self {
        let mut s = Selectors::default();
        let fs = &resource_attributes["fieldSelector"];
        if let Some(raw) = fs["rawSelector"].as_str().filter(|r| !r.is_empty()) {
            (s.fields, s.fields_ignored) = field_requirements(raw);
        }
        if let Some(reqs) = fs["requirements"].as_array().filter(|r| !r.is_empty()) {
            s.fields = reqs.iter().filter_map(review_field_requirement).collect();
            s.fields_ignored = ignored(s.fields.len(), reqs.len());
        }
        let ls = &resource_attributes["labelSelector"];
        if let Some(raw) = ls["rawSelector"].as_str().filter(|r| !r.is_empty()) {
            (s.labels, s.labels_ignored) = label_requirements(raw);
        }
        if let Some(reqs) = ls["requirements"].as_array().filter(|r| !r.is_empty()) {
            s.labels = reqs.iter().filter_map(review_label_requirement).collect();
            s.labels_ignored = ignored(s.labels.len(), reqs.len());
        }
        s
    }

    /// Whether the field selector requires `field` to equal `value`.
    pub fn requires_field(&self, field: &str, value: &str) -> bool {
        self.fields
            .iter()
            .any(|r| !r.negated && r.field == field && r.value == value)
    }

    /// The value the field selector requires for `field`, if one.
    pub fn field_value(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|r| !r.negated && r.field == field)
            .map(|r| r.value.as_str())
    }

    /// What a review reports as `evaluationError` for selectors it could not parse
    /// (upstream's messages, joined by "; ").
    pub fn review_errors(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (which, ignored) in [
            ("fieldSelector", self.fields_ignored),
            ("labelSelector", self.labels_ignored),
        ] {
            match ignored {
                Ignored::Nothing => {}
                Ignored::Partly => out.push(format!(
                    "spec.resourceAttributes.{which} partially ignored due to parse error"
                )),
                Ignored::All => out.push(format!(
                    "spec.resourceAttributes.{which} ignored due to parse error"
                )),
            }
        }
        out
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect()
}

/// A review's field requirement: `In` or `NotIn` with exactly one value (upstream
/// supports no other for fields).
fn review_field_requirement(r: &Value) -> Option<FieldRequirement> {
    let values = strings(&r["values"]);
    let negated = match r["operator"].as_str()? {
        "In" => false,
        "NotIn" => true,
        _ => return None,
    };
    match values.as_slice() {
        [value] => Some(FieldRequirement {
            field: r["key"].as_str()?.to_string(),
            value: value.clone(),
            negated,
        }),
        _ => None,
    }
}

fn review_label_requirement(r: &Value) -> Option<Requirement> {
    let operator = match r["operator"].as_str()? {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        _ => return None,
    };
    Requirement::new(r["key"].as_str()?, operator, strings(&r["values"])).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_collection_reads_and_deletes_carry_their_selectors() {
        let query = Query::parse(Some(
            "fieldSelector=spec.nodeName%3Dn1&labelSelector=app%3Dweb",
        ));
        for (verb, carried) in [
            ("list", true),
            ("watch", true),
            ("deletecollection", true),
            ("get", false),
            ("create", false),
        ] {
            let s = Selectors::of_request(verb, &query);
            assert_eq!(s.requires_field("spec.nodeName", "n1"), carried, "{verb}");
            assert_eq!(s.labels.len(), usize::from(carried), "{verb}");
        }
    }

    #[test]
    fn a_negated_or_unparsable_field_selector_requires_nothing() {
        let cases = [
            ("negated", "spec.nodeName!=n1", Ignored::Nothing),
            ("unparsable", "spec.nodeName", Ignored::All),
        ];
        for (name, raw, want) in cases {
            let query = Query(std::iter::once(("fieldSelector".into(), raw.into())).collect());
            let s = Selectors::of_request("list", &query);
            assert!(!s.requires_field("spec.nodeName", "n1"), "{name}");
            assert_eq!(s.fields_ignored, want, "{name}");
        }
    }

    #[test]
    fn a_reviews_selectors_come_from_requirements_with_upstreams_evaluation_errors() {
        let cases = [
            (
                "one In requirement",
                json!({"fieldSelector": {"requirements": [{"key": "spec.nodeName", "operator": "In", "values": ["n1"]}]}}),
                true,
                vec![],
            ),
            (
                "a raw selector",
                json!({"fieldSelector": {"rawSelector": "spec.nodeName=n1"}}),
                true,
                vec![],
            ),
            (
                "one requirement of two with an operator fields lack",
                json!({"fieldSelector": {"requirements": [
                    {"key": "spec.nodeName", "operator": "In", "values": ["n1"]},
                    {"key": "x", "operator": "Exists"}
                ]}}),
                true,
                vec!["spec.resourceAttributes.fieldSelector partially ignored due to parse error"],
            ),
            (
                "a raw selector that does not parse, and a bad label operator",
                json!({
                    "fieldSelector": {"rawSelector": "spec.nodeName"},
                    "labelSelector": {"requirements": [{"key": "a", "operator": "Is", "values": ["b"]}]}
                }),
                false,
                vec![
                    "spec.resourceAttributes.fieldSelector ignored due to parse error",
                    "spec.resourceAttributes.labelSelector ignored due to parse error",
                ],
            ),
        ];
        for (name, attrs, requires, errors) in cases {
            let s = Selectors::of_review(&attrs);
            assert_eq!(s.requires_field("spec.nodeName", "n1"), requires, "{name}");
            assert_eq!(s.review_errors(), errors, "{name}");
        }
    }
}
