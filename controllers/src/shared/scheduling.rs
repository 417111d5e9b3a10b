//! Whether a pod may run on a node by its tolerations and node selection (upstream
//! `Toleration.ToleratesTaint`, nodeSelector and required node affinity): the
//! DaemonSet loop, node lifecycle's eviction and the scheduler must agree on both.

use k8s_openapi::api::core::v1::{
    Affinity, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration,
};

use super::labels::Labels;

/// Upstream `Toleration.ToleratesTaint`: the effect (when given) and key (when given)
/// must be the taint's; `Exists` then tolerates any value, `Equal` (the default) only
/// the taint's own, and only with a key.
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
            !key.is_empty()
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
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
/// matches nothing (upstream `nodeaffinity.NewNodeSelector`).
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

/// Whether a node (its labels and name) satisfies the pod's nodeSelector and any one of
/// its required node-affinity terms (a pod without a spec matches every node).
pub fn node_selection_matches(spec: Option<&PodSpec>, labels: &Labels, node_name: &str) -> bool {
    spec.is_none_or(|s| {
        node_selector_and_affinity_match(
            s.node_selector.as_ref(),
            s.affinity.as_ref(),
            labels,
            node_name,
        )
    })
}

/// Whether a node with `labels` satisfies a nodeSelector (every pair) and required node
/// affinity (terms ORed): upstream `GetRequiredNodeAffinity(pod).Match`, on the parts
/// of a pod the scheduler keeps.
pub fn node_selector_and_affinity_match(
    node_selector: Option<&Labels>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Toleration {
            key: some(key),
            operator: some(op),
            value: some(value),
            effect: some(effect),
            ..Default::default()
        }
    }

    #[test]
    fn tolerations_tolerate_taints_like_upstream() {
        let taint = Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let cases = [
            (
                "Equal with the same key, value and effect",
                toleration("dedicated", "Equal", "gpu", "NoSchedule"),
                true,
            ),
            (
                "Equal is the default operator",
                toleration("dedicated", "", "gpu", ""),
                true,
            ),
            (
                "Equal with another value",
                toleration("dedicated", "Equal", "cpu", ""),
                false,
            ),
            (
                "Exists with the key tolerates any value",
                toleration("dedicated", "Exists", "", ""),
                true,
            ),
            (
                "Exists without a key tolerates every taint",
                toleration("", "Exists", "", ""),
                true,
            ),
            (
                "Equal without a key tolerates nothing",
                toleration("", "Equal", "", ""),
                false,
            ),
            ("another key", toleration("other", "Exists", "", ""), false),
            (
                "another effect",
                toleration("dedicated", "Exists", "", "NoExecute"),
                false,
            ),
            (
                "an unknown operator",
                toleration("dedicated", "Like", "gpu", ""),
                false,
            ),
        ];
        for (name, t, want) in cases {
            assert_eq!(tolerates(&t, &taint), want, "{name}");
            assert_eq!(tolerated(&[t], &taint), want, "{name} (in a list)");
        }
        assert!(!tolerated(&[], &taint), "no tolerations tolerate nothing");
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn term(
        exprs: Vec<NodeSelectorRequirement>,
        fields: Vec<NodeSelectorRequirement>,
    ) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(exprs),
            match_fields: Some(fields),
        }
    }

    #[test]
    fn node_selector_terms_match_like_upstream() {
        let labels: Labels = [
            ("zone".to_string(), "a".to_string()),
            ("cores".into(), "8".into()),
        ]
        .into();
        let cases = [
            (
                "In a listed value",
                term(vec![req("zone", "In", &["a", "b"])], vec![]),
                true,
            ),
            (
                "In misses an unlisted value",
                term(vec![req("zone", "In", &["b"])], vec![]),
                false,
            ),
            (
                "NotIn passes another value",
                term(vec![req("zone", "NotIn", &["b"])], vec![]),
                true,
            ),
            (
                "NotIn passes a missing label",
                term(vec![req("disk", "NotIn", &["ssd"])], vec![]),
                true,
            ),
            (
                "Exists",
                term(vec![req("zone", "Exists", &[])], vec![]),
                true,
            ),
            (
                "DoesNotExist on a present label",
                term(vec![req("zone", "DoesNotExist", &[])], vec![]),
                false,
            ),
            (
                "Gt compares integers",
                term(vec![req("cores", "Gt", &["4"])], vec![]),
                true,
            ),
            (
                "Gt is strict",
                term(vec![req("cores", "Gt", &["8"])], vec![]),
                false,
            ),
            (
                "Lt compares integers",
                term(vec![req("cores", "Lt", &["10"])], vec![]),
                true,
            ),
            (
                "Gt on a non-integer label fails",
                term(vec![req("zone", "Gt", &["1"])], vec![]),
                false,
            ),
            (
                "a field on the node name",
                term(vec![], vec![req("metadata.name", "In", &["n1"])]),
                true,
            ),
            (
                "a field on another node name",
                term(vec![], vec![req("metadata.name", "In", &["n2"])]),
                false,
            ),
            (
                "a term with nothing matches nothing",
                term(vec![], vec![]),
                false,
            ),
        ];
        for (name, term, want) in cases {
            assert_eq!(node_term_matches(&term, &labels, "n1"), want, "{name}");
        }
    }

    #[test]
    fn node_selection_needs_the_node_selector_and_one_required_term() {
        let labels: Labels = [("zone".to_string(), "a".to_string())].into();
        let spec = |selector: &[(&str, &str)], terms: Option<Vec<NodeSelectorTerm>>| {
            serde_json::from_value::<PodSpec>(serde_json::json!({
                "containers": [],
                "nodeSelector": selector.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Labels>(),
                "affinity": terms.map(|t| serde_json::json!({"nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": t}}})),
            }))
            .unwrap()
        };
        let zone = |z: &str| term(vec![req("zone", "In", &[z])], vec![]);
        let cases = [
            ("no spec fits anywhere", None, true),
            ("an empty spec fits anywhere", Some(spec(&[], None)), true),
            (
                "a matching nodeSelector",
                Some(spec(&[("zone", "a")], None)),
                true,
            ),
            (
                "another nodeSelector value",
                Some(spec(&[("zone", "b")], None)),
                false,
            ),
            (
                "one of several terms is enough",
                Some(spec(&[], Some(vec![zone("b"), zone("a")]))),
                true,
            ),
            (
                "no term matches",
                Some(spec(&[], Some(vec![zone("b")]))),
                false,
            ),
            (
                "selector and affinity must both hold",
                Some(spec(&[("zone", "b")], Some(vec![zone("a")]))),
                false,
            ),
        ];
        for (name, spec, want) in cases {
            assert_eq!(
                node_selection_matches(spec.as_ref(), &labels, "n1"),
                want,
                "{name}"
            );
        }
    }
}
