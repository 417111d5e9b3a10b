//! kybern's control loops. Each loop is an independent kube-runtime reconciler that
//! talks to the API server only through the Kubernetes API; `loops()` lists them so
//! `kybern controller NAME...` can run any subset and `kybern server` all of them (with
//! the scheduler's loop, which lives in the `kybern-scheduler` crate on this runtime).

pub mod bootstrapsigner;
pub mod clusterroleaggregation;
pub mod cronjob;
pub mod csrapproving;
pub mod csrsigning;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod endpointslicemirroring;
pub mod expectations;
#[cfg(any(test, feature = "test-util"))]
pub mod fixtures;
pub mod gc;
pub mod hpa;
pub mod identity;
pub mod job;
pub mod leader;
pub mod localpath;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podcontrol;
pub mod podgc;
pub mod pvbinder;
pub mod replicaset;
pub mod replicationcontroller;
pub mod resourcequota;
pub mod runtime;
pub mod serviceaccount;
pub mod servicelb;
pub mod shared;
pub mod statefulset;
pub mod tokencleaner;
pub mod tokens;

use std::any::Any;
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
    /// Settings of loops that live in other crates, such as the scheduler's
    /// `--scheduler-config`; a loop without its setting uses its defaults.
    pub settings: Settings,
    /// One watch and cache per kind, shared by every loop this context runs.
    pub informers: runtime::informers::Informers,
    /// The loops' Prometheus series (served by `runtime::metrics::serve`).
    pub metrics: Arc<runtime::metrics::Metrics>,
    /// When set, each loop acts with a client of its own identity (see [`identity`]);
    /// otherwise every loop uses `client`.
    pub credentials: Option<Arc<identity::Credentials>>,
}

impl Context {
    pub fn new(client: kube::Client, identity: String) -> Self {
        Context {
            informers: runtime::informers::Informers::new(client.clone()),
            client,
            identity,
            ca_pem: None,
            settings: Settings::default(),
            metrics: Arc::default(),
            credentials: None,
        }
    }

    /// With each loop acting under its own identity, made by `credentials`.
    pub fn with_credentials(self, credentials: Option<identity::Credentials>) -> Self {
        Context {
            credentials: credentials.map(Arc::new),
            ..self
        }
    }

    /// The context of one loop that acts with `client`: the same informers, settings
    /// and metrics as this one.
    pub fn for_loop(&self, client: kube::Client) -> Self {
        Context {
            informers: self.informers.for_loop(client.clone()),
            client,
            identity: self.identity.clone(),
            ca_pem: self.ca_pem.clone(),
            settings: self.settings.clone(),
            metrics: self.metrics.clone(),
            credentials: None,
        }
    }

    pub fn with_ca(self, ca_pem: Option<String>) -> Self {
        Context { ca_pem, ..self }
    }

    /// With `setting` (when given) as the setting of its type; see [`Settings`].
    pub fn with_setting<T: Any + Send + Sync>(mut self, setting: Option<T>) -> Self {
        if let Some(s) = setting {
            self.settings.insert(s);
        }
        self
    }
}

/// At most one value of each type, found by its type: how a loop defined outside this
/// crate (the scheduler) gets its own configuration through the shared [`Context`]
/// without this crate naming the configuration's type.
#[derive(Clone, Default)]
pub struct Settings(Vec<Arc<dyn Any + Send + Sync>>);

impl Settings {
    /// Stores `value`, replacing an earlier value of the same type.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        self.0.retain(|v| !v.is::<T>());
        self.0.push(Arc::new(value));
    }

    /// The value of type `T`, if one was stored.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.0.iter().find_map(|v| v.downcast_ref::<T>())
    }
}

/// A loop runs until it fails (or forever); the runner restarts or reports it.
pub type LoopFuture = BoxFuture<'static, anyhow::Result<()>>;

/// One control loop, by the name users pass to `--disable` and `kybern controller`.
#[derive(Clone, Copy)]
pub struct Loop {
    pub name: &'static str,
    pub run: fn(Arc<Context>) -> LoopFuture,
}

/// Every control loop of this crate (the scheduler's, `scheduler::LOOP`, is added by
/// whoever runs it beside them).
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
            name: "tokens",
            run: tokens::run,
        },
        Loop {
            name: "clusterrole-aggregation",
            run: clusterroleaggregation::run,
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
            name: "replicationcontroller",
            run: replicationcontroller::run,
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
            name: "endpointslicemirroring",
            run: endpointslicemirroring::run,
        },
        Loop {
            name: "servicelb",
            run: servicelb::run,
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
        Loop {
            name: "persistentvolume-binder",
            run: pvbinder::run,
        },
        Loop {
            name: "podgc",
            run: podgc::run,
        },
        Loop {
            name: "horizontalpodautoscaling",
            run: hpa::run,
        },
        Loop {
            name: "disruption",
            run: disruption::run,
        },
        Loop {
            name: "resourcequota",
            run: resourcequota::run,
        },
        Loop {
            name: "csrsigning",
            run: csrsigning::run,
        },
        Loop {
            name: "csrapproving",
            run: csrapproving::run,
        },
        Loop {
            name: "bootstrapsigner",
            run: bootstrapsigner::run,
        },
        Loop {
            name: "tokencleaner",
            run: tokencleaner::run,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Weights(u32);

    #[test]
    fn a_setting_is_found_by_its_type_and_replaced_by_a_later_one() {
        let mut s = Settings::default();
        assert_eq!(s.get::<Weights>(), None, "nothing stored yet");
        s.insert(Weights(1));
        s.insert(String::from("other type"));
        assert_eq!(s.get::<Weights>(), Some(&Weights(1)));
        assert_eq!(s.get::<String>().map(String::as_str), Some("other type"));
        s.insert(Weights(2));
        assert_eq!(
            s.get::<Weights>(),
            Some(&Weights(2)),
            "the later value wins"
        );
        assert_eq!(s.0.len(), 2, "one value per type");
    }
}
