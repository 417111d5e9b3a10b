//! Running control loops: choosing them by name, each under its own leader election,
//! and restarting one that fails after a back-off, so one broken loop never stops the
//! others (kube-controller-manager runs its controllers the same way).

pub mod discovery;
pub mod informers;
pub mod metrics;
pub mod own_watch;
pub mod retry;

use std::sync::Arc;
use std::time::Duration;

use crate::leader::Elector;
use crate::{Context, Loop};

/// Re-executes this process once with glibc's allocator settings `settings` (environment
/// variables such as `MALLOC_ARENA_MAX`), keeping any the user set, so a long-running
/// process gets them from its first allocation. Returns (and the process runs
/// untuned) only if the exec fails. The same pid runs on, so a supervisor or a benchmark
/// still sees one process.
pub fn reexec_with_malloc_settings(settings: &[(&str, &str)]) {
    use std::os::unix::process::CommandExt;
    const MARK: &str = "KYBERN_ALLOCATOR_TUNED";
    if std::env::var_os(MARK).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1)).env(MARK, "1");
    for (k, v) in settings {
        if std::env::var_os(k).is_none() {
            cmd.env(k, v);
        }
    }
    let err = cmd.exec();
    eprintln!("could not re-execute with a tuned allocator ({err}); continuing");
}

/// Back-off before restarting a failed loop: 1 s, doubling to at most 60 s.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown control loop {name:?}; known loops: {}", known.join(", "))]
    UnknownLoop { name: String, known: Vec<String> },
}

/// Names of every loop of `all` (the binary's loop table: `crate::loops()` and the
/// scheduler's), in its order.
pub fn known(all: &[Loop]) -> Vec<String> {
    all.iter().map(|l| l.name.to_string()).collect()
}

/// The loops to run: the named ones (all when `names` is empty) minus `disable`;
/// `controllers` in `disable` switches all off. Unknown names in `names` are an error;
/// in `disable` they are accepted and ignored, so a flag may name a loop that a later
/// version adds (or that lives elsewhere, like `scheduler`).
pub fn select(all: &[Loop], names: &[String], disable: &[String]) -> Result<Vec<Loop>, Error> {
    for n in names {
        if !all.iter().any(|l| l.name == n) {
            return Err(Error::UnknownLoop {
                name: n.clone(),
                known: known(all),
            });
        }
    }
    if disable.iter().any(|d| d == "controllers") {
        return Ok(Vec::new());
    }
    Ok(all
        .iter()
        .copied()
        .filter(|l| names.is_empty() || names.iter().any(|n| n == l.name))
        .filter(|l| !disable.iter().any(|d| d == l.name))
        .collect())
}

/// A leader-election identity: the host name and a random suffix, so two replicas on
/// one host differ.
pub fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "kybern".into());
    format!("{host}_{:08x}", fastrand::u32(..))
}

/// The component name kube-controller-manager's clients start their User-Agent with.
pub const CONTROLLER_MANAGER: &str = "kube-controller-manager";
/// The component name kube-scheduler's clients start their User-Agent with.
pub const SCHEDULER: &str = "kube-scheduler";

/// A context from a kubeconfig file: its client, a fresh identity, and the CA it
/// trusts the apiserver with (published as `kube-root-ca.crt`). Its requests say they
/// come from kube-controller-manager.
pub async fn context_from_kubeconfig(path: &std::path::Path) -> anyhow::Result<Context> {
    context_of(path, CONTROLLER_MANAGER).await
}

/// Like [`context_from_kubeconfig`], with the requests saying they come from
/// `component` (kube-scheduler's own process).
pub async fn context_of(path: &std::path::Path, component: &str) -> anyhow::Result<Context> {
    use anyhow::Context as _;
    let config = kubeconfig_config(path, component).await?;
    let ca_pem = config.root_cert.as_ref().map(|certs| {
        certs
            .iter()
            .map(|der| pem("CERTIFICATE", der))
            .collect::<String>()
    });
    let client = kube::Client::try_from(config).context("building a client from the kubeconfig")?;
    Ok(Context::new(client, identity()).with_ca(ca_pem))
}

