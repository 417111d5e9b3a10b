//! The service proxy: programs Services into this agent's own nftables table (family `ip`),
//! as kube-proxy's nftables mode does: verdict maps from service addresses to per-service
//! chains, a random pick among per-endpoint chains that DNAT, ClientIP affinity sets,
//! external and internal traffic policies, rejects for Services without endpoints. It never
//! touches another table.
//!
//! `names` spells chains, `categorize` picks endpoints, `render` writes nft text (pure),
//! `sync` decides full or partial transactions, `netlink` sends those `nfnl` can encode
//! (partial syncs) straight to the kernel and the rest to `nft`, `conntrack` clears stale
//! UDP flows, `metrics` serves the figures.

pub mod categorize;
pub mod conntrack;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
#[cfg(test)]
mod fake_trace;
pub mod metrics;
pub mod names;
pub mod netlink;
mod nfnl;
pub mod nft;
pub mod render;
pub mod sync;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::network::ipam::Cidr;
use crate::services::{ClusterState, ServiceKey};

use self::conntrack::{Conntrack, ConntrackCli};
use self::metrics::Metrics;
use self::netlink::NftNetlink;
use self::nft::{Nftables, Transaction};
use self::render::Context;
use self::sync::Syncer;

/// What the proxy needs to know about this node and cluster.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub node_name: String,
    /// `--cluster-cidr`: pod traffic from inside it is not masqueraded to ClusterIPs.
    pub cluster_cidr: Cidr,
    /// `--service-cidr` (unioned with the watched ServiceCIDR objects).
    pub service_cidr: Cidr,
    /// The cluster DNS address this agent serves itself; the proxy lets it through.
    pub cluster_dns: Ipv4Addr,
    /// The one nftables table (family `ip`) the proxy owns.
    pub nft_table: String,
    /// `--metrics-bind-address`, or none.
    pub metrics: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("nftables: {0}")]
    Nft(#[from] nft::Error),
    #[error("serving proxy metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// How often the canary checks that the table was not flushed or deleted under us.
const CANARY_PERIOD: Duration = Duration::from_secs(10);
/// kube-proxy's longest interval between full syncs.
const FULL_SYNC_PERIOD: Duration = Duration::from_secs(3600);
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Runs the proxy until the agent stops. `synced` is fired after the first full sync.
pub async fn run(
    config: ProxyConfig,
    state: Arc<ClusterState>,
    synced: tokio::sync::oneshot::Sender<()>,
) -> Result<(), Error> {
    let metrics = Metrics::default();
    if let Some(addr) = config.metrics {
        metrics::listen(addr, metrics.clone())
            .await
            .map_err(|source| Error::Metrics { addr, source })?;
    }
    let parts = Parts {
        nft: Arc::new(NftNetlink::new()),
        conntrack: Arc::new(ConntrackCli::new()),
        metrics,
        canary_period: CANARY_PERIOD,
    };
    run_with(config, state, synced, parts).await
}

/// The side effects `run_with` uses; tests pass fakes or namespaced real ones.
pub struct Parts {
    pub nft: Arc<dyn Nftables>,
    pub conntrack: Arc<dyn Conntrack>,
    pub metrics: Metrics,
    /// How often the canary looks at the table (10 s in the agent).
    pub canary_period: Duration,
}

/// The sync loop: syncs at once when something changed (changes arriving during a sync go
/// into the next one), retries a failed sync as a full one after 1 s doubling to 30 s,
/// deletes stale chains when due, and checks the canary every 10 s.
pub async fn run_with(
    config: ProxyConfig,
    state: Arc<ClusterState>,
    synced: tokio::sync::oneshot::Sender<()>,
    parts: Parts,
) -> Result<(), Error> {
    let mut subscription = state.subscribe();
    let mut syncer = Syncer::new(parts.nft.clone(), &config.nft_table);
    let mut synced = Some(synced);
    let mut pending: BTreeSet<ServiceKey> = BTreeSet::new();
    let mut retry: Option<(Instant, Duration)> = None;
    let mut last_full = Instant::now();
    let mut canary = tokio::time::interval(parts.canary_period);
    canary.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When the last sync ran: while syncs keep coming they delete stale chains themselves,
    // so the deletion timer waits for a quiet second.
    let mut last_sync = Instant::now();
    loop {
        let far = Instant::now() + FULL_SYNC_PERIOD;
        let deletion = syncer
            .next_deletion()
            .map_or(far, |due| due.max(last_sync + sync::STALE_DELAY));
        let retry_at = retry.map(|(at, _)| at).unwrap_or(far);
        tokio::select! {
            changes = subscription.next() => pending.extend(changes.services),
            _ = canary.tick(), if synced.is_none() => {
                match syncer.canary_ok().await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::info!(table = %config.nft_table, "service proxy: table was flushed or deleted, resyncing");
                        syncer.want_full();
                    }
                    Err(e) => tracing::warn!(error = %e, "service proxy: checking the canary"),
                }
            }
            _ = tokio::time::sleep_until(deletion.into()) => {
                if let Err(e) = syncer.delete_stale(Instant::now()).await {
                    tracing::warn!(error = %e, "service proxy: deleting stale chains");
                }
            }
            _ = tokio::time::sleep_until(retry_at.into()), if retry.is_some() => {}
        }
        if let Some(more) = subscription.take() {
            pending.extend(more.services);
        }
        if !state.is_synced() {
            continue;
        }
        if last_full.elapsed() >= FULL_SYNC_PERIOD {
            syncer.want_full();
        }
        if retry.is_some_and(|(at, _)| Instant::now() < at) {
            continue;
        }
        // Node and ServiceCIDR changes name no Service: they matter when the context moved.
        let ctx = context(&config, &state);
        if pending.is_empty() && !syncer.needs_full() && !syncer.context_changed(&ctx) {
            continue;
        }
        let started = Instant::now();
        last_sync = started;
        let changed = std::mem::take(&mut pending);
        match syncer.sync(&state, &changed, ctx, started).await {
            Ok(report) => {
                parts.metrics.synced(report.kind, started.elapsed());
                if report.kind == sync::SyncKind::Full {
                    last_full = Instant::now();
                }
                retry = None;
                tracing::debug!(kind = report.kind.label(), services = changed.len(), took = ?started.elapsed(), "service proxy: synced");
                for flow in &report.flows {
                    if let Err(e) = parts.conntrack.clear(flow).await {
                        tracing::warn!(error = %e, "service proxy: clearing stale UDP flows");
                    }
                }
                if let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
            }
            Err(e) => {
                parts.metrics.failed();
                let wait = retry.map_or(RETRY_FIRST, |(_, w)| (w * 2).min(RETRY_MAX));
                tracing::warn!(error = %e, retry_in = ?wait, "service proxy: sync failed");
                retry = Some((Instant::now() + wait, wait));
            }
        }
    }
}

