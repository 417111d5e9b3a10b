//! TaintToleration: NoSchedule and NoExecute taints keep out pods that do not tolerate
//! them. A node whose Ready condition is not True counts as tainted
//! node.kubernetes.io/not-ready:NoSchedule even before the node lifecycle controller
//! adds the taint, so a freshly registered or failing node gets no pods.

use k8s_openapi::api::core::v1::Taint;

use crate::cache::NodeInfo;
use crate::framework::{CycleState, FilterResult, Status};

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

pub fn reason(t: &Taint) -> String {
    format!(
        "node(s) had untolerated taint {{{}: {}}}",
        t.key,
        t.value.as_deref().unwrap_or("")
    )
}

pub fn filter(state: &CycleState, node: &NodeInfo) -> FilterResult {
    let hard = |t: &&Taint| t.effect == "NoSchedule" || t.effect == "NoExecute";
    if let Some(t) = node
        .taints
        .iter()
        .filter(hard)
        .find(|t| !super::tolerated(&state.tolerations, t))
    {
        return Err(Status::unresolvable(reason(t)));
    }
    if !node.ready && !node.taints.iter().any(|t| t.key == NOT_READY) {
        let t = Taint {
            key: NOT_READY.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if !super::tolerated(&state.tolerations, &t) {
            return Err(Status::unresolvable(reason(&t)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Node, Pod};

    use super::*;
    use crate::filters::fixtures::{check, cluster};
    use controllers::fixtures::{NodeFixture, PodFixture};

    #[test]
    fn hard_taints_need_tolerations_and_not_ready_nodes_are_tainted() {
        let cache = cluster(
            vec![
                Node::test("clean"),
                Node::test("gpu").taint("gpu", "true", "NoSchedule"),
                Node::test("evict").taint("dedicated", "db", "NoExecute"),
                Node::test("soft").taint("spot", "", "PreferNoSchedule"),
                Node::test("down").not_ready(),
            ],
            vec![],
        );
        let cases = [
            ("clean node", Pod::test("p"), "clean", None),
            (
                "NoSchedule untolerated",
                Pod::test("p"),
                "gpu",
                Some("node(s) had untolerated taint {gpu: true}"),
            ),
            (
                "Equal toleration",
                Pod::test("p").toleration("gpu", "Equal", "true", "NoSchedule"),
                "gpu",
                None,
            ),
            (
                "Equal toleration, wrong value",
                Pod::test("p").toleration("gpu", "Equal", "no", "NoSchedule"),
                "gpu",
                Some("node(s) had untolerated taint {gpu: true}"),
            ),
            (
                "Exists toleration, any effect",
                Pod::test("p").toleration("gpu", "Exists", "", ""),
                "gpu",
                None,
            ),
            (
                "empty key Exists tolerates all",
                Pod::test("p").toleration("", "Exists", "", ""),
                "evict",
                None,
            ),
            (
                "NoExecute untolerated",
                Pod::test("p"),
                "evict",
                Some("node(s) had untolerated taint {dedicated: db}"),
            ),
            (
                "PreferNoSchedule does not filter",
                Pod::test("p"),
                "soft",
                None,
            ),
            (
                "not ready node",
                Pod::test("p"),
                "down",
                Some("node(s) had untolerated taint {node.kubernetes.io/not-ready: }"),
            ),
            (
                "not ready tolerated",
                Pod::test("p").toleration(NOT_READY, "Exists", "", "NoSchedule"),
                "down",
                None,
            ),
        ];
        for (name, pod, node, want) in cases {
            assert_eq!(check(filter, pod, &cache, node).as_deref(), want, "{name}");
        }
    }
}
