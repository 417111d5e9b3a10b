//! Finding and creating the Deployment's ReplicaSets, sizing them (including
//! proportional scaling during a rollout), and cleaning up old history
//! (upstream deployment/sync.go).

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::info;

use super::proportional::{proportional_sizes, Sizing};
use super::util::{self, deployment_replicas, spec_replicas};
use super::{Error, Result, Rollout, State};
use crate::podcontrol::{self, controller_of, controller_ref, controller_selects};

impl Rollout {
    /// The Deployment's ReplicaSets from the store (adopting matching orphans), split
    /// into the one running the current template and the rest.
    pub(crate) async fn load(state: &State, d: Arc<Deployment>, ns: &str) -> Result<Self> {
        let rs_api: Api<ReplicaSet> = Api::namespaced(state.client.clone(), ns);
        let uid = d.uid().unwrap_or_default();
        let selector = d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let mut mine = Vec::new();
        for rs in state.replica_sets.state() {
            if rs.namespace().as_deref() != Some(ns) {
                continue;
            }
            let matches = controller_selects(&selector, rs.labels());
            match controller_of(&rs.metadata) {
                Some(owner) if owner.uid == uid && matches => mine.push(rs.as_ref().clone()),
                // Relabelled out of the selector: no longer ours (upstream's
                // ClaimReplicaSets), unless the Deployment is going away anyway.
                Some(owner) if owner.uid == uid && d.metadata.deletion_timestamp.is_none() => {
                    podcontrol::release(&rs_api, rs.as_ref(), &uid)
                        .await
                        .map_err(|source| Error::UpdateReplicaSet {
                            name: rs.name_any(),
                            source,
                        })?;
                    info!(replicaset = %rs.name_any(), "released ReplicaSet that no longer matches the selector");
                }
                None if matches && d.metadata.deletion_timestamp.is_none() => {
                    match podcontrol::adopt(&rs_api, rs.as_ref(), controller_ref(d.as_ref())).await
                    {
                        Ok(adopted) => mine.push(adopted),
                        Err(kube::Error::Api(e))
                            if e.code == 404 || e.code == 409 || e.code == 422 => {}
                        Err(source) => {
                            return Err(Error::UpdateReplicaSet {
                                name: rs.name_any(),
                                source,
                            })
                        }
                    }
                }
                _ => {}
            }
        }
        // The oldest ReplicaSet running the current template is the new one (there can
        // be two after a hash collision).
        mine.sort_by(|a, b| {
            let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(a)
                .cmp(&created(b))
                .then_with(|| a.name_any().cmp(&b.name_any()))
        });
        let new_index = mine.iter().position(|rs| util::template_matches(rs, &d));
        let new_rs = new_index.map(|i| mine.remove(i));
        let pods = state
            .pods
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(ns))
            .collect();
        Ok(Rollout {
            status: d.status.clone().unwrap_or_default(),
            d,
            rs_api,
            pods,
            new_rs,
            old: mine,
        })
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &ReplicaSet> {
        self.new_rs.iter().chain(self.old.iter())
    }

