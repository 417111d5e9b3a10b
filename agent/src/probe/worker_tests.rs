//! The worker's schedule and thresholds on a paused clock, with exec probes answered by the
//! fake runtime: virtual time advances only while every task waits, so each attempt's time
//! is exact and the tests take no real time.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ExecAction, Probe};
use tokio::time::Instant;

use super::*;
use crate::probe::fixtures::{running, SlowExec};
use crate::runtime::fake::{Call, FakeRuntime};
use crate::runtime::ExecOutput;

const CHECK: &[&str] = &["cat", "/tmp/healthy"];

fn target() -> Target {
    Target {
        container_id: "c1".into(),
        pod_ip: Ipv4Addr::new(10, 42, 0, 5),
    }
}

/// An exec probe of [`CHECK`] with the given schedule (period 10s unless set).
fn probe(initial_delay: i32, success_threshold: i32, failure_threshold: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(CHECK.iter().map(|c| c.to_string()).collect()),
        }),
        initial_delay_seconds: Some(initial_delay),
        success_threshold: Some(success_threshold),
        failure_threshold: Some(failure_threshold),
        ..Default::default()
    }
}

async fn runtime() -> Arc<FakeRuntime> {
    let rt = Arc::new(FakeRuntime::new());
    running(rt.as_ref(), &rt, "c1").await;
    rt
}

/// Makes the next attempts pass (exit 0) or fail (exit 1 with `boom`).
fn answer(rt: &FakeRuntime, pass: bool) {
    let (exit_code, output) = if pass {
        (0, Vec::new())
    } else {
        (1, b"boom".to_vec())
    };
    rt.set_exec_result("c1", CHECK, ExecOutput { exit_code, output });
}

/// Waits for the `n`th attempt and returns the state after it.
async fn after_attempt(rx: &mut watch::Receiver<ProbeState>, n: u64) -> ProbeState {
    rx.wait_for(|s| s.attempts >= n)
        .await
        .expect("worker running")
        .clone()
}

#[tokio::test(start_paused = true)]
async fn results_start_as_the_kubelets() {
    let rt = runtime().await;
    let cases = [
        ("liveness assumes healthy", ProbeKind::Liveness, true),
        ("readiness starts not ready", ProbeKind::Readiness, false),
        ("startup starts not started", ProbeKind::Startup, false),
    ];
    for (name, kind, want) in cases {
        let handle = spawn(kind, probe(60, 1, 3), target(), vec![], rt.clone());
        let state = handle.current();
        assert_eq!(state.success, want, "{name}");
        assert_eq!(state.attempts, 0, "{name}");
    }
}

#[tokio::test(start_paused = true)]
async fn attempts_start_after_the_initial_delay_then_follow_the_period() {
    let rt = runtime().await;
    let start = Instant::now();
    let handle = spawn(
        ProbeKind::Readiness,
        probe(5, 1, 3),
        target(),
        vec![],
        rt.clone(),
    );
    let mut rx = handle.subscribe();
    let first = after_attempt(&mut rx, 1).await;
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(5),
        "first attempt after initialDelaySeconds"
    );
    assert!(
        first.success,
        "one success makes it ready with successThreshold 1"
    );
    after_attempt(&mut rx, 2).await;
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(15),
        "then every periodSeconds (10)"
    );
}

#[tokio::test(start_paused = true)]
async fn readiness_needs_success_threshold_successes_in_a_row() {
    let rt = runtime().await;
    let handle = spawn(
        ProbeKind::Readiness,
        probe(0, 2, 3),
        target(),
        vec![],
        rt.clone(),
    );
    let mut rx = handle.subscribe();
    assert!(
        !after_attempt(&mut rx, 1).await.success,
        "one success of two"
    );
    assert!(
        after_attempt(&mut rx, 2).await.success,
        "two successes in a row"
    );

    // Failures flip it back only after failureThreshold of them in a row; a success in
    // between starts the count again.
    answer(&rt, false);
    assert!(after_attempt(&mut rx, 3).await.success);
    let state = after_attempt(&mut rx, 4).await;
    assert!(state.success);
    assert_eq!(state.consecutive_failures, 2);
    answer(&rt, true);
    assert_eq!(after_attempt(&mut rx, 5).await.consecutive_failures, 0);
    answer(&rt, false);
    for n in 6..=7 {
        assert!(
            after_attempt(&mut rx, n).await.success,
            "attempt {n}: below the threshold"
        );
    }
    let state = after_attempt(&mut rx, 8).await;
    assert!(!state.success, "three failures in a row");
    assert_eq!(state.last_failure.as_deref(), Some("boom"));
    assert!(!state.stopped, "readiness keeps probing");
    answer(&rt, true);
    assert!(
        !after_attempt(&mut rx, 9).await.success,
        "one success of two again"
    );
    assert!(after_attempt(&mut rx, 10).await.success);
}

