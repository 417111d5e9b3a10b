//! The Deployment loop's own write: its status, through `/status`, when it changed (the
//! ReplicaSet writes are in the phase that decides them).

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{Error, Result, Rollout};

impl Rollout {
    /// Status without progress bookkeeping (paused, scaling, deleted).
    pub(crate) async fn sync_status(&mut self) -> Result<()> {
        self.status = self.calculate();
        self.write_status().await
    }

    /// Writes the working status when it differs from what the Deployment shows.
    pub(crate) async fn write_status(&self) -> Result<()> {
        if self.d.status.as_ref() == Some(&self.status) {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(
            self.rs_api.clone().into_client(),
            &self.d.namespace().unwrap_or_default(),
        );
        let patch = json!({"status": self.status});
        api.patch_status(
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
}
