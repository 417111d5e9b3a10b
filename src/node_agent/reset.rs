//! `kybern agent --reset`: undoes what the agent made on this host.

use agent::network::{HostState, Network};
use agent::runtime::daemon::ContainerdDaemon;
use agent::runtime::Runtime;
use anyhow::Context;

use super::{containerd, host_network, NodeArgs};

/// Stops and removes every container, sandbox and pod volume the agent made, the service
/// proxy's nftables table, the safety routes and host rule it recorded, the routes to other
/// nodes' pods and the bridge (the DNS address goes with it), and stops the private
/// containerd. Images stay.
pub(crate) async fn reset(args: NodeArgs) -> anyhow::Result<()> {
    let runtime = containerd(&args).await?;
    let all = runtime.list_containers().await?;
    eprintln!("removing {} containers", all.len());
    for c in all {
        let _ = runtime.kill(&c.id, 9).await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), runtime.wait(&c.id)).await;
        runtime
            .delete(&c.id)
            .await
            .with_context(|| format!("deleting container {}", c.id))?;
    }
    let state_dir = args.dir().join("network");
    let net = host_network(&args);
    for uid in net.sandboxes().await? {
        net.teardown(&uid)
            .await
            .with_context(|| format!("removing the sandbox of pod {uid}"))?;
    }
    // The table recorded at start wins over the flags, which may have changed since.
    let recorded = HostState::load(&state_dir).with_context(|| {
        format!(
            "reading what the agent installed under {}",
            state_dir.display()
        )
    })?;
    let table = recorded.nft_table.unwrap_or_else(|| args.nft_table());
    agent::proxy::remove_table(&table)
        .await
        .with_context(|| format!("removing the nftables table {table}"))?;
    net.remove_host_routing()
        .await
        .context("removing the unreachable routes and the host rule for the service range")?;
    let cluster = match &recorded.cluster_cidr {
        Some(text) => agent::network::ipam::Cidr::parse(text)
            .with_context(|| format!("the recorded cluster CIDR {text:?}"))?,
        None => args.net.cluster_cidr,
    };
    net.remove_peer_routes(cluster)
        .await
        .context("removing the routes to other nodes' pods")?;
    net.remove_bridge().await?;
    let pods_dir = args.dir().join("pods");
    for uid in agent::volumes::pod_dirs(&pods_dir)
        .with_context(|| format!("listing {}", pods_dir.display()))?
    {
        agent::volumes::teardown(&pods_dir, &uid)
            .await
            .with_context(|| format!("removing the volumes of pod {uid}"))?;
    }
    if args.containerd_socket.is_none() {
        ContainerdDaemon::stop_recorded(&args.dir().join("containerd")).await?;
    }
    let _ = std::fs::remove_dir_all(args.dir().join("logs"));
    let _ = std::fs::remove_dir_all(args.dir().join("io"));
    eprintln!("reset done");
    Ok(())
}