#[tokio::test(start_paused = true)]
async fn liveness_fails_after_failure_threshold_and_stops_probing() {
    let rt = runtime().await;
    answer(&rt, false);
    let handle = spawn(
        ProbeKind::Liveness,
        probe(0, 1, 3),
        target(),
        vec![],
        rt.clone(),
    );
    let mut rx = handle.subscribe();
    for n in 1..=2 {
        let state = after_attempt(&mut rx, n).await;
        assert!(
            state.success,
            "attempt {n}: still healthy below the threshold"
        );
        assert_eq!(state.consecutive_failures, n as u32);
        assert_eq!(state.last_failure.as_deref(), Some("boom"));
    }
    let state = after_attempt(&mut rx, 3).await;
    assert!(!state.success);
    assert!(
        state.stopped,
        "the container is to be restarted; no more attempts"
    );
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(handle.current().attempts, 3);
}

#[tokio::test(start_paused = true)]
async fn startup_stops_probing_once_it_succeeds() {
    let rt = runtime().await;
    answer(&rt, false);
    let handle = spawn(
        ProbeKind::Startup,
        probe(0, 1, 30),
        target(),
        vec![],
        rt.clone(),
    );
    let mut rx = handle.subscribe();
    assert!(!after_attempt(&mut rx, 1).await.success);
    answer(&rt, true);
    let state = after_attempt(&mut rx, 2).await;
    assert!(state.success && state.stopped, "{state:?}");
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(handle.current().attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn attempts_that_cannot_run_are_retried_and_do_not_count() {
    let rt = runtime().await;
    rt.exit("c1", 0);
    let handle = spawn(
        ProbeKind::Liveness,
        probe(0, 1, 1),
        target(),
        vec![],
        rt.clone(),
    );
    let mut rx = handle.subscribe();
    let state = rx
        .wait_for(|s| s.last_error.is_some())
        .await
        .unwrap()
        .clone();
    assert!(state.success, "an error leaves the result as it was");
    assert_eq!(state.attempts, 0);
    let execs = rt
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Exec(..)))
        .count();
    assert_eq!(execs, 3, "tried three times in one period");
}

#[tokio::test(start_paused = true)]
async fn an_exec_running_past_the_timeout_is_a_failure() {
    let rt = Arc::new(SlowExec::new(Duration::from_secs(5)));
    running(rt.as_ref(), &rt.fake, "c1").await;
    let handle = spawn(
        ProbeKind::Readiness,
        probe(0, 1, 1),
        target(),
        vec![],
        rt.clone(),
    );
    let mut rx = handle.subscribe();
    let state = after_attempt(&mut rx, 1).await;
    assert!(!state.success);
    assert_eq!(
        state.last_failure.as_deref(),
        Some("command \"cat /tmp/healthy\" timed out")
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_stops_the_worker() {
    let rt = runtime().await;
    let handle = spawn(
        ProbeKind::Readiness,
        probe(0, 1, 3),
        target(),
        vec![],
        rt.clone(),
    );
    let mut rx = handle.subscribe();
    after_attempt(&mut rx, 1).await;
    drop(handle);
    while rx.changed().await.is_ok() {}
    let execs = rt.calls().len();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        rt.calls().len(),
        execs,
        "no attempts after the handle is gone"
    );
}

#[test]
fn schedules_default_as_the_kubelets() {
    let cases = [
        (
            "all defaults",
            Probe::default(),
            Schedule {
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                success_threshold: 1,
                failure_threshold: 3,
            },
        ),
        (
            "given values",
            Probe {
                initial_delay_seconds: Some(4),
                period_seconds: Some(2),
                success_threshold: Some(2),
                failure_threshold: Some(5),
                ..Default::default()
            },
            Schedule {
                initial_delay: Duration::from_secs(4),
                period: Duration::from_secs(2),
                success_threshold: 2,
                failure_threshold: 5,
            },
        ),
        (
            "zero and negative values are raised to the minimums",
            Probe {
                initial_delay_seconds: Some(-1),
                period_seconds: Some(0),
                success_threshold: Some(0),
                failure_threshold: Some(0),
                ..Default::default()
            },
            Schedule {
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 1,
            },
        ),
    ];
    for (name, p, want) in cases {
        assert_eq!(Schedule::of(&p), want, "{name}");
    }
}
