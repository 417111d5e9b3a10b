//! What `kybern secrets-encrypt` does to a store: count how its records are kept, and
//! rewrite every record an encryption configuration covers that its first provider did
//! not write (after a rotation, or when encryption was turned on or off), as upstream's
//! advice to replace every Secret does, one compare-and-swap per record.

use std::collections::BTreeMap;

use super::encryption::{self, Transformer};
use super::{Error, ListOptions, Result, Storage};

/// Records read per page.
const PAGE: usize = 500;

/// How the records of a store are kept: `plaintext`, `aesgcm key "k1"`, ... and a
/// count of each, for the resources a configuration covers and any encrypted record.
pub type Census = BTreeMap<String, usize>;

/// The outcome of [`reencrypt`].
#[derive(Debug, Default)]
pub struct Report {
    /// Records written again with the first provider.
    pub rewritten: usize,
    /// Records the first provider had written already.
    pub current: usize,
    /// Records that could not be read, with the reason; left as they were.
    pub unreadable: Vec<(String, String)>,
}

/// Every record under `/registry/`, page by page, to `f` (key, raw value, revision).
async fn each(store: &dyn Storage, mut f: impl FnMut(&str, &bytes::Bytes, i64)) -> Result<()> {
    let revision = store.current_revision().await?;
    let mut start_after = None;
    loop {
        let opts = ListOptions {
            start_after: start_after.take(),
            limit: PAGE,
            revision: Some(revision),
        };
        let page = store.list("/registry/", opts).await?;
        for kv in &page.kvs {
            f(&kv.key, &kv.value, kv.mod_revision);
        }
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => start_after = Some(last.key.clone()),
            _ => return Ok(()),
        }
    }
}

/// Which records `raw` (the store without a transformer) holds, and how they are kept.
pub async fn census(raw: &dyn Storage, t: &Transformer) -> Result<Census> {
    let mut census = Census::new();
    each(raw, |key, value, _| {
        if t.covers(key) || value.starts_with(encryption::ENCRYPTED_PREFIX) {
            *census.entry(encryption::describe(value)).or_default() += 1;
        }
    })
    .await?;
    Ok(census)
}

/// Rewrites with the first provider every record of `raw` that `t` covers and another
/// provider wrote; `progress(done, total)` after each record.
pub async fn reencrypt(
    raw: &dyn Storage,
    t: &Transformer,
    mut progress: impl FnMut(usize, usize),
) -> Result<Report> {
    let mut todo = Vec::new();
    each(raw, |key, _, _| {
        if t.covers(key) {
            todo.push(key.to_string());
        }
    })
    .await?;
    let mut report = Report::default();
    for (i, key) in todo.iter().enumerate() {
        // Read again: each record is rewritten by a compare-and-swap on what was read.
        for attempt in 0.. {
            let Some(kv) = raw.get(key).await? else {
                break;
            };
            let read = match t.from_storage(key, &kv.value) {
                Ok(read) => read,
                Err(reason) => {
                    report.unreadable.push((key.clone(), reason));
                    break;
                }
            };
            if !read.stale {
                report.current += 1;
                break;
            }
            let stored = t
                .to_storage(key, read.value)
                .map_err(|e| Error::Backend(format!("unable to transform key {key:?}: {e}")))?;
            match raw.update(key, stored, kv.mod_revision).await {
                Ok(_) => {
                    report.rewritten += 1;
                    break;
                }
                Err(Error::Conflict { .. } | Error::NotFound(_)) if attempt < 16 => continue,
                Err(e) => return Err(e),
            }
        }
        progress(i + 1, todo.len());
    }
    Ok(report)
}

/// What the name of a key [`prepare`] added starts with: the key [`rotate`] promotes.
pub const PREPARED_PREFIX: &str = "prepared-";

/// k3s's `prepare`: `new_key` (named `prepared-…`) goes last in the first entry's first
/// provider, so a server restarted with the file reads records it will write but goes on
/// writing with the current key; only the file changes. Returns the key's name.
pub fn prepare(
    path: &std::path::Path,
    new_key: encryption::Key,
) -> std::result::Result<String, RotateError> {
    let mut config = encryption::EncryptionConfiguration::load(path)?;
    let keys = writer_keys(&mut config)?;
    if let Some(prepared) = keys.iter().find(|k| k.name.starts_with(PREPARED_PREFIX)) {
        return Err(RotateError::Config(format!(
            "key {:?} is prepared already: run `kybern secrets-encrypt rotate` to make it the one that writes",
            prepared.name
        )));
    }
    let name = format!("{PREPARED_PREFIX}{}", new_key.name);
    keys.push(encryption::Key {
        name: name.clone(),
        secret: new_key.secret,
    });
    config.transformer().map_err(RotateError::Config)?;
    config.save(path)?;
    Ok(name)
}

/// A rotation: `new_key` (or, when [`prepare`] added one, the prepared key's secret under
/// `new_key`'s name: no record carries the prepared name, as it never wrote) goes first
/// in the first entry's first provider (an aesgcm or secretbox one) with the old keys
/// after it, the file is saved, every covered record is rewritten with it, and only when
/// none is left unreadable are the old keys dropped from the file. Interrupted, it can
/// be run again: the file then still holds every key some record may use.
pub async fn rotate(
    path: &std::path::Path,
    raw: &dyn Storage,
    mut new_key: encryption::Key,
    progress: impl FnMut(usize, usize),
) -> std::result::Result<Report, RotateError> {
    let mut config = encryption::EncryptionConfiguration::load(path)?;
    let keys = writer_keys(&mut config)?;
    if keys.iter().any(|k| k.name == new_key.name) {
        return Err(RotateError::Config(format!(
            "a key named {:?} is configured already",
            new_key.name
        )));
    }
    if let Some(at) = keys
        .iter()
        .position(|k| k.name.starts_with(PREPARED_PREFIX))
    {
        new_key.secret = keys.remove(at).secret;
    }
    keys.insert(0, new_key);
    config.save(path)?;
    let t = config.transformer().map_err(RotateError::Config)?;
    let report = reencrypt(raw, &t, progress).await?;
    if report.unreadable.is_empty() {
        writer_keys(&mut config)?.truncate(1);
        config.save(path)?;
    }
    Ok(report)
}

/// The keys of the provider that writes: the first entry's first one.
fn writer_keys(
    config: &mut encryption::EncryptionConfiguration,
) -> std::result::Result<&mut Vec<encryption::Key>, RotateError> {
    config
        .first_provider_mut()
        .and_then(|p| p.keys_mut())
        .ok_or_else(|| {
            RotateError::Config(
                "the first provider of the first resource entry is neither aesgcm nor secretbox: rotate keys by editing the file, then run `kybern secrets-encrypt reencrypt`".into(),
            )
        })
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(transparent)]
    File(#[from] encryption::Error),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Storage(#[from] Error),
}
