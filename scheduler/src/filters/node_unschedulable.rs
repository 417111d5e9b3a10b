//! NodeUnschedulable: cordoned nodes (spec.unschedulable) take only pods that tolerate
//! the node.kubernetes.io/unschedulable:NoSchedule taint.

use k8s_openapi::api::core::v1::Taint;

use crate::cache::NodeInfo;
use crate::framework::{CycleState, FilterResult, Status};

pub const REASON: &str = "node(s) were unschedulable";

pub fn filter(state: &CycleState, node: &NodeInfo) -> FilterResult {
    if !node.unschedulable {
        return Ok(());
    }
    let taint = Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    if super::tolerated(&state.tolerations, &taint) {
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
    fn cordoned_nodes_take_only_pods_tolerating_unschedulable() {
        let cache = cluster(
            vec![Node::test("open"), Node::test("cordoned").unschedulable()],
            vec![],
        );
        let tolerant = Pod::test("p").toleration(
            "node.kubernetes.io/unschedulable",
            "Exists",
            "",
            "NoSchedule",
        );
        let cases = [
            ("open node", Pod::test("p"), "open", None),
            ("cordoned node", Pod::test("p"), "cordoned", Some(REASON)),
            ("cordoned node, tolerated", tolerant, "cordoned", None),
        ];
        for (name, pod, node, want) in cases {
            assert_eq!(check(filter, pod, &cache, node).as_deref(), want, "{name}");
        }
    }
}
