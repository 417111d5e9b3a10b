//! `kybern images import TAR...`: image archives (OCI image layouts or `docker save`
//! tarballs) loaded into the containerd of a running node, found through the same
//! --data-dir / --agent-dir as `kybern up` and `kybern agent`; and the agent's
//! `<agent-dir>/images/` folder, whose archives are imported at start and whenever new
//! ones appear there (as k3s's agent/images).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use agent::runtime::containerd::{Containerd, DEFAULT_NAMESPACE};
use agent::runtime::Runtime;
use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub(crate) enum ImagesCommand {
    /// Load image archives into the node's containerd (while `kybern up` or `kybern
    /// agent` runs). Pods use them with a tagged image and `imagePullPolicy: IfNotPresent`.
    Import(ImportArgs),
}

#[derive(Args)]
pub(crate) struct ImportArgs {
    /// OCI image layouts or `docker save` archives (.tar).
    #[arg(required = true, value_name = "TAR")]
    tars: Vec<PathBuf>,
    /// The data dir `kybern up` runs with (its agent dir is <data-dir>/agent).
    #[arg(long, default_value = "/var/lib/kybern")]
    data_dir: PathBuf,
    /// The agent dir `kybern agent` runs with (overrides --data-dir).
    #[arg(long)]
    agent_dir: Option<PathBuf>,
    /// The containerd socket the agent uses, when it was given --containerd-socket.
    #[arg(long)]
    containerd_socket: Option<PathBuf>,
}

pub(crate) async fn run(command: ImagesCommand) -> anyhow::Result<()> {
    let ImagesCommand::Import(args) = command;
    let agent_dir = args
        .agent_dir
        .clone()
        .unwrap_or_else(|| args.data_dir.join("agent"));
    let socket = args
        .containerd_socket
        .clone()
        .unwrap_or_else(|| agent_dir.join("containerd/containerd.sock"));
    if !socket.exists() {
        anyhow::bail!(
            "no containerd socket at {}: start the node first (`kybern up --data-dir {}`, or `kybern agent --agent-dir {}`), or pass the --data-dir/--agent-dir it runs with",
            socket.display(),
            args.data_dir.display(),
            agent_dir.display()
        );
    }
    let runtime = Containerd::connect(&socket, DEFAULT_NAMESPACE)
        .await
        .with_context(|| {
            format!(
                "connecting to containerd at {}; is `kybern up` or `kybern agent` running?",
                socket.display()
            )
        })?;
    let mut failed = 0;
    for tar in &args.tars {
        if let Err(e) = import(&runtime, tar).await {
            eprintln!("error: {e:#}");
            failed += 1;
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} archives were not imported", args.tars.len());
    }
    Ok(())
}

/// Imports one archive, saying what it does and, on failure, what to do about it.
pub(crate) async fn import(runtime: &dyn Runtime, tar: &Path) -> anyhow::Result<Vec<String>> {
    let data = std::fs::read(tar).with_context(|| format!("reading {}", tar.display()))?;
    eprintln!(
        "importing {} ({:.1} MiB)...",
        tar.display(),
        data.len() as f64 / (1024.0 * 1024.0)
    );
    let names = runtime.import_image(&data).await.with_context(|| {
        format!(
            "importing {}: it must be an OCI image layout or a `docker save` archive (make one with `docker save IMAGE:TAG -o FILE.tar`, `podman save --format oci-archive` or `skopeo copy docker://IMAGE oci-archive:FILE.tar`)",
            tar.display()
        )
    })?;
    eprintln!(
        "imported {} from {}; use it with imagePullPolicy: IfNotPresent",
        names.join(", "),
        tar.display()
    );
    Ok(names)
}

/// How often the images folder is looked at for new archives.
const WATCH_EVERY: Duration = Duration::from_secs(5);

/// Imports the archives in `dir` (created when missing) now and whenever one appears or
/// changes; a failed import is retried when its file changes. Runs until dropped.
pub(crate) async fn watch_folder(runtime: std::sync::Arc<dyn Runtime>, dir: PathBuf) {
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "creating the images folder");
    }
    let mut seen: BTreeMap<PathBuf, (u64, SystemTime)> = BTreeMap::new();
    let mut ticks = tokio::time::interval(WATCH_EVERY);
    loop {
        ticks.tick().await;
        for (path, stamp) in archives(&dir) {
            if seen.get(&path) == Some(&stamp) {
                continue;
            }
            if let Err(e) = import(runtime.as_ref(), &path).await {
                eprintln!("error: {e:#}");
            }
            seen.insert(path, stamp);
        }
    }
}

/// The `.tar` files in `dir` with their size and modification time, once unchanged for a
/// moment (a file being copied in is still growing).
fn archives(dir: &Path) -> Vec<(PathBuf, (u64, SystemTime))> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let settled = SystemTime::now() - Duration::from_secs(2);
    let mut out: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        .filter_map(|p| {
            let m = std::fs::metadata(&p).ok()?;
            let modified = m.modified().ok()?;
            (modified <= settled).then_some((p, (m.len(), modified)))
        })
        .collect();
    out.sort();
    out
}
