//! One probe attempt against real sockets on 127.0.0.1 (real time: a paused clock would let
//! timeouts fire while a connection is pending) and against the fake runtime's execs.

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerPort, ExecAction, GRPCAction, HTTPGetAction, HTTPHeader, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::probe::fixtures::{grpc_health_server, http_server, https_server, running, SlowExec};
use crate::runtime::fake::FakeRuntime;
use crate::runtime::ExecOutput;

fn local() -> Target {
    Target {
        container_id: "c1".into(),
        pod_ip: Ipv4Addr::LOCALHOST,
    }
}

fn http_probe(port: IntOrString, path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            port,
            path: Some(path.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn free_port() -> u16 {
    // Bound then dropped: nothing listens there, so connecting is refused.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn attempt(probe: &Probe, ports: &[ContainerPort]) -> Outcome {
    probe_once(&FakeRuntime::new(), &local(), ports, probe).await
}

#[tokio::test]
async fn http_status_codes_decide_the_outcome() {
    let server = http_server(|path| match path {
        "/ok" => (200, None),
        "/no-content" => (204, None),
        "/elsewhere" => (302, Some("http://other.invalid/ok".into())),
        "/not-modified" => (304, None),
        "/missing" => (404, None),
        _ => (500, None),
    })
    .await;
    let cases = [
        ("200", "/ok", Outcome::Success(String::new())),
        ("204", "/no-content", Outcome::Success(String::new())),
        (
            "redirect to another host is not followed",
            "/elsewhere",
            Outcome::Warning("Probe terminated redirects".into()),
        ),
        (
            "304",
            "/not-modified",
            Outcome::Warning("Probe terminated redirects".into()),
        ),
        (
            "404",
            "/missing",
            Outcome::Failure("HTTP probe failed with statuscode: 404".into()),
        ),
        (
            "500",
            "/boom",
            Outcome::Failure("HTTP probe failed with statuscode: 500".into()),
        ),
    ];
    for (name, path, want) in cases {
        let got = attempt(&http_probe(IntOrString::Int(server.port.into()), path), &[]).await;
        assert_eq!(got, want, "{name}");
    }
}

#[tokio::test]
async fn http_follows_redirects_on_the_same_host_up_to_ten_requests() {
    let server = http_server(|path| match path {
        "/old" => (301, Some("/new".into())),
        "/dir/rel" => (307, Some("next".into())),
        "/new" | "/dir/next" => (200, None),
        _ => (302, Some("/loop".into())),
    })
    .await;
    let port = IntOrString::Int(server.port.into());
    assert_eq!(
        attempt(&http_probe(port.clone(), "/old"), &[]).await,
        Outcome::Success(String::new())
    );
    assert_eq!(
        attempt(&http_probe(port.clone(), "/dir/rel"), &[]).await,
        Outcome::Success(String::new()),
        "a relative Location resolves against the request's directory"
    );
    let seen: Vec<String> = server.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(seen, ["/old", "/new", "/dir/rel", "/dir/next"]);

    let got = attempt(&http_probe(port, "/loop"), &[]).await;
    assert_eq!(
        got,
        Outcome::Failure(format!(
            "Get \"http://127.0.0.1:{}/loop\": stopped after 10 redirects",
            server.port
        ))
    );
    assert_eq!(
        server.seen().len(),
        4 + 10,
        "ten requests in the looping chain"
    );
}

#[tokio::test]
async fn http_sends_the_kubelets_headers_and_the_users() {
    let server = http_server(|_| (200, None)).await;
    let mut probe = http_probe(IntOrString::String("web".into()), "healthz?full=1");
    let ports = [ContainerPort {
        name: Some("web".into()),
        container_port: server.port.into(),
        ..Default::default()
    }];
    assert!(
        attempt(&probe, &ports).await.is_success(),
        "the named port resolves"
    );
    let header = |name: &str, value: &str| HTTPHeader {
        name: name.into(),
        value: value.into(),
    };
    probe.http_get.as_mut().unwrap().http_headers = Some(vec![
        header("X-Custom", "yes"),
        header("Host", "app.example"),
        header("User-Agent", "mine/1"),
    ]);
    assert!(attempt(&probe, &ports).await.is_success());

    let seen = server.seen();
    let first = &seen[0];
    assert_eq!(
        first.path, "/healthz?full=1",
        "a path without a slash gets one"
    );
    assert_eq!(first.headers["user-agent"], "kube-probe/1.33");
    assert_eq!(first.headers["accept"], "*/*");
    assert_eq!(first.headers["host"], format!("127.0.0.1:{}", server.port));
    let second = &seen[1];
    assert_eq!(second.headers["x-custom"], "yes");
    assert_eq!(
        second.headers["host"], "app.example",
        "a Host header sets the host"
    );
    assert_eq!(
        second.headers["user-agent"], "mine/1",
        "the user's User-Agent wins"
    );
}

#[tokio::test]
async fn http_failures_read_like_the_kubelets_events() {
    let port = free_port();
    let got = attempt(&http_probe(IntOrString::Int(port.into()), "/healthz"), &[]).await;
    assert_eq!(
        got,
        Outcome::Failure(format!(
            "Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: connection refused"
        ))
    );

    // Accepts connections and never answers: the probe's timeout ends it.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            open.push(s);
        }
    });
    let got = attempt(&http_probe(IntOrString::Int(port.into()), "/slow"), &[]).await;
    assert_eq!(
        got,
        Outcome::Failure(format!(
            "Get \"http://127.0.0.1:{port}/slow\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        ))
    );

    let unknown = attempt(&http_probe(IntOrString::String("nope".into()), "/"), &[]).await;
    assert_eq!(
        unknown,
        Outcome::Error("port \"nope\" not found in the container's ports".into()),
        "an unknown port name is an error, not a failure"
    );
}

#[tokio::test]
async fn https_does_not_verify_the_certificate() {
    let server = https_server(|path| {
        if path == "/ok" {
            (200, None)
        } else {
            (503, None)
        }
    })
    .await;
    let mut probe = http_probe(IntOrString::Int(server.port.into()), "/ok");
    probe.http_get.as_mut().unwrap().scheme = Some("HTTPS".into());
    assert_eq!(attempt(&probe, &[]).await, Outcome::Success(String::new()));
    probe.http_get.as_mut().unwrap().path = Some("/down".into());
    assert_eq!(
        attempt(&probe, &[]).await,
        Outcome::Failure("HTTP probe failed with statuscode: 503".into())
    );
}

#[tokio::test]
async fn tcp_succeeds_when_the_port_accepts() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap().port();
    let closed = free_port();
    let tcp = |port: u16| Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(port.into()),
            host: None,
        }),
        ..Default::default()
    };
    assert_eq!(
        attempt(&tcp(open), &[]).await,
        Outcome::Success(String::new())
    );
    assert_eq!(
        attempt(&tcp(closed), &[]).await,
        Outcome::Failure(format!(
            "dial tcp 127.0.0.1:{closed}: connect: connection refused"
        ))
    );
}

