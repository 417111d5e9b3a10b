//! A loop whose API server is away retries with back-off instead of spinning: the
//! bootstrap signer against a loopback port that takes each connection and drops it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_signer_backs_off_while_its_server_is_unreachable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    let mut config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    config.default_retry = false;
    let client = kube::Client::try_from(config).unwrap();
    let ctx = Arc::new(controllers::Context::new(client, "test".into()));
    let signer = tokio::spawn(controllers::bootstrapsigner::run(ctx));
    tokio::time::sleep(Duration::from_secs(3)).await;
    signer.abort();
    let n = accepted.load(Ordering::SeqCst);
    // Two watches backing off from 0.8 s make a handful of attempts in 3 s; a loop
    // retrying at once made thousands.
    assert!(n <= 20, "{n} connections in 3 s");
}
