//! Pod I/O through the API server and the node API: what `kubectl logs`, `exec`,
//! `attach`, `port-forward` and `get --raw .../nodes/<node>/proxy/...` reach.

use crate::{at, common, pod_yaml as pod, Node, BUSYBOX, TESTSERVER};

/// The status line's code of a GET of `path` on the node API at `port` on loopback, with
/// the client certificate `cert` (PEM cert and key), or none.
fn node_api_status(data_dir: &std::path::Path, port: u16, cert: Option<(&str, &str)>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = apiserver::pki::ensure(data_dir, &[]).unwrap();
    let config = match cert {
        Some((c, k)) => apiserver::tls::client_config(&pki, c, k).unwrap(),
        None => apiserver::tls::anonymous_client_config(&pki).unwrap(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        // The agent's certificate must verify against the cluster CA for 127.0.0.1.
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .expect("the node API's certificate is the cluster CA's, for the node's IP");
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        tls.read_to_end(&mut response).await.unwrap();
        let text = String::from_utf8_lossy(&response);
        text.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0)
    })
}

#[test]
fn the_node_api_lets_in_only_the_api_server() {
    let node = Node::start(&[]);
    let healthz = node.run(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{}/proxy/healthz", node.name),
    ]);
    assert_eq!(healthz, "ok", "the API server reaches the node API");
    let port: u16 = node
        .run(&[
            "get",
            "node",
            &node.name,
            "-o",
            "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}",
        ])
        .parse()
        .expect("the node reports its node API port");
    let data = node.dir.path().join("data");
    let pki = apiserver::pki::ensure(&data, &[]).unwrap();
    let (alice_cert, alice_key) = pki.issue_client_cert("alice", &["developers"]).unwrap();
    let cases = [
        ("no client certificate", None, 401),
        (
            "another user's certificate",
            Some((alice_cert.as_str(), alice_key.as_str())),
            403,
        ),
        (
            "the API server's certificate",
            Some((
                pki.kubelet_client_cert_pem.as_str(),
                pki.kubelet_client_key_pem.as_str(),
            )),
            200,
        ),
    ];
    for (name, cert, want) in cases {
        assert_eq!(node_api_status(&data, port, cert), want, "{name}");
    }
}

/// Waits until the pod's first container is running (restartCount at least `restarts`).
pub(crate) fn running(node: &Node, pod: &str, restarts: u32) {
    node.eventually(
        &format!("{pod} running after {restarts} restart(s)"),
        || {
            let p = node.pod(pod);
            let ok = !at(&p, "/status/containerStatuses/0/state/running/startedAt").is_empty()
                && at(&p, "/status/containerStatuses/0/restartCount")
                    .parse::<u32>()
                    .is_ok_and(|r| r >= restarts);
            ok.then_some(()).ok_or(p.to_string())
        },
    );
}

