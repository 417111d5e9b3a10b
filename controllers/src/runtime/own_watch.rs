//! A loop over one kind through its own watch instead of the process's shared
//! informers, for the few loops whose objects no other loop reads (token Secrets,
//! certificate requests): one `Controller`, each reconcile metered, a failed object
//! logged and retried after five seconds.

use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tracing::warn;

use super::metrics::metered;

/// How long a failed object waits before its next reconcile.
const RETRY: Duration = Duration::from_secs(5);

/// Reconciles every object of `api` that `config` selects until the watch ends;
/// `what` names the object in the retry warning ("token secret").
pub async fn run<K, S, E, F, Fut>(
    api: Api<K>,
    config: watcher::Config,
    what: &'static str,
    reconcile: F,
    state: Arc<S>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Debug + Unpin,
    S: Send + Sync + 'static,
    E: std::error::Error + Send + 'static,
    F: FnMut(Arc<K>, Arc<S>) -> Fut,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
{
    Controller::new(api, config)
        .run(
            metered(reconcile),
            |_, e, _| {
                warn!(error = %e, "{what}: retrying in {}s", RETRY.as_secs());
                Action::requeue(RETRY)
            },
            state,
        )
        .for_each(|_| async {})
        .await;
}
