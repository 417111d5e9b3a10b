//! One guarded update of a stored object, as upstream's `GuaranteedUpdate`: read the
//! current object, let the caller check its preconditions and derive what to store,
//! write that with a compare-and-swap on the revision read, and start over when another
//! write got in between. After [`MAX_ATTEMPTS`] lost races the answer is one 409; never
//! a success without the write.

use serde_json::Value;

use super::write::encode;
use super::Api;
use crate::object;
use crate::status::{ApiError, Result, Target};
use crate::storage;
use crate::watchcache::decode;

/// Compare-and-swap races a guarded update loses before it answers 409.
pub(super) const MAX_ATTEMPTS: usize = 16;

/// What the caller decided for the object it was shown.
pub(super) enum Decision {
    /// Store this object.
    Write(Value),
    /// Delete the object (nothing holds it any more).
    Delete,
    /// Leave it as it is.
    Unchanged,
}

/// What a guarded update did.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The object as stored, with its new resourceVersion.
    Written(Value),
    /// Deleted at this revision.
    Deleted(i64),
    /// Nothing was written.
    Unchanged,
}

/// Runs `decide` on the object at `key` (with its resourceVersion; `None` when there is
/// none) until its decision is stored without a race. An error from `decide` (a failed
/// precondition, an invalid object) ends the update at once, with nothing written.
pub(super) async fn update(
    api: &Api,
    key: &str,
    target: &Target,
    mut decide: impl FnMut(Option<&Value>) -> Result<Decision>,
) -> Result<Outcome> {
    let mut attempts = Attempts::new(api, key, target);
    loop {
        let current = attempts.read().await?;
        if let Some(outcome) = attempts.store(decide(current.as_ref())?).await? {
            return Ok(outcome);
        }
    }
}

/// The same guarded update in steps, for a caller whose decision awaits (admission
/// plugins, address allocation): `read`, decide, `store`, and again while `store`
/// reports a lost race. Whatever the caller reserved for a write that was not stored
/// it gives back before deciding again.
pub(super) struct Attempts<'a> {
    api: &'a Api,
    key: &'a str,
    target: &'a Target,
    made: usize,
    /// The revision of the object the last `read` returned (0: there was none).
    revision: Option<i64>,
}

impl<'a> Attempts<'a> {
    pub(super) fn new(api: &'a Api, key: &'a str, target: &'a Target) -> Self {
        Attempts {
            api,
            key,
            target,
            made: 0,
            revision: None,
        }
    }

    /// The current object, for the next attempt; after [`MAX_ATTEMPTS`] lost races, a
    /// 409.
    pub(super) async fn read(&mut self) -> Result<Option<Value>> {
        if self.made == MAX_ATTEMPTS {
            return Err(ApiError::Conflict(
                self.target.clone(),
                super::write::CONFLICT_MESSAGE.into(),
            ));
        }
        self.made += 1;
        let key = self.key;
        let current = match self.api.storage.get(key).await? {
            // Nothing the server writes is unreadable (see `json`), but a record written
            // by something else may be: say which one.
            Some(kv) => Some((
                decode(&kv.value, kv.mod_revision).map_err(|e| match e {
                    ApiError::Internal(m) => ApiError::Internal(format!("{m} (key {key})")),
                    other => other,
                })?,
                kv.mod_revision,
            )),
            None => None,
        };
        self.revision = current.as_ref().map(|(_, rev)| *rev);
        Ok(current.map(|(obj, _)| obj))
    }