/// Like [`context_from_kubeconfig`], but with `service_accounts` each loop acts as its
/// own service account (kube-controller-manager's `--use-service-account-credentials`):
/// the kubeconfig's identity asks for the accounts' tokens and runs the shared
/// informers.
pub async fn context_with_credentials(
    path: &std::path::Path,
    service_accounts: bool,
) -> anyhow::Result<Context> {
    let ctx = context_from_kubeconfig(path).await?;
    if !service_accounts {
        return Ok(ctx);
    }
    let config = kubeconfig_config(path, CONTROLLER_MANAGER).await?;
    let credentials = crate::identity::Credentials::new(ctx.client.clone(), config);
    Ok(ctx.with_credentials(Some(credentials)))
}

/// The client configuration of a kubeconfig file, for requests from `component`.
pub async fn kubeconfig_config(
    path: &std::path::Path,
    component: &str,
) -> anyhow::Result<kube::Config> {
    use anyhow::Context as _;
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("loading kubeconfig {}", path.display()))?;
    set_user_agent(&mut config, component);
    Ok(config)
}

/// Makes `config`'s requests say they come from `component`, as upstream's components
/// do (`kube-controller-manager/v1.33.0 (linux/amd64) kubernetes/...`). A write that
/// names no field manager is recorded under the User-Agent's first part, so the fields
/// the loops set show `manager: kube-controller-manager` as on any cluster, and tools
/// that ignore that manager's fields (Argo CD's `managedFieldsManagers`) work.
pub fn set_user_agent(config: &mut kube::Config, component: &str) {
    let value = format!(
        "{component}/v{} (linux/{}) kybern",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    let value = http::HeaderValue::from_str(&value).expect("a component name is a header value");
    config
        .headers
        .retain(|(name, _)| name != http::header::USER_AGENT);
    config.headers.push((http::header::USER_AGENT, value));
}

/// PEM armour: base64 in 64-character lines between BEGIN and END.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Runs the named loops (see [`select`]) until the process ends. Loops that need the
/// cluster CA (serviceaccount) get none; use [`run_with`] to pass it.
pub async fn run(
    all: &[Loop],
    names: &[String],
    client: kube::Client,
    disable: &[String],
) -> anyhow::Result<()> {
    run_with(all, names, Context::new(client, identity()), disable).await
}

/// Runs the named loops with a given context (its client, identity and CA).
pub async fn run_with(
    all: &[Loop],
    names: &[String],
    ctx: Context,
    disable: &[String],
) -> anyhow::Result<()> {
    let selected = select(all, names, disable)?;
    if selected.is_empty() {
        tracing::info!("no control loops to run");
        return Ok(());
    }
    let ctx = Arc::new(ctx);
    let mut tasks = tokio::task::JoinSet::new();
    for l in selected {
        tasks.spawn(lead_and_run(l, loop_context(&ctx, l.name)?));
    }
    while let Some(done) = tasks.join_next().await {
        done?;
    }
    Ok(())
}

/// The context loop `name` runs with: with credentials, one that acts as the loop's
/// own identity (its lease too), else the process's.
fn loop_context(ctx: &Arc<Context>, name: &str) -> anyhow::Result<Arc<Context>> {
    let Some(credentials) = &ctx.credentials else {
        return Ok(ctx.clone());
    };
    match credentials.client_for(name)? {
        Some(client) => {
            tracing::info!(control_loop = name, identity = ?crate::identity::of(name), "acting as");
            Ok(Arc::new(ctx.for_loop(client)))
        }
        None => {
            tracing::warn!(
                control_loop = name,
                "no identity of its own; acting with the process's credentials"
            );
            Ok(ctx.clone())
        }
    }
}

/// Runs one loop (under its lease, restarted after each failure) until the process
/// ends, without naming the others: a binary that runs only this loop (the standalone
/// `kybern-scheduler`) links only its code.
pub async fn run_one(l: Loop, ctx: Context) {
    lead_and_run(l, Arc::new(ctx)).await
}

/// One loop under its lease, restarted after each failure.
async fn lead_and_run(l: Loop, ctx: Arc<Context>) {
    let lease = format!("kybern-{}", l.name);
    let elector = Elector::new(ctx.client.clone(), &lease, &ctx.identity);
    ctx.metrics.set_leading(&lease, false);
    elector
        .run(|| {
            let leading = Leading::new(&ctx.metrics, &lease);
            let work = ctx
                .metrics
                .scope(l.name, supervise(l.name, l.run, ctx.clone()));
            async move {
                let _leading = leading;
                work.await
            }
        })
        .await
}

/// Marks a lease held in the metrics while it lives: the elector drops the work (and
/// this with it) when leadership is lost.
struct Leading {
    metrics: Arc<metrics::Metrics>,
    lease: String,
}

impl Leading {
    fn new(metrics: &Arc<metrics::Metrics>, lease: &str) -> Self {
        metrics.set_leading(lease, true);
        Leading {
            metrics: metrics.clone(),
            lease: lease.to_string(),
        }
    }
}

impl Drop for Leading {
    fn drop(&mut self) {
        self.metrics.set_leading(&self.lease, false);
    }
}

/// Runs a loop forever: a loop that returns (error or not) is started again after a
/// back-off that doubles up to a minute and resets once a run lasted that long.
async fn supervise(
    name: &'static str,
    run: fn(Arc<Context>) -> crate::LoopFuture,
    ctx: Arc<Context>,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        tracing::info!(control_loop = name, "starting");
        let started = tokio::time::Instant::now();
        match run(ctx.clone()).await {
            Ok(()) => tracing::warn!(control_loop = name, "ended; restarting"),
            Err(e) => tracing::error!(
                control_loop = name,
                error = format!("{e:#}"),
                ?backoff,
                "failed; restarting after back-off"
            ),
        }
        if started.elapsed() >= MAX_BACKOFF {
            backoff = FIRST_BACKOFF;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn selected(run: &[&str], disable: &[&str]) -> Vec<&'static str> {
        select(&crate::loops(), &names(run), &names(disable))
            .unwrap()
            .iter()
            .map(|l| l.name)
            .collect()
    }

    #[test]
    fn pem_wraps_base64_at_64_columns() {
        let p = pem("CERTIFICATE", &[0u8; 60]);
        let lines: Vec<&str> = p.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2].len(), 16);
        assert_eq!(lines[3], "-----END CERTIFICATE-----");
    }

    #[test]
    fn no_names_selects_every_loop_and_names_select_only_those() {
        let all = selected(&[], &[]);
        assert_eq!(all.len(), crate::loops().len());
        assert!(all.contains(&"servicelb"), "{all:?}");
        assert_eq!(selected(&["servicelb"], &[]), ["servicelb"]);
    }

    #[test]
    fn disabling_controllers_selects_none() {
        assert!(selected(&[], &["controllers"]).is_empty());
        assert!(selected(&["namespace"], &["controllers"]).is_empty());
    }

    #[test]
    fn disabled_loops_are_left_out_and_unknown_disables_ignored() {
        let got = selected(&[], &["namespace", "scheduler", "no-such-loop"]);
        assert!(!got.contains(&"namespace"));
        assert!(got.contains(&"garbagecollector"));
    }

    #[test]
    fn named_loops_only_are_selected() {
        assert_eq!(selected(&["serviceaccount"], &[]), vec!["serviceaccount"]);
    }

    #[test]
    fn an_unknown_name_is_an_error_listing_known_loops() {
        let err = select(&crate::loops(), &names(&["nope"]), &[])
            .err()
            .expect("an error")
            .to_string();
        assert!(
            err.contains("\"nope\"")
                && err.contains("namespace")
                && err.contains("garbagecollector"),
            "{err}"
        );
    }
}
