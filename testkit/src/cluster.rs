//! One in-process cluster for the integration tests of every crate: the API server, the
//! control loops a test names (run as `kybern server` runs them), simulated nodes, and a
//! stand-in kubelet for tests without nodes. Everything stops when the [`Cluster`] is
//! dropped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent::simulate::{SimConfig, Simulator};
use controllers::Context;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::apiserver::{Backend, InProcess};
use crate::kubectl::Kubectl;

/// What to start: see [`Cluster::builder`].
pub struct ClusterBuilder {
    ns: String,
    loops: Vec<String>,
    sim: Option<SimConfig>,
    ready_pods: bool,
    backend: Backend,
}

impl ClusterBuilder {
    /// Runs these control loops (names as `kybern controller --list` prints them).
    pub fn loops(mut self, names: &[&str]) -> Self {
        self.loops.extend(names.iter().map(|n| n.to_string()));
        self
    }

    /// Starts `n` simulated nodes (`kybern agent --simulate n`).
    pub fn simulated_nodes(self, n: usize) -> Self {
        self.simulator(SimConfig::new(n))
    }

    /// Starts simulated nodes as `config` describes.
    pub fn simulator(mut self, config: SimConfig) -> Self {
        self.sim = Some(config);
        self
    }

    /// Runs a stand-in kubelet for clusters without nodes: every pod of the test's
    /// namespace becomes Running and Ready through `/status`, except pods labelled
    /// `never-ready`.
    pub fn ready_pods(mut self) -> Self {
        self.ready_pods = true;
        self
    }

    /// Stores objects in a throwaway etcd instead of the embedded store.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    pub async fn start(self) -> Cluster {
        let server = InProcess::start_on(self.backend).await;
        let client = server.client.clone();
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": self.ns}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("creating the test's namespace");
        // The tokens loop signs with the server's service-account key, as in `kybern server`.
        let token_key = apiserver::api::TokenSigner::ensure(server.data_dir())
            .map(|k| controllers::tokens::TokenKey(Arc::new(k)))
            .ok();
        let ctx = Arc::new(Context::new(client.clone(), "test".into()).with_setting(token_key));
        let mut tasks = Vec::new();
        for name in self.loops {
            let found = known_loops()
                .into_iter()
                .find(|l| l.name == name)
                .unwrap_or_else(|| panic!("no control loop named {name}"));
            let ctx = ctx.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = (found.run)(ctx).await {
                    eprintln!("loop {name} ended: {e:#}");
                }
            }));
        }
        if self.ready_pods {
            tasks.push(tokio::spawn(stand_in_kubelet(
                client.clone(),
                self.ns.clone(),
            )));
        }
        let sim = match self.sim {
            Some(config) => Some(
                Simulator::start(client.clone(), config)
                    .await
                    .expect("starting simulated nodes"),
            ),
            None => None,
        };
        Cluster {
            kubeconfig: server.server.kubeconfig.clone(),
            client,
            ns: self.ns,
            sim,
            tasks,
            _server: server,
        }
    }
}

/// Every control loop `kybern server` runs.
fn known_loops() -> Vec<controllers::Loop> {
    let mut all = controllers::loops();
    all.push(scheduler::LOOP);
    all
}

/// The API server, the loops, the nodes; tasks stop and processes end on drop.
pub struct Cluster {
    pub kubeconfig: PathBuf,
    pub client: Client,
    /// The test's namespace (created by `start`).
    pub ns: String,
    pub sim: Option<Simulator>,
    tasks: Vec<JoinHandle<()>>,
    _server: InProcess,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Cluster {
    /// A cluster whose test namespace is `ns`; nothing else runs unless asked for.
    pub fn builder(ns: &str) -> ClusterBuilder {
        ClusterBuilder {
            ns: ns.to_string(),
            loops: Vec::new(),
            sim: None,
            ready_pods: false,
            backend: Backend::Embedded,
        }
    }

    /// An Api for a namespaced kind in the test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// The apiserver, the loops named in `loops` and `nodes` simulated nodes (none when
    /// 0): the common case of [`Cluster::builder`].
    pub async fn start(ns: &str, loops: &[&str], nodes: usize) -> Self {
        let mut builder = Self::builder(ns).loops(loops);
        if nodes > 0 {
            builder = builder.simulated_nodes(nodes);
        }
        builder.start().await
    }

    /// [`Cluster::start`] with simulated nodes as `sim` describes (none when `None`).
    pub async fn start_with(ns: &str, loops: &[&str], sim: Option<SimConfig>) -> Self {
        let mut builder = Self::builder(ns).loops(loops);
        if let Some(config) = sim {
            builder = builder.simulator(config);
        }
        builder.start().await
    }

    /// Runs `kubectl ARGS` in the test's namespace and returns stdout; panics with
    /// stderr when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_in_namespace().run(args)
    }

    /// Waits until `kubectl describe OBJECT...` shows every one of `texts` (its Events
    /// section among them), and returns what it printed.
    pub async fn wait_described(&self, object: &[&str], texts: &[&str]) -> String {
        let args: Vec<&str> = ["describe"].iter().chain(object).copied().collect();
        crate::eventually(
            &format!("kubectl {} to show {texts:?}", args.join(" ")),
            || {
                let mut command =
                    tokio::process::Command::from(self.kubectl_in_namespace().command());
                command.args(&args);
                async move {
                    let out = command.output().await.map_err(|e| e.to_string())?;
                    let text = String::from_utf8_lossy(&out.stdout).into_owned();
                    if texts.iter().all(|t| text.contains(t)) {
                        Ok(text)
                    } else {
                        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
                    }
                }
            },
        )
        .await
    }

    /// Runs `kubectl ARGS` in the test's namespace, whatever its outcome.
    pub fn kubectl_output(&self, args: &[&str]) -> std::process::Output {
        self.kubectl_in_namespace().output(args)
    }

    /// The real kubectl against this cluster, in the test's namespace.
    pub fn kubectl_in_namespace(&self) -> Kubectl {
        Kubectl {
            kubeconfig: self.kubeconfig.clone(),
            cache_dir: self
                .kubeconfig
                .parent()
                .map(|d| d.join("kubectl-cache"))
                .unwrap_or_default(),
            namespace: Some(self.ns.clone()),
        }
    }

    /// The in-process API server's shared state (e.g. the node samples metrics.k8s.io
    /// answers from).
    pub fn apiserver(&self) -> &Arc<apiserver::api::Api> {
        &self._server.server.api
    }

    /// The test namespace's pods that are not being deleted.
    pub async fn live_pods(&self) -> Vec<Pod> {
        let pods = self
            .api::<Pod>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        pods.into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }
}

/// Marks pods Running and Ready the way a kubelet would, one status patch each.
async fn stand_in_kubelet(client: Client, ns: String) {
    let api: Api<Pod> = Api::namespaced(client, &ns);
    loop {
        if let Ok(list) = api.list(&ListParams::default()).await {
            for pod in list.items {
                let marked = pod
                    .metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key("never-ready"));
                let ready = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready"));
                if !marked && !ready && pod.metadata.deletion_timestamp.is_none() {
                    let _ = mark_ready(&api, &pod.name_any()).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Marks one pod Running and Ready through `/status`.
pub async fn mark_ready(api: &Api<Pod>, name: &str) -> kube::Result<Pod> {
    let patch = json!({"status": {
        "phase": "Running",
        "startTime": Timestamp::now().to_string(),
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": Timestamp::now().to_string()}],
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
}
