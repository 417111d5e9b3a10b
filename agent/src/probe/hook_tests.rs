use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ExecAction, HTTPGetAction, SleepAction, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::probe::fixtures::{http_server, running};
use crate::runtime::fake::FakeRuntime;
use crate::runtime::ExecOutput;

fn local() -> Target {
    Target {
        container_id: "c1".into(),
        pod_ip: Ipv4Addr::LOCALHOST,
    }
}

fn exec(command: &[&str]) -> LifecycleHandler {
    LifecycleHandler {
        exec: Some(ExecAction {
            command: Some(command.iter().map(|c| c.to_string()).collect()),
        }),
        ..Default::default()
    }
}

fn http_get(port: u16, path: &str) -> LifecycleHandler {
    LifecycleHandler {
        http_get: Some(HTTPGetAction {
            port: IntOrString::Int(port.into()),
            path: Some(path.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn sleep(seconds: i64) -> LifecycleHandler {
    LifecycleHandler {
        sleep: Some(SleepAction { seconds }),
        ..Default::default()
    }
}

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn exec_hooks_fail_on_a_non_zero_exit_with_the_output() {
    let rt = FakeRuntime::new();
    running(&rt, &rt, "c1").await;
    rt.set_exec_result(
        "c1",
        &["sh", "-c", "exit 3"],
        ExecOutput {
            exit_code: 3,
            output: b"oops".to_vec(),
        },
    );
    assert_eq!(
        run_hook(&rt, &local(), &exec(&["true"]), &[], MINUTE).await,
        Ok(())
    );
    assert_eq!(
        run_hook(&rt, &local(), &exec(&["sh", "-c", "exit 3"]), &[], MINUTE).await,
        Err("command 'sh -c exit 3' exited with 3: oops".into())
    );
}

#[tokio::test]
async fn http_hooks_ignore_the_status_and_fail_without_a_response() {
    let server = http_server(|_| (500, None)).await;
    let rt = FakeRuntime::new();
    assert_eq!(
        run_hook(&rt, &local(), &http_get(server.port, "/stop"), &[], MINUTE).await,
        Ok(()),
        "the kubelet does not look at a hook's status code"
    );
    let seen = server.seen();
    assert_eq!(seen[0].path, "/stop");
    assert_eq!(seen[0].headers["user-agent"], "kube-lifecycle/1.33");

    drop(server);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    assert_eq!(
        run_hook(&rt, &local(), &http_get(port, "/stop"), &[], MINUTE).await,
        Err(format!(
            "Get \"http://127.0.0.1:{port}/stop\": dial tcp 127.0.0.1:{port}: connect: connection refused"
        ))
    );
}

#[tokio::test(start_paused = true)]
async fn sleep_hooks_sleep_and_fail_when_the_time_runs_out() {
    let rt = FakeRuntime::new();
    let start = tokio::time::Instant::now();
    assert_eq!(
        run_hook(&rt, &local(), &sleep(5), &[], MINUTE).await,
        Ok(())
    );
    assert_eq!(start.elapsed(), Duration::from_secs(5));

    let start = tokio::time::Instant::now();
    assert_eq!(
        run_hook(&rt, &local(), &sleep(50), &[], Duration::from_secs(10)).await,
        Err("container terminated before sleep hook finished".into())
    );
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(10),
        "cut short at the timeout"
    );
}

#[tokio::test]
async fn tcp_socket_is_not_a_lifecycle_handler() {
    let handler = LifecycleHandler {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(80),
            host: None,
        }),
        ..Default::default()
    };
    let got = run_hook(&FakeRuntime::new(), &local(), &handler, &[], MINUTE).await;
    assert_eq!(
        got,
        Err("invalid handler: tcpSocket is not supported as a lifecycle handler".into())
    );
}
