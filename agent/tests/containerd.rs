//! The containerd runtime against a real, private containerd with runc (root only): images
//! packed by agent::images are imported and unpacked, containers run, exit codes, output
//! and signals come back, a container joins a network namespace the test made, and delete
//! leaves no container or mount behind.

mod runtime_env;

use std::time::Duration;

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

    let log = env.log_path("echo-exit");
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
    // The shim copies both streams into the file; under a loaded machine that can trail
    // the exit event, so the bound is the exit wait's, and a timeout shows what arrived.
    kybern_testkit::eventually_within(
        Duration::from_secs(20),
        "stdout and stderr in the log",
        || async {
            match std::fs::read_to_string(&log) {
                Ok(l) if l.contains("hello") && l.contains("oops") => Ok(()),
                Ok(l) => Err(format!("the log holds {l:?}")),
                Err(e) => Err(format!("the log cannot be read: {e}")),
            }
        },
    )
    .await;

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