    /// Stores the decision made on what `read` returned, with a compare-and-swap on its
    /// revision. `None`: another write got in between; read and decide again.
    pub(super) async fn store(&mut self, decision: Decision) -> Result<Option<Outcome>> {
        let (api, key) = (self.api, self.key);
        let written = match (decision, self.revision) {
            (Decision::Unchanged, _) => return Ok(Some(Outcome::Unchanged)),
            // Deciding to write something that is not there is a caller's bug: answer as
            // a lost race would, so the next attempt sees the object's absence.
            (Decision::Write(_) | Decision::Delete, None) => return Ok(None),
            (Decision::Write(mut obj), Some(revision)) => api
                .storage
                .update(key, encode(&obj)?, revision)
                .await
                .map(|rev| {
                    object::set_resource_version(&mut obj, rev);
                    Outcome::Written(obj)
                }),
            (Decision::Delete, Some(revision)) => api
                .storage
                .delete(key, Some(revision))
                .await
                .map(|(_, rev)| Outcome::Deleted(rev)),
        };
        match written {
            Ok(outcome) => Ok(Some(outcome)),
            // Changed or deleted since it was read: decide again on what is there now.
            Err(storage::Error::Conflict { .. } | storage::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use async_trait::async_trait;
    use bytes::Bytes;
    use serde_json::json;

    use super::*;
    use crate::storage::embedded::EmbeddedStore;
    use crate::storage::{
        KeyValue, ListOptions, ListResult, Result as StoreResult, Storage, WatchStream,
    };

    /// A store in which every compare-and-swap loses a race, as under heavy contention.
    struct AlwaysRaced {
        inner: Arc<EmbeddedStore>,
        attempts: AtomicUsize,
    }

    #[async_trait]
    impl Storage for AlwaysRaced {
        async fn current_revision(&self) -> StoreResult<i64> {
            self.inner.current_revision().await
        }
        async fn get(&self, key: &str) -> StoreResult<Option<KeyValue>> {
            self.inner.get(key).await
        }
        async fn list(&self, prefix: &str, opts: ListOptions) -> StoreResult<ListResult> {
            self.inner.list(prefix, opts).await
        }
        async fn create(&self, key: &str, value: Bytes) -> StoreResult<i64> {
            self.inner.create(key, value).await
        }
        async fn update(&self, key: &str, _: Bytes, expected: i64) -> StoreResult<i64> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            Err(crate::storage::Error::Conflict {
                key: key.into(),
                expected,
                actual: expected + 1,
            })
        }
        async fn delete(&self, key: &str, expected: Option<i64>) -> StoreResult<(KeyValue, i64)> {
            self.inner.delete(key, expected).await
        }
        async fn watch(&self, prefix: &str, after: i64) -> StoreResult<WatchStream> {
            self.inner.watch(prefix, after).await
        }
        async fn compact(&self, revision: i64) -> StoreResult<()> {
            self.inner.compact(revision).await
        }
        async fn compacted_revision(&self) -> StoreResult<i64> {
            self.inner.compacted_revision().await
        }
        async fn size_on_disk(&self) -> StoreResult<u64> {
            self.inner.size_on_disk().await
        }
    }

    const POD_KEY: &str = "/registry/core/pods/default/p";

    /// An API over a store that loses every race, holding one unbound pod `default/p`.
    async fn raced_api(dir: &std::path::Path) -> (Arc<Api>, Arc<AlwaysRaced>) {
        let inner = EmbeddedStore::open(&dir.join("db")).unwrap();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        inner
            .create(POD_KEY, Bytes::from(pod.to_string()))
            .await
            .unwrap();
        let store = Arc::new(AlwaysRaced {
            inner,
            attempts: AtomicUsize::new(0),
        });
        let registry = Arc::new(crate::registry::Registry::with_builtins().unwrap());
        (
            Api::new(store.clone(), registry, "127.0.0.1:0".into()),
            store,
        )
    }

    #[tokio::test]
    async fn an_update_that_keeps_losing_races_is_a_409_and_never_a_success() {
        let dir = tempfile::tempdir().unwrap();
        let (api, store) = raced_api(dir.path()).await;
        let key = POD_KEY;
        let target = Target::new("", "pods", "p");
        let err = update(&api, key, &target, |pod| {
            let mut pod = pod.cloned().expect("the pod exists");
            pod["spec"] = json!({"nodeName": "n1"});
            Ok(Decision::Write(pod))
        })
        .await
        .unwrap_err();
        assert_eq!(err.code(), 409, "{err}");
        assert_eq!(store.attempts.load(Ordering::SeqCst), MAX_ATTEMPTS);
    }

    #[tokio::test]
    async fn a_binding_that_cannot_be_written_is_a_409_not_a_201() {
        let dir = tempfile::tempdir().unwrap();
        let (api, store) = raced_api(dir.path()).await;
        let pods = api
            .registry
            .snapshot()
            .get("", "v1", "pods")
            .cloned()
            .unwrap();
        let req = super::super::ApiRequest {
            method: http::Method::POST,
            path: crate::request::ResourcePath {
                group: String::new(),
                version: "v1".into(),
                namespace: Some("default".into()),
                resource: "pods".into(),
                name: Some("p".into()),
                subresource: Some("binding".into()),
                legacy_watch: false,
            },
            query: Default::default(),
            accept: super::super::Accept {
                json: true,
                ..Default::default()
            },
            content_type: "application/json".into(),
            user_agent: "test".into(),
            user: crate::api::pipeline::UserInfo::apiserver(),
            body: Bytes::from(
                r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p"},"target":{"name":"n1"}}"#,
            ),
            warnings: Default::default(),
        };
        let err = super::super::binding::bind(&api, &pods, &req, Some("p"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), 409, "{err}");
        assert_eq!(store.attempts.load(Ordering::SeqCst), MAX_ATTEMPTS);
        let stored = api.storage.get(POD_KEY).await.unwrap().unwrap();
        assert!(
            !String::from_utf8_lossy(&stored.value).contains("nodeName"),
            "the pod is not bound"
        );
    }
}
