//! Integration tests of the control loops: the apiserver in-process on a free port,
//! the loops running against it over HTTPS with its admin.kubeconfig, as in
//! `kybern server`.

use kybern_testkit as common;

mod cli;
mod clusterroleaggregation;
mod gc;
mod identity;
mod leader;
mod namespace;
mod resourcequota;
mod serviceaccount;

use std::future::Future;
use std::time::Duration;

use common::InProcess;

/// An in-process apiserver with some control loops running against it; the loops
/// are stopped (their task aborted) when this is dropped.
pub struct Cluster {
    pub api: InProcess,
    loops: tokio::task::JoinHandle<()>,
}

impl Cluster {
    pub async fn start(loops: &[&str]) -> Self {
        let api = InProcess::start().await;
        let ctx = controllers::runtime::context_from_kubeconfig(&api.server.kubeconfig)
            .await
            .expect("a context from admin.kubeconfig");
        let names: Vec<String> = loops.iter().map(|s| s.to_string()).collect();
        let loops = tokio::spawn(async move {
            controllers::runtime::run_with(&controllers::loops(), &names, ctx, &[])
                .await
                .expect("the loops run");
        });
        Cluster { api, loops }
    }

    pub fn client(&self) -> kube::Client {
        self.api.client.clone()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.loops.abort();
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `within`
/// saying what was awaited.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    kybern_testkit::eventually_some(within, what, check).await
}
