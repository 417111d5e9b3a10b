//! host-gw: a route to every other node's podCIDR(s) through that node's InternalIP, as
//! flannel's host-gw backend does (it uses the node's public IP; ours is the InternalIP).
//! Driven by the shared store: whenever Nodes change, the routes are made exactly those of
//! the nodes listed (proto 75), so a node that leaves takes its route with it.

use std::sync::Arc;
use std::time::Duration;

use super::ipam::Cidr;
use super::{Network, PeerRoute};
use crate::services::{ClusterState, NodeInfo, Subscription};

/// How long to wait before trying a failed sync again.
const RETRY: Duration = Duration::from_secs(5);

/// The routes to other nodes' pods: one per podCIDR of every node but `own` that has an
/// InternalIP, ordered by node name.
pub fn peer_routes(nodes: &[Arc<NodeInfo>], own: &str) -> Vec<PeerRoute> {
    let mut nodes: Vec<&Arc<NodeInfo>> = nodes.iter().filter(|n| &*n.name != own).collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut routes = Vec::new();
    for node in nodes {
        let Some(node_ip) = node.internal.first() else {
            if !node.pod_cidrs.is_empty() {
                tracing::debug!(node = %node.name, "no InternalIP yet; no route to its pods");
            }
            continue;
        };
        routes.extend(node.pod_cidrs.iter().map(|cidr| PeerRoute {
            pod_cidr: cidr.to_string(),
            node_ip: *node_ip,
        }));
    }
    routes
}

/// Keeps the peer routes in step with the Nodes until the agent stops. Nothing is synced
/// before the store's first full lists (an empty list then would remove every route).
pub async fn run(mut changes: Subscription, network: Arc<dyn Network>, own: String, cluster: Cidr) {
    let mut failed = false;
    loop {
        let next = if failed {
            tokio::select! {
                changes = changes.next() => Some(changes),
                () = tokio::time::sleep(RETRY) => None,
            }
        } else {
            Some(changes.next().await)
        };
        let due = match next {
            Some(c) => c.synced && (c.nodes || c.became_synced || failed),
            None => changes.state().is_synced(),
        };
        if !due {
            continue;
        }
        failed = !sync(changes.state(), network.as_ref(), &own, cluster).await;
    }
}

async fn sync(state: &ClusterState, network: &dyn Network, own: &str, cluster: Cidr) -> bool {
    let routes = peer_routes(&state.nodes(), own);
    match network.sync_peer_routes(cluster, &routes).await {
        Ok(()) => {
            tracing::debug!(peers = routes.len(), "routes to other nodes' pods synced");
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "syncing the routes to other nodes' pods; retrying");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::network::fake::FakeNetwork;
    use crate::network::ipam::Cidr;

    fn node(name: &str, ip: Option<[u8; 4]>, cidrs: &[&str]) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            internal: ip.into_iter().map(Ipv4Addr::from).collect(),
            external: vec![],
            pod_cidrs: cidrs.iter().map(|c| Cidr::parse(c).unwrap()).collect(),
        }
    }

    fn route(cidr: &str, ip: [u8; 4]) -> PeerRoute {
        PeerRoute {
            pod_cidr: cidr.into(),
            node_ip: ip.into(),
        }
    }

    #[test]
    fn every_other_node_with_a_pod_cidr_and_an_internal_ip_gets_a_route() {
        let nodes: Vec<Arc<NodeInfo>> = [
            node(
                "n3",
                Some([198, 18, 0, 3]),
                &["10.42.2.0/24", "10.42.9.0/24"],
            ),
            node("n1", Some([198, 18, 0, 1]), &["10.42.0.0/24"]),
            node("n2", Some([198, 18, 0, 2]), &["10.42.1.0/24"]),
            node("new", Some([198, 18, 0, 4]), &[]),
            node("no-ip", None, &["10.42.5.0/24"]),
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        assert_eq!(
            peer_routes(&nodes, "n1"),
            [
                route("10.42.1.0/24", [198, 18, 0, 2]),
                route("10.42.2.0/24", [198, 18, 0, 3]),
                route("10.42.9.0/24", [198, 18, 0, 3]),
            ]
        );
    }

    /// Waits (bounded) until the fake holds `want`.
    async fn routes_become(fake: &FakeNetwork, want: Vec<PeerRoute>, what: &str) {
        for _ in 0..500 {
            if fake.peer_routes() == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}: routes {:?}, want {want:?}", fake.peer_routes());
    }

    #[tokio::test]
    async fn routes_follow_nodes_joining_and_leaving_once_the_store_is_synced() {
        let state = ClusterState::new();
        let fake = Arc::new(FakeNetwork::initialised("10.42.0.0/24"));
        let task = tokio::spawn(run(
            state.subscribe(),
            fake.clone(),
            "n1".into(),
            Cidr::parse("10.42.0.0/16").unwrap(),
        ));
        state.replace_nodes(vec![
            node("n1", Some([198, 18, 0, 1]), &["10.42.0.0/24"]),
            node("n2", Some([198, 18, 0, 2]), &["10.42.1.0/24"]),
        ]);
        tokio::task::yield_now().await;
        assert!(
            fake.calls().is_empty(),
            "nothing is synced before every kind is listed: {:?}",
            fake.calls()
        );
        state.replace_services(vec![]);
        state.replace_slices(vec![]);
        state.replace_service_cidrs(vec![]);
        routes_become(
            &fake,
            vec![route("10.42.1.0/24", [198, 18, 0, 2])],
            "synced",
        )
        .await;

        state.set_node(
            "n3",
            Some(node("n3", Some([198, 18, 0, 3]), &["10.42.2.0/24"])),
        );
        routes_become(
            &fake,
            vec![
                route("10.42.1.0/24", [198, 18, 0, 2]),
                route("10.42.2.0/24", [198, 18, 0, 3]),
            ],
            "a node joined",
        )
        .await;
        state.set_node("n2", None);
        routes_become(
            &fake,
            vec![route("10.42.2.0/24", [198, 18, 0, 3])],
            "a node left",
        )
        .await;
        task.abort();
    }
}
