//! kybern's control loops. Each loop is an independent kube-runtime reconciler that
//! talks to the API server only through the Kubernetes API; `loops()` lists them so
//! `kybern controller NAME...` can run any subset and `kybern server` all of them.

pub mod deployment;
pub mod expectations;
pub mod podcontrol;
pub mod replicaset;

use std::sync::Arc;

use futures::future::BoxFuture;

/// What every loop gets: a client for the API server, and the identity it runs as.
pub struct Context {
    pub client: kube::Client,
    /// This process's identity for leader election (hostname + a random suffix).
    pub identity: String,
}

/// A loop runs until it fails (or forever); the runner restarts or reports it.
pub type LoopFuture = BoxFuture<'static, anyhow::Result<()>>;

/// One control loop, by the name users pass to `--disable` and `kybern controller`.
pub struct Loop {
    pub name: &'static str,
    pub run: fn(Arc<Context>) -> LoopFuture,
}

/// Every control loop kybern has.
pub fn loops() -> Vec<Loop> {
    vec![
        Loop { name: "replicaset", run: replicaset::run },
        Loop { name: "deployment", run: deployment::run },
    ]
}
