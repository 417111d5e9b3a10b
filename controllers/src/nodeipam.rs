//! Node IPAM: every Node without `spec.podCIDR` gets a free /24 of the cluster CIDR
//! (10.42.0.0/16 by default), written to `podCIDR` and `podCIDRs` (upstream
//! pkg/controller/nodeipam, the range allocator). A CIDR is free when no node in the
//! cache holds it and none was handed out but not yet seen there, so the allocated set
//! is rebuilt from the nodes on every start, and a deleted node's CIDR is free again as
//! soon as the cache forgets the node. Nodes that set their own podCIDR are left alone.
//! When the range is exhausted the node gets a `CIDRNotAvailable` Event and is retried.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::runtime::Controller;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{info, instrument, warn};

use crate::runtime::informers::Informers;
use crate::{Context, LoopFuture};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "invalid cluster CIDR {0:?}: want an IPv4 a.b.c.d/n with n at most the node mask size"
    )]
    BadClusterCidr(String),
    #[error("no free /{mask} left in the cluster CIDR {cidr} for node {node}")]
    Exhausted {
        node: String,
        cidr: String,
        mask: u8,
    },
    #[error("setting the pod CIDR of node {node}: {source}")]
    Patch { node: String, source: kube::Error },
}

impl crate::runtime::retry::ReconcileError for Error {
    fn retry_after(&self) -> Option<Duration> {
        // Nothing frees a block of the cluster CIDR soon.
        matches!(self, Error::Exhausted { .. }).then_some(Duration::from_secs(30))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to allocate from.
#[derive(Clone, Debug)]
pub struct Config {
    /// The cluster CIDR (`--cluster-cidr`).
    pub cluster_cidr: String,
    /// The prefix length of each node's block (`--node-cidr-mask-size`).
    pub node_mask: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster_cidr: "10.42.0.0/16".into(),
            node_mask: 24,
        }
    }
}

/// The blocks of a cluster CIDR, numbered 0..count: block i of 10.42.0.0/16 with /24
/// blocks is 10.42.i.0/24.
#[derive(Clone, Debug, PartialEq)]
pub struct Range {
    base: u32,
    cluster_mask: u8,
    node_mask: u8,
}

impl Range {
    pub fn parse(cidr: &str, node_mask: u8) -> Result<Range> {
        let bad = || Error::BadClusterCidr(cidr.to_string());
        let (ip, len) = cidr.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let cluster_mask: u8 = len.parse().map_err(|_| bad())?;
        if cluster_mask > node_mask || node_mask > 32 || node_mask - cluster_mask > 24 {
            return Err(bad());
        }
        let host_bits = 32 - u32::from(cluster_mask);
        let base = u32::from(ip) & !(u32::MAX.checked_shr(32 - host_bits).unwrap_or(0));
        Ok(Range {
            base,
            cluster_mask,
            node_mask,
        })
    }

    /// How many node blocks the range holds: 2^(24-16) = 256 for a /16 in /24s.
    pub fn count(&self) -> u32 {
        1 << (self.node_mask - self.cluster_mask)
    }

    pub fn block(&self, i: u32) -> String {
        let start = self.base + (i << (32 - u32::from(self.node_mask)));
        format!("{}/{}", Ipv4Addr::from(start), self.node_mask)
    }

    /// The block number of `cidr`, if it is one of this range's blocks.
    pub fn index_of(&self, cidr: &str) -> Option<u32> {
        let (ip, len) = cidr.split_once('/')?;
        if len.parse::<u8>().ok()? != self.node_mask {
            return None;
        }
        let ip = u32::from(ip.parse::<Ipv4Addr>().ok()?);
        let offset = ip.checked_sub(self.base)?;
        let i = offset >> (32 - u32::from(self.node_mask));
        (i < self.count() && self.block(i) == cidr).then_some(i)
    }

    /// The lowest block not in `used`, if any is left.
    pub fn first_free(&self, used: &BTreeSet<u32>) -> Option<u32> {
        (0..self.count()).find(|i| !used.contains(i))
    }
}

/// The blocks held by `nodes` (each node's podCIDRs, or its podCIDR).
pub fn used_blocks<'a>(range: &Range, nodes: impl IntoIterator<Item = &'a Node>) -> BTreeSet<u32> {
    nodes
        .into_iter()
        .filter_map(|n| n.spec.as_ref())
        .flat_map(|s| {
            s.pod_cidrs
                .clone()
                .unwrap_or_default()
                .into_iter()
                .chain(s.pod_cidr.clone())
        })
        .filter_map(|c| range.index_of(&c))
        .collect()
}

pub fn has_pod_cidr(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_deref())
        .is_some_and(|c| !c.is_empty())
}

pub struct State {
    client: kube::Client,
    nodes: Store<Node>,
    range: Range,
    /// Blocks handed out (node name -> block) that the cache may not show yet. One lock
    /// for the whole allocation, so two nodes never get the same block.
    in_flight: Mutex<BTreeMap<String, u32>>,
}

pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        // `--cluster-cidr` and `--node-cidr-mask-size`, through the context's settings.
        let config = ctx.settings.get::<Config>().cloned().unwrap_or_default();
        run_with(&ctx.informers, config).await?;
        anyhow::bail!("the nodeipam controller stopped")
    })
}

