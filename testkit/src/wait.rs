//! Waiting for a cluster to reach a state: poll, and fail the test with the last state
//! seen when it does not come.

use std::future::Future;
use std::time::Duration;

/// How long [`eventually`] waits unless told otherwise.
pub const WAIT: Duration = Duration::from_secs(60);

/// Polls `check` every 100 ms until it returns `Ok`, and panics after [`WAIT`] with
/// what it was waiting for and the last state `check` reported.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    eventually_within(WAIT, what, check).await
}

/// [`eventually`] with another limit.
pub async fn eventually_within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(state) if tokio::time::Instant::now() > deadline => {
                panic!("timed out after {limit:?} waiting for {what}; last state: {state}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// [`eventually_within`] for a check that has nothing to report until it is done:
/// polls until `check` returns `Some`.
pub async fn eventually_some<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(limit, what, || {
        let next = check();
        async move { next.await.ok_or_else(|| "not yet".to_string()) }
    })
    .await
}