#[test]
fn kubectl_logs_follows_tails_stamps_and_shows_the_previous_container() {
    let node = Node::start(&[]);
    // Each run prints its restart-independent lines, stderr first, then waits to be killed
    // by its own exit so the next run starts (restartPolicy Always, a 2 s back-off here).
    node.apply(
        "chatty.yaml",
        &pod(
            "chatty",
            "Always",
            &format!("  containers:\n  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'echo to-stderr >&2; sleep 0.3; echo one; echo two; echo three; sleep 3; exit 1']\n"),
        ),
    );
    running(&node, "chatty", 1);
    node.eventually("the current run's lines in its log", || {
        let out = node.kubectl.output(&["logs", "chatty"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text == "to-stderr\none\ntwo\nthree\n")
            .then_some(())
            .ok_or(format!("{text:?} {}", String::from_utf8_lossy(&out.stderr)))
    });
    assert_eq!(node.run(&["logs", "chatty", "--tail=2"]), "two\nthree\n");
    assert_eq!(node.run(&["logs", "chatty", "--limit-bytes=6"]), "to-std");
    let stamped = node.run(&["logs", "chatty", "--timestamps"]);
    for line in stamped.lines() {
        let (time, text) = line
            .split_once(' ')
            .expect("a timestamp, a space, the line");
        assert!(
            time.len() > 20 && time.ends_with('Z') && time.contains('T'),
            "RFC 3339 time with nanoseconds in {line:?}"
        );
        assert!(
            ["to-stderr", "one", "two", "three"].contains(&text),
            "{line:?}"
        );
    }
    assert_eq!(
        node.run(&["logs", "chatty", "--previous"]),
        "to-stderr\none\ntwo\nthree\n",
        "the run before the restart keeps its log"
    );
    // `logs -f` ends when the container does, with every line.
    node.apply(
        "counter.yaml",
        &pod(
            "counter",
            "Never",
            &format!("  containers:\n  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'sleep 2; for i in 1 2 3 4 5; do echo line$i; sleep 0.2; done']\n"),
        ),
    );
    running(&node, "counter", 0);
    assert_eq!(
        node.run(&["logs", "-f", "counter"]),
        "line1\nline2\nline3\nline4\nline5\n"
    );
    let missing = node.kubectl.output(&["logs", "counter", "--previous"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("previous terminated container \"main\" in pod \"counter\" not found"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

fn sleeper(node: &Node, name: &str) {
    node.apply(
        &format!("{name}.yaml"),
        &pod(
            name,
            "Always",
            &format!("  containers:\n  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '3600']\n"),
        ),
    );
    running(node, name, 0);
}

#[test]
fn kubectl_exec_reports_exit_codes_passes_stdin_and_carries_cp_both_ways() {
    let node = Node::start(&[]);
    sleeper(&node, "shell");
    assert_eq!(
        node.run(&["exec", "shell", "--", "echo", "hello"]),
        "hello\n"
    );
    let failed = node
        .kubectl
        .output(&["exec", "shell", "--", "sh", "-c", "echo oops >&2; exit 7"]);
    assert_eq!(
        failed.status.code(),
        Some(7),
        "the command's exit code is kubectl's"
    );
    assert_eq!(
        String::from_utf8_lossy(&failed.stderr).lines().next(),
        Some("oops")
    );
    let mut cat = node
        .kubectl
        .command()
        .args(["exec", "-i", "shell", "--", "sh", "-c", "tr a-z A-Z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = cat.stdin.take().unwrap();
        stdin.write_all(b"through stdin\n").unwrap();
    }
    let out = cat.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "THROUGH STDIN\n");
    // kubectl cp is tar through exec, both ways.
    let local = node.dir.path().join("payload.bin");
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&local, &payload).unwrap();
    node.run(&["cp", local.to_str().unwrap(), "shell:/tmp/payload.bin"]);
    assert_eq!(
        node.run(&["exec", "shell", "--", "wc", "-c", "/tmp/payload.bin"])
            .split_whitespace()
            .next(),
        Some("200000")
    );
    let back = node.dir.path().join("back.bin");
    node.run(&["cp", "shell:/tmp/payload.bin", back.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&back).unwrap(),
        payload,
        "the file came back intact"
    );
}

/// `kubectl port-forward` to a pod's `port`: the local port and the process guard.
fn port_forward(node: &Node, pod: &str, port: u16, websockets: bool) -> (u16, common::ChildGuard) {
    let mut cmd = node.kubectl.command();
    cmd.args([
        "port-forward",
        pod,
        &format!(":{port}"),
        "--address",
        "127.0.0.1",
    ])
    .env(
        "KUBECTL_PORT_FORWARD_WEBSOCKETS",
        if websockets { "true" } else { "false" },
    );
    // "Forwarding from 127.0.0.1:PORT -> 8080"
    serving_kubectl(cmd, "kubectl port-forward")
}

/// Starts a kubectl that serves on a loopback port it picks (`port-forward`, `proxy`)
/// and says so in its first line ("... 127.0.0.1:PORT ..."): that port and the process
/// guard. Its stdout is drained for its whole life: a kubectl whose pipe is gone dies
/// of SIGPIPE at its next line.
pub(crate) fn serving_kubectl(
    mut cmd: std::process::Command,
    what: &str,
) -> (u16, common::ChildGuard) {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = common::ChildGuard(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        for _ in lines {}
    });
    let first = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} says where it listens"));
    let port = first
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{what} said {first:?}"));
    (port, guard)
}

/// One HTTP/1.0 GET to 127.0.0.1:`port`; the body.
pub(crate) fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))?;
    // kubectl proxy serves only Host: localhost or 127.0.0.1 (its --accept-hosts).
    write!(conn, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    conn.read_to_string(&mut response)?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP response: {response:?}")))
}