/// This node and cluster as the rules need them, from the flags and the store.
pub fn context(config: &ProxyConfig, state: &ClusterState) -> Context {
    let mut nodeport_ips = Vec::new();
    if let Some(node) = state.node(&config.node_name) {
        for ip in node.internal.iter().chain(&node.external) {
            if ip.is_loopback() {
                // As upstream's nftables mode: NodePorts are not served on localhost.
                continue;
            }
            if !nodeport_ips.contains(ip) {
                nodeport_ips.push(*ip);
            }
        }
    }
    let mut cidrs = state.service_cidrs();
    cidrs.push(config.service_cidr);
    Context {
        node: config.node_name.clone(),
        cluster_cidr: config.cluster_cidr,
        service_cidrs: render::outermost(cidrs),
        cluster_dns: config.cluster_dns,
        nodeport_ips,
    }
}

/// Removes the proxy's nftables table (`kybern agent --reset`); absent is fine.
pub async fn remove_table(table: &str) -> Result<(), Error> {
    remove_table_with(&nft::NftCli::new(), table).await
}

pub async fn remove_table_with(nft: &dyn Nftables, table: &str) -> Result<(), Error> {
    let mut tx = Transaction::new(table);
    tx.delete_table();
    match nft.run(&tx).await {
        Ok(()) | Err(nft::Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
#[path = "proxy/render_tests.rs"]
mod render_tests;
#[cfg(test)]
#[path = "proxy/sync_tests.rs"]
mod sync_tests;
#[cfg(test)]
#[path = "proxy/trace_tests.rs"]
mod trace_tests;
