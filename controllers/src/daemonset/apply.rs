//! The DaemonSet's writes: claiming pods and revisions (adopt orphans, release what no
//! longer matches) and upstream syncNodes (delete, then create pinned pods in
//! slow-start batches), each recorded as an expectation first.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use kube::{Api, ResourceExt};
use tracing::info;

use super::nodes::{pin_to_node, pod_template};
use super::{Error, Result, State};
use crate::podcontrol::{self, claim, controller_ref, PodWrite};

/// Creates or deletes at most this many pods per sync (upstream's burstReplicas for
/// DaemonSets); the next sync does the rest.
pub(super) const BURST: usize = 250;

/// One sync's handles on the API.
pub(super) struct Sync<'a> {
    state: &'a State,
    ds: &'a DaemonSet,
    key: &'a str,
    pub pods_api: Api<Pod>,
    pub revisions_api: Api<ControllerRevision>,
}

impl<'a> Sync<'a> {
    pub(super) fn new(state: &'a State, ds: &'a DaemonSet, ns: &str, key: &'a str) -> Self {
        Sync {
            state,
            ds,
            key,
            pods_api: Api::namespaced(state.client.clone(), ns),
            revisions_api: Api::namespaced(state.client.clone(), ns),
        }
    }

    fn selector(&self) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
        self.ds
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default()
    }

    /// The pods this DaemonSet controls after adopting and releasing.
    pub(super) async fn claim_pods(&self, in_namespace: &[Arc<Pod>]) -> Result<Vec<Pod>> {
        let selector = self.selector();
        let claimed = claim(
            &selector,
            &self.ds.metadata,
            in_namespace.iter().map(|p| p.as_ref()),
        );
        self.claim(&self.pods_api, claimed).await
    }

    /// The ControllerRevisions this DaemonSet controls after adopting and releasing.
    pub(super) async fn claim_revisions(&self) -> Result<Vec<ControllerRevision>> {
        let ns = self.ds.namespace();
        let all: Vec<Arc<ControllerRevision>> = self
            .state
            .revisions
            .state()
            .into_iter()
            .filter(|c| c.namespace() == ns)
            .collect();
        let selector = self.selector();
        let claimed = claim(&selector, &self.ds.metadata, all.iter().map(|c| c.as_ref()));
        self.claim(&self.revisions_api, claimed).await
    }

    async fn claim<K>(&self, api: &Api<K>, claimed: podcontrol::Claimed<'_, K>) -> Result<Vec<K>>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let uid = self.ds.metadata.uid.as_deref().unwrap_or_default();
        for child in &claimed.release {
            podcontrol::release(api, *child, uid)
                .await
                .map_err(|source| Error::Claim {
                    name: child.name_any(),
                    source,
                })?;
            info!(name = %child.name_any(), "released an object that no longer matches the selector");
        }
        let mut owned: Vec<K> = claimed.owned.into_iter().cloned().collect();
        for child in &claimed.adopt {
            match podcontrol::adopt(api, *child, controller_ref(self.ds)).await {
                Ok(adopted) => owned.push(adopted),
                // Deleted or changed since the cache saw it: the next event brings us back.
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 || e.code == 422 => {}
                Err(source) => {
                    return Err(Error::Claim {
                        name: child.name_any(),
                        source,
                    })
                }
            }
        }
        Ok(owned)
    }

    /// Deletes `delete` (and `orphaned`, with no grace period), then creates a pod on
    /// every node of `create_on`, in batches of 1, 2, 4, ... so a template that can
    /// never be created fails after one request.
    pub(super) async fn sync_nodes(
        &self,
        delete: &[&Pod],
        orphaned: &[&Pod],
        create_on: &[String],
        hash: &str,
    ) -> Result<()> {
        let victims: Vec<(&Pod, bool)> = delete
            .iter()
            .map(|p| (*p, false))
            .chain(orphaned.iter().map(|p| (*p, true)))
            .take(BURST)
            .collect();
        if !victims.is_empty() {
            self.delete(&victims).await?;
        }
        let create_on = &create_on[..create_on.len().min(BURST)];
        if create_on.is_empty() {
            return Ok(());
        }
        let template = pod_template(self.ds, hash);
        let generate_name = format!("{}-", self.ds.name_any());
        let (mut done, mut batch) = (0, 1);
        while done < create_on.len() {
            let nodes = &create_on[done..(done + batch).min(create_on.len())];
            let templates: Vec<_> = nodes
                .iter()
                .map(|node| pin_to_node(&template, node))
                .collect();
            let creates = templates.iter().map(|t| {
                podcontrol::create_pod(&self.pods_api, t, &generate_name, controller_ref(self.ds))
            });
            let results = futures::future::join_all(creates).await;
            let mut names = Vec::new();
            let mut failure = None;
            for result in results {
                let pod = result.as_ref().map_or(String::new(), |p| p.name_any());
                self.pod_event(PodWrite::Create, &pod, result.as_ref().err())
                    .await;
                match result {
                    Ok(pod) => names.push(pod.name_any()),
                    Err(source) => failure = Some(source),
                }
            }
            info!(created = names.len(), "created daemon pods");
            self.state
                .expectations
                .expect_creations(self.key, names, Instant::now());
            if let Some(source) = failure {
                return Err(Error::CreatePods {
                    key: self.key.to_string(),
                    source,
                });
            }
            done += nodes.len();
            batch *= 2;
        }
        Ok(())
    }

    async fn pod_event(&self, write: PodWrite, pod: &str, error: Option<&kube::Error>) {
        let client = self.pods_api.clone().into_client();
        podcontrol::publish_pod_event(&client, self.ds, write, pod, error, "daemonset-controller")
            .await;
    }

    async fn delete(&self, victims: &[(&Pod, bool)]) -> Result<()> {
        let uids = victims.iter().filter_map(|(p, _)| p.uid());
        self.state
            .expectations
            .expect_deletions(self.key, uids, Instant::now());
        let deletes = victims.iter().map(|(pod, force)| async move {
            let params = DeleteParams {
                grace_period_seconds: force.then_some(0),
                ..Default::default()
            };
            match self.pods_api.delete(&pod.name_any(), &params).await {
                Ok(_) => {
                    self.pod_event(PodWrite::Delete, &pod.name_any(), None)
                        .await;
                    Ok(())
                }
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(source) => {
                    self.pod_event(PodWrite::Delete, &pod.name_any(), Some(&source))
                        .await;
                    Err(Error::DeletePod {
                        pod: pod.name_any(),
                        source,
                    })
                }
            }
        });
        let results = futures::future::join_all(deletes).await;
        info!(deleted = victims.len(), "deleted daemon pods");
        if results.iter().any(Result::is_err) {
            // The failed deletes will never be observed; start afresh next sync.
            self.state.expectations.forget(self.key);
        }
        results.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
    }
}