#[test]
fn kubectl_port_forward_reaches_the_pod_over_both_protocols_and_moves_data_intact() {
    let node = Node::start(&[]);
    node.apply(
        "web.yaml",
        &pod(
            "web",
            "Always",
            &format!("  containers:\n  - name: main\n    image: {TESTSERVER}\n    imagePullPolicy: IfNotPresent\n"),
        ),
    );
    node.apply(
        "echo.yaml",
        &pod(
            "echo",
            "Always",
            &format!("  containers:\n  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: IfNotPresent\n    command: [nc, -ll, -p, '9000', -e, cat]\n"),
        ),
    );
    running(&node, "web", 0);
    running(&node, "echo", 0);
    // Forward only once the server answers inside the pod: a forward to a port nobody
    // listens on ends kubectl port-forward.
    node.eventually("the test server answering in its pod", || {
        let out = node.kubectl.output(&[
            "exec",
            "web",
            "--",
            "wget",
            "-qO-",
            "http://127.0.0.1:8080/hostname",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text == "web").then_some(()).ok_or(text)
    });
    // SPDY tunnelled in WebSocket (kubectl's default), then plain SPDY.
    for websockets in [true, false] {
        let (port, _kubectl) = port_forward(&node, "pod/web", 8080, websockets);
        for attempt in 0..2 {
            assert_eq!(
                http_get(port, "/hostname").unwrap(),
                "web",
                "the pod's own hostname (websockets: {websockets}, connection {attempt})"
            );
        }
    }
    // 100 MiB through an echo in the pod and back, byte for byte.
    let (port, _kubectl) = port_forward(&node, "pod/echo", 9000, true);
    let payload: Vec<u8> = (0..100u32 * 1024 * 1024)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut writer = conn.try_clone().unwrap();
    let sent = payload.clone();
    let writing = std::thread::spawn(move || std::io::Write::write_all(&mut writer, &sent));
    let mut back = vec![0u8; payload.len()];
    std::io::Read::read_exact(&mut &conn, &mut back).unwrap();
    writing.join().unwrap().unwrap();
    assert!(
        back == payload,
        "the bytes echoed through the forward differ"
    );
}

#[test]
fn kubectl_run_attaches_to_a_new_pods_output_and_removes_it() {
    let node = Node::start(&[]);
    // `kubectl run -i --rm`: attach to a new pod's output, then delete it.
    let out = node.run(&[
        "run",
        "once",
        "-i",
        "--rm",
        "--restart=Never",
        &format!("--image={BUSYBOX}"),
        "--image-pull-policy=IfNotPresent",
        "--",
        "sh",
        "-c",
        "sleep 2; echo attached-output",
    ]);
    assert!(out.contains("attached-output"), "{out:?}");
    node.eventually("the --rm pod gone", || {
        let out = node.kubectl.output(&["get", "pod", "once"]);
        (!out.status.success())
            .then_some(())
            .ok_or("still there".to_string())
    });
}

#[test]
fn kube_rs_exec_and_portforward_work_through_the_api_server() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, AttachParams};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = Node::start(&[]);
    sleeper(&node, "shell");
    node.apply(
        "web.yaml",
        &pod(
            "web",
            "Always",
            &format!("  containers:\n  - name: main\n    image: {TESTSERVER}\n    imagePullPolicy: IfNotPresent\n"),
        ),
    );
    running(&node, "web", 0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = common::client_from_kubeconfig(&node.kubectl.kubeconfig).await;
        let pods: Api<Pod> = Api::namespaced(client, "default");
        // exec: stdin in, stdout out, the exit status on the error channel.
        let mut attached = pods
            .exec(
                "shell",
                ["sh", "-c", "read line; echo got:$line; exit 3"],
                &AttachParams::default()
                    .stdin(true)
                    .stdout(true)
                    .stderr(false),
            )
            .await
            .unwrap();
        let mut stdin = attached.stdin().unwrap();
        stdin.write_all(b"hello\n").await.unwrap();
        let mut out = String::new();
        attached
            .stdout()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        assert_eq!(out, "got:hello\n");
        let status = attached.take_status().unwrap().await.unwrap();
        assert_eq!(
            status.reason.as_deref(),
            Some("NonZeroExitCode"),
            "{status:?}"
        );
        let code = status
            .details
            .and_then(|d| d.causes)
            .and_then(|c| {
                c.into_iter()
                    .find(|c| c.reason.as_deref() == Some("ExitCode"))
            })
            .and_then(|c| c.message);
        assert_eq!(code.as_deref(), Some("3"));
        // port-forward (the WebSocket port-forward protocol): an HTTP exchange with the
        // test server inside the pod.
        let mut answer = String::new();
        for _ in 0..50 {
            let mut forwarder = pods.portforward("web", &[8080]).await.unwrap();
            let mut conn = forwarder.take_stream(8080).unwrap();
            conn.write_all(b"GET /hostname HTTP/1.0\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            answer.clear();
            let _ = conn.read_to_string(&mut answer).await;
            drop(conn);
            let _ = forwarder.join().await;
            if answer.contains("\r\n\r\n") {
                break;
            }
            // The server may still be binding its port.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert!(answer.ends_with("\r\n\r\nweb"), "{answer:?}");
    });
}

#[test]
fn kubectl_attach_passes_stdin_to_a_running_container_and_shows_its_output() {
    let node = Node::start(&[]);
    node.apply(
        "reader.yaml",
        &pod(
            "reader",
            "Never",
            &format!("  containers:\n  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: IfNotPresent\n    stdin: true\n    stdinOnce: true\n    command: [sh, -c, 'while read line; do echo got:$line; done; echo stdin-closed']\n"),
        ),
    );
    running(&node, "reader", 0);
    let mut attach = node
        .kubectl
        .command()
        .args(["attach", "-i", "reader"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = attach.stdin.take().unwrap();
        stdin.write_all(b"one\ntwo\n").unwrap();
        // Dropped: the client's stdin ends, and with stdinOnce so does the container's.
    }
    let out = attach.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "got:one\ngot:two\nstdin-closed\n"
    );
    node.eventually("the container done once its stdin closed", || {
        let p = node.pod("reader");
        (at(&p, "/status/phase") == "Succeeded")
            .then_some(())
            .ok_or(at(&p, "/status"))
    });
}
