//! Writing a plan of EndpointSlice changes, shared by the endpointslice and
//! endpointslicemirroring loops: creates, then replaces, then deletes, each recorded in
//! the loop's expectations under the owner's key so the next pass waits for the cache.

use std::time::Instant;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};

use crate::expectations::Expectations;

/// The writes that make the existing slices say what the loop wants.
#[derive(Debug, Default)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
}

/// A write that failed: what it was doing (`creating`, `updating`, `deleting`) and why.
#[derive(Debug)]
pub struct WriteError {
    pub action: &'static str,
    pub source: kube::Error,
}

impl Plan {
    /// (creates, updates, deletes) planned.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.create.len(), self.update.len(), self.delete.len())
    }

    /// Writes the plan through `api`; with `create` false the creates are skipped (an
    /// owner on its way out gets no new slices).
    pub async fn apply(
        self,
        api: &Api<EndpointSlice>,
        expectations: &Expectations,
        key: &str,
        create: bool,
    ) -> Result<(), WriteError> {
        let err = |action| move |source| WriteError { action, source };
        if create {
            for slice in self.create {
                let created = api
                    .create(&PostParams::default(), &slice)
                    .await
                    .map_err(err("creating"))?;
                expectations.expect_creations(key, [created.name_any()], Instant::now());
            }
        }
        for slice in self.update {
            // Replace carries the resourceVersion read: a stale cache gets a 409 and a retry.
            api.replace(&slice.name_any(), &PostParams::default(), &slice)
                .await
                .map_err(err("updating"))?;
        }
        for slice in self.delete {
            delete(api, expectations, key, &slice).await?;
        }
        Ok(())
    }
}

/// Deletes one slice, expecting its deletion under `key`; one already gone is no error.
pub async fn delete(
    api: &Api<EndpointSlice>,
    expectations: &Expectations,
    key: &str,
    slice: &EndpointSlice,
) -> Result<(), WriteError> {
    expectations.expect_deletions(key, slice.uid(), Instant::now());
    match api
        .delete(&slice.name_any(), &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(source) => {
            expectations.forget(key);
            Err(WriteError {
                action: "deleting",
                source,
            })
        }
    }
}
