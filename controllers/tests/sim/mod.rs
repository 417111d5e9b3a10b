//! The harness for integration tests on simulated nodes: the real apiserver in-process,
//! the named control loops (as `kybern server` runs them: `controllers::loops()` and
//! `scheduler::LOOP`)
//! and `kybern agent --simulate N`'s simulator in the same process. Every test gets its
//! own data dir and namespace; everything stops when the `SimCluster` is dropped.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent::simulate::{SimConfig, Simulator};
use apiserver::server::{self, Config, Server};
use controllers::Context;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::json;
use tempfile::TempDir;
use tokio::task::JoinHandle;

/// How long `eventually` waits before failing a test.
pub const WAIT: Duration = Duration::from_secs(60);

pub struct SimCluster {
    pub kubeconfig: PathBuf,
    pub client: Client,
    /// The test's namespace (created by `start`).
    pub ns: String,
    pub sim: Option<Simulator>,
    tasks: Vec<JoinHandle<()>>,
    _server: Server,
    _dir: TempDir,
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl SimCluster {
    /// The apiserver, the loops named in `loops` (names as in `kybern controller --list`,
    /// e.g. `["statefulset", "scheduler"]`) and `nodes` simulated nodes (none when 0).
    pub async fn start(ns: &str, loops: &[&str], nodes: usize) -> Self {
        Self::start_with(ns, loops, (nodes > 0).then(|| SimConfig::new(nodes))).await
    }

    pub async fn start_with(ns: &str, loops: &[&str], sim: Option<SimConfig>) -> Self {
        let dir = tempfile::tempdir().expect("a temp data dir");
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::new(dir.path())
        };
        let server = server::start(config)
            .await
            .expect("starting the apiserver in-process");
        let client = client_for(&server.kubeconfig).await;
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
        let ctx = Arc::new(Context::new(client.clone(), "test".into()));
        let mut tasks = Vec::new();
        for name in loops {
            let found = controllers::loops()
                .into_iter()
                .chain([scheduler::LOOP])
                .find(|l| l.name == *name)
                .unwrap_or_else(|| panic!("no control loop named {name}"));
            let ctx = ctx.clone();
            let name = name.to_string();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = (found.run)(ctx).await {
                    eprintln!("loop {name} ended: {e:#}");
                }
            }));
        }
        let sim = match sim {
            Some(config) => Some(
                Simulator::start(client.clone(), config)
                    .await
                    .expect("starting simulated nodes"),
            ),
            None => None,
        };
        SimCluster {
            kubeconfig: server.kubeconfig.clone(),
            client,
            ns: ns.into(),
            sim,
            tasks,
            _server: server,
            _dir: dir,
        }
    }

    /// An Api for a namespaced kind in the test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Runs `kubectl ARGS` against this cluster (namespace `ns` by default) and returns
    /// stdout; panics with stderr when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_output(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn kubectl_output(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["-n", &self.ns])
            .args(args)
            .output()
            .expect("running kubectl (installed at /usr/bin/kubectl)")
    }
}

pub async fn client_for(kubeconfig: &std::path::Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("reading admin.kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// Polls `check` every 100 ms until it returns Ok, failing the test after [`WAIT`] with
/// the last state it reported.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match check().await {
            Ok(()) => return,
            Err(state) if tokio::time::Instant::now() > deadline => {
                panic!("timed out waiting for {what}; last state: {state}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
