//! Exec and exec probes against a real, private containerd with runc (root only): a command
//! run in a running busybox container gets the container's user, env and working directory,
//! its exit code and output come back, one that outlives its timeout is killed and leaves
//! no process behind, and a readiness probe follows a file appearing and disappearing.

// Shared with the other containerd tests; this one does not use every helper.
#[allow(dead_code)]
mod runtime_env;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use agent::probe::{self, ProbeKind, Target};
use agent::runtime::{ContainerConfig, Error, Runtime, User};
use k8s_openapi::api::core::v1::{ExecAction, LifecycleHandler, Probe};
use runtime_env::{eventually, Env};

const GENEROUS: Duration = Duration::from_secs(60);

fn args(argv: &[&str]) -> Vec<String> {
    argv.iter().map(|a| a.to_string()).collect()
}

/// Starts `sleep 1000` in a busybox container `id`.
async fn sleeper(env: &Env, id: &str, tweak: impl FnOnce(&mut ContainerConfig)) {
    let image = env.import_busybox().await;
    let mut config = ContainerConfig {
        id: id.into(),
        image,
        args: args(&["sleep", "1000"]),
        env: vec!["PATH=/bin".into()],
        cgroup_path: format!("{}/{id}", env.cgroup_parent),
        ..Default::default()
    };
    tweak(&mut config);
    env.rt.create_container(&config).await.unwrap();
    env.rt.start(id).await.unwrap();
}

async fn exec(
    env: &Env,
    id: &str,
    argv: &[&str],
    timeout: Duration,
) -> agent::runtime::Result<agent::runtime::ExecOutput> {
    tokio::time::timeout(GENEROUS, env.rt.exec(id, &args(argv), timeout))
        .await
        .expect("exec returns")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_returns_the_exit_code_and_output_in_the_containers_context() {
    let env = Env::start().await;
    sleeper(&env, "execd", |c| {
        c.env.push("GREETING=hello".into());
        c.cwd = "/tmp".into();
        c.user = Some(User {
            uid: 65534,
            gid: 65534,
            additional_gids: vec![],
        });
    })
    .await;

    let out = exec(
        &env,
        "execd",
        &[
            "sh",
            "-c",
            "echo $GREETING; pwd; id -u; echo oops >&2; exit 3",
        ],
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(out.exit_code, 3);
    let text = String::from_utf8_lossy(&out.output);
    for want in ["hello\n", "/tmp\n", "65534\n", "oops\n"] {
        assert!(text.contains(want), "output {text:?} has {want:?}");
    }

    // Output past 10 KiB is cut, as the kubelet cuts an exec probe's output.
    let big = exec(
        &env,
        "execd",
        &["sh", "-c", "yes | head -c 50000"],
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(big.exit_code, 0);
    assert_eq!(big.output.len(), 10 * 1024);

    // A command that cannot start is an error (a probe then keeps its result), not an exit.
    let unstartable = exec(&env, "execd", &["/no/such/binary"], Duration::from_secs(10)).await;
    assert!(unstartable.is_err(), "{unstartable:?}");

    // Hooks run through the same exec; a failing one says what the command said.
    let target = Target {
        container_id: "execd".into(),
        pod_ip: Ipv4Addr::LOCALHOST,
    };
    let hook = LifecycleHandler {
        exec: Some(ExecAction {
            command: Some(args(&["sh", "-c", "echo no way; exit 2"])),
        }),
        ..Default::default()
    };
    assert_eq!(
        probe::run_hook(&env.rt, &target, &hook, &[], GENEROUS).await,
        Err("command 'sh -c echo no way; exit 2' exited with 2: no way\n".into())
    );

    let missing = exec(&env, "nope", &["true"], Duration::from_secs(10)).await;
    assert!(
        missing.as_ref().is_err_and(Error::is_not_found),
        "exec in a container that does not exist: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_past_its_timeout_is_killed_and_leaves_no_process() {
    let env = Env::start().await;
    sleeper(&env, "slow", |_| {}).await;

    let timeout = Duration::from_secs(1);
    let result = exec(&env, "slow", &["sleep", "300"], timeout).await;
    assert!(
        matches!(result, Err(Error::Timeout(t)) if t == timeout),
        "timed out: {result:?}"
    );

    let ps = exec(
        &env,
        "slow",
        &["ps", "-o", "pid,args"],
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let listing = String::from_utf8_lossy(&ps.output);
    assert!(
        listing.contains("sleep 1000"),
        "ps sees the container: {listing}"
    );
    assert!(
        !listing.contains("sleep 300"),
        "the timed-out exec was killed: {listing}"
    );

    // An exec whose caller gives up (a probe worker stopped mid-attempt) is killed and
    // deleted in the background.
    let abandoned = tokio::time::timeout(
        Duration::from_secs(1),
        env.rt.exec("slow", &args(&["sleep", "301"]), GENEROUS),
    )
    .await;
    assert!(abandoned.is_err(), "still running when dropped");
    eventually("the abandoned exec is killed", GENEROUS, || async {
        let ps = exec(&env, "slow", &["ps", "-o", "args"], Duration::from_secs(10))
            .await
            .ok()?;
        (!String::from_utf8_lossy(&ps.output).contains("sleep 301")).then_some(())
    })
    .await;

    // The container itself is untouched.
    assert!(matches!(
        env.rt.task_state("slow").await.unwrap(),
        agent::runtime::TaskState::Running { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_readiness_probe_follows_a_file_appearing_and_disappearing() {
    let env = Env::start().await;
    sleeper(&env, "ready", |_| {}).await;

    let probe = Probe {
        exec: Some(ExecAction {
            command: Some(args(&["cat", "/tmp/ready"])),
        }),
        period_seconds: Some(1),
        failure_threshold: Some(1),
        ..Default::default()
    };
    let target = Target {
        container_id: "ready".into(),
        pod_ip: Ipv4Addr::LOCALHOST,
    };
    let rt: Arc<dyn Runtime> = Arc::new(env.rt.clone());
    let handle = probe::spawn(ProbeKind::Readiness, probe, target, vec![], rt);
    let mut state = handle.subscribe();

    let failed = tokio::time::timeout(GENEROUS, state.wait_for(|s| s.attempts >= 1))
        .await
        .expect("a first attempt")
        .unwrap()
        .clone();
    assert!(!failed.success);
    let message = failed.last_failure.unwrap_or_default();
    assert!(message.contains("/tmp/ready"), "cat's complaint: {message}");

    exec(
        &env,
        "ready",
        &["touch", "/tmp/ready"],
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    eventually("ready once the file exists", GENEROUS, || async {
        handle.current().success.then_some(())
    })
    .await;

    exec(
        &env,
        "ready",
        &["rm", "/tmp/ready"],
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    eventually("not ready once the file is gone", GENEROUS, || async {
        (!handle.current().success).then_some(())
    })
    .await;
    drop(handle);
}
