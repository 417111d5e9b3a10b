//! [`Network`](super::Network) on the host's kernel through netlink: a bridge holding the
//! podCIDR's gateway address, per pod a sandbox of namespace files (see `netns`), a veth
//! pair from the bridge to `eth0` in the pod, and an address from [`Ipam`].
//!
//! State under the state dir: `ns/<uid>/{net,ipc,uts}` and `ipam/<ip>`. Everything else
//! (links, addresses, routes) is found again by name, so every step can be repeated.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::packet_route::route::{RouteMessage, RouteProtocol};
use rtnetlink::{
    LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use super::ipam::{Cidr, Ipam};
use super::netlink::{
    delete_link, errno, exists_ok, host_handle, link_index, netlink_err, pod_handle,
    remove_other_addresses, route_destination, route_key, set_up, ESRCH,
};
use super::{
    check_uid, io_err, netns, safety, Error, HostRouting, Network, PeerRoute, Result, Sandbox,
    SandboxRequest, BRIDGE,
};

/// The interface name pods see.
const POD_IFACE: &str = "eth0";

/// The routing protocol number marking routes to other nodes' pods as ours (`ip route`
/// shows `proto 75`), so a sync finds them again without state and leaves others alone.
const PEER_ROUTE_PROTOCOL: u8 = 75;
/// The kernel's main routing table.
pub(super) const RT_TABLE_MAIN: u8 = 254;
const ENETUNREACH: i32 = 101;

/// Pod networking on this host.
#[derive(Debug)]
pub struct HostNetwork {
    state_dir: PathBuf,
    bridge: String,
    ipam: Ipam,
    /// Set by `init`; `setup` needs it.
    cidr: Mutex<Option<Cidr>>,
    /// One sandbox change at a time: setup and teardown of the same UID must not interleave,
    /// and each takes milliseconds.
    changes: tokio::sync::Mutex<()>,
    /// Whether `init` turns on IPv4 forwarding (see [`HostNetwork::forwarding`]).
    forward: bool,
}

/// The host end of a pod's veth: `veth` and 8 hex digits of SHA-256 of the UID, 12 characters
/// (the kernel allows 15), the same after every restart.
pub fn host_veth_name(uid: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, uid.as_bytes());
    let hex: String = digest.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("veth{hex}")
}

impl HostNetwork {
    /// Pods on the bridge `kybern0`, state under `state_dir` (e.g. `<data>/network`).
    pub fn new(state_dir: PathBuf) -> Self {
        Self::with_bridge(state_dir, BRIDGE)
    }

    /// Like [`new`](Self::new) with another bridge name (at most 15 characters); tests use
    /// names of their own so they never touch a real node's bridge.
    pub fn with_bridge(state_dir: PathBuf, bridge: &str) -> Self {
        Self {
            ipam: Ipam::new(state_dir.join("ipam")),
            state_dir,
            bridge: bridge.to_string(),
            cidr: Mutex::new(None),
            changes: tokio::sync::Mutex::new(()),
            forward: false,
        }
    }

    /// Turn on the host's IPv4 forwarding in `init`, so pods reach beyond this host (other
    /// nodes, the outside world). Off by default: a single node needs none (pods reach each
    /// other over the bridge and the host directly), and with it off no packet from a pod
    /// can leave the machine through the host's default route.
    pub fn forwarding(mut self, on: bool) -> Self {
        self.forward = on;
        self
    }

    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// Address reservations on disk: (address, pod UID).
    pub fn reservations(&self) -> Result<Vec<(Ipv4Addr, String)>> {
        self.ipam.reservations()
    }

    /// Deletes the bridge (a no-op when it is not there). For tests and node removal; pods'
    /// veths go with their sandboxes.
    pub async fn remove_bridge(&self) -> Result<()> {
        delete_link(&host_handle()?, &self.bridge).await
    }

