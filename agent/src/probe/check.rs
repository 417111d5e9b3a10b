//! One attempt of a probe's handler, with the outcome worded as the kubelet's events word
//! it. An exec succeeds on exit code 0; an httpGet on a status from 200 to 399 (3xx is a
//! success with a warning: a redirect the prober did not follow); a tcpSocket when the
//! connection opens; a grpc health check on SERVING.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, Probe};

use super::http::HttpGet;
use super::net::dial;
use super::{grpc, resolve_port, Target};
use crate::runtime::{Error, Runtime};

/// The kubelet's default `timeoutSeconds`.
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 1;

/// What one attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// With the handler's output (an exec's stdout and stderr), possibly empty.
    Success(String),
    /// Counted as a success; the kubelet records a ProbeWarning event with this message.
    Warning(String),
    Failure(String),
    /// The probe could not be run at all (the runtime failed, a port name is unknown); the
    /// kubelet records the error and leaves the probe's result as it was.
    Error(String),
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success(_) | Outcome::Warning(_))
    }
}

/// The probe's timeout (`timeoutSeconds`, at least 1 second).
pub fn timeout_of(probe: &Probe) -> Duration {
    let secs = probe
        .timeout_seconds
        .unwrap_or(DEFAULT_TIMEOUT_SECONDS)
        .max(1);
    Duration::from_secs(secs as u64)
}

/// Runs the probe's handler once against `target`.
pub async fn probe_once(
    rt: &dyn Runtime,
    target: &Target,
    ports: &[ContainerPort],
    probe: &Probe,
) -> Outcome {
    let timeout = timeout_of(probe);
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        return exec_once(rt, target, &command, timeout).await;
    }
    if let Some(action) = &probe.http_get {
        let get = match HttpGet::for_action(action, target, ports, "kube-probe") {
            Ok(get) => get,
            Err(e) => return Outcome::Error(e),
        };
        return match get.send(timeout).await {
            Ok(r) if (200..300).contains(&r.status) => Outcome::Success(String::new()),
            Ok(r) if (300..400).contains(&r.status) => {
                Outcome::Warning("Probe terminated redirects".into())
            }
            Ok(r) => Outcome::Failure(format!("HTTP probe failed with statuscode: {}", r.status)),
            Err(e) => Outcome::Failure(e),
        };
    }
    if let Some(action) = &probe.tcp_socket {
        let port = match resolve_port(&action.port, ports) {
            Ok(port) => port,
            Err(e) => return Outcome::Error(e),
        };
        let host = match action.host.as_deref() {
            Some(h) if !h.is_empty() => h.to_string(),
            _ => target.pod_ip.to_string(),
        };
        let addr = super::net::join_host_port(&host, port);
        return match tokio::time::timeout(timeout, dial(&host, port)).await {
            Ok(Ok(_connection)) => Outcome::Success(String::new()),
            Ok(Err(e)) => Outcome::Failure(e),
            Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
        };
    }
    if let Some(action) = &probe.grpc {
        let Some(port) = u16::try_from(action.port).ok().filter(|p| *p > 0) else {
            return Outcome::Error(format!("invalid port number: {}", action.port));
        };
        let service = action.service.as_deref().unwrap_or("");
        return match grpc::check(IpAddr::V4(target.pod_ip), port, service, timeout).await {
            Ok(message) => Outcome::Success(message),
            Err(message) => Outcome::Failure(message),
        };
    }
    Outcome::Error("missing probe handler".into())
}

/// Runs `command` in the container: exit 0 is success, another exit code a failure whose
/// message is the command's output, running out of time a failure as well.
pub async fn exec_once(
    rt: &dyn Runtime,
    target: &Target,
    command: &[String],
    timeout: Duration,
) -> Outcome {
    match rt.exec(&target.container_id, command, timeout).await {
        Ok(out) => {
            let output = String::from_utf8_lossy(&out.output).into_owned();
            if out.exit_code == 0 {
                Outcome::Success(output)
            } else {
                Outcome::Failure(output)
            }
        }
        Err(Error::Timeout(_)) => {
            Outcome::Failure(format!("command {:?} timed out", command.join(" ")))
        }
        Err(e) => Outcome::Error(e.to_string()),
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
