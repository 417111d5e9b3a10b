//! NodePorts: a host port is taken when another pod on the node claims the same
//! protocol and port on the same host IP, or either side binds the wildcard address.

use crate::cache::NodeInfo;
use crate::framework::{CycleState, FilterResult, Status};

pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

pub fn filter(state: &CycleState, node: &NodeInfo) -> FilterResult {
    let taken = state
        .pod
        .ports
        .iter()
        .any(|want| node.ports.iter().any(|used| used.conflicts(want)));
    if taken {
        Err(Status::unschedulable(REASON))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Node, Pod};

    use super::*;
    use crate::filters::fixtures::{check, cluster};
    use controllers::fixtures::{NodeFixture, PodFixture};

    #[test]
    fn host_ports_conflict_by_protocol_ip_and_port() {
        let cache = cluster(
            vec![Node::test("n1")],
            vec![
                Pod::test("web").on_node("n1").host_port(80, "TCP", ""),
                Pod::test("dns")
                    .on_node("n1")
                    .host_port(53, "UDP", "10.0.0.1"),
            ],
        );
        let r = Some(REASON);
        let cases = [
            ("no ports", Pod::test("p"), None),
            (
                "same port and protocol, wildcard",
                Pod::test("p").host_port(80, "TCP", ""),
                r,
            ),
            (
                "same port, specific ip vs wildcard",
                Pod::test("p").host_port(80, "TCP", "10.0.0.2"),
                r,
            ),
            (
                "same port, other protocol",
                Pod::test("p").host_port(80, "UDP", ""),
                None,
            ),
            (
                "same port, other ip",
                Pod::test("p").host_port(53, "UDP", "10.0.0.2"),
                None,
            ),
            (
                "same port, same ip",
                Pod::test("p").host_port(53, "UDP", "10.0.0.1"),
                r,
            ),
            (
                "other port",
                Pod::test("p").host_port(8080, "TCP", ""),
                None,
            ),
        ];
        for (name, pod, want) in cases {
            assert_eq!(check(filter, pod, &cache, "n1").as_deref(), want, "{name}");
        }
    }
}
