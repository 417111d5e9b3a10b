//! NodeResourcesFit: the pod's requests must fit in allocatable minus what pods on the
//! node (bound or assumed) already request; one reason per short resource.

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{Code, FilterResult, Status};

/// Every resource the pod does not fit, as upstream's reasons ("Too many pods",
/// "Insufficient cpu", "Insufficient example.com/gpu").
pub fn insufficient(pod: &PodInfo, node: &NodeInfo) -> Vec<String> {
    let (req, alloc, used) = (&pod.requests, &node.allocatable, &node.requested);
    let mut out = vec![];
    if used.pods + 1 > alloc.pods {
        out.push("Too many pods".to_string());
    }
    let basics = [
        ("cpu", req.milli_cpu, alloc.milli_cpu, used.milli_cpu),
        ("memory", req.memory, alloc.memory, used.memory),
        (
            "ephemeral-storage",
            req.ephemeral_storage,
            alloc.ephemeral_storage,
            used.ephemeral_storage,
        ),
    ];
    for (name, r, a, u) in basics {
        if r > 0 && r > a - u {
            out.push(format!("Insufficient {name}"));
        }
    }
    for (name, &r) in &req.scalar {
        if r > 0 && r > alloc.get(name) - used.get(name) {
            out.push(format!("Insufficient {name}"));
        }
    }
    out
}

pub fn filter(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    let reasons = insufficient(pod, node);
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Status {
            code: Code::Unschedulable,
            reasons,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Node, Pod};

    use super::*;
    use crate::filters::fixtures::cluster;
    use controllers::fixtures::{NodeFixture, PodFixture};

    #[test]
    fn requests_must_fit_in_what_is_left() {
        let cache = cluster(
            vec![
                Node::test("n1")
                    .cpu("2")
                    .memory("4Gi")
                    .pods(3)
                    .allocatable("example.com/gpu", "1"),
                Node::test("full").pods(1),
            ],
            vec![
                Pod::test("a").on_node("n1").requests("1500m", "1Gi"),
                Pod::test("b").on_node("full"),
            ],
        );
        let cases = [
            ("fits", "n1", Pod::test("p").requests("500m", "3Gi"), vec![]),
            (
                "cpu short by 1m",
                "n1",
                Pod::test("p").requests("501m", "1Gi"),
                vec!["Insufficient cpu"],
            ),
            (
                "memory short",
                "n1",
                Pod::test("p").requests("100m", "3.5Gi"),
                vec!["Insufficient memory"],
            ),
            (
                "both short",
                "n1",
                Pod::test("p").requests("1", "4Gi"),
                vec!["Insufficient cpu", "Insufficient memory"],
            ),
            (
                "extended resource fits",
                "n1",
                Pod::test("p").request("example.com/gpu", "1"),
                vec![],
            ),
            (
                "extended resource short",
                "n1",
                Pod::test("p").request("example.com/gpu", "2"),
                vec!["Insufficient example.com/gpu"],
            ),
            (
                "extended resource absent",
                "full",
                Pod::test("p").request("example.com/gpu", "1"),
                vec!["Too many pods", "Insufficient example.com/gpu"],
            ),
            (
                "ephemeral storage",
                "n1",
                Pod::test("p").request("ephemeral-storage", "200Gi"),
                vec!["Insufficient ephemeral-storage"],
            ),
            ("pod count", "full", Pod::test("p"), vec!["Too many pods"]),
            (
                "init container max counts",
                "n1",
                Pod::test("p")
                    .requests("100m", "1Gi")
                    .init_requests("600m", "1Gi"),
                vec!["Insufficient cpu"],
            ),
            (
                "init container below sum",
                "n1",
                Pod::test("p")
                    .requests("500m", "1Gi")
                    .init_requests("300m", "1Gi"),
                vec![],
            ),
        ];
        for (name, node, pod, want) in cases {
            let info = PodInfo::new(Arc::new(pod.into()));
            assert_eq!(
                insufficient(&info, cache.node(node).unwrap()),
                want,
                "{name}"
            );
        }
    }
}
