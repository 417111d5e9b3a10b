//! The containerd runtime against a real, private containerd with runc (root only): images
//! packed by agent::images are imported and unpacked, containers run, exit codes, output
//! and signals come back, a container joins a network namespace the test made, and delete
//! leaves no container or mount behind. Container output goes through the agent's FIFOs
//! into CRI logs: both streams, across restarts and an agent restart, stdin and a tty.

mod runtime_env;

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;

use agent::logs::{ContainerIo, LogOptions};
use agent::runtime::containerd::Containerd;
use agent::runtime::daemon::ContainerdDaemon;
use agent::runtime::spec::{merge_env, resolve_args};
use agent::runtime::{ContainerConfig, Resources, Runtime};
use runtime_env::{eventually, get_in_netns, Env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busybox_command_exits_with_its_code_and_its_output_reaches_the_log() {
    let env = Env::start().await;
    let image = env.import_busybox().await;
    // The import's lease is gone; only the GC labels keep blobs and snapshots now.
    env.rt.collect_garbage().await.unwrap();
    let info = env
        .rt
        .image(&image)
        .await
        .unwrap()
        .expect("imported image is listed");
    assert_eq!(
        info.config.cmd,
        vec!["sh"],
        "image config survives the import"
    );

    let log = pod_log(&env, "echo-exit", 0);
    let config = ContainerConfig {
        id: "echo-exit".into(),
        image: image.clone(),
        args: vec![
            "sh".into(),
            "-c".into(),
            "echo hello; echo oops >&2; exit 3".into(),
        ],
        env: info.config.env.clone(),
        cgroup_path: format!("{}/echo-exit", env.cgroup_parent),
        log_path: Some(log.clone()),
        ..Default::default()
    };
    env.rt.create_container(&config).await.unwrap();
    assert!(
        env.rt.start("echo-exit").await.unwrap() > 0,
        "a started task has a pid"
    );
    let status = tokio::time::timeout(Duration::from_secs(20), env.rt.wait("echo-exit"))
        .await
        .expect("exits")
        .unwrap();
    assert_eq!(status.code, 3);
    assert!(status.exited_at.is_some());
    // A follow ends when the shim has closed both streams, so the log is complete then.
    // The two streams are copied apart, so their order in the log is not the writes' order.
    assert_eq!(
        sorted_lines(&read_log(&env, "echo-exit", follow()).await),
        ["hello", "oops"]
    );
    assert_eq!(
        sorted(cri_records(&log)),
        [
            ("stderr".to_string(), "oops".to_string()),
            ("stdout".to_string(), "hello".to_string())
        ],
        "both streams reach the log as CRI records"
    );

    env.rt.delete("echo-exit").await.unwrap();
    assert_eq!(ids(&env.rt).await, Vec::<String>::new());
    let leftover: Vec<String> = env
        .mounts_under_data_dir()
        .into_iter()
        .filter(|m| m.contains("echo-exit"))
        .collect();
    assert!(
        leftover.is_empty(),
        "the container's rootfs is unmounted after delete: {leftover:?}"
    );
    // Deleting again finds nothing and is not an error, so an interrupted delete can finish.
    env.rt.delete("echo-exit").await.unwrap();

    // With the container gone and garbage collected, the image still runs containers.
    env.rt.collect_garbage().await.unwrap();
    let again = ContainerConfig {
        id: "again".into(),
        args: vec!["true".into()],
        ..config
    };
    env.rt.create_container(&again).await.unwrap();
    env.rt.start("again").await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), env.rt.wait("again"))
        .await
        .expect("exits")
        .unwrap();
    assert_eq!(status.code, 0);
    env.rt.delete("again").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_ends_a_running_container_and_reports_the_signal() {
    let env = Env::start().await;
    let image = env.import_busybox().await;
    // Importing the same image twice is harmless (it finds blobs and snapshots present).
    assert_eq!(env.import_busybox().await, image);
    let config = ContainerConfig {
        id: "sleeper".into(),
        image: image.clone(),
        args: vec!["sleep".into(), "1000".into()],
        env: vec!["PATH=/bin".into()],
        cgroup_path: format!("{}/sleeper", env.cgroup_parent),
        ..Default::default()
    };
    env.rt.create_container(&config).await.unwrap();
    env.rt.start("sleeper").await.unwrap();
    // `kybern up` on a data dir whose containerd is running reuses it, containers and all.
    let (reused, started) = ContainerdDaemon::connect_or_start(&env.containerd_dir(), "kybern")
        .await
        .unwrap();
    assert!(started.is_none(), "no second containerd is started");
    assert_eq!(ids(&reused).await, vec!["sleeper"]);
    // SIGKILL: as PID 1 of its namespace, sleep would ignore SIGTERM (it has no handler).
    env.rt.kill("sleeper", 9).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), env.rt.wait("sleeper"))
        .await
        .expect("exits")
        .unwrap();
    assert_eq!(status.code, 128 + 9);
    env.rt.delete("sleeper").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_whose_command_cannot_start_fails_to_create_and_delete_removes_its_parts() {
    let env = Env::start().await;
    let image = env.import_busybox().await;
    let config = ContainerConfig {
        id: "broken".into(),
        image,
        args: vec!["/no/such/binary".into()],
        cgroup_path: format!("{}/broken", env.cgroup_parent),
        ..Default::default()
    };
    let err = env
        .rt
        .create_container(&config)
        .await
        .expect_err("runc cannot exec a missing binary");
    assert!(
        err.to_string().contains("no/such/binary"),
        "the error names the command: {err}"
    );
    assert_eq!(
        ids(&env.rt).await,
        vec!["broken"],
        "the container record stays for delete"
    );
    env.rt.delete("broken").await.unwrap();
    assert_eq!(ids(&env.rt).await, Vec::<String>::new());

    let missing = ContainerConfig {
        id: "ghost".into(),
        image: "kybern.local/none:latest".into(),
        ..Default::default()
    };
    let err = env
        .rt
        .create_container(&missing)
        .await
        .expect_err("no such image");
    assert!(
        err.is_not_found(),
        "a missing image is reported as not found: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_server_in_a_test_network_namespace_answers_http_and_exits_on_request() {
    let mut env = Env::start().await;
    let (image, client) = env.import_testserver().await;
    let info = env.rt.image(&image).await.unwrap().expect("image");
    let netns = env.netns();
    let cgroup = format!("{}/web", env.cgroup_parent);
    let config = ContainerConfig {
        id: "web".into(),
        image,
        args: resolve_args(&info.config, &[], &[]),
        env: merge_env(&info.config.env, &["READY=true".into()]),
        hostname: Some("web-0".into()),
        netns_path: Some(format!("/var/run/netns/{netns}").into()),
        cgroup_path: cgroup.clone(),
        resources: Resources {
            memory_limit_bytes: Some(64 << 20),
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
        },
        log_path: Some(env.log_path("web")),
        ..Default::default()
    };
    env.rt.create_container(&config).await.unwrap();
    env.rt.start("web").await.unwrap();

    let hostname = eventually(
        "the server answering /hostname",
        Duration::from_secs(20),
        || async {
            let (ok, body) = get_in_netns(&netns, &client, "127.0.0.1:8080", "/hostname").await;
            ok.then_some(body)
        },
    )
    .await;
    assert_eq!(
        hostname, "web-0",
        "the container has the hostname from its config"
    );

    let limit = memory_limit(&cgroup);
    assert_eq!(
        limit,
        Some(64 << 20),
        "the memory limit is applied to the container's cgroup"
    );
    // cgroup v2 writes cpu as `cpu.max` ("50000 100000") and a weight instead of shares.
    let cpu = cgroup_file(&cgroup, "cpu", "cpu.cfs_quota_us").zip(cgroup_file(
        &cgroup,
        "cpu",
        "cpu.shares",
    ));
    let cpu = cpu.or_else(|| cgroup_file(&cgroup, "", "cpu.max").map(|max| (max, String::new())));
    let (quota, shares) = cpu.expect("the container's cpu cgroup files");
    assert!(quota.starts_with("50000"), "cpu quota applied: {quota}");
    assert!(
        shares.is_empty() || shares == "512",
        "cpu shares applied: {shares}"
    );

    let (ok, _) = get_in_netns(&netns, &client, "127.0.0.1:8080", "/ready/toggle").await;
    assert!(ok);
    let (ready, body) = get_in_netns(&netns, &client, "127.0.0.1:8080", "/ready").await;
    assert!(
        !ready,
        "after the toggle /ready answers 503, got body {body:?}"
    );

    let (ok, _) = get_in_netns(&netns, &client, "127.0.0.1:8080", "/exit?code=5").await;
    assert!(ok, "/exit answers before exiting");
    let status = tokio::time::timeout(Duration::from_secs(20), env.rt.wait("web"))
        .await
        .expect("exits")
        .unwrap();
    assert_eq!(status.code, 5);
    env.rt.delete("web").await.unwrap();
}

/// The memory limit of a cgroup, from cgroup v1's memory hierarchy or v2's unified one.
fn memory_limit(cgroup: &str) -> Option<i64> {
    let rel = cgroup.trim_start_matches('/');
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory")
        .join(rel)
        .join("memory.limit_in_bytes");
    let v2 = std::path::Path::new("/sys/fs/cgroup")
        .join(rel)
        .join("memory.max");
    std::fs::read_to_string(v1)
        .or_else(|_| std::fs::read_to_string(v2))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A cgroup file of `cgroup` in v1 `controller`'s hierarchy (or the unified one for "").
fn cgroup_file(cgroup: &str, controller: &str, file: &str) -> Option<String> {
    let path = std::path::Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(cgroup.trim_start_matches('/'))
        .join(file);
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The IDs of the containers `rt` holds.
async fn ids(rt: &impl Runtime) -> Vec<String> {
    let all = rt.list_containers().await.unwrap();
    all.into_iter().map(|c| c.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_previous_instances_log_is_kept_beside_the_current_one() {
    let env = Env::start().await;
    let image = env.import_busybox().await;
    for attempt in 0..2 {
        let id = format!("app-{attempt}");
        run_to_exit(&env, &image, &id, attempt, &format!("echo run {attempt}")).await;
    }
    assert_eq!(
        read_log(&env, "app", LogOptions::default()).await,
        "run 1\n"
    );
    let previous = LogOptions {
        previous: true,
        ..Default::default()
    };
    assert_eq!(read_log(&env, "app", previous).await, "run 0\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_written_while_the_agent_is_down_reaches_the_log_after_it_reopens_the_fifos() {
    let env = Env::start().await;
    let image = env.import_busybox().await;
    let config = ContainerConfig {
        id: "counter".into(),
        image,
        args: vec![
            "sh".into(),
            "-c".into(),
            "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.02; done".into(),
        ],
        env: vec!["PATH=/bin".into()],
        cgroup_path: format!("{}/counter", env.cgroup_parent),
        log_path: Some(pod_log(&env, "counter", 0)),
        ..Default::default()
    };
    // The first agent: its own runtime, containerd connection and ContainerIo, all dropped
    // as a killed agent's are once the container has written a few lines.
    let socket = env.containerd_dir().join("containerd.sock");
    let io_config = env.rt.io().config().clone();
    let first_config = config.clone();
    std::thread::spawn(move || {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        tokio.block_on(async {
            let rt = Containerd::connect(&socket, "kybern")
                .await
                .expect("connect")
                .with_io(ContainerIo::new(io_config));
            rt.create_container(&first_config).await.unwrap();
            rt.start("counter").await.unwrap();
            let mut log = rt
                .io()
                .open_log("ns", "pod", "uid", "counter", &follow())
                .unwrap();
            let mut seen = String::new();
            while !seen.contains("line 5\n") {
                let chunk = log.next().await.expect("the log goes on").unwrap();
                seen.push_str(&String::from_utf8_lossy(&chunk));
            }
        });
    })
    .join()
    .expect("the first agent ran");

    // The restarted agent (env.rt's ContainerIo has copied nothing yet) reopens the FIFOs.
    assert_eq!(env.rt.io().recover().unwrap(), 1);
    let mut log = env
        .rt
        .io()
        .open_log("ns", "pod", "uid", "counter", &follow())
        .unwrap();
    let mut seen = String::new();
    while !seen.contains("line 100\n") {
        let chunk = log.next().await.expect("the log goes on").unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    env.rt.kill("counter", 9).await.unwrap();
    while let Some(chunk) = log.next().await {
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    let numbers: Vec<u32> = seen
        .lines()
        .map(|l| l.trim_start_matches("line ").parse().unwrap())
        .collect();
    let expected: Vec<u32> = (0..numbers.len() as u32).collect();
    assert_eq!(
        numbers, expected,
        "no line is lost or repeated across the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_client_writes_to_stdin_and_stdin_once_closes_it_when_the_client_finishes() {
    let env = Env::start().await;
    let image = env.import_busybox().await;
    let config = ContainerConfig {
        id: "cat".into(),
        image,
        args: vec!["cat".into()],
        env: vec!["PATH=/bin".into()],
        cgroup_path: format!("{}/cat", env.cgroup_parent),
        log_path: Some(pod_log(&env, "cat", 0)),
        stdin: true,
        stdin_once: true,
        ..Default::default()
    };
    env.rt.create_container(&config).await.unwrap();
    env.rt.start("cat").await.unwrap();
    let mut attached = env.rt.io().attach("cat").expect("a running container");
    let stdin = attached.stdin.take().expect("the container has stdin");
    stdin.write(b"ping\n").await.unwrap();
    let out = attached.output.recv().await.unwrap();
    assert_eq!(
        &out.data[..],
        b"ping\n",
        "cat echoes stdin to the attached client"
    );
    stdin.finish().await;
    let status = tokio::time::timeout(Duration::from_secs(20), env.rt.wait("cat"))
        .await
        .expect("cat exits at the end of its stdin")
        .unwrap();
    assert_eq!(status.code, 0);
    assert_eq!(read_log(&env, "cat", follow()).await, "ping\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tty_container_has_a_terminal_and_all_its_output_is_stdout() {
    let env = Env::start().await;
    let image = env.import_busybox().await;
    let config = ContainerConfig {
        id: "tty".into(),
        image,
        args: vec!["sh".into(), "-c".into(), "tty; echo to-stderr >&2".into()],
        env: vec!["PATH=/bin".into()],
        cgroup_path: format!("{}/tty", env.cgroup_parent),
        log_path: Some(pod_log(&env, "tty", 0)),
        tty: true,
        ..Default::default()
    };
    env.rt.create_container(&config).await.unwrap();
    env.rt.start("tty").await.unwrap();
    let text = read_log(&env, "tty", follow()).await;
    assert!(text.contains("/dev/pts/"), "stdin is a terminal: {text:?}");
    assert!(
        text.contains("to-stderr"),
        "stderr goes to the terminal: {text:?}"
    );
    let streams: Vec<String> = cri_records(&pod_log(&env, "tty", 0))
        .into_iter()
        .map(|(stream, _)| stream)
        .collect();
    assert!(
        streams.iter().all(|s| s == "stdout"),
        "a terminal has only stdout: {streams:?}"
    );
}

/// Runs `script` in busybox as restart `attempt` of the container "app" and waits for its
/// exit.
async fn run_to_exit_unread(env: &Env, image: &str, id: &str, attempt: u32, script: &str) {
    let config = ContainerConfig {
        id: id.into(),
        image: image.into(),
        args: vec!["sh".into(), "-c".into(), script.into()],
        env: vec!["PATH=/bin".into()],
        cgroup_path: format!("{}/{id}", env.cgroup_parent),
        log_path: Some(pod_log(env, "app", attempt)),
        ..Default::default()
    };
    env.rt.create_container(&config).await.unwrap();
    env.rt.start(id).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), env.rt.wait(id))
        .await
        .expect("exits")
        .unwrap();
}

/// [`run_to_exit_unread`], then to the end of its output.
async fn run_to_exit(env: &Env, image: &str, id: &str, attempt: u32, script: &str) {
    run_to_exit_unread(env, image, id, attempt, script).await;
    read_log(env, "app", follow()).await;
}

/// Where the kubelet keeps restart `attempt`'s log of `container` in the test pod
/// `ns/pod` (uid `uid`), below the runtime's logs dir.
fn pod_log(env: &Env, container: &str, attempt: u32) -> PathBuf {
    env.rt
        .io()
        .config()
        .logs_dir
        .join("ns_pod_uid")
        .join(container)
        .join(format!("{attempt}.log"))
}

fn follow() -> LogOptions {
    LogOptions {
        follow: true,
        ..Default::default()
    }
}

/// The container's log text as the node API serves it.
async fn read_log(env: &Env, container: &str, opts: LogOptions) -> String {
    let mut log = env
        .rt
        .io()
        .open_log("ns", "pod", "uid", container, &opts)
        .expect("the log exists");
    let mut text = Vec::new();
    while let Some(chunk) = log.next().await {
        text.extend_from_slice(&chunk.expect("the log reads"));
    }
    String::from_utf8(text).expect("text")
}

/// (stream, text) of each record of a CRI log file.
fn cri_records(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .expect("the log file")
        .lines()
        .map(|line| {
            let r = agent::logs::cri::parse_line(line.as_bytes())
                .unwrap_or_else(|e| panic!("{line:?} is a CRI log line: {e}"));
            (
                r.stream.as_str().to_string(),
                String::from_utf8_lossy(&r.text).into_owned(),
            )
        })
        .collect()
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn sorted_lines(text: &str) -> Vec<&str> {
    sorted(text.lines().collect())
}
