//! Safety routes: the service CIDR(s) and the cluster CIDR are routed `unreachable` (proto
//! 76, metric 4096), so no packet for a cluster address ever leaves the host by its default
//! route, whether or not the proxy's rules are in place. Longest-prefix match keeps this
//! node's podCIDR (the bridge's connected route) and other nodes' podCIDRs (host-gw, proto
//! 75) reachable. Host sockets still reach ClusterIPs through one policy rule
//! (`iif lo to <service-cidr> lookup 76`) and a route of that table to the bridge: the route
//! lookup of `connect()` succeeds, then nat-output DNATs to an endpoint.
//!
//! Every prefix this agent installs is first written to `host-state.json` in its state dir,
//! and a sync or `--reset` removes only prefixes listed there: agents sharing a host (tests,
//! several clusters) never remove each other's routes.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use futures::TryStreamExt;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType,
};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder};
use serde::{Deserialize, Serialize};

use super::ipam::Cidr;
use super::netlink::{errno, exists_ok, link_index, netlink_err, ESRCH};
use super::{io_err, Error, Result};

/// The routing protocol number marking safety routes as ours (`ip route` shows `proto 76`).
pub const PROTOCOL: u8 = 76;
/// Above any route a node normally has for the same prefix, so a connected route to this
/// node's podCIDR wins when the podCIDR equals the cluster CIDR (single-node tests).
pub const METRIC: u32 = 4096;
/// The table host-originated traffic to the service CIDR looks up.
pub const LOCAL_TABLE: u32 = 76;
/// The policy rule's priority: after `local` (0), before `main` (32766).
pub const RULE_PRIORITY: u32 = 32000;
const STATE_FILE: &str = "host-state.json";

/// What the host's routing should hold for this agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostRouting {
    /// Routed `unreachable` in the main table: the service CIDR(s) and the cluster CIDR.
    pub unreachable: Vec<Cidr>,
    /// Service CIDRs that host sockets reach through the bridge (the `iif lo` rule and the
    /// table-76 route). Empty before the bridge exists.
    pub local_service_cidrs: Vec<Cidr>,
}

/// What this agent installed on the host, so `--reset` removes exactly that even when the
/// flags changed since.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostState {
    #[serde(default)]
    pub unreachable: BTreeSet<String>,
    #[serde(default)]
    pub local_service_cidrs: BTreeSet<String>,
    /// The service proxy's nftables table.
    #[serde(default)]
    pub nft_table: Option<String>,
    /// The cluster CIDR: `--reset` removes the routes to other nodes' pods inside it only,
    /// whatever its flags say.
    #[serde(default)]
    pub cluster_cidr: Option<String>,
}

