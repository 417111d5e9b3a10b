//! The storage contract: a key-value store with etcd's semantics.
//!
//! Every write bumps one global revision, and an object's resourceVersion is the
//! revision of its last write (`mod_revision`). Writes are compare-and-swap on that
//! revision, watches start at any revision not yet compacted, and compaction forgets
//! history older than a revision (a watch or read below it fails with `Compacted`,
//! which the API turns into 410 Gone). Two backends implement it: [`embedded`]
//! (redb, the default) and [`etcd`]; `apiserver/tests/storage_suite` is the one test suite both pass.
//! [`compaction`] runs the periodic compaction. [`encrypted`] wraps either backend to keep
//! records encrypted at rest as an [`encryption`] configuration says; [`reencrypt`]
//! rewrites them after a key rotation.

pub mod compaction;
pub mod embedded;
pub mod encrypted;
pub mod encryption;
pub mod etcd;
pub mod reencrypt;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// One stored object at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created the key.
    pub create_revision: i64,
    /// Revision of the last write to the key: the object's resourceVersion.
    pub mod_revision: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// A change seen by a watch. For a `Put` `kv` is the new value and `prev` the value it
/// replaced (`None` on create); for a `Delete` `kv.value` is the last value before the
/// delete and `kv.mod_revision` the revision of the delete itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
}

/// A page of a range read.
#[derive(Clone, Debug, Default)]
pub struct ListResult {
    pub kvs: Vec<KeyValue>,
    /// The revision the page was read at (use it for the next page and for watches).
    pub revision: i64,
    /// Whether keys beyond this page exist under the prefix at that revision.
    pub more: bool,
}

/// Options for [`Storage::list`].
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Only keys strictly greater than this one (for `continue` tokens).
    pub start_after: Option<String>,
    /// At most this many keys; 0 means no limit.
    pub limit: usize,
    /// Read at this past revision instead of the current one.
    pub revision: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    /// A compare-and-swap lost: the key's current revision is `actual`.
    #[error("key {key} was modified: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: i64,
        actual: i64,
    },
    /// The requested revision is older than the oldest one kept.
    #[error("revision {requested} has been compacted (oldest kept is {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    /// The requested revision is newer than the store has reached.
    #[error("revision {requested} is in the future (current is {current})")]
    FutureRevision { requested: i64, current: i64 },
    #[error("storage backend: {0}")]
    Backend(String),
    /// The embedded store's file is open in another process (a running server).
    #[error("{0} is in use by another process")]
    InUse(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A stream of watch events, in revision order, each batch from one revision.
pub type WatchStream = BoxStream<'static, Result<Event>>;

/// The storage contract. Keys are `/`-separated strings; prefixes select a resource
/// (`/registry/configmaps/`) or a namespace within it.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// The current revision of the whole store.
    async fn current_revision(&self) -> Result<i64>;

    /// The newest value of `key`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys under `prefix`, in key order.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult>;

    /// Creates `key`; fails with `AlreadyExists` if it is present. Returns the new revision.
    async fn create(&self, key: &str, value: Bytes) -> Result<i64>;

    /// Replaces `key` if its mod_revision is still `expected_revision`.
    /// Fails with `NotFound` or `Conflict`. Returns the new revision.
    async fn update(&self, key: &str, value: Bytes, expected_revision: i64) -> Result<i64>;

    /// Deletes `key`, if `expected_revision` is given only while its mod_revision equals it.
    /// Returns the deleted value and the revision of the delete.
    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<(KeyValue, i64)>;

    /// Events under `prefix` with a revision strictly greater than `after_revision`,
    /// then live events until the stream is dropped. Fails with `Compacted` when
    /// events after `after_revision` have been forgotten.
    async fn watch(&self, prefix: &str, after_revision: i64) -> Result<WatchStream>;

    /// Forgets history up to and including `revision`.
    async fn compact(&self, revision: i64) -> Result<()>;

    /// The oldest revision that can still be read or watched after.
    async fn compacted_revision(&self) -> Result<i64>;

    /// Bytes used on disk (0 when unknown).
    async fn size_on_disk(&self) -> Result<u64>;
}