    /// Removes the routes to other nodes' pods (proto 75) inside `cluster`, without needing
    /// `init` (`--reset`); another cluster's agent on this host keeps its own.
    pub async fn remove_peer_routes(&self, cluster: Cidr) -> Result<()> {
        let host = host_handle()?;
        let existing: Vec<RouteMessage> = host
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(netlink_err("list routes"))?;
        for route in existing {
            let ours = route.header.protocol == RouteProtocol::Other(PEER_ROUTE_PROTOCOL)
                && route.header.table == RT_TABLE_MAIN
                && route_destination(&route).is_some_and(|(net, len)| cluster.covers(net, len));
            if ours {
                match host.route().del(route).execute().await {
                    Err(e) if errno(&e) != Some(ESRCH) => {
                        return Err(netlink_err("remove a route to a peer's pods")(e))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn ns_root(&self) -> PathBuf {
        self.state_dir.join("ns")
    }

    fn sandbox(&self, uid: &str, ip: Ipv4Addr) -> Sandbox {
        let dir = self.ns_root().join(uid);
        Sandbox {
            uid: uid.to_string(),
            netns: dir.join("net"),
            ipc_ns: dir.join("ipc"),
            uts_ns: dir.join("uts"),
            ip,
        }
    }

    fn cidr(&self) -> Result<Cidr> {
        self.cidr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ok_or(Error::NotInitialised)
    }

    /// Links the sandbox to the bridge and configures its side. `fresh`: its namespaces were
    /// just made, so a host veth of the same name belongs to an older sandbox.
    async fn connect(&self, sandbox: &Sandbox, cidr: &Cidr, fresh: bool) -> Result<()> {
        let host = host_handle()?;
        let bridge = link_index(&host, &self.bridge)
            .await?
            .ok_or(Error::NotInitialised)?;
        let veth = host_veth_name(&sandbox.uid);
        let mut existing = link_index(&host, &veth).await?;
        if fresh && existing.is_some() {
            delete_link(&host, &veth).await?;
            existing = None;
        }
        match existing {
            Some(index) => host
                .link()
                .set(
                    LinkUnspec::new_with_index(index)
                        .controller(bridge)
                        .up()
                        .build(),
                )
                .execute()
                .await
                .map_err(netlink_err("attach veth to bridge"))?,
            None => {
                // The peer is created straight in the pod's namespace under its final name,
                // as `ip link add vethX type veth peer name eth0 netns <file>`; no other
                // name ever shows up on the host.
                let netns = File::open(&sandbox.netns)
                    .map_err(io_err(format!("open {}", sandbox.netns.display())))?;
                let peer = LinkMessageBuilder::<LinkUnspec>::new()
                    .name(POD_IFACE)
                    .setns_by_fd(netns.as_raw_fd())
                    .build();
                let pair = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
                    .name(veth.clone())
                    .controller(bridge)
                    .up()
                    .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                    .build();
                host.link()
                    .add(pair)
                    .execute()
                    .await
                    .map_err(netlink_err("create veth pair"))?;
            }
        }

        // Hairpin: a pod reaching itself through a service address (the proxy's DNAT sends
        // the packet back out of the port it came in by), as kubenet's hairpin-veth does.
        let port = link_index(&host, &veth).await?.ok_or(Error::Netlink {
            op: "find the pod's veth",
            message: format!("{veth} vanished after creation"),
        })?;
        host.link()
            .set_port(LinkBridgePort::new(port).hairpin(true).build())
            .execute()
            .await
            .map_err(netlink_err("set hairpin on the pod's bridge port"))?;

        let pod = pod_handle(&sandbox.netns).await?;
        let lo = link_index(&pod, "lo").await?.ok_or(Error::Netlink {
            op: "find lo in the pod",
            message: "no such link".into(),
        })?;
        set_up(&pod, lo).await?;
        let eth0 = link_index(&pod, POD_IFACE).await?.ok_or(Error::Netlink {
            op: "find eth0 in the pod",
            message: "no such link".into(),
        })?;
        remove_other_addresses(&pod, eth0, sandbox.ip).await?;
        exists_ok(
            pod.address()
                .add(eth0, IpAddr::V4(sandbox.ip), cidr.prefix())
                .execute()
                .await,
            "add the pod's address",
        )?;
        // Up before the route: the kernel refuses a gateway behind a link that is down.
        set_up(&pod, eth0).await?;
        let default = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(cidr.gateway())
            .build();
        exists_ok(
            pod.route().add(default).execute().await,
            "add the pod's default route",
        )
    }

    async fn teardown_locked(&self, uid: &str) -> Result<()> {
        delete_link(&host_handle()?, &host_veth_name(uid)).await?;
        let dir = self.ns_root().join(uid);
        tokio::task::spawn_blocking(move || netns::remove(&dir))
            .await
            .map_err(|e| io_err("remove namespaces".into())(std::io::Error::other(e)))??;
        self.ipam.release(uid)
    }
}

#[async_trait]
impl Network for HostNetwork {
    fn netns(&self, uid: &str) -> Option<PathBuf> {
        super::check_uid(uid).ok()?;
        let path = self.ns_root().join(uid).join("net");
        path.exists().then_some(path)
    }

    async fn init(&self, pod_cidr: &str) -> Result<()> {
        let cidr = Cidr::parse(pod_cidr)?;
        let host = host_handle()?;
        if link_index(&host, &self.bridge).await?.is_none() {
            exists_ok(
                host.link()
                    .add(LinkBridge::new(&self.bridge).build())
                    .execute()
                    .await,
                "create bridge",
            )?;
        }
        let bridge = link_index(&host, &self.bridge)
            .await?
            .ok_or(Error::Netlink {
                op: "find bridge",
                message: format!("{} vanished after creation", self.bridge),
            })?;
        exists_ok(
            host.address()
                .add(bridge, IpAddr::V4(cidr.gateway()), cidr.prefix())
                .execute()
                .await,
            "add the gateway address to the bridge",
        )?;
        set_up(&host, bridge).await?;
        if self.forward {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                .map_err(io_err("enable net.ipv4.ip_forward".into()))?;
            // A pod's reply to another pod that reached it through a ClusterIP is bridged
            // straight back; only with this does it pass netfilter and get un-DNATed.
            std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1").map_err(io_err(
                "enable net.bridge.bridge-nf-call-iptables (is the br_netfilter module loaded? `modprobe br_netfilter`)".into(),
            ))?;
        }
        *self.cidr.lock().unwrap_or_else(|e| e.into_inner()) = Some(cidr);
        tracing::info!(bridge = %self.bridge, %cidr, "pod network ready");
        Ok(())
    }

    async fn setup(&self, req: &SandboxRequest) -> Result<Sandbox> {
        check_uid(&req.uid)?;
        let cidr = self.cidr()?;
        let _change = self.changes.lock().await;
        let ip = self.ipam.reserve(&cidr, &req.uid)?;
        let sandbox = self.sandbox(&req.uid, ip);
        let dir = self.ns_root().join(&req.uid);
        let fresh = !netns::all_mounted(&dir);
        if fresh {
            // Whatever is left of an older sandbox (a reboot leaves the empty files) goes.
            let hostname = req.hostname.clone();
            let made = tokio::task::spawn_blocking(move || {
                netns::remove(&dir)?;
                netns::create(&dir, &hostname)
            })
            .await
            .map_err(|e| io_err("create namespaces".into())(std::io::Error::other(e)))?;
            if let Err(e) = made {
                if let Err(undo) = self.ipam.release(&req.uid) {
                    tracing::warn!(uid = %req.uid, error = %undo, "releasing the address of a failed sandbox");
                }
                return Err(e);
            }
        }
        match self.connect(&sandbox, &cidr, fresh).await {
            Ok(()) => {
                tracing::info!(uid = %req.uid, pod = %format!("{}/{}", req.namespace, req.name), %ip, fresh, "pod sandbox ready");
                Ok(sandbox)
            }
            Err(e) => {
                // A sandbox made just now is undone; one that existed before is left for the
                // caller to retry or tear down, since containers may be in it.
                if fresh {
                    if let Err(undo) = self.teardown_locked(&req.uid).await {
                        tracing::warn!(uid = %req.uid, error = %undo, "undoing a failed sandbox");
                    }
                }
                Err(e)
            }
        }
    }

    async fn teardown(&self, uid: &str) -> Result<()> {
        check_uid(uid)?;
        let _change = self.changes.lock().await;
        self.teardown_locked(uid).await
    }

    async fn sync_peer_routes(&self, cluster: Cidr, peers: &[PeerRoute]) -> Result<()> {
        let own = self.cidr()?;
        let mut desired = Vec::new();
        for peer in peers {
            let cidr = Cidr::parse(&peer.pod_cidr)?;
            if cidr == own {
                tracing::warn!(node_ip = %peer.node_ip, %cidr, "a peer with this node's podCIDR; skipped");
                continue;
            }
            if !cluster.covers(cidr.network(), cidr.prefix()) {
                tracing::warn!(node_ip = %peer.node_ip, %cidr, %cluster, "a peer's podCIDR outside the cluster CIDR; skipped");
                continue;
            }
            desired.push((cidr.network(), cidr.prefix(), peer.node_ip));
        }
        let host = host_handle()?;
        let ours = RouteProtocol::Other(PEER_ROUTE_PROTOCOL);
        let existing: Vec<RouteMessage> = host
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(netlink_err("list routes"))?;
        for route in existing {
            let mine = route.header.protocol == ours
                && route.header.table == RT_TABLE_MAIN
                && route_destination(&route).is_some_and(|(net, len)| cluster.covers(net, len));
            if mine && !route_key(&route).is_some_and(|key| desired.contains(&key)) {
                match host.route().del(route).execute().await {
                    Err(e) if errno(&e) != Some(ESRCH) => {
                        return Err(netlink_err("remove a route to a former peer")(e))
                    }
                    _ => {}
                }
            }
        }
        for (network, prefix, node_ip) in desired {
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(network, prefix)
                .gateway(node_ip)
                .protocol(ours)
                .build();
            match host.route().add(route).replace().execute().await {
                // host-gw needs the peer on a directly connected network; one that is not
                // gets no route, and the others still do.
                Err(e) if errno(&e) == Some(ENETUNREACH) => {
                    tracing::warn!(%node_ip, pod_cidr = %format!("{network}/{prefix}"), "a peer node is not on a directly connected network; no route to its pods (host-gw needs one)");
                }
                Err(e) => return Err(netlink_err("add a route to a peer's pods")(e)),
                Ok(()) => {}
            }
        }
        Ok(())
    }

    async fn sync_host_routing(&self, want: &HostRouting) -> Result<()> {
        safety::sync(&host_handle()?, &self.bridge, &self.state_dir, want).await
    }

    async fn remove_host_routing(&self) -> Result<()> {
        safety::remove(&host_handle()?, &self.state_dir).await
    }

    async fn add_local_address(&self, ip: Ipv4Addr) -> Result<()> {
        let host = host_handle()?;
        let bridge = link_index(&host, &self.bridge)
            .await?
            .ok_or(Error::NotInitialised)?;
        exists_ok(
            host.address()
                .add(bridge, IpAddr::V4(ip), 32)
                .execute()
                .await,
            "add the cluster DNS address to the bridge",
        )
    }

    async fn sandboxes(&self) -> Result<Vec<String>> {
        let mut uids: Vec<String> = self
            .ipam
            .reservations()?
            .into_iter()
            .map(|(_, uid)| uid)
            .collect();
        match std::fs::read_dir(self.ns_root()) {
            Ok(entries) => {
                for entry in entries {
                    let entry =
                        entry.map_err(io_err(format!("read {}", self.ns_root().display())))?;
                    if let Some(name) = entry.file_name().to_str() {
                        uids.push(name.to_string());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("read {}", self.ns_root().display()))(e)),
        }
        uids.sort();
        uids.dedup();
        Ok(uids)
    }
}
