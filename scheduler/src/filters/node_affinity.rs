//! NodeAffinity: spec.nodeSelector and required node affinity (terms ORed, expressions
//! within a term ANDed; In, NotIn, Exists, DoesNotExist, Gt, Lt; matchFields on
//! metadata.name).

use crate::objects::PodSpec;

use crate::cache::NodeInfo;
use crate::framework::{CycleState, FilterResult, Status};
use controllers::shared::labels::Labels;
use controllers::shared::scheduling::node_selector_and_affinity_match;

pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// Whether the node satisfies the pod's nodeSelector and required node affinity.
pub fn required_matches(spec: Option<&PodSpec>, labels: &Labels, node_name: &str) -> bool {
    spec.is_none_or(|s| {
        node_selector_and_affinity_match(
            s.node_selector.as_ref(),
            s.affinity.as_deref(),
            labels,
            node_name,
        )
    })
}

pub fn filter(state: &CycleState, node: &NodeInfo) -> FilterResult {
    if required_matches(state.pod.spec.as_deref(), &node.labels, &node.name) {
        Ok(())
    } else {
        Err(Status::unresolvable(REASON))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Node, Pod};

    use super::*;
    use crate::filters::fixtures::{check, cluster};
    use controllers::fixtures::{NodeFixture, PodFixture};

    #[test]
    fn node_selector_and_required_affinity_filter_nodes() {
        let cache = cluster(
            vec![
                Node::test("ssd").label("disk", "ssd").label("cores", "16"),
                Node::test("hdd").label("disk", "hdd"),
            ],
            vec![],
        );
        let r = Some(REASON);
        let cases = [
            ("no constraints", Pod::test("p"), "hdd", None),
            (
                "selector matches",
                Pod::test("p").node_selector("disk", "ssd"),
                "ssd",
                None,
            ),
            (
                "selector misses",
                Pod::test("p").node_selector("disk", "ssd"),
                "hdd",
                r,
            ),
            (
                "In",
                Pod::test("p").node_affinity("disk", "In", &["ssd", "nvme"]),
                "ssd",
                None,
            ),
            (
                "NotIn",
                Pod::test("p").node_affinity("disk", "NotIn", &["ssd"]),
                "ssd",
                r,
            ),
            (
                "Exists",
                Pod::test("p").node_affinity("cores", "Exists", &[]),
                "hdd",
                r,
            ),
            (
                "DoesNotExist",
                Pod::test("p").node_affinity("cores", "DoesNotExist", &[]),
                "hdd",
                None,
            ),
            (
                "Gt",
                Pod::test("p").node_affinity("cores", "Gt", &["8"]),
                "ssd",
                None,
            ),
            (
                "Lt",
                Pod::test("p").node_affinity("cores", "Lt", &["8"]),
                "ssd",
                r,
            ),
            (
                "terms are ORed",
                Pod::test("p")
                    .node_affinity("disk", "In", &["x"])
                    .node_affinity("disk", "In", &["hdd"]),
                "hdd",
                None,
            ),
            (
                "selector and affinity both apply",
                Pod::test("p")
                    .node_selector("disk", "ssd")
                    .node_affinity("cores", "Exists", &[]),
                "ssd",
                None,
            ),
        ];
        for (name, pod, node, want) in cases {
            assert_eq!(check(filter, pod, &cache, node).as_deref(), want, "{name}");
        }
    }
}
