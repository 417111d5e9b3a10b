//! UDP has no connections to end, so conntrack entries keep sending a client's datagrams to
//! an endpoint that is gone (or on to the reject that was in place before the Service had
//! endpoints). After each sync the proxy deletes those entries, as upstream's
//! `CleanStaleEntries` does, through Debian's `conntrack` tool.

use std::net::Ipv4Addr;

use async_trait::async_trait;
use tokio::process::Command;

use super::render::UdpPort;

/// UDP conntrack entries to delete.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Flow {
    /// Everything sent to a service address and port (it had no endpoints before).
    ToService { address: Ipv4Addr, port: u16 },
    /// Entries to a service address that a removed endpoint answers.
    ServiceToEndpoint {
        address: Ipv4Addr,
        endpoint: Ipv4Addr,
    },
    /// Entries to a NodePort that a removed endpoint answers.
    NodePortToEndpoint { node_port: u16, endpoint: Ipv4Addr },
}

impl Flow {
    /// The `conntrack` arguments that delete these entries.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["-D", "-p", "udp"].map(String::from).to_vec();
        match self {
            Flow::ToService { address, port } => {
                args.extend(["--orig-dst".into(), address.to_string()]);
                args.extend(["--dport".into(), port.to_string()]);
            }
            Flow::ServiceToEndpoint { address, endpoint } => {
                args.extend(["--orig-dst".into(), address.to_string()]);
                args.extend(["--reply-src".into(), endpoint.to_string()]);
            }
            Flow::NodePortToEndpoint {
                node_port,
                endpoint,
            } => {
                args.extend(["--dport".into(), node_port.to_string()]);
                args.extend(["--reply-src".into(), endpoint.to_string()]);
            }
        }
        args
    }
}

/// The flows to clear when a Service's UDP ports go from `old` to `new`.
pub fn stale_flows(old: &[UdpPort], new: &[UdpPort]) -> Vec<Flow> {
    let mut flows = Vec::new();
    for o in old {
        let n = new
            .iter()
            .find(|n| n.port == o.port && n.addresses.first() == o.addresses.first());
        let kept: &[Ipv4Addr] = n.map(|n| n.endpoints.as_slice()).unwrap_or(&[]);
        for gone in o.endpoints.iter().filter(|e| !kept.contains(e)) {
            for address in &o.addresses {
                flows.push(Flow::ServiceToEndpoint {
                    address: *address,
                    endpoint: *gone,
                });
            }
            if let Some(node_port) = o.node_port {
                flows.push(Flow::NodePortToEndpoint {
                    node_port,
                    endpoint: *gone,
                });
            }
        }
    }
    for n in new.iter().filter(|n| !n.endpoints.is_empty()) {
        let before = old
            .iter()
            .find(|o| o.port == n.port && o.addresses.first() == n.addresses.first());
        if before.is_none_or(|o| o.endpoints.is_empty()) {
            for address in &n.addresses {
                flows.push(Flow::ToService {
                    address: *address,
                    port: n.port,
                });
            }
        }
    }
    flows.sort();
    flows.dedup();
    flows
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("conntrack {args}: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("running conntrack: {0}")]
    Io(#[from] std::io::Error),
}

#[async_trait]
pub trait Conntrack: Send + Sync {
    async fn clear(&self, flow: &Flow) -> Result<(), Error>;
}

/// The real one: `conntrack -D …` (optionally in a named network namespace, for tests).
#[derive(Debug, Clone, Default)]
pub struct ConntrackCli {
    netns: Option<String>,
}

impl ConntrackCli {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn in_netns(name: &str) -> Self {
        Self {
            netns: Some(name.to_string()),
        }
    }
}

#[async_trait]
impl Conntrack for ConntrackCli {
    async fn clear(&self, flow: &Flow) -> Result<(), Error> {
        let args = flow.args();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "conntrack"]);
                c
            }
            None => Command::new("conntrack"),
        };
        let out = cmd.args(&args).kill_on_drop(true).output().await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Exit status 1 with "0 flow entries have been deleted" only means none matched.
        if out.status.success() || stderr.contains("0 flow entries") {
            return Ok(());
        }
        Err(Error::Failed {
            args: args.join(" "),
            stderr: stderr.trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(endpoints: &[u8]) -> UdpPort {
        UdpPort {
            addresses: vec![Ipv4Addr::new(10, 43, 0, 53)],
            port: 53,
            node_port: Some(30053),
            endpoints: endpoints
                .iter()
                .map(|l| Ipv4Addr::new(10, 42, 0, *l))
                .collect(),
        }
    }

    /// name, old ports, new ports, flows to clear.
    type Row = (&'static str, Vec<UdpPort>, Vec<UdpPort>, Vec<Flow>);

    #[test]
    fn udp_flows_are_cleared_for_endpoints_that_went_and_services_that_got_their_first() {
        let svc = Ipv4Addr::new(10, 43, 0, 53);
        let ep = |l| Ipv4Addr::new(10, 42, 0, l);
        let cases: Vec<Row> = vec![
            ("unchanged", vec![udp(&[5])], vec![udp(&[5])], vec![]),
            (
                "an endpoint went",
                vec![udp(&[5, 6])],
                vec![udp(&[5])],
                vec![
                    Flow::ServiceToEndpoint {
                        address: svc,
                        endpoint: ep(6),
                    },
                    Flow::NodePortToEndpoint {
                        node_port: 30053,
                        endpoint: ep(6),
                    },
                ],
            ),
            (
                "first endpoints",
                vec![udp(&[])],
                vec![udp(&[5])],
                vec![Flow::ToService {
                    address: svc,
                    port: 53,
                }],
            ),
            (
                "a new service with endpoints",
                vec![],
                vec![udp(&[5])],
                vec![Flow::ToService {
                    address: svc,
                    port: 53,
                }],
            ),
            (
                "the service went",
                vec![udp(&[5])],
                vec![],
                vec![
                    Flow::ServiceToEndpoint {
                        address: svc,
                        endpoint: ep(5),
                    },
                    Flow::NodePortToEndpoint {
                        node_port: 30053,
                        endpoint: ep(5),
                    },
                ],
            ),
        ];
        for (name, old, new, want) in cases {
            let mut want = want;
            want.sort();
            assert_eq!(stale_flows(&old, &new), want, "{name}");
        }
    }

    #[test]
    fn conntrack_arguments_name_the_flow() {
        let flow = Flow::ServiceToEndpoint {
            address: Ipv4Addr::new(10, 43, 0, 53),
            endpoint: Ipv4Addr::new(10, 42, 0, 5),
        };
        assert_eq!(
            flow.args().join(" "),
            "-D -p udp --orig-dst 10.43.0.53 --reply-src 10.42.0.5"
        );
    }
}
