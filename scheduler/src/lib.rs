//! The scheduler (crate `kybern-scheduler`): places pending pods (empty spec.nodeName,
//! schedulerName `default-scheduler`) on nodes the way kube-scheduler does. Node and pod watchers feed
//! the cache and the queue; one loop pops a pod, filters and scores nodes from the
//! cache (no API reads per pod), assumes the pod onto the chosen node, and binds it in
//! the background with bounded parallelism.

pub mod bind;
pub mod cache;
pub mod config;
pub mod filters;
pub mod framework;
pub mod objects;
pub mod preemption;
pub mod profile;
pub mod queue;
pub mod resources;
pub mod schedule_one;
pub mod scores;

mod informers;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use kube::Client;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use cache::{Cache, PodInfo};
use config::SchedulerConfig;
use controllers::{Context, Loop, LoopFuture};
use framework::fit_error_message;
use queue::{QueuedPod, SchedulingQueue};

/// The scheduler as a control loop: what `kybern controller scheduler`, `kybern server`
/// and the standalone `kybern-scheduler` binary all run.
pub const LOOP: Loop = Loop {
    name: "scheduler",
    run,
};

/// The scheduler with the context's configuration (`--scheduler-config`, a
/// [`SchedulerConfig`] in `ctx.settings`), or the default one.
pub fn run(ctx: Arc<Context>) -> LoopFuture {
    let client = ctx.client.clone();
    let config = ctx
        .settings
        .get::<SchedulerConfig>()
        .cloned()
        .unwrap_or_default();
    async move { Scheduler::new(client, config).run().await }.boxed()
}

struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

pub struct Scheduler {
    client: Client,
    config: SchedulerConfig,
    cache: Mutex<Cache>,
    queue: Arc<SchedulingQueue>,
    binds: Arc<Semaphore>,
    /// Scheduled events are written one at a time, in bind order, as upstream's event
    /// broadcaster writes them: they never compete with binds for the apiserver.
    events: Semaphore,
}

