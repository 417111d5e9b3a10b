//! The runtime side of exec and port-forward against a real, private containerd with runc
//! (root only): an interactive exec in a busybox container reads the client's stdin, streams
//! stdout and stderr and returns the exit code; with a TTY it gets the terminal size the
//! client sends; and `dial_in_netns` reaches a server on 127.0.0.1 inside a network
//! namespace the test made, which the host's loopback does not reach.

// Shared with the other containerd tests; this one does not use every helper.
#[allow(dead_code)]
mod runtime_env;

use std::time::Duration;

use agent::runtime::{ContainerConfig, Runtime};
use agent::stream::{ExecIo, TerminalSize};
use kybern_testkit::ChildGuard;
use runtime_env::{eventually, Env};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const GENEROUS: Duration = Duration::from_secs(60);

fn args(argv: &[&str]) -> Vec<String> {
    argv.iter().map(|a| a.to_string()).collect()
}

async fn sleeper(env: &Env, id: &str) {
    let image = env.import_busybox().await;
    let config = ContainerConfig {
        id: id.into(),
        image,
        args: args(&["sleep", "1000"]),
        env: vec!["PATH=/bin".into()],
        cgroup_path: format!("{}/{id}", env.cgroup_parent),
        ..Default::default()
    };
    env.rt.create_container(&config).await.unwrap();
    env.rt.start(id).await.unwrap();
}

/// The client's ends of an exec's streams.
struct Client {
    stdin: DuplexStream,
    stdout: DuplexStream,
    stderr: Option<DuplexStream>,
    resize: Option<tokio::sync::mpsc::Sender<TerminalSize>>,
}

fn streams(tty: bool) -> (ExecIo, Client) {
    let (stdin, stdin_theirs) = tokio::io::duplex(64 * 1024);
    let (stdout, stdout_theirs) = tokio::io::duplex(64 * 1024);
    let (stderr, stderr_theirs) = (!tty).then(|| tokio::io::duplex(64 * 1024)).unzip();
    let (resize, resize_rx) = tty.then(|| tokio::sync::mpsc::channel(4)).unzip();
    let io = ExecIo {
        stdin: Some(stdin_theirs),
        stdout: Some(stdout_theirs),
        stderr: stderr_theirs,
        resize: resize_rx,
        tty,
        command: Vec::new(),
    };
    let client = Client {
        stdin,
        stdout,
        stderr,
        resize,
    };
    (io, client)
}

async fn read_all(mut r: DuplexStream) -> String {
    let mut s = String::new();
    r.read_to_string(&mut s).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interactive_exec_reads_stdin_streams_output_and_returns_the_exit_code() {
    let env = Env::start().await;
    sleeper(&env, "interactive").await;
    let (io, mut client) = streams(false);
    let command = args(&[
        "sh",
        "-c",
        "read line; echo \"got $line\"; echo oops >&2; exit 7",
    ]);
    let exec = env.rt.exec_interactive("interactive", &command, io);
    let feed = async {
        client.stdin.write_all(b"hello\n").await.unwrap();
        client.stdin.shutdown().await.unwrap();
    };
    let stderr = client.stderr.take().unwrap();
    let (code, (), stdout, stderr) = tokio::time::timeout(GENEROUS, async {
        tokio::join!(exec, feed, read_all(client.stdout), read_all(stderr))
    })
    .await
    .expect("the exec finishes");
    assert_eq!(code.unwrap(), 7);
    assert_eq!(stdout, "got hello\n");
    assert_eq!(stderr, "oops\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interactive_exec_with_a_tty_gets_the_clients_terminal_size() {
    let env = Env::start().await;
    sleeper(&env, "tty").await;
    let (io, client) = streams(true);
    // Polls until the size arrives: ResizePty lands after the process starts.
    let command = args(&[
        "sh",
        "-c",
        "while [ \"$(stty size)\" != \"30 100\" ]; do sleep 0.1; done; echo sized",
    ]);
    let exec = env.rt.exec_interactive("tty", &command, io);
    let resize = client.resize.clone().unwrap();
    resize
        .send(TerminalSize {
            width: 100,
            height: 30,
        })
        .await
        .unwrap();
    let mut stdin = client.stdin;
    let (code, stdout) = tokio::time::timeout(GENEROUS, async {
        let (code, stdout) = tokio::join!(exec, read_all(client.stdout));
        stdin.shutdown().await.ok();
        (code, stdout)
    })
    .await
    .expect("the exec finishes");
    assert_eq!(code.unwrap(), 0);
    // A terminal turns "\n" into "\r\n".
    assert!(stdout.contains("sized\r\n"), "{stdout:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_in_netns_reaches_loopback_inside_the_namespace_only() {
    let mut env = Env::start().await;
    let (_, server) = env.import_testserver().await;
    let netns = env.netns();
    let _server = ChildGuard(
        std::process::Command::new("ip")
            .args(["netns", "exec", &netns])
            .arg(&server)
            .env("PORT", "18080")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let path = std::path::PathBuf::from(format!("/var/run/netns/{netns}"));
    let mut conn = eventually(
        "the server in the namespace listening",
        GENEROUS,
        || async { agent::network::dial_in_netns(&path, 18080).await.ok() },
    )
    .await;
    conn.write_all(b"GET /echo?msg=inside HTTP/1.1\r\nHost: pod\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(answer.ends_with("inside"), "{answer}");

    let refused = agent::network::dial_in_netns(&path, 18081)
        .await
        .unwrap_err();
    assert_eq!(
        refused.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "{refused}"
    );
    assert!(
        tokio::net::TcpStream::connect("127.0.0.1:18080")
            .await
            .is_err(),
        "the host's loopback is another namespace's"
    );
}