impl HostState {
    /// The state in `dir`; empty when there is none yet.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io_err(format!("read {}", path.display()))(std::io::Error::other(e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(io_err(format!("read {}", path.display()))(e)),
        }
    }

    /// Writes the state atomically (a temp file renamed over the old one).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(self).expect("plain data serializes");
        std::fs::write(&tmp, text).map_err(io_err(format!("write {}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(io_err(format!("write {}", path.display())))
    }

    /// Records the proxy's table before the proxy creates it.
    pub fn record_nft_table(dir: &Path, table: &str) -> Result<()> {
        let mut state = Self::load(dir)?;
        if state.nft_table.as_deref() != Some(table) {
            state.nft_table = Some(table.to_string());
            state.save(dir)?;
        }
        Ok(())
    }

    /// Records the cluster CIDR the peer routes live in, before any is added.
    pub fn record_cluster_cidr(dir: &Path, cidr: &Cidr) -> Result<()> {
        let mut state = Self::load(dir)?;
        let cidr = cidr.to_string();
        if state.cluster_cidr.as_deref() != Some(cidr.as_str()) {
            state.cluster_cidr = Some(cidr);
            state.save(dir)?;
        }
        Ok(())
    }

    fn include(&mut self, want: &HostRouting) {
        self.unreachable
            .extend(want.unreachable.iter().map(Cidr::to_string));
        self.local_service_cidrs
            .extend(want.local_service_cidrs.iter().map(Cidr::to_string));
    }

    fn keep_only(&mut self, want: &HostRouting) {
        let text = |all: &[Cidr]| all.iter().map(Cidr::to_string).collect::<BTreeSet<_>>();
        self.unreachable = text(&want.unreachable);
        self.local_service_cidrs = text(&want.local_service_cidrs);
    }
}

/// Makes the host's safety routes, rule and table-76 routes exactly `want`, touching only
/// prefixes recorded in `dir`'s state (which `want` is added to first).
pub(super) async fn sync(
    host: &Handle,
    bridge: &str,
    dir: &Path,
    want: &HostRouting,
) -> Result<()> {
    let mut state = HostState::load(dir)?;
    state.include(want);
    state.save(dir)?;
    let unreachable = text_set(&want.unreachable);
    let local = text_set(&want.local_service_cidrs);
    for route in routes(host).await? {
        let Some(cidr) = destination(&route) else {
            continue;
        };
        let stale = if is_unreachable(&route) {
            state.unreachable.contains(&cidr) && !unreachable.contains(&cidr)
        } else if is_local(&route) {
            state.local_service_cidrs.contains(&cidr) && !local.contains(&cidr)
        } else {
            false
        };
        if stale {
            delete_route(host, route).await?;
        }
    }
    for rule in rules(host).await? {
        if let Some(cidr) = rule_destination(&rule) {
            if state.local_service_cidrs.contains(&cidr) && !local.contains(&cidr) {
                delete_rule(host, rule).await?;
            }
        }
    }
    for cidr in &want.unreachable {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(cidr.network(), cidr.prefix())
            .kind(RouteType::Unreachable)
            .protocol(RouteProtocol::Other(PROTOCOL))
            .priority(METRIC)
            .build();
        exists_ok(
            host.route().add(route).execute().await,
            "add an unreachable route for a cluster range",
        )?;
    }
    if !want.local_service_cidrs.is_empty() {
        let index = link_index(host, bridge)
            .await?
            .ok_or(Error::NotInitialised)?;
        let present: BTreeSet<String> = rules(host)
            .await?
            .iter()
            .filter_map(rule_destination)
            .collect();
        for cidr in &want.local_service_cidrs {
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(cidr.network(), cidr.prefix())
                .output_interface(index)
                .protocol(RouteProtocol::Other(PROTOCOL))
                .table_id(LOCAL_TABLE)
                .build();
            host.route()
                .add(route)
                .replace()
                .execute()
                .await
                .map_err(netlink_err("add the host's route to the service range"))?;
            if !present.contains(&cidr.to_string()) {
                exists_ok(
                    host.rule()
                        .add()
                        .v4()
                        .input_interface("lo")
                        .destination_prefix(cidr.network(), cidr.prefix())
                        .table_id(LOCAL_TABLE)
                        .priority(RULE_PRIORITY)
                        .action(RuleAction::ToTable)
                        .execute()
                        .await,
                    "add the rule for host traffic to the service range",
                )?;
            }
        }
    }
    state.keep_only(want);
    state.save(dir)
}

/// Removes every route and rule recorded in `dir`'s state (`--reset`); gone ones are fine.
pub(super) async fn remove(host: &Handle, dir: &Path) -> Result<()> {
    sync(host, "", dir, &HostRouting::default()).await
}

fn text_set(all: &[Cidr]) -> BTreeSet<String> {
    all.iter().map(Cidr::to_string).collect()
}

async fn routes(host: &Handle) -> Result<Vec<RouteMessage>> {
    host.route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(netlink_err("list routes"))
}

async fn rules(host: &Handle) -> Result<Vec<RuleMessage>> {
    host.rule()
        .get(IpVersion::V4)
        .execute()
        .try_collect()
        .await
        .map_err(netlink_err("list rules"))
}

fn is_unreachable(route: &RouteMessage) -> bool {
    route.header.protocol == RouteProtocol::Other(PROTOCOL)
        && route.header.kind == RouteType::Unreachable
        && route.header.table == super::linux::RT_TABLE_MAIN
}

fn is_local(route: &RouteMessage) -> bool {
    route.header.protocol == RouteProtocol::Other(PROTOCOL)
        && u32::from(route.header.table) == LOCAL_TABLE
}

/// A route's destination as "a.b.c.d/n".
fn destination(route: &RouteMessage) -> Option<String> {
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
            Some(format!("{ip}/{}", route.header.destination_prefix_length))
        }
        _ => None,
    })
}

/// The destination of one of our rules (`iif lo ... lookup 76` at our priority).
fn rule_destination(rule: &RuleMessage) -> Option<String> {
    let ours = u32::from(rule.header.table) == LOCAL_TABLE
        && rule
            .attributes
            .contains(&RuleAttribute::Priority(RULE_PRIORITY))
        && rule
            .attributes
            .contains(&RuleAttribute::Iifname("lo".into()));
    if !ours {
        return None;
    }
    rule.attributes.iter().find_map(|a| match a {
        RuleAttribute::Destination(IpAddr::V4(ip)) => Some(format!("{ip}/{}", rule.header.dst_len)),
        _ => None,
    })
}

async fn delete_route(host: &Handle, route: RouteMessage) -> Result<()> {
    match host.route().del(route).execute().await {
        Err(e) if errno(&e) != Some(ESRCH) => Err(netlink_err("remove a safety route")(e)),
        _ => Ok(()),
    }
}

async fn delete_rule(host: &Handle, rule: RuleMessage) -> Result<()> {
    const ENOENT: i32 = 2;
    match host.rule().del(rule).execute().await {
        Err(e) if !matches!(errno(&e), Some(ENOENT | ESRCH)) => {
            Err(netlink_err("remove the rule for host traffic")(e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_remembers_every_prefix_until_a_sync_without_it_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let cidr = |t: &str| Cidr::parse(t).unwrap();
        let want = HostRouting {
            unreachable: vec![cidr("10.43.0.0/16"), cidr("10.42.0.0/16")],
            local_service_cidrs: vec![cidr("10.43.0.0/16")],
        };
        let mut state = HostState::load(dir.path()).unwrap();
        assert_eq!(state, HostState::default(), "no file: nothing installed");
        state.include(&want);
        HostState::record_nft_table(dir.path(), "kybern").unwrap();
        state.nft_table = Some("kybern".into());
        state.save(dir.path()).unwrap();
        let read = HostState::load(dir.path()).unwrap();
        assert_eq!(read, state);
        assert!(
            read.unreachable.contains("10.42.0.0/16") && read.unreachable.contains("10.43.0.0/16")
        );
        let mut shrunk = read.clone();
        shrunk.keep_only(&HostRouting {
            unreachable: vec![cidr("10.42.0.0/16")],
            local_service_cidrs: vec![],
        });
        assert_eq!(shrunk.unreachable.len(), 1);
        assert!(shrunk.local_service_cidrs.is_empty());
        assert_eq!(
            shrunk.nft_table.as_deref(),
            Some("kybern"),
            "the table stays recorded"
        );
    }
}
