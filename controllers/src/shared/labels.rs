//! The one label-selector matcher (metav1.LabelSelector against a label map), with
//! upstream's meaning of the two edge cases: a nil selector matches nothing
//! (`LabelSelectorAsSelector(nil)` is `labels.Nothing()`), an empty one matches
//! everything (`labels.Everything()`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

/// Whether `labels` satisfy `selector`: every matchLabels pair and every expression
/// (In, NotIn, Exists, DoesNotExist; an unknown operator matches nothing).
pub fn selector_matches(selector: Option<&LabelSelector>, labels: &Labels) -> bool {
    let Some(selector) = selector else {
        return false;
    };
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_ok
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Whether `selector` has neither labels nor expressions (and so selects everything).
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn exprs(list: &[(&str, &str, &[&str])]) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(
                list.iter()
                    .map(|(key, op, values)| LabelSelectorRequirement {
                        key: key.to_string(),
                        operator: op.to_string(),
                        values: Some(values.iter().map(|v| v.to_string()).collect()),
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn match_labels(pairs: &[(&str, &str)]) -> LabelSelector {
        LabelSelector {
            match_labels: Some(labels(pairs)),
            ..Default::default()
        }
    }

    #[test]
    fn selectors_match_like_upstream() {
        let app = labels(&[("app", "web"), ("tier", "front")]);
        let cases: [(&str, Option<LabelSelector>, &Labels, bool); 16] = [
            ("a nil selector matches nothing", None, &app, false),
            (
                "an empty selector matches everything",
                Some(LabelSelector::default()),
                &app,
                true,
            ),
            (
                "an empty selector matches no labels too",
                Some(LabelSelector::default()),
                &Labels::new(),
                true,
            ),
            (
                "empty matchLabels and expressions are an empty selector",
                Some(LabelSelector {
                    match_labels: Some(Labels::new()),
                    match_expressions: Some(vec![]),
                }),
                &app,
                true,
            ),
            (
                "matchLabels is a subset",
                Some(match_labels(&[("app", "web")])),
                &app,
                true,
            ),
            (
                "matchLabels with another value",
                Some(match_labels(&[("app", "db")])),
                &app,
                false,
            ),
            (
                "matchLabels with a missing key",
                Some(match_labels(&[("zone", "a")])),
                &app,
                false,
            ),
            (
                "In a listed value",
                Some(exprs(&[("app", "In", &["db", "web"])])),
                &app,
                true,
            ),
            (
                "In on a missing key",
                Some(exprs(&[("zone", "In", &["a"])])),
                &app,
                false,
            ),
            (
                "NotIn a listed value",
                Some(exprs(&[("app", "NotIn", &["web"])])),
                &app,
                false,
            ),
            (
                "NotIn on a missing key",
                Some(exprs(&[("zone", "NotIn", &["a"])])),
                &app,
                true,
            ),
            (
                "Exists",
                Some(exprs(&[("tier", "Exists", &[])])),
                &app,
                true,
            ),
            (
                "Exists on a missing key",
                Some(exprs(&[("zone", "Exists", &[])])),
                &app,
                false,
            ),
            (
                "DoesNotExist on a present key",
                Some(exprs(&[("app", "DoesNotExist", &[])])),
                &app,
                false,
            ),
            (
                "an unknown operator matches nothing",
                Some(exprs(&[("app", "Like", &["web"])])),
                &app,
                false,
            ),
            (
                "labels and expressions must all hold",
                Some(LabelSelector {
                    match_labels: Some(labels(&[("app", "web")])),
                    ..exprs(&[("tier", "In", &["back"])])
                }),
                &app,
                false,
            ),
        ];
        for (name, selector, labels, want) in cases {
            assert_eq!(selector_matches(selector.as_ref(), labels), want, "{name}");
        }
    }

    #[test]
    fn only_a_selector_without_labels_or_expressions_is_empty() {
        assert!(is_empty(&LabelSelector::default()));
        assert!(!is_empty(&match_labels(&[("a", "1")])));
        assert!(!is_empty(&exprs(&[("a", "Exists", &[])])));
    }
}
