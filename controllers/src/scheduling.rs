//! Scheduling predicates that the scheduler (crate `kybern-scheduler`) and the loops
//! that must agree with it (DaemonSet placement, node lifecycle's NoExecute eviction)
//! share, as upstream's scheduler and controllers share
//! `k8s.io/component-helpers/scheduling/corev1` and apimachinery's label selectors:
//! label selectors (metav1.LabelSelector) and node selector terms (v1.NodeSelectorTerm)
//! evaluated against label maps, a pod's nodeSelector and required node affinity, and
//! taint toleration.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

/// An absent selector matches nothing; an empty one matches everything (upstream
/// `metav1.LabelSelectorAsSelector`).
pub fn selector_matches(sel: Option<&LabelSelector>, labels: &Labels) -> bool {
    let Some(sel) = sel else { return false };
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_ok
        && sel.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let got = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => got.is_some_and(|g| values.contains(g)),
                "NotIn" => got.is_none_or(|g| !values.contains(g)),
                "Exists" => got.is_some(),
                "DoesNotExist" => got.is_none(),
                _ => false,
            }
        })
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        // Gt/Lt take exactly one integer value and compare the label as an integer.
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value.and_then(|v| int(v)), values) else {
                return false;
            };
            let Some(bound) = int(bound) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// A term matches when all its expressions and fields match; a term with neither
/// matches nothing (upstream `nodeaffinity.NewNodeSelector` semantics).
pub fn node_term_matches(term: &NodeSelectorTerm, labels: &Labels, node_name: &str) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let name = node_name.to_string();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(&name)))
}

/// Whether a node with `labels` satisfies a pod's spec.nodeSelector (every pair) and its
/// required node affinity (terms ORed): upstream `GetRequiredNodeAffinity(pod).Match`.
pub fn node_selector_and_affinity_match(
    node_selector: Option<&BTreeMap<String, String>>,
    affinity: Option<&Affinity>,
    labels: &Labels,
    node_name: &str,
) -> bool {
    let selector_ok = node_selector
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = affinity
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    selector_ok
        && required.is_none_or(|r| {
            r.node_selector_terms
                .iter()
                .any(|t| node_term_matches(t, labels, node_name))
        })
}

/// [`node_selector_and_affinity_match`] for a full API pod (a pod without a spec
/// matches every node).
pub fn pod_matches_node(
    pod: &k8s_openapi::api::core::v1::Pod,
    labels: &Labels,
    node_name: &str,
) -> bool {
    pod.spec.as_ref().is_none_or(|s| {
        node_selector_and_affinity_match(
            s.node_selector.as_ref(),
            s.affinity.as_ref(),
            labels,
            node_name,
        )
    })
}

/// Upstream `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            // An empty key is only valid with Exists.
            !key.is_empty()
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint` (upstream `TolerationsTolerateTaint`).
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: Some(values.iter().map(|s| s.to_string()).collect()),
            }]),
            match_fields: None,
        }
    }

    #[test]
    fn node_selector_operators_match_as_upstream() {
        let labels: Labels = [
            ("zone".to_string(), "a".to_string()),
            ("cores".into(), "8".into()),
        ]
        .into();
        let cases = [
            (
                "In matches listed value",
                req("zone", "In", &["a", "b"]),
                true,
            ),
            ("In misses unlisted value", req("zone", "In", &["b"]), false),
            (
                "NotIn passes other value",
                req("zone", "NotIn", &["b"]),
                true,
            ),
            (
                "NotIn passes missing label",
                req("disk", "NotIn", &["ssd"]),
                true,
            ),
            ("Exists", req("zone", "Exists", &[]), true),
            (
                "DoesNotExist on present label",
                req("zone", "DoesNotExist", &[]),
                false,
            ),
            ("Gt compares integers", req("cores", "Gt", &["4"]), true),
            ("Gt is strict", req("cores", "Gt", &["8"]), false),
            ("Lt compares integers", req("cores", "Lt", &["10"]), true),
            (
                "Gt on non-integer label fails",
                req("zone", "Gt", &["1"]),
                false,
            ),
        ];
        for (name, term, want) in cases {
            assert_eq!(node_term_matches(&term, &labels, "n1"), want, "{name}");
        }
    }
}