impl Scheduler {
    pub fn new(client: Client, config: SchedulerConfig) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            client,
            binds: Arc::new(Semaphore::new(config.parallel_binds.max(1))),
            events: Semaphore::new(1),
            config,
            cache: Mutex::new(Cache::default()),
            queue: SchedulingQueue::new(),
        })
    }

    /// Runs until a watcher fails for good.
    pub async fn run(self: Arc<Self>) -> anyhow::Result<()> {
        let notify = || Arc::new(tokio::sync::Notify::new());
        let (nodes_synced, pods_synced, ns_synced) = (notify(), notify(), notify());
        let (claims_synced, classes_synced) = (notify(), notify());
        let nodes = tokio::spawn(informers::watch_nodes(self.clone(), nodes_synced.clone()));
        let pods = tokio::spawn(informers::watch_pods(self.clone(), pods_synced.clone()));
        let namespaces = tokio::spawn(informers::watch_namespaces(self.clone(), ns_synced.clone()));
        let pdbs = tokio::spawn(informers::watch_pdbs(self.clone()));
        let claims = tokio::spawn(informers::watch_claims(self.clone(), claims_synced.clone()));
        let classes = tokio::spawn(informers::watch_classes(
            self.clone(),
            classes_synced.clone(),
        ));
        // Leadership lost (this future dropped) or a watcher failed: stop them all.
        let _stop = AbortOnDrop(vec![
            nodes.abort_handle(),
            pods.abort_handle(),
            namespaces.abort_handle(),
            pdbs.abort_handle(),
            claims.abort_handle(),
            classes.abort_handle(),
        ]);
        // Like upstream, schedule only once the caches have synced.
        nodes_synced.notified().await;
        pods_synced.notified().await;
        ns_synced.notified().await;
        claims_synced.notified().await;
        classes_synced.notified().await;
        info!(
            nodes = self.cache().nodes().len(),
            "scheduler caches synced"
        );
        let flusher = {
            let queue = self.queue.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    queue.flush();
                }
            })
        };
        let _stop_flusher = AbortOnDrop(vec![flusher.abort_handle()]);
        let mut start = 0;
        let result = tokio::select! {
            r = nodes => r.map_err(anyhow::Error::from).and_then(|r| r),
            r = pods => r.map_err(anyhow::Error::from).and_then(|r| r),
            r = namespaces => r.map_err(anyhow::Error::from).and_then(|r| r),
            r = pdbs => r.map_err(anyhow::Error::from).and_then(|r| r),
            r = claims => r.map_err(anyhow::Error::from).and_then(|r| r),
            r = classes => r.map_err(anyhow::Error::from).and_then(|r| r),
            () = async { loop { start = self.clone().schedule_next(start).await; } } => Ok(()),
        };
        result
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().expect("scheduler cache lock")
    }

    /// One scheduling cycle. Returns where the next node search starts.
    async fn schedule_next(self: Arc<Self>, start: usize) -> usize {
        let (queued, cycle) = self.queue.pop().await;
        let info = queued.info.clone();
        let outcome = {
            let mut cache = self.cache();
            if cache.has_pod(&info.uid) {
                // Bound meanwhile (by us or someone else).
                self.queue.done(&info.uid);
                return start;
            }
            let state = profile::cycle_state(info.clone(), &cache);
            match schedule_one::schedule(&state, &cache, &self.config, start) {
                Ok((node, next)) => {
                    cache.assume(info.clone(), &node);
                    Ok((node, next))
                }
                Err(fit) => {
                    let pre = preemption::preempt(&state, &cache, &fit.statuses);
                    Err((fit, pre))
                }
            }
        };
        match outcome {
            Ok((node, next)) => {
                self.queue.done(&info.uid);
                self.spawn_bind(queued, node).await;
                next
            }
            Err((fit, pre)) => {
                let post = pre.as_ref().err().cloned().unwrap_or_default();
                let message = if fit.num_all_nodes == 0 {
                    "no nodes available to schedule pods".to_string()
                } else {
                    fit_error_message(
                        fit.num_all_nodes,
                        &fit.statuses,
                        fit.pre_filter.as_deref(),
                        &post,
                    )
                };
                debug!(pod = %format!("{}/{}", info.namespace, info.name), %message, "unschedulable");
                self.queue.unschedulable(queued, cycle, fit.rejected);
                let me = self.clone();
                tokio::spawn(async move { me.report(info, message, pre.ok()).await });
                start
            }
        }
    }

    async fn spawn_bind(self: &Arc<Self>, queued: QueuedPod, node: String) {
        let permit = self
            .binds
            .clone()
            .acquire_owned()
            .await
            .expect("bind semaphore never closes");
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = bind::bind(&me.client, &queued.info, &node).await {
                warn!(error = %e, "bind failed; forgetting the assumed pod");
                me.cache().forget(&queued.info.uid);
                if !e.is_final() {
                    me.queue.retry(queued);
                }
                return;
            }
            // The event is recorded off the binding path: the next bind need not wait.
            drop(permit);
            let _event = me
                .events
                .acquire()
                .await
                .expect("event semaphore never closes");
            let scheduler = &me.config.scheduler_name;
            if let Err(e) = bind::report_scheduled(&me.client, scheduler, &queued.info, &node).await
            {
                debug!(pod = %queued.info.name, error = %e, "recording the Scheduled event");
            }
        });
    }

    async fn report(
        &self,
        pod: Arc<PodInfo>,
        message: String,
        preempt: Option<preemption::Candidate>,
    ) {
        let nominated = preempt.as_ref().map(|c| c.node.as_str());
        if let Some(c) = &preempt {
            info!(pod = %pod.name, node = %c.node, victims = c.victims.len(), "preempting");
            for v in &c.victims {
                if let Err(e) = bind::evict(&self.client, v).await {
                    warn!(victim = %v.name, error = %e, "deleting preemption victim");
                }
            }
        }
        if let Err(e) = bind::report_unschedulable(&self.client, &pod, &message, nominated).await {
            warn!(pod = %pod.name, error = %e, "reporting FailedScheduling");
        }
    }
}
