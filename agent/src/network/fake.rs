//! A recording [`Network`](super::Network) for unit tests: sandboxes live in memory, addresses
//! come from the podCIDR given to `init` (in order, never two pods the same), namespace
//! paths are made-up paths under `/fake/ns`, and every call is recorded.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;

use super::ipam::Cidr;
use super::{check_uid, Error, HostRouting, Network, PeerRoute, Result, Sandbox, SandboxRequest};

/// One call as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Init(String),
    Setup(SandboxRequest),
    Teardown(String),
    Sandboxes,
    SyncPeerRoutes(Vec<PeerRoute>),
    SyncHostRouting(HostRouting),
    RemoveHostRouting,
    AddLocalAddress(Ipv4Addr),
}

#[derive(Debug, Default)]
struct State {
    cidr: Option<Cidr>,
    calls: Vec<Call>,
    sandboxes: BTreeMap<String, Sandbox>,
    hostnames: BTreeMap<String, String>,
    fail_setup: Option<String>,
    peer_routes: Vec<PeerRoute>,
    host_routing: HostRouting,
    local_addresses: Vec<Ipv4Addr>,
}

#[derive(Debug, Default)]
pub struct FakeNetwork {
    state: Mutex<State>,
}

impl FakeNetwork {
    /// A fake that still needs `init`, as the real one does.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fake already initialised with `pod_cidr` (not recorded as a call).
    pub fn initialised(pod_cidr: &str) -> Self {
        let fake = Self::new();
        fake.lock().cidr = Some(Cidr::parse(pod_cidr).expect("a valid podCIDR"));
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The sandbox of `uid`, if it exists.
    pub fn sandbox(&self, uid: &str) -> Option<Sandbox> {
        self.lock().sandboxes.get(uid).cloned()
    }

    /// The hostname `uid`'s sandbox was made with.
    pub fn hostname(&self, uid: &str) -> Option<String> {
        self.lock().hostnames.get(uid).cloned()
    }

    /// The routes to other nodes' pods as last synced.
    pub fn peer_routes(&self) -> Vec<PeerRoute> {
        self.lock().peer_routes.clone()
    }

    /// The safety routes and host rule as last synced.
    pub fn host_routing(&self) -> HostRouting {
        self.lock().host_routing.clone()
    }

    /// Addresses added to the bridge.
    pub fn local_addresses(&self) -> Vec<Ipv4Addr> {
        self.lock().local_addresses.clone()
    }

    /// Makes a sandbox exist as if left by an earlier run of the agent.
    pub fn insert(&self, sandbox: Sandbox) {
        self.lock().sandboxes.insert(sandbox.uid.clone(), sandbox);
    }

    /// Makes every following `setup` fail with `message` (None: succeed again).
    pub fn fail_setup(&self, message: Option<&str>) {
        self.lock().fail_setup = message.map(str::to_string);
    }
}

#[async_trait]
impl Network for FakeNetwork {
    async fn init(&self, pod_cidr: &str) -> Result<()> {
        let mut state = self.lock();
        state.calls.push(Call::Init(pod_cidr.to_string()));
        state.cidr = Some(Cidr::parse(pod_cidr)?);
        Ok(())
    }

    async fn setup(&self, req: &SandboxRequest) -> Result<Sandbox> {
        let mut state = self.lock();
        state.calls.push(Call::Setup(req.clone()));
        check_uid(&req.uid)?;
        if let Some(message) = &state.fail_setup {
            return Err(Error::Netlink {
                op: "fake setup",
                message: message.clone(),
            });
        }
        let cidr = state.cidr.ok_or(Error::NotInitialised)?;
        if let Some(existing) = state.sandboxes.get(&req.uid) {
            return Ok(existing.clone());
        }
        let taken: Vec<Ipv4Addr> = state.sandboxes.values().map(|s| s.ip).collect();
        let first = u32::from(cidr.gateway()) + 1;
        let ip = (first..u32::from(cidr.broadcast()))
            .map(Ipv4Addr::from)
            .find(|ip| !taken.contains(ip))
            .ok_or_else(|| Error::Exhausted(cidr.to_string()))?;
        let dir = PathBuf::from("/fake/ns").join(&req.uid);
        let sandbox = Sandbox {
            uid: req.uid.clone(),
            netns: dir.join("net"),
            ipc_ns: dir.join("ipc"),
            uts_ns: dir.join("uts"),
            ip,
        };
        state.sandboxes.insert(req.uid.clone(), sandbox.clone());
        state
            .hostnames
            .insert(req.uid.clone(), req.hostname.clone());
        Ok(sandbox)
    }

