//! Dialing TCP with the error texts Go's net package produces, since users read probe
//! failures as the kubelet words them (`dial tcp 10.42.0.5:8080: connect: connection
//! refused`), and Go's rendering of durations (`1s`, `1m30s`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

/// `host:port`, with brackets around an IPv6 host (Go's `net.JoinHostPort`).
pub(super) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Connects to `host:port` (resolving a name through the system resolver); the error is the
/// text Go's `net.Dial("tcp", ...)` returns. The caller bounds the time.
pub(super) async fn dial(host: &str, port: u16) -> Result<TcpStream, String> {
    let addr = join_host_port(host, port);
    let ip: IpAddr = match host.parse() {
        Ok(ip) => ip,
        Err(_) => match tokio::net::lookup_host((host, port)).await {
            Ok(mut addrs) => match addrs.next() {
                Some(a) => a.ip(),
                None => return Err(format!("dial tcp: lookup {host}: no such host")),
            },
            Err(e) => return Err(format!("dial tcp: lookup {host}: {}", go_errno_text(&e))),
        },
    };
    TcpStream::connect(SocketAddr::new(ip, port))
        .await
        .map_err(|e| format!("dial tcp {addr}: connect: {}", go_errno_text(&e)))
}

/// The text Go prints for a socket error: the lower-case errno string without Rust's
/// ` (os error N)` suffix.
pub(super) fn go_errno_text(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    let known = match e.kind() {
        ConnectionRefused => "connection refused",
        ConnectionReset => "connection reset by peer",
        HostUnreachable => "no route to host",
        NetworkUnreachable => "network is unreachable",
        TimedOut => "i/o timeout",
        AddrNotAvailable => "cannot assign requested address",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_string(),
    }
}

/// A duration as Go's `time.Duration.String` prints it, for whole seconds and milliseconds:
/// `1s`, `500ms`, `1m30s`, `2h0m0s`.
pub(super) fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m) = (ms / 3_600_000, ms / 60_000 % 60);
    let s = (ms % 60_000) as f64 / 1000.0;
    let secs = if ms.is_multiple_of(1000) {
        format!("{}s", ms % 60_000 / 1000)
    } else {
        format!("{s}s")
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// An error and its sources joined by ": ", the way Go wraps errors.
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_prints_them() {
        let cases = [
            ("sub-second", Duration::from_millis(500), "500ms"),
            ("one second", Duration::from_secs(1), "1s"),
            ("fractional", Duration::from_millis(1500), "1.5s"),
            ("minutes", Duration::from_secs(90), "1m30s"),
            ("hours", Duration::from_secs(7200), "2h0m0s"),
        ];
        for (name, d, want) in cases {
            assert_eq!(go_duration(d), want, "{name}");
        }
    }

    #[test]
    fn hosts_join_with_ports_as_go_joins_them() {
        assert_eq!(join_host_port("10.42.0.5", 80), "10.42.0.5:80");
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
    }

    #[tokio::test]
    async fn a_refused_dial_reads_like_go() {
        // Bind then drop a listener: the port is free, so connecting is refused.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = dial("127.0.0.1", port).await.unwrap_err();
        assert_eq!(
            err,
            format!("dial tcp 127.0.0.1:{port}: connect: connection refused")
        );
    }
}