/// Runs the allocator over `config`'s range until the node watch ends.
pub async fn run_with(informers: &Informers, config: Config) -> Result<()> {
    let range = Range::parse(&config.cluster_cidr, config.node_mask)?;
    let nodes = informers.all::<Node>();
    nodes.synced().await;
    let state = Arc::new(State {
        client: informers.client().clone(),
        nodes: nodes.store(),
        range,
        in_flight: Mutex::default(),
    });
    Controller::for_shared_stream(nodes.touched(), nodes.store())
        .run(
            crate::runtime::metrics::metered(reconcile),
            crate::runtime::retry::error_policy,
            state,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "nodeipam reconcile failed");
            }
        })
        .await;
    Ok(())
}

/// Picks a block for `node`: none if it has one; the block already handed to it if a
/// write is in flight; else the lowest block neither cached nor in flight.
fn choose(state: &State, node: &str) -> Option<u32> {
    let nodes = state.nodes.state();
    let mut in_flight = state.in_flight.lock().expect("nodeipam lock");
    // Forget hand-outs the cache now shows, or whose node is gone.
    in_flight.retain(|name, _| {
        nodes
            .iter()
            .any(|n| n.name_any() == *name && !has_pod_cidr(n))
    });
    if let Some(i) = in_flight.get(node) {
        return Some(*i);
    }
    let mut used = used_blocks(&state.range, nodes.iter().map(Arc::as_ref));
    used.extend(in_flight.values());
    let i = state.range.first_free(&used)?;
    in_flight.insert(node.to_string(), i);
    Some(i)
}

#[instrument(skip_all, fields(node = %node.name_any()))]
async fn reconcile(node: Arc<Node>, state: Arc<State>) -> Result<Action> {
    if has_pod_cidr(&node) || node.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = node.name_any();
    // Allocate only from a complete view of the nodes: a partial one would hand out
    // blocks that existing nodes hold.
    if state.nodes.wait_until_ready().await.is_err() {
        return Ok(Action::await_change());
    }
    let Some(i) = choose(&state, &name) else {
        let err = Error::Exhausted {
            node: name.clone(),
            cidr: state.range.block(0),
            mask: state.range.node_mask,
        };
        let message = format!("Node {name} status is now: CIDRNotAvailable");
        if let Err(e) = crate::podcontrol::record_event(
            &state.client,
            &*node,
            "Normal",
            "CIDRNotAvailable",
            &message,
            "nodeipam",
        )
        .await
        {
            warn!(error = %e, "recording the CIDRNotAvailable event");
        }
        return Err(err);
    };
    let cidr = state.range.block(i);
    // The resourceVersion makes the patch fail (409) if the node changed since the cache
    // saw it, e.g. its kubelet set a podCIDR meanwhile; podCIDR cannot change once set.
    let patch = json!({
        "metadata": {"resourceVersion": node.resource_version()},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
    });
    let result = Api::<Node>::all(state.client.clone())
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    match result {
        Ok(_) => {
            info!(%cidr, "allocated pod CIDR");
            Ok(Action::await_change())
        }
        Err(source) => {
            state.in_flight.lock().expect("nodeipam lock").remove(&name);
            Err(Error::Patch { node: name, source })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;

    fn node(cidr: Option<&str>) -> Node {
        Node {
            spec: Some(NodeSpec {
                pod_cidr: cidr.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn blocks_of_the_cluster_cidr_are_numbered_in_order() {
        let r = Range::parse("10.42.0.0/16", 24).unwrap();
        assert_eq!(r.count(), 256);
        assert_eq!(r.block(0), "10.42.0.0/24");
        assert_eq!(r.block(255), "10.42.255.0/24");
        let cases = [
            ("first", "10.42.0.0/24", Some(0)),
            ("last", "10.42.255.0/24", Some(255)),
            ("not aligned", "10.42.3.7/24", None),
            ("other size", "10.42.3.0/25", None),
            ("outside", "10.43.0.0/24", None),
            ("garbage", "x", None),
        ];
        for (name, cidr, want) in cases {
            assert_eq!(r.index_of(cidr), want, "{name}");
        }
        let small = Range::parse("10.0.0.0/22", 24).unwrap();
        assert_eq!((small.count(), small.block(3).as_str()), (4, "10.0.3.0/24"));
        assert!(
            Range::parse("10.0.0.0/25", 24).is_err(),
            "a range smaller than a block"
        );
    }

    #[test]
    fn allocation_skips_held_blocks_reuses_freed_ones_and_runs_out() {
        let r = Range::parse("10.0.0.0/22", 24).unwrap();
        let cases: [(&str, Vec<Node>, Option<u32>); 5] = [
            ("empty range gives the first", vec![], Some(0)),
            (
                "held blocks are skipped",
                vec![node(Some("10.0.0.0/24")), node(Some("10.0.1.0/24"))],
                Some(2),
            ),
            (
                "a freed block is reused",
                vec![node(Some("10.0.0.0/24")), node(Some("10.0.2.0/24"))],
                Some(1),
            ),
            (
                "blocks outside the range do not count",
                vec![node(Some("10.42.0.0/24")), node(None)],
                Some(0),
            ),
            (
                "exhausted",
                vec![
                    node(Some("10.0.0.0/24")),
                    node(Some("10.0.1.0/24")),
                    node(Some("10.0.2.0/24")),
                    node(Some("10.0.3.0/24")),
                ],
                None,
            ),
        ];
        for (name, nodes, want) in cases {
            assert_eq!(r.first_free(&used_blocks(&r, &nodes)), want, "{name}");
        }
    }
}
