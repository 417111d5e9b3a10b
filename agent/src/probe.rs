//! Probes (liveness, readiness, startup) and lifecycle hooks (postStart, preStop), run as
//! the kubelet runs them: exec in the container, httpGet, tcpSocket and grpc against the
//! pod's IP. [`check`] runs one attempt of a probe and says what happened in the words the
//! kubelet's events use; [`worker`] repeats it on the probe's schedule and turns attempts
//! into a result through the success and failure thresholds; [`hook`] runs a lifecycle
//! handler once.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::ContainerPort;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub mod check;
mod grpc;
pub mod hook;
mod http;
mod net;
pub mod worker;

#[cfg(test)]
mod fixtures;

pub use check::{probe_once, Outcome};
pub use hook::run_hook;
pub use worker::{spawn, ProbeHandle, ProbeKind, ProbeState};

/// Where a probe or hook runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The runtime's container ID (for exec).
    pub container_id: String,
    /// The pod's IP (for httpGet, tcpSocket, grpc when no host is given).
    pub pod_ip: Ipv4Addr,
}

/// The Kubernetes minor version the probes' User-Agent names (`kube-probe/1.33`), the one
/// kybern serves.
const KUBE_VERSION: &str = "1.33";

/// Resolves a probe's or hook's port: a number as is, a name through the container's ports
/// (a name that is all digits is taken as a number, as the kubelet does).
pub fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match ports.iter().find(|p| p.name.as_deref() == Some(name)) {
            Some(p) => p.container_port,
            None => name
                .parse()
                .map_err(|_| format!("port {name:?} not found in the container's ports"))?,
        },
    };
    u16::try_from(number)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid port number: {number}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, port: i32) -> ContainerPort {
        ContainerPort {
            name: Some(name.into()),
            container_port: port,
            ..Default::default()
        }
    }

    #[test]
    fn ports_resolve_by_number_or_by_name() {
        let ports = [named("http", 8080), named("grpc", 9090)];
        let cases: &[(&str, IntOrString, Result<u16, &str>)] = &[
            ("number", IntOrString::Int(80), Ok(80)),
            ("name", IntOrString::String("grpc".into()), Ok(9090)),
            (
                "digits as a name",
                IntOrString::String("8443".into()),
                Ok(8443),
            ),
            (
                "unknown name",
                IntOrString::String("metrics".into()),
                Err("port \"metrics\" not found in the container's ports"),
            ),
            ("zero", IntOrString::Int(0), Err("invalid port number: 0")),
            (
                "too big",
                IntOrString::Int(70000),
                Err("invalid port number: 70000"),
            ),
        ];
        for (name, port, want) in cases {
            let got = resolve_port(port, &ports);
            assert_eq!(got, want.map_err(str::to_string), "{name}");
        }
    }
}
