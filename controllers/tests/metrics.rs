//! The control loops' `/metrics` endpoint against the real apiserver: loops run as
//! `kybern controller` runs them (each under its lease), and a scrape after some
//! reconciles shows the workqueue, reconcile and leader-election series of the loop
//! that worked.

use controllers::runtime::{self, metrics};
use controllers::Context;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kybern_testkit::{eventually, InProcess};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One plain-HTTP GET; the status line and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> Result<(String, String), String> {
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw)
        .await
        .map_err(|e| e.to_string())?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or(raw.clone())?;
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, body.to_string()))
}

/// The value of the series written exactly as `series`, if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_shows_the_counters_of_the_loop_that_reconciled() {
    let server = InProcess::start().await;
    let ctx = Context::new(server.client.clone(), "metrics-test".into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let endpoint = tokio::spawn(metrics::serve(listener, ctx.metrics.clone()));
    let all = controllers::loops();
    let names = ["serviceaccount".to_string(), "job".to_string()];
    let loops = tokio::spawn(async move { runtime::run_with(&all, &names, ctx, &[]).await });

    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "scraped"}})).unwrap();
    Api::<Namespace>::all(server.client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();

    let (_, text) = eventually(
        "the serviceaccount loop's reconciles on /metrics",
        || async {
            let (status, text) = get(addr, "/metrics").await?;
            let reconciled = value(
                &text,
                "controller_runtime_reconcile_total{controller=\"serviceaccount\",result=\"success\"}",
            );
            (status.contains(" 200 ") && reconciled.is_some_and(|n| n >= 1.0))
                .then_some((status, text.clone()))
                .ok_or(text)
        },
    )
    .await;
    for (name, series, at_least) in [
        (
            "adds of the loop that worked",
            "workqueue_adds_total{name=\"serviceaccount\"}",
            1.0,
        ),
        (
            "its reconciles timed",
            "workqueue_work_duration_seconds_count{name=\"serviceaccount\"}",
            1.0,
        ),
        (
            "nothing left in progress",
            "workqueue_depth{name=\"serviceaccount\"}",
            0.0,
        ),
        (
            "the lease of a loop held",
            "leader_election_master_status{name=\"kybern-serviceaccount\"}",
            1.0,
        ),
        (
            "the lease of the idle loop held too",
            "leader_election_master_status{name=\"kybern-job\"}",
            1.0,
        ),
        ("process metrics", "process_open_fds", 1.0),
    ] {
        let got = value(&text, series);
        assert!(
            got.is_some_and(|v| v >= at_least),
            "{name}: {series} = {got:?}, want >= {at_least} in\n{text}"
        );
    }
    assert_eq!(
        value(&text, "workqueue_adds_total{name=\"job\"}"),
        None,
        "the loop without work has no adds:\n{text}"
    );
    let (status, body) = get(addr, "/healthz").await.unwrap();
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body, "ok");
    loops.abort();
    endpoint.abort();
}