    /// Makes sure the new ReplicaSet carries the next revision and the Deployment's
    /// annotations, creating it from the template when `create` and none exists.
    pub(crate) async fn ensure_new_rs(&mut self, create: bool) -> Result<()> {
        let new_revision = util::max_revision(&self.old) + 1;
        if self.new_rs.is_some() {
            return self.sync_new_rs_revision(new_revision).await;
        }
        if !create {
            return Ok(());
        }
        let d = self.d.clone();
        let spec = d.spec.clone().unwrap_or_default();
        let hash = util::compute_hash(&spec.template, self.status.collision_count);
        let name = format!("{}-{hash}", d.name_any());
        let mut template = spec.template.clone();
        let meta = template.metadata.get_or_insert_default();
        meta.labels
            .get_or_insert_default()
            .insert(util::TEMPLATE_HASH_LABEL.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_default()
            .insert(util::TEMPLATE_HASH_LABEL.into(), hash.clone());
        let mut annotations = util::copied_annotations(&d);
        annotations.insert(util::REVISION.into(), new_revision.to_string());
        annotations.extend(util::replica_annotations(&d).map(|(k, v)| (k.to_string(), v)));
        let replicas = if util::is_rolling(&d) {
            super::rolling::new_rs_new_replicas(
                deployment_replicas(&d),
                util::max_surge(&d),
                util::sum_spec(&self.old),
                0,
            )
        } else {
            deployment_replicas(&d)
        };
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: d.namespace(),
                labels: meta.labels.clone(),
                annotations: Some(annotations),
                owner_references: Some(vec![controller_ref(d.as_ref())]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                info!(replicaset = %name, replicas, "created new replicaset");
                if replicas > 0 {
                    // Upstream words a new ReplicaSet's first size as a scale from 0.
                    let message = format!("Scaled up replica set {name} from 0 to {replicas}");
                    let client = self.rs_api.clone().into_client();
                    podcontrol::publish_event(
                        &client,
                        d.as_ref(),
                        "Normal",
                        "ScalingReplicaSet",
                        &message,
                        "deployment-controller",
                    )
                    .await;
                }
                let message = format!("Created new replica set \"{name}\"");
                self.set_progressing_if_deadline("True", "NewReplicaSetCreated", message);
                self.new_rs = Some(created);
                self.set_deployment_revision(new_revision).await
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Someone made it first: ours if it is controlled by us with our template,
                // otherwise a hash collision, resolved by a new collisionCount.
                let existing =
                    self.rs_api
                        .get(&name)
                        .await
                        .map_err(|source| Error::CreateReplicaSet {
                            name: name.clone(),
                            source,
                        })?;
                let ours = controller_of(&existing.metadata)
                    .is_some_and(|o| Some(&o.uid) == d.metadata.uid.as_ref());
                if ours && util::template_matches(&existing, &d) {
                    self.new_rs = Some(existing);
                    return Ok(());
                }
                self.status.collision_count = Some(self.status.collision_count.unwrap_or(0) + 1);
                self.write_status().await?;
                Err(Error::HashCollision(name))
            }
            Err(source) => Err(Error::CreateReplicaSet { name, source }),
        }
    }

