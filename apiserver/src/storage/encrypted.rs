//! A store whose records are encrypted at rest: wraps either backend and passes every
//! value through an [`encryption::Transformer`] on its way in and out, keyed by the
//! record's storage key (also the AES-GCM additional data).
//!
//! A record that cannot be read back (a key no longer configured, a corrupted value) is
//! not an error of the whole read: it comes out as an [`unreadable`] value carrying
//! upstream's message, which `watchcache::decode` turns into a 500 for that object alone,
//! so a list of it fails as upstream's does and start-up and the watch caches skip it
//! (logged with its key), as for any record the server cannot decode.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::encryption::Transformer;
use super::{Error, Event, KeyValue, ListOptions, ListResult, Result, Storage, WatchStream};

/// What an unreadable value starts with: no JSON document starts with a NUL byte.
const UNREADABLE: u8 = 0;

/// The value standing for a record the storage layer could not read, with the reason.
pub fn unreadable(key: &str, reason: &str) -> Bytes {
    let mut v = vec![UNREADABLE];
    v.extend_from_slice(format!("unable to transform key {key:?}: {reason}").as_bytes());
    v.into()
}

/// The reason, when `value` is what [`unreadable`] made.
pub fn unreadable_reason(value: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    match value.split_first() {
        Some((&UNREADABLE, rest)) => Some(String::from_utf8_lossy(rest)),
        _ => None,
    }
}

pub struct EncryptedStore {
    inner: Arc<dyn Storage>,
    transformer: Arc<Transformer>,
}

impl EncryptedStore {
    pub fn new(inner: Arc<dyn Storage>, transformer: Transformer) -> Arc<Self> {
        Arc::new(EncryptedStore {
            inner,
            transformer: Arc::new(transformer),
        })
    }

    fn write(&self, key: &str, value: Bytes) -> Result<Bytes> {
        self.transformer
            .to_storage(key, value)
            .map_err(|e| Error::Backend(format!("unable to transform key {key:?}: {e}")))
    }
}

fn read(t: &Transformer, mut kv: KeyValue) -> KeyValue {
    kv.value = plaintext(t, &kv.key, &kv.value);
    kv
}

fn plaintext(t: &Transformer, key: &str, raw: &Bytes) -> Bytes {
    match t.from_storage(key, raw) {
        Ok(read) => read.value,
        Err(reason) => {
            tracing::error!(key, error = %reason, "a stored record cannot be decrypted");
            unreadable(key, &reason)
        }
    }
}

#[async_trait]
impl Storage for EncryptedStore {
    async fn current_revision(&self) -> Result<i64> {
        self.inner.current_revision().await
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self
            .inner
            .get(key)
            .await?
            .map(|kv| read(&self.transformer, kv)))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let mut page = self.inner.list(prefix, opts).await?;
        for kv in &mut page.kvs {
            kv.value = plaintext(&self.transformer, &kv.key, &kv.value);
        }
        Ok(page)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<i64> {
        let stored = self.write(key, value)?;
        self.inner.create(key, stored).await
    }

    async fn update(&self, key: &str, value: Bytes, expected_revision: i64) -> Result<i64> {
        let stored = self.write(key, value)?;
        self.inner.update(key, stored, expected_revision).await
    }

    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<(KeyValue, i64)> {
        let (kv, revision) = self.inner.delete(key, expected_revision).await?;
        Ok((read(&self.transformer, kv), revision))
    }

    async fn watch(&self, prefix: &str, after_revision: i64) -> Result<WatchStream> {
        let t = self.transformer.clone();
        let stream = self.inner.watch(prefix, after_revision).await?;
        Ok(stream
            .map(move |ev| {
                ev.map(|ev| Event {
                    kind: ev.kind,
                    kv: read(&t, ev.kv),
                    prev: ev.prev.map(|kv| read(&t, kv)),
                })
            })
            .boxed())
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        self.inner.compact(revision).await
    }

    async fn compacted_revision(&self) -> Result<i64> {
        self.inner.compacted_revision().await
    }

    async fn size_on_disk(&self) -> Result<u64> {
        self.inner.size_on_disk().await
    }
}
