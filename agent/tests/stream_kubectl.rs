//! `agent::stream` against the real kubectl, in each protocol it speaks: exec over WebSocket
//! v5 (its default) and over SPDY (`KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`), port-forward
//! over SPDY tunnelled in WebSocket (its default) and over plain SPDY
//! (`KUBECTL_PORT_FORWARD_WEBSOCKETS=false`).

#[path = "stream/server.rs"]
mod server;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};

use kybern_testkit::{ChildGuard, Kubectl};
use server::{echo_through, pattern, Server, ECHO_PORT};

/// kubectl against the test server, with its own (empty) kubeconfig and cache, and the
/// protocol switches of one case.
fn kubectl(server: &Server, dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(Kubectl::binary());
    cmd.env("KUBECONFIG", dir.join("no-kubeconfig"))
        .envs(env.iter().copied())
        .args(["--server", &server.url(), "--cache-dir"])
        .arg(dir.join("cache"))
        .args(["-n", "default"])
        .args(args);
    cmd
}

async fn run(mut cmd: Command, stdin: &'static [u8]) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl (is it installed?)");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin).unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

const WEBSOCKET: &[(&str, &str)] = &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "true")];
const SPDY: &[(&str, &str)] = &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_reports_output_and_exit_codes_over_websocket_and_spdy() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    for (name, env) in [("websocket v5", WEBSOCKET), ("spdy", SPDY)] {
        let ok = run(
            kubectl(
                &server,
                dir.path(),
                env,
                &["exec", "web", "--", "exit", "0"],
            ),
            b"",
        )
        .await;
        let stderr = String::from_utf8_lossy(&ok.stderr);
        assert!(ok.status.success(), "{name}: {stderr}");
        assert_eq!(String::from_utf8_lossy(&ok.stdout), "out\n", "{name}");
        // Only the command's stderr: no complaint from kubectl about how the session ended.
        assert_eq!(stderr, "err\n", "{name}");

        let failed = run(
            kubectl(
                &server,
                dir.path(),
                env,
                &["exec", "web", "--", "exit", "3"],
            ),
            b"",
        )
        .await;
        let stderr = String::from_utf8_lossy(&failed.stderr);
        assert_eq!(failed.status.code(), Some(3), "{name}: {stderr}");
        assert!(
            stderr.contains("command terminated with exit code 3"),
            "{name}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_passes_stdin_through_over_websocket_and_spdy() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    for (name, env) in [("websocket v5", WEBSOCKET), ("spdy", SPDY)] {
        let cmd = kubectl(
            &server,
            dir.path(),
            env,
            &["exec", "-i", "web", "--", "cat"],
        );
        let out = run(cmd, b"typed into kubectl\n").await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "typed into kubectl\n",
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_port_forward_moves_a_few_mebibytes_intact_over_both_protocols() {
    let cases: [(&str, &[(&str, &str)]); 2] = [
        (
            "spdy in websocket",
            &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "true")],
        ),
        (
            "plain spdy",
            &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")],
        ),
    ];
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    for (name, env) in cases {
        let remote = format!(":{ECHO_PORT}");
        let mut cmd = kubectl(
            &server,
            dir.path(),
            env,
            &["port-forward", "--address", "127.0.0.1", "pod/web", &remote],
        );
        let mut child = ChildGuard(
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        // "Forwarding from 127.0.0.1:41234 -> 7000"
        let local = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let line = lines
                .next()
                .expect("kubectl prints where it listens")
                .unwrap();
            // kubectl goes on printing ("Handling connection for ..."): keep reading, or it
            // dies of SIGPIPE. The thread ends when kubectl does.
            std::thread::spawn(move || lines.for_each(drop));
            let addr = line
                .split_whitespace()
                .nth(2)
                .unwrap_or_default()
                .to_string();
            addr.parse::<std::net::SocketAddr>()
                .unwrap_or_else(|e| panic!("{line:?}: {e}"))
        })
        .await
        .unwrap();
        for round in 0..2 {
            let conn = tokio::net::TcpStream::connect(local).await.unwrap();
            let data = pattern(3 << 20);
            let back = echo_through(conn, &data).await;
            assert!(
                back == data,
                "{name}, connection {round}: the echoed bytes differ"
            );
        }
        drop(child);
    }
}

/// `cmd` as one shell line, each word single-quoted.
fn shell_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|w| format!("'{}'", w.to_string_lossy().replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_with_a_tty_sends_its_terminal_size_over_websocket_and_spdy() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    for (name, env) in [("websocket v5", WEBSOCKET), ("spdy", SPDY)] {
        let exec = kubectl(
            &server,
            dir.path(),
            env,
            &["exec", "-it", "web", "--", "size"],
        );
        // kubectl only uses a TTY on a terminal: `script` gives it one, 30 rows by 100.
        let line = format!("stty rows 30 cols 100; {}", shell_line(&exec));
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"]);
        for (key, value) in exec.get_envs() {
            if let Some(value) = value {
                cmd.env(key, value);
            }
        }
        let out = run(cmd, b"").await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {stdout}");
        assert!(stdout.contains("100x30"), "{name}: {stdout:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_kubectl_mid_exec_ends_the_command_over_websocket_and_spdy() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    for (name, env) in [("websocket v5", WEBSOCKET), ("spdy", SPDY)] {
        let mut cmd = kubectl(&server, dir.path(), env, &["exec", "web", "--", "wait"]);
        let kubectl = ChildGuard(
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        running(name, 1).await;
        drop(kubectl);
        running(name, 0).await;
    }
}

async fn running(name: &str, want: usize) {
    kybern_testkit::eventually(&format!("{name}: {want} running commands"), || async {
        let now = server::WAITING.load(std::sync::atomic::Ordering::SeqCst);
        (now == want).then_some(()).ok_or(format!("{now} running"))
    })
    .await;
}
