//! NodeName: a pod naming a node in spec.nodeName (left pending for the scheduler by a
//! client that set it) fits only there.

use crate::cache::NodeInfo;
use crate::framework::{CycleState, FilterResult, Status};

pub const REASON: &str = "node(s) didn't match the requested node name";

pub fn filter(state: &CycleState, node: &NodeInfo) -> FilterResult {
    match state
        .pod
        .spec
        .as_deref()
        .and_then(|s| s.node_name.as_deref())
    {
        Some(want) if !want.is_empty() && want != node.name => Err(Status::unresolvable(REASON)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Node, Pod};

    use super::*;
    use crate::filters::fixtures::{check, cluster};
    use controllers::fixtures::{NodeFixture, PodFixture};

    #[test]
    fn a_named_node_is_the_only_fit() {
        let cache = cluster(vec![Node::test("n1"), Node::test("n2")], vec![]);
        let cases = [
            ("no name fits anywhere", Pod::test("p"), "n2", None),
            ("named node fits", Pod::test("p").on_node("n1"), "n1", None),
            (
                "other node does not",
                Pod::test("p").on_node("n1"),
                "n2",
                Some(REASON),
            ),
        ];
        for (name, pod, node, want) in cases {
            assert_eq!(check(filter, pod, &cache, node).as_deref(), want, "{name}");
        }
    }
}
