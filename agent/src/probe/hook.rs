//! Lifecycle hooks (postStart, preStop) run once, as the kubelet's handler runner runs them.
//! exec fails on a non-zero exit; httpGet fails only when no response comes back (the
//! kubelet ignores the status code of a hook's response); sleep waits, and fails when the
//! time given runs out first. tcpSocket is not a lifecycle handler upstream (the API keeps
//! the field for compatibility and the kubelet refuses it at run time); so does this.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, LifecycleHandler};

use super::http::HttpGet;
use super::Target;
use crate::runtime::{Error, Runtime};

/// Runs `handler` against `target` within `timeout` (for preStop, what remains of the grace
/// period). The error is the kubelet's error text; the caller puts it in the event
/// (`PostStartHook failed`, `FailedPreStopHook`) together with the container's and pod's
/// names, as in `Exec lifecycle hook ([sh -c exit 3]) for Container "c" in Pod "p" failed -
/// error: <this>`.
pub async fn run_hook(
    rt: &dyn Runtime,
    target: &Target,
    handler: &LifecycleHandler,
    ports: &[ContainerPort],
    timeout: Duration,
) -> Result<(), String> {
    if let Some(exec) = &handler.exec {
        let command = exec.command.clone().unwrap_or_default();
        let joined = command.join(" ");
        return match rt.exec(&target.container_id, &command, timeout).await {
            Ok(out) if out.exit_code == 0 => Ok(()),
            Ok(out) => Err(format!(
                "command '{joined}' exited with {}: {}",
                out.exit_code,
                String::from_utf8_lossy(&out.output)
            )),
            Err(Error::Timeout(_)) => Err(format!("command '{joined}' timed out")),
            Err(e) => Err(e.to_string()),
        };
    }
    if let Some(action) = &handler.http_get {
        let mut get = HttpGet::for_action(action, target, ports, "kube-lifecycle")?;
        get.follow_other_hosts = true;
        return get.send(timeout).await.map(|_| ());
    }
    if let Some(sleep) = &handler.sleep {
        let wanted = Duration::from_secs(sleep.seconds.max(0) as u64);
        if wanted > timeout {
            tokio::time::sleep(timeout).await;
            return Err("container terminated before sleep hook finished".into());
        }
        tokio::time::sleep(wanted).await;
        return Ok(());
    }
    if handler.tcp_socket.is_some() {
        return Err("invalid handler: tcpSocket is not supported as a lifecycle handler".into());
    }
    Err("invalid handler: no action given".into())
}

#[cfg(test)]
#[path = "hook_tests.rs"]
mod tests;
