//! The node's own admission of a pod it is given (the kubelet's `canAdmitPod` with its
//! predicate admit handler): a pod whose host ports are already taken by an active pod on
//! this node is refused, and ends Failed with upstream's reason and message instead of
//! running beside the pod it conflicts with.

use k8s_openapi::api::core::v1::Pod;

/// Why a pod does not run (any more) on this node: the status's reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub reason: String,
    pub message: String,
}

impl Verdict {
    /// A rejection at admission, worded as the kubelet's `rejectPod`: the event carries
    /// `message`, the status "Pod was rejected: " and `message`.
    pub fn rejected(reason: &str, message: &str) -> Verdict {
        Verdict {
            reason: reason.into(),
            message: format!("Pod was rejected: {message}"),
        }
    }
}

/// The predicate name and description upstream gives a host-port conflict.
pub const NODE_PORTS: &str = "NodePorts";
const NODE_PORTS_DESC: &str = "node(s) didn't have free ports for the requested pod ports";

/// `(protocol, host IP, host port)` of every container port with a hostPort.
fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|p| *p > 0)?;
            let ip = p.host_ip.clone().unwrap_or_default();
            let ip = if ip.is_empty() { "0.0.0.0".into() } else { ip };
            Some((p.protocol.clone().unwrap_or_else(|| "TCP".into()), ip, port))
        })
        .collect()
}

/// Whether two host ports collide: same protocol and port, and the same address or either
/// on every address (0.0.0.0), as the scheduler's NodePorts filter decides.
fn collide(a: &(String, String, i32), b: &(String, String, i32)) -> bool {
    a.0 == b.0 && a.2 == b.2 && (a.1 == b.1 || a.1 == "0.0.0.0" || b.1 == "0.0.0.0")
}

/// Whether a pod still holds what it was admitted with: neither finished nor gone.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed"))
}

/// Admits `pod` beside the node's active pods `others`, or says why not: `(reason, event
/// message)`.
pub fn admit<'a>(pod: &Pod, others: impl IntoIterator<Item = &'a Pod>) -> Option<(String, String)> {
    let wanted = host_ports(pod);
    if wanted.is_empty() {
        return None;
    }
    let taken: Vec<_> = others
        .into_iter()
        .filter(|o| is_active(o))
        .flat_map(host_ports)
        .collect();
    let conflict = wanted.iter().any(|w| taken.iter().any(|t| collide(w, t)));
    conflict.then(|| {
        (
            NODE_PORTS.to_string(),
            format!("Predicate {NODE_PORTS} failed: {NODE_PORTS_DESC}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ports: serde_json::Value, phase: Option<&str>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i", "ports": ports}]},
            "status": {"phase": phase},
        }))
        .expect("a valid pod")
    }

    #[test]
    fn host_port_conflicts_are_decided_as_upstreams_node_ports_filter() {
        let port = |host: i32, ip: Option<&str>, proto: &str| serde_json::json!([{"containerPort": 80, "hostPort": host, "hostIP": ip, "protocol": proto}]);
        let none = serde_json::json!([{"containerPort": 80}]);
        // (name, the new pod's ports, a running pod's ports, its phase, rejected)
        let cases = [
            (
                "same port and protocol",
                port(8080, None, "TCP"),
                port(8080, None, "TCP"),
                "Running",
                true,
            ),
            (
                "another port",
                port(8080, None, "TCP"),
                port(8081, None, "TCP"),
                "Running",
                false,
            ),
            (
                "another protocol",
                port(8080, None, "UDP"),
                port(8080, None, "TCP"),
                "Running",
                false,
            ),
            (
                "one on every address",
                port(8080, Some("127.0.0.1"), "TCP"),
                port(8080, None, "TCP"),
                "Running",
                true,
            ),
            (
                "two distinct addresses",
                port(8080, Some("127.0.0.1"), "TCP"),
                port(8080, Some("127.0.0.2"), "TCP"),
                "Running",
                false,
            ),
            (
                "the other pod finished",
                port(8080, None, "TCP"),
                port(8080, None, "TCP"),
                "Succeeded",
                false,
            ),
            (
                "the other pod failed",
                port(8080, None, "TCP"),
                port(8080, None, "TCP"),
                "Failed",
                false,
            ),
            ("no host port", none.clone(), none, "Running", false),
        ];
        for (name, new, old, phase, rejected) in cases {
            let verdict = admit(&pod(new, None), [&pod(old, Some(phase))]);
            assert_eq!(verdict.is_some(), rejected, "{name}: {verdict:?}");
            if let Some((reason, message)) = verdict {
                assert_eq!(reason, "NodePorts", "{name}");
                assert_eq!(
                    message,
                    "Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports",
                    "{name}"
                );
            }
        }
    }
}
