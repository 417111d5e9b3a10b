//! `kybern secrets-encrypt status|prepare|rotate|reencrypt`: encryption at rest of a
//! stopped server's embedded store, with k3s's verbs.
//!
//! It works on the data dir, not through the API: the store's file is opened here, and
//! redb's lock refuses that while a server has it open, so a running server is told to
//! stop rather than left holding keys that no longer match its records. `prepare` only
//! adds a key that does not write, so it edits the file of a running server too.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use apiserver::storage::embedded::EmbeddedStore;
use apiserver::storage::encryption::{self, EncryptionConfiguration, Key};
use apiserver::storage::{reencrypt, Error as StorageError};
use clap::{Args, Subcommand};

#[derive(Args)]
pub(crate) struct SecretsEncryptArgs {
    #[command(subcommand)]
    verb: Verb,
    /// The data dir of the stopped `kybern server` or `kybern up` (embedded storage).
    #[arg(long, global = true, default_value = "/var/lib/kybern")]
    data_dir: PathBuf,
    /// The EncryptionConfiguration the server runs with, when it is not the data dir's
    /// own `encryption-config.yaml` (the server's --encryption-provider-config).
    #[arg(long, global = true)]
    encryption_provider_config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Verb {
    /// Print the key each resource is written with and how many records each key (or
    /// plaintext) holds.
    Status,
    /// Add a new key after the current one, so a server restarted with the file can
    /// read what it will write (k3s's first step; the server may be running: restart it
    /// to load the key). `rotate` then makes it the one that writes.
    Prepare,
    /// Make a new key (the prepared one, if any) the one that writes, with the old keys
    /// after it, rewrite every record with it, then drop the old keys: k3s's
    /// `rotate-keys` in one step.
    #[command(visible_alias = "rotate-keys")]
    Rotate,
    /// Rewrite every record the configuration covers with its first provider (after
    /// editing the file: a new first key, `identity` first to decrypt everything).
    Reencrypt,
}

pub(crate) async fn run(args: SecretsEncryptArgs) -> anyhow::Result<()> {
    let config_path = args
        .encryption_provider_config
        .clone()
        .unwrap_or_else(|| args.data_dir.join(encryption::DEFAULT_FILE));
    let config = EncryptionConfiguration::load(&config_path)?;
    println!("encryption configuration: {}", config_path.display());
    let name = format!("{}-{}", writer_provider(&config), unix_nanos());
    // `prepare` leaves the store alone; every other verb needs it to itself.
    let store = || open_stopped(&args.data_dir);
    match args.verb {
        Verb::Prepare => {
            let prepared = reencrypt::prepare(&config_path, Key::generate(&name))?;
            println!("prepared key {prepared:?}: restart the server so it can read records written with it, then stop it and run `kybern secrets-encrypt rotate`");
        }
        Verb::Status => {
            let store = store()?;
            for (resources, writer) in config.writers() {
                println!("active key for {resources}: {writer}");
            }
            for entry in &config.resources {
                let keyed = entry.providers.iter().filter_map(|p| p.keyed());
                let names: Vec<&str> = keyed
                    .flat_map(|(_, keys)| keys.keys.iter().map(|k| k.name.as_str()))
                    .collect();
                if !names.is_empty() {
                    let resources = entry.resources.join(",");
                    println!("keys for {resources}: {}", names.join(", "));
                }
            }
            let t = config.transformer().map_err(anyhow::Error::msg)?;
            let census = reencrypt::census(store.as_ref(), &t).await?;
            println!("records:");
            if census.is_empty() {
                println!("  none");
            }
            for (how, count) in census {
                println!("  {how}: {count}");
            }
        }
        Verb::Rotate => {
            let store = store()?;
            println!("new key {name:?}; re-encrypting records with it");
            let report =
                reencrypt::rotate(&config_path, store.as_ref(), Key::generate(&name), progress)
                    .await?;
            finish(&report)?;
            println!("old keys removed from {}", config_path.display());
        }
        Verb::Reencrypt => {
            let store = store()?;
            for (resources, writer) in config.writers() {
                println!("writing {resources} with {writer}");
            }
            let t = config.transformer().map_err(anyhow::Error::msg)?;
            let report = reencrypt::reencrypt(store.as_ref(), &t, progress).await?;
            finish(&report)?;
        }
    }
    Ok(())
}

/// The provider new keys are made for: the writing one's, `aesgcm` when it has none.
fn writer_provider(config: &EncryptionConfiguration) -> &'static str {
    config
        .resources
        .first()
        .and_then(|entry| entry.providers.first())
        .and_then(|p| p.keyed())
        .map_or("aesgcm", |(provider, _)| provider)
}

/// The data dir's store, or why it cannot be used now.
fn open_stopped(data_dir: &Path) -> anyhow::Result<Arc<EmbeddedStore>> {
    let path = data_dir.join("kybern.db");
    if !path.exists() {
        anyhow::bail!(
            "no embedded store at {} (is --data-dir the server's? with --storage etcd, rewrite Secrets through the API instead: kubectl get secrets -A -o json | kubectl replace -f -)",
            path.display()
        );
    }
    match EmbeddedStore::open(&path) {
        Err(StorageError::InUse(_)) => anyhow::bail!(
            "the server is running on {}: stop `kybern server`/`kybern up` first (secrets-encrypt works on a stopped data dir and holds its store while it runs)",
            data_dir.display()
        ),
        r => r.with_context(|| format!("opening {}", path.display())),
    }
}

fn progress(done: usize, total: usize) {
    if done.is_multiple_of(100) || done == total {
        println!("re-encrypted {done}/{total} records");
    }
}

fn finish(report: &reencrypt::Report) -> anyhow::Result<()> {
    println!(
        "done: {} rewritten, {} already current, {} unreadable",
        report.rewritten,
        report.current,
        report.unreadable.len()
    );
    for (key, reason) in &report.unreadable {
        eprintln!("unreadable: {key}: {reason}");
    }
    if !report.unreadable.is_empty() {
        anyhow::bail!(
            "{} records could not be read and were left as they are; every key stays in the configuration",
            report.unreadable.len()
        );
    }
    Ok(())
}

/// Key names only need to differ from the file's others; the time says which is newer.
fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}
