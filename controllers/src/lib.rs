//! kybern's control loops. Each loop is an independent kube-runtime reconciler that
//! talks to the API server only through the Kubernetes API; `loops()` lists them so
//! `kybern controller NAME...` can run any subset and `kybern server` all of them.

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod expectations;
pub mod gc;
pub mod job;
pub mod leader;
pub mod localpath;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podcontrol;
pub mod replicaset;
pub mod runtime;
pub mod scheduler;
pub mod serviceaccount;
pub mod shared;
pub mod statefulset;

use std::sync::Arc;

use futures::future::BoxFuture;

/// What every loop gets: a client for the API server, the identity it runs as, and
/// the informers the loops of this process share.
pub struct Context {
    pub client: kube::Client,
    /// This process's identity for leader election (hostname + a random suffix).
    pub identity: String,
    /// The cluster CA certificate (PEM) clients verify the apiserver with, published
    /// in every namespace as the `kube-root-ca.crt` ConfigMap; `None` if unknown.
    pub ca_pem: Option<String>,
    /// The scheduler's configuration (`--scheduler-config`); defaults when `None`.
    pub scheduler_config: Option<Arc<scheduler::config::SchedulerConfig>>,
    /// One watch and cache per kind, shared by every loop this context runs.
    pub informers: runtime::informers::Informers,
}

impl Context {
    pub fn new(client: kube::Client, identity: String) -> Self {
        Context {
            informers: runtime::informers::Informers::new(client.clone()),
            client,
            identity,
            ca_pem: None,
            scheduler_config: None,
        }
    }

    pub fn with_ca(self, ca_pem: Option<String>) -> Self {
        Context { ca_pem, ..self }
    }

    pub fn with_scheduler_config(self, config: Option<scheduler::config::SchedulerConfig>) -> Self {
        Context {
            scheduler_config: config.map(Arc::new),
            ..self
        }
    }
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
        Loop {
            name: "namespace",
            run: namespace::run,
        },
        Loop {
            name: "serviceaccount",
            run: serviceaccount::run,
        },
        Loop {
            name: "garbagecollector",
            run: gc::run,
        },
        Loop {
            name: "replicaset",
            run: replicaset::run,
        },
        Loop {
            name: "deployment",
            run: deployment::run,
        },
        Loop {
            name: "statefulset",
            run: statefulset::run,
        },
        Loop {
            name: "daemonset",
            run: daemonset::run,
        },
        Loop {
            name: "job",
            run: job::run,
        },
        Loop {
            name: "cronjob",
            run: cronjob::run,
        },
        Loop {
            name: "endpoints",
            run: endpoints::run,
        },
        Loop {
            name: "endpointslice",
            run: endpointslice::run,
        },
        Loop {
            name: "nodeipam",
            run: nodeipam::run,
        },
        Loop {
            name: "nodelifecycle",
            run: nodelifecycle::run,
        },
        Loop {
            name: "localpath",
            run: localpath::run,
        },
        scheduler::LOOP,
    ]
}
