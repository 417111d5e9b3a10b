//! Which endpoints of a Service port take which traffic (upstream's `CategorizeEndpoints`):
//! ready endpoints, or serving-and-terminating ones when none is ready; the same rule again
//! for this node's endpoints when a traffic policy is Local.

use std::net::Ipv4Addr;

use crate::services::Endpoint;

/// One endpoint address and target port of a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// The endpoints of one Service port, sorted by address, with their node.
#[derive(Debug, Clone, Default)]
pub struct PortEndpoints {
    pub all: Vec<(Target, Endpoint)>,
}

/// What `categorize` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Categorized {
    /// For traffic policy Cluster; empty when the port never uses Cluster endpoints.
    pub cluster: Vec<Target>,
    /// This node's endpoints, for traffic policy Local; empty when no policy is Local.
    pub local: Vec<Target>,
    /// Every endpoint some chain of this port jumps to (cluster ∪ local), sorted.
    pub reachable: Vec<Target>,
    /// Whether any endpoint could take traffic at all (none: reject every destination).
    pub any: bool,
}

/// The policies of the port that decide which sets are needed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    pub internal_local: bool,
    pub external_local: bool,
    pub externally_accessible: bool,
}

impl Policy {
    /// Even with externalTrafficPolicy Local, external traffic from pods and the node itself
    /// short-circuits to Cluster endpoints, so any externally reachable port needs them.
    pub fn uses_cluster(&self) -> bool {
        !self.internal_local || self.externally_accessible
    }

    pub fn uses_local(&self) -> bool {
        self.internal_local || (self.externally_accessible && self.external_local)
    }
}

/// Ready endpoints, or when none is ready, those still serving while terminating
/// (upstream's ProxyTerminatingEndpoints).
fn usable<'a>(endpoints: impl Iterator<Item = &'a (Target, Endpoint)> + Clone) -> Vec<Target> {
    let ready: Vec<Target> = endpoints
        .clone()
        .filter(|(_, e)| e.ready)
        .map(|(t, _)| *t)
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    endpoints
        .filter(|(_, e)| e.serving && e.terminating)
        .map(|(t, _)| *t)
        .collect()
}

pub fn categorize(endpoints: &PortEndpoints, policy: Policy, node: &str) -> Categorized {
    let cluster_all = usable(endpoints.all.iter());
    let local = if policy.uses_local() {
        usable(
            endpoints
                .all
                .iter()
                .filter(|(_, e)| e.node.as_deref() == Some(node)),
        )
    } else {
        Vec::new()
    };
    let any = !cluster_all.is_empty() || !local.is_empty();
    let cluster = if policy.uses_cluster() {
        cluster_all
    } else {
        Vec::new()
    };
    let mut reachable: Vec<Target> = cluster.iter().chain(&local).copied().collect();
    reachable.sort();
    reachable.dedup();
    Categorized {
        cluster,
        local,
        reachable,
        any,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(
        last: u8,
        node: &str,
        ready: bool,
        serving: bool,
        terminating: bool,
    ) -> (Target, Endpoint) {
        let ip = Ipv4Addr::new(10, 42, 0, last);
        (
            Target { ip, port: 8080 },
            Endpoint {
                ip,
                ready,
                serving,
                terminating,
                node: Some(node.into()),
                hostname: None,
            },
        )
    }

    fn t(last: u8) -> Target {
        Target {
            ip: Ipv4Addr::new(10, 42, 0, last),
            port: 8080,
        }
    }

    /// name, endpoints, policy, expected.
    type Row = (&'static str, Vec<(Target, Endpoint)>, Policy, Categorized);

    #[test]
    fn endpoints_are_sorted_into_cluster_and_local_sets_by_policy() {
        let cluster = Policy::default();
        let itp_local = Policy {
            internal_local: true,
            ..Policy::default()
        };
        let etp_local = Policy {
            external_local: true,
            externally_accessible: true,
            ..Policy::default()
        };
        let both_local = Policy {
            internal_local: true,
            external_local: true,
            externally_accessible: true,
        };
        let cases: Vec<Row> = vec![
            (
                "ready endpoints only, not the unready one",
                vec![
                    ep(1, "n1", true, true, false),
                    ep(2, "n2", false, false, false),
                    ep(3, "n2", true, true, false),
                ],
                cluster,
                Categorized {
                    cluster: vec![t(1), t(3)],
                    local: vec![],
                    reachable: vec![t(1), t(3)],
                    any: true,
                },
            ),
            (
                "serving terminating endpoints when none is ready",
                vec![
                    ep(1, "n1", false, true, true),
                    ep(2, "n2", false, false, true),
                ],
                cluster,
                Categorized {
                    cluster: vec![t(1)],
                    local: vec![],
                    reachable: vec![t(1)],
                    any: true,
                },
            ),
            (
                "terminating endpoints are not used beside a ready one",
                vec![
                    ep(1, "n1", false, true, true),
                    ep(2, "n2", true, true, false),
                ],
                cluster,
                Categorized {
                    cluster: vec![t(2)],
                    local: vec![],
                    reachable: vec![t(2)],
                    any: true,
                },
            ),
            (
                "nothing usable",
                vec![ep(1, "n1", false, false, false)],
                cluster,
                Categorized::default(),
            ),
            (
                "internal policy Local keeps this node's endpoints only",
                vec![
                    ep(1, "n1", true, true, false),
                    ep(2, "n2", true, true, false),
                ],
                itp_local,
                Categorized {
                    cluster: vec![],
                    local: vec![t(1)],
                    reachable: vec![t(1)],
                    any: true,
                },
            ),
            (
                "internal policy Local without a local endpoint still knows others exist",
                vec![ep(2, "n2", true, true, false)],
                itp_local,
                Categorized {
                    cluster: vec![],
                    local: vec![],
                    reachable: vec![],
                    any: true,
                },
            ),
            (
                "external policy Local needs both sets",
                vec![
                    ep(1, "n1", true, true, false),
                    ep(2, "n2", true, true, false),
                ],
                etp_local,
                Categorized {
                    cluster: vec![t(1), t(2)],
                    local: vec![t(1)],
                    reachable: vec![t(1), t(2)],
                    any: true,
                },
            ),
            (
                "local terminating fallback is decided per node",
                vec![
                    ep(1, "n1", false, true, true),
                    ep(2, "n2", true, true, false),
                ],
                both_local,
                Categorized {
                    cluster: vec![t(2)],
                    local: vec![t(1)],
                    reachable: vec![t(1), t(2)],
                    any: true,
                },
            ),
        ];
        for (name, all, policy, want) in cases {
            let got = categorize(&PortEndpoints { all }, policy, "n1");
            assert_eq!(got, want, "{name}");
        }
    }
}