    /// Sets `size` replicas (and the desired/max annotations) on the ReplicaSet `name`.
    /// Returns whether anything was written.
    pub(crate) async fn set_size(&mut self, name: &str, size: i32) -> Result<bool> {
        let d = self.d.clone();
        let Some(rs) = self
            .new_rs
            .iter_mut()
            .chain(self.old.iter_mut())
            .find(|rs| rs.name_any() == name)
        else {
            return Ok(false);
        };
        let annotations = util::replica_annotations(&d);
        let current = rs.metadata.annotations.as_ref();
        let annotations_ok = annotations
            .iter()
            .all(|(k, v)| util::annotation(current, k) == Some(v.as_str()));
        if spec_replicas(rs) == size && annotations_ok {
            return Ok(false);
        }
        let patch = json!({
            "metadata": {"annotations": annotations.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()},
            "spec": {"replicas": size},
        });
        let from = spec_replicas(rs);
        *rs = self
            .rs_api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|source| Error::UpdateReplicaSet {
                name: name.to_string(),
                source,
            })?;
        if from != size {
            info!(replicaset = %name, from, to = size, "scaled replicaset");
            // What `kubectl describe deployment` lists, worded as upstream's.
            let direction = if size > from { "up" } else { "down" };
            let message = format!("Scaled {direction} replica set {name} from {from} to {size}");
            let client = self.rs_api.clone().into_client();
            if let Err(e) = podcontrol::record_event(
                &client,
                d.as_ref(),
                "Normal",
                "ScalingReplicaSet",
                &message,
                "deployment-controller",
            )
            .await
            {
                tracing::warn!(error = %e, "recording the ScalingReplicaSet event failed");
            }
        }
        Ok(true)
    }

    /// A replica count changed on some active ReplicaSet since it was last sized.
    pub(crate) fn is_scaling_event(&self) -> bool {
        let replicas = deployment_replicas(&self.d).to_string();
        self.all().filter(|rs| spec_replicas(rs) > 0).any(|rs| {
            util::annotation(rs.metadata.annotations.as_ref(), util::DESIRED_REPLICAS)
                != Some(replicas.as_str())
        })
    }

    /// Scaling only (paused, or a replica change): no new ReplicaSet is made.
    pub(crate) async fn sync(&mut self, paused: bool) -> Result<()> {
        self.ensure_new_rs(false).await?;
        self.scale().await?;
        if paused {
            self.cleanup().await?;
        }
        self.sync_status().await
    }

    /// Upstream's scale(): sizes the ReplicaSets to the Deployment's replicas.
    pub(crate) async fn scale(&mut self) -> Result<()> {
        let d = self.d.clone();
        let replicas = deployment_replicas(&d);
        let active: Vec<&ReplicaSet> = self.all().filter(|rs| spec_replicas(rs) > 0).collect();
        // One active ReplicaSet (or none: the newest) simply takes all replicas.
        let only = match active.as_slice() {
            [] => self.new_rs.as_ref().or_else(|| {
                self.old
                    .iter()
                    .max_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0))
            }),
            [one] => Some(*one),
            _ => None,
        };
        if let Some(rs) = only.map(ResourceExt::name_any) {
            self.set_size(&rs, replicas).await?;
            return Ok(());
        }
        if util::is_saturated(&d, self.new_rs.as_ref()) {
            for name in self
                .old
                .iter()
                .filter(|rs| spec_replicas(rs) > 0)
                .map(ResourceExt::name_any)
                .collect::<Vec<_>>()
            {
                self.set_size(&name, 0).await?;
            }
            return Ok(());
        }
        if !util::is_rolling(&d) {
            return Ok(());
        }
        let allowed = if replicas > 0 {
            replicas + util::max_surge(&d)
        } else {
            0
        };
        let sizing: Vec<Sizing> = active
            .iter()
            .map(|rs| Sizing {
                name: rs.name_any(),
                replicas: spec_replicas(rs),
                max_replicas: util::annotation(
                    rs.metadata.annotations.as_ref(),
                    util::MAX_REPLICAS,
                )
                .and_then(|v| v.parse().ok()),
                created: rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
            })
            .collect();
        let status_replicas = self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        for (name, size) in proportional_sizes(&sizing, replicas, allowed, status_replicas) {
            self.set_size(&name, size).await?;
        }
        Ok(())
    }

    /// Deletes the oldest fully scaled-down ReplicaSets beyond revisionHistoryLimit.
    pub(crate) async fn cleanup(&mut self) -> Result<()> {
        let limit = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        let mut alive: Vec<&ReplicaSet> = self
            .old
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = alive
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(0));
        if excess == 0 {
            return Ok(());
        }
        alive.sort_by_key(|rs| util::revision(rs));
        let doomed: Vec<(String, Option<String>)> = alive
            .into_iter()
            .filter(|rs| {
                let status = rs.status.clone().unwrap_or_default();
                spec_replicas(rs) == 0
                    && status.replicas == 0
                    && rs.metadata.generation.unwrap_or(0)
                        <= status.observed_generation.unwrap_or(0)
            })
            .take(excess)
            .map(|rs| (rs.name_any(), rs.uid()))
            .collect();
        for (name, uid) in doomed {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid,
                    resource_version: None,
                }),
                ..Default::default()
            };
            match self.rs_api.delete(&name, &params).await {
                Ok(_) => {
                    info!(replicaset = %name, "deleted old replicaset beyond revisionHistoryLimit")
                }
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(source) => return Err(Error::DeleteReplicaSet { name, source }),
            }
            self.old
                .retain(|rs| rs.metadata.name.as_deref() != Some(name.as_str()));
        }
        Ok(())
    }

    /// Records the new ReplicaSet's revision on the Deployment (what `kubectl rollout
    /// status --revision` and `history` read).
    pub(crate) async fn set_deployment_revision(&mut self, revision: i64) -> Result<()> {
        let current = util::annotation(self.d.metadata.annotations.as_ref(), util::REVISION);
        if current == Some(revision.to_string().as_str()) {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(
            self.rs_api.clone().into_client(),
            &self.d.namespace().unwrap_or_default(),
        );
        let patch = json!({"metadata": {"annotations": {util::REVISION: revision.to_string()}}});
        api.patch(
            &self.d.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .map_err(|source| Error::UpdateDeployment {
            name: self.d.name_any(),
            source,
        })?;
        Ok(())
    }

    pub(crate) fn now() -> Time {
        Time(Timestamp::now())
    }
}