#[tokio::test]
async fn grpc_health_check_succeeds_only_when_serving() {
    let server = grpc_health_server(&[("", 1), ("db", 2)], true).await;
    let grpc = |port: u16, service: Option<&str>| Probe {
        grpc: Some(GRPCAction {
            port: port.into(),
            service: service.map(str::to_string),
        }),
        ..Default::default()
    };
    assert_eq!(
        attempt(&grpc(server.port, None), &[]).await,
        Outcome::Success("service healthy".into())
    );
    assert_eq!(
        attempt(&grpc(server.port, Some("db")), &[]).await,
        Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
    );
    assert_eq!(
        attempt(&grpc(server.port, Some("cache")), &[]).await,
        Outcome::Failure(
            "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service"
                .into()
        )
    );
    let seen = server.seen();
    assert_eq!(seen[0].path, "/grpc.health.v1.Health/Check");
    let agent = seen[0].headers["user-agent"].to_str().unwrap();
    assert!(agent.starts_with("kube-probe/1.33"), "user agent {agent}");

    let bare = grpc_health_server(&[], false).await;
    let Outcome::Failure(message) = attempt(&grpc(bare.port, None), &[]).await else {
        panic!("a server without the health service fails the probe");
    };
    assert!(
        message.starts_with(
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health)"
        ),
        "{message}"
    );

    let port = free_port();
    let Outcome::Failure(message) = attempt(&grpc(port, None), &[]).await else {
        panic!("a refused connection fails the probe");
    };
    assert!(
        message.starts_with(&format!(
            "error: failed to connect service at \"127.0.0.1:{port}\""
        )),
        "{message}"
    );
}

fn exec_probe(command: &[&str]) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(command.iter().map(|c| c.to_string()).collect()),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn exec_succeeds_on_exit_zero_and_reports_the_output_otherwise() {
    let rt = FakeRuntime::new();
    running(&rt, &rt, "c1").await;
    rt.set_exec_result(
        "c1",
        &["cat", "/tmp/healthy"],
        ExecOutput {
            exit_code: 1,
            output: b"cat: can't open '/tmp/healthy': No such file or directory\n".to_vec(),
        },
    );
    let ok = probe_once(&rt, &local(), &[], &exec_probe(&["true"])).await;
    assert_eq!(ok, Outcome::Success(String::new()));
    let failed = probe_once(&rt, &local(), &[], &exec_probe(&["cat", "/tmp/healthy"])).await;
    assert_eq!(
        failed,
        Outcome::Failure("cat: can't open '/tmp/healthy': No such file or directory\n".into())
    );

    rt.exit("c1", 0);
    let gone = probe_once(&rt, &local(), &[], &exec_probe(&["true"])).await;
    assert!(
        matches!(gone, Outcome::Error(_)),
        "no running container: {gone:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_exec_that_times_out_fails_the_probe() {
    let rt = SlowExec::new(Duration::from_secs(5));
    running(&rt, &rt.fake, "c1").await;
    let mut probe = exec_probe(&["sh", "-c", "sleep 5"]);
    probe.timeout_seconds = Some(2);
    let started = tokio::time::Instant::now();
    let got = probe_once(&rt, &local(), &[], &probe).await;
    assert_eq!(
        got,
        Outcome::Failure("command \"sh -c sleep 5\" timed out".into())
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(2),
        "bounded by timeoutSeconds"
    );
}