    async fn teardown(&self, uid: &str) -> Result<()> {
        let mut state = self.lock();
        state.calls.push(Call::Teardown(uid.to_string()));
        state.sandboxes.remove(uid);
        state.hostnames.remove(uid);
        Ok(())
    }

    async fn sandboxes(&self) -> Result<Vec<String>> {
        let mut state = self.lock();
        state.calls.push(Call::Sandboxes);
        Ok(state.sandboxes.keys().cloned().collect())
    }

    async fn sync_peer_routes(&self, _cluster: Cidr, peers: &[PeerRoute]) -> Result<()> {
        let mut state = self.lock();
        state.calls.push(Call::SyncPeerRoutes(peers.to_vec()));
        for peer in peers {
            Cidr::parse(&peer.pod_cidr)?;
        }
        state.peer_routes = peers.to_vec();
        Ok(())
    }

    async fn sync_host_routing(&self, want: &HostRouting) -> Result<()> {
        let mut state = self.lock();
        state.calls.push(Call::SyncHostRouting(want.clone()));
        if !want.local_service_cidrs.is_empty() && state.cidr.is_none() {
            return Err(Error::NotInitialised);
        }
        state.host_routing = want.clone();
        Ok(())
    }

    async fn remove_host_routing(&self) -> Result<()> {
        let mut state = self.lock();
        state.calls.push(Call::RemoveHostRouting);
        state.host_routing = HostRouting::default();
        Ok(())
    }

    async fn add_local_address(&self, ip: Ipv4Addr) -> Result<()> {
        let mut state = self.lock();
        state.calls.push(Call::AddLocalAddress(ip));
        if state.cidr.is_none() {
            return Err(Error::NotInitialised);
        }
        if !state.local_addresses.contains(&ip) {
            state.local_addresses.push(ip);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uid: &str) -> SandboxRequest {
        SandboxRequest {
            uid: uid.into(),
            namespace: "default".into(),
            name: format!("pod-{uid}"),
            hostname: format!("pod-{uid}"),
        }
    }

    #[tokio::test]
    async fn fake_hands_out_distinct_addresses_and_records_calls() {
        let net = FakeNetwork::new();
        assert!(matches!(
            net.setup(&req("a")).await,
            Err(Error::NotInitialised)
        ));
        net.init("10.42.0.0/24").await.unwrap();
        let a = net.setup(&req("a")).await.unwrap();
        let b = net.setup(&req("b")).await.unwrap();
        assert_eq!(a.ip, Ipv4Addr::new(10, 42, 0, 2));
        assert_eq!(b.ip, Ipv4Addr::new(10, 42, 0, 3));
        assert_eq!(
            net.setup(&req("a")).await.unwrap(),
            a,
            "setup again returns the same sandbox"
        );
        net.teardown("a").await.unwrap();
        assert_eq!(net.sandbox("a"), None);
        let peer = PeerRoute {
            pod_cidr: "10.42.1.0/24".into(),
            node_ip: Ipv4Addr::new(192, 168, 1, 11),
        };
        net.sync_peer_routes(
            Cidr::parse("10.42.0.0/16").unwrap(),
            std::slice::from_ref(&peer),
        )
        .await
        .unwrap();
        assert_eq!(net.peer_routes(), vec![peer.clone()]);
        assert_eq!(net.sandboxes().await.unwrap(), vec!["b".to_string()]);
        assert_eq!(
            net.calls(),
            vec![
                Call::Setup(req("a")),
                Call::Init("10.42.0.0/24".into()),
                Call::Setup(req("a")),
                Call::Setup(req("b")),
                Call::Setup(req("a")),
                Call::Teardown("a".into()),
                Call::SyncPeerRoutes(vec![peer]),
                Call::Sandboxes,
            ]
        );
    }
}
