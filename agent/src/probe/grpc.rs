//! The grpc probe: `grpc.health.v1.Health/Check` over plaintext HTTP/2 to the pod's IP, with
//! the messages written by hand (two one-field protobufs) and tonic's generic client.
//! SERVING is success; everything else fails with the kubelet's wording.

use std::net::IpAddr;
use std::time::Duration;

use tonic::codegen::http::uri::PathAndQuery;

use super::net::{error_chain, go_duration, join_host_port};

pub(super) const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct HealthCheckResponse {
    /// `ServingStatus`: 0 UNKNOWN, 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN.
    #[prost(int32, tag = "1")]
    pub status: i32,
}

pub(super) const SERVING: i32 = 1;

fn status_name(status: i32) -> String {
    match status {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        n => n.to_string(),
    }
}

/// Checks `service` at `ip:port` within `timeout`: `Ok` with the success message, `Err`
/// with the failure message.
pub(super) async fn check(
    ip: IpAddr,
    port: u16,
    service: &str,
    timeout: Duration,
) -> Result<String, String> {
    let addr = join_host_port(&ip.to_string(), port);
    let deadline = tokio::time::Instant::now() + timeout;
    let timeout_text = go_duration(timeout);
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .and_then(|e| e.user_agent(format!("kube-probe/{}", super::KUBE_VERSION)))
        .map_err(|e| {
            format!(
                "error: failed to connect service at {addr:?}: {}",
                error_chain(&e)
            )
        })?
        .connect_timeout(timeout);
    let channel = match tokio::time::timeout_at(deadline, endpoint.connect()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(e)) => {
            return Err(format!(
                "error: failed to connect service at {addr:?}: {}",
                error_chain(&e)
            ))
        }
        Err(_) => {
            return Err(format!(
                "timeout: failed to connect service {addr:?} within {timeout_text}: context deadline exceeded"
            ))
        }
    };
    let mut client = tonic::client::Grpc::new(channel);
    let call = async {
        client
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(error_chain(&e)))?;
        let request = tonic::Request::new(HealthCheckRequest {
            service: service.to_string(),
        });
        client
            .unary(
                request,
                PathAndQuery::from_static(CHECK_PATH),
                tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default(),
            )
            .await
    };
    let response = match tokio::time::timeout_at(deadline, call).await {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => {
            return Err(match status.code() {
                tonic::Code::Unimplemented => format!(
                    "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                    status.message()
                ),
                tonic::Code::DeadlineExceeded => {
                    format!("timeout: health rpc did not complete within {timeout_text}")
                }
                code => format!(
                    "error: health rpc probe failed: rpc error: code = {code:?} desc = {}",
                    status.message()
                ),
            })
        }
        Err(_) => return Err(format!("timeout: health rpc did not complete within {timeout_text}")),
    };
    if response.status != SERVING {
        return Err(format!(
            "service unhealthy (responded with {:?})",
            status_name(response.status)
        ));
    }
    Ok("service healthy".into())
}
