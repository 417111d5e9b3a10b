//! The service proxy on the real kernel (root only): the agent's sync loop drives real `nft`
//! inside a scratch network namespace that plays the node, with one namespace as client and
//! one as backend pod. Connections go through a ClusterIP and a NodePort, a Service without
//! endpoints is refused, the table is recovered after `nft flush table` and `nft delete
//! table`, and removing it leaves nothing. Nothing outside the three namespaces is touched;
//! they are deleted on drop, also when a test fails.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agent::network::ipam::Cidr;
use agent::proxy::conntrack::ConntrackCli;
use agent::proxy::metrics::Metrics;
use agent::proxy::netlink::NftNetlink;
use agent::proxy::nft::NftCli;
use agent::proxy::{remove_table_with, run_with, Parts, ProxyConfig};
use agent::services::{
    ClusterState, Endpoint, NodeInfo, Protocol, Service, ServiceKey, ServiceKind, ServicePort,
    Slice,
};
use kybern_testkit::eventually;
use nix::sched::{setns, CloneFlags};

static COUNTER: AtomicU32 = AtomicU32::new(0);
const TABLE: &str = "kybern-test";

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Three namespaces: node (`kbpn-*`, runs nft), client (`kbpc-*`) and backend (`kbpb-*`).
/// Client link 198.18.K.0/24 (node .1, client .2); backend link 10.44.K.0/24 (node .1,
/// backend .2), inside cluster CIDR 10.44.0.0/16; services in 10.45.0.0/16.
struct Lab {
    k: u32,
    node: String,
    client: String,
    backend: String,
    stop: Arc<AtomicBool>,
}

impl Lab {
    fn new() -> Lab {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let root = status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
        assert!(root, "proxy tests run as root");
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:x}{n}", std::process::id());
        let lab = Lab {
            k: (std::process::id() + n) % 200 + 20,
            node: format!("kbpn-{id}"),
            client: format!("kbpc-{id}"),
            backend: format!("kbpb-{id}"),
            stop: Arc::new(AtomicBool::new(false)),
        };
        for ns in [&lab.node, &lab.client, &lab.backend] {
            run(&["ip", "netns", "add", ns]);
        }
        let (node, k) = (lab.node.as_str(), lab.k);
        for (link, peer, net, ip_node, ip_peer) in [
            (
                "vc",
                &lab.client,
                "198.18",
                format!("198.18.{k}.1/24"),
                format!("198.18.{k}.2/24"),
            ),
            (
                "vb",
                &lab.backend,
                "10.44",
                format!("10.44.{k}.1/24"),
                format!("10.44.{k}.2/24"),
            ),
        ] {
            run(&[
                "ip", "-n", node, "link", "add", link, "type", "veth", "peer", "name", "eth0",
                "netns", peer,
            ]);
            run(&["ip", "-n", node, "addr", "add", &ip_node, "dev", link]);
            run(&["ip", "-n", node, "link", "set", link, "up"]);
            run(&["ip", "-n", peer, "addr", "add", &ip_peer, "dev", "eth0"]);
            run(&["ip", "-n", peer, "link", "set", "eth0", "up"]);
            run(&["ip", "-n", peer, "link", "set", "lo", "up"]);
            let gw = format!("{net}.{k}.1");
            run(&["ip", "-n", peer, "route", "add", "default", "via", &gw]);
        }
        run(&["ip", "-n", node, "link", "set", "lo", "up"]);
        // Service addresses need a route for the filter hooks to see forwarded packets
        // (the agent's unreachable safety route plays this part on a real node).
        run(&[
            "ip",
            "-n",
            node,
            "route",
            "add",
            "10.45.0.0/16",
            "dev",
            "vb",
        ]);
        run(&[
            "ip",
            "netns",
            "exec",
            node,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        lab
    }

    fn backend_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 44, self.k as u8, 2)
    }

    fn node_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.k as u8, 1)
    }

    /// A TCP server on backend :8080 answering "backend" to each connection.
    fn serve_backend(&self) {
        let stop = self.stop.clone();
        let ns = std::fs::File::open(format!("/run/netns/{}", self.backend)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns");
            let listener = TcpListener::bind("0.0.0.0:8080").unwrap();
            listener.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.write_all(b"backend\n");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        rx.recv().unwrap();
    }

    /// Connects from the client namespace and reads the reply.
    async fn connect(&self, addr: SocketAddr) -> Result<String, ErrorKind> {
        let ns = std::fs::File::open(format!("/run/netns/{}", self.client)).unwrap();
        tokio::task::spawn_blocking(move || {
            std::thread::spawn(move || {
                setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns");
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                    .map_err(|e| e.kind())?;
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut reply = String::new();
                s.read_to_string(&mut reply).map_err(|e| e.kind())?;
                Ok(reply.trim().to_string())
            })
            .join()
            .unwrap()
        })
        .await
        .unwrap()
    }

    /// UDP servers on backend addresses `.2` and `.3` port 5353, each answering with its
    /// own address.
    fn serve_udp_backends(&self) {
        run(&[
            "ip",
            "-n",
            &self.backend,
            "addr",
            "add",
            &format!("10.44.{}.3/24", self.k),
            "dev",
            "eth0",
        ]);
        for last in [2u8, 3] {
            let stop = self.stop.clone();
            let ns = std::fs::File::open(format!("/run/netns/{}", self.backend)).unwrap();
            let ip = Ipv4Addr::new(10, 44, self.k as u8, last);
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns");
                let socket = UdpSocket::bind((ip, 5353)).unwrap();
                socket
                    .set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                tx.send(()).unwrap();
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((_, peer)) = socket.recv_from(&mut buf) {
                        let _ = socket.send_to(ip.to_string().as_bytes(), peer);
                    }
                }
            });
            rx.recv().unwrap();
        }
    }

    /// A UDP socket made in the client namespace (it stays there whoever uses it).
    fn client_udp(&self) -> UdpSocket {
        let ns = std::fs::File::open(format!("/run/netns/{}", self.client)).unwrap();
        std::thread::spawn(move || {
            setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns");
            let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            socket
        })
        .join()
        .unwrap()
    }

    fn nft(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", &self.node, "nft"];
        all.extend_from_slice(args);
        run(&all)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for ns in [&self.node, &self.client, &self.backend] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn service(ip: &str, kind: ServiceKind, node_port: Option<u16>) -> Service {
    Service {
        kind,
        cluster_ip: Some(ip.parse().unwrap()),
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port,
        }],
        external_ips: vec![],
        lb_ingress: vec![],
        lb_source_ranges: vec![],
        affinity_timeout: None,
        external_local: false,
        internal_local: false,
        publish_not_ready: false,
        lb_class: false,
    }
}

fn slice(name: &str, ip: Ipv4Addr) -> Slice {
    Slice {
        service: ServiceKey::new("default", name),
        ports: vec![("http".into(), Protocol::Tcp, 8080)],
        endpoints: vec![Endpoint {
            ip,
            ready: true,
            serving: true,
            terminating: false,
            node: Some("n1".into()),
            hostname: None,
        }],
    }
}

async fn reaches(lab: &Lab, addr: SocketAddr, what: &str) {
    eventually(what, || async move {
        match lab.connect(addr).await {
            Ok(reply) if reply == "backend" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

async fn refused(lab: &Lab, addr: SocketAddr, what: &str) {
    eventually(what, || async move {
        match lab.connect(addr).await {
            Err(ErrorKind::ConnectionRefused) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_reach_a_backend_through_real_nftables_and_survive_a_flushed_table() {
    let lab = Lab::new();
    lab.serve_backend();
    let state = ClusterState::new();
    state.replace_services(vec![
        (
            ServiceKey::new("default", "web"),
            service("10.45.0.20", ServiceKind::NodePort, Some(30080)),
        ),
        (
            ServiceKey::new("default", "empty"),
            service("10.45.0.30", ServiceKind::ClusterIp, None),
        ),
    ]);
    state.replace_slices(vec![(
        ("default".into(), "web-abc".into()),
        slice("web", lab.backend_ip()),
    )]);
    state.replace_nodes(vec![NodeInfo {
        name: "n1".into(),
        internal: vec![lab.node_ip()],
        external: vec![],
        pod_cidrs: vec![],
    }]);
    state.replace_service_cidrs(vec![]);

    let config = ProxyConfig {
        node_name: "n1".into(),
        cluster_cidr: Cidr::parse("10.44.0.0/16").unwrap(),
        service_cidr: Cidr::parse("10.45.0.0/16").unwrap(),
        cluster_dns: "10.45.0.10".parse().unwrap(),
        nft_table: TABLE.into(),
        metrics: None,
    };
    let metrics = Metrics::default();
    let parts = Parts {
        nft: Arc::new(NftNetlink::in_netns(&lab.node)),
        conntrack: Arc::new(ConntrackCli::in_netns(&lab.node)),
        metrics: metrics.clone(),
        canary_period: Duration::from_millis(200),
    };
    let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
    let proxy = tokio::spawn(run_with(config.clone(), state.clone(), synced_tx, parts));
    tokio::time::timeout(Duration::from_secs(30), synced_rx)
        .await
        .expect("the first full sync")
        .expect("the proxy runs");

    let cluster_ip: SocketAddr = "10.45.0.20:80".parse().unwrap();
    let node_port = SocketAddr::from((lab.node_ip(), 30080));
    let empty: SocketAddr = "10.45.0.30:80".parse().unwrap();
    reaches(&lab, cluster_ip, "the ClusterIP to reach the backend").await;
    reaches(&lab, node_port, "the NodePort to reach the backend").await;
    refused(&lab, empty, "a Service without endpoints to be refused").await;

    // A partial sync gives the empty Service an endpoint, and takes web's away.
    state.set_slice(
        "default",
        "empty-abc",
        Some(slice("empty", lab.backend_ip())),
    );
    reaches(&lab, empty, "the Service that got an endpoint to reach it").await;
    state.set_slice("default", "web-abc", None);
    refused(&lab, cluster_ip, "web without endpoints to be refused").await;
    eventually("web's chains to be deleted", || async {
        let chains = lab.nft(&["list", "chains", "ip"]);
        match chains.contains("default/web/") {
            false => Ok(()),
            true => Err(chains),
        }
    })
    .await;
    state.set_slice("default", "web-abc", Some(slice("web", lab.backend_ip())));
    reaches(&lab, cluster_ip, "web to reach the backend again").await;

    for (name, damage) in [("flushed", "flush"), ("deleted", "delete")] {
        lab.nft(&[damage, "table", "ip", TABLE]);
        reaches(
            &lab,
            cluster_ip,
            &format!("the ClusterIP after the table was {name}"),
        )
        .await;
        reaches(
            &lab,
            node_port,
            &format!("the NodePort after the table was {name}"),
        )
        .await;
    }
    assert!(
        metrics.full_syncs() >= 3,
        "one full sync at start and one per damage"
    );

    // A restarted proxy takes over the table it finds: the Service deleted while it was
    // away loses its chains, the others keep working.
    proxy.abort();
    let _ = proxy.await;
    state.set_service(ServiceKey::new("default", "empty"), None);
    let parts = Parts {
        nft: Arc::new(NftNetlink::in_netns(&lab.node)),
        conntrack: Arc::new(ConntrackCli::in_netns(&lab.node)),
        metrics: Metrics::default(),
        canary_period: Duration::from_millis(200),
    };
    let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
    let proxy = tokio::spawn(run_with(config, state.clone(), synced_tx, parts));
    tokio::time::timeout(Duration::from_secs(30), synced_rx)
        .await
        .expect("the restarted proxy's full sync")
        .expect("the proxy runs");
    reaches(&lab, cluster_ip, "the ClusterIP after a restart").await;
    eventually("the deleted Service's chains to go", || async {
        let chains = lab.nft(&["list", "chains", "ip"]);
        match chains.contains("default/empty/") {
            false => Ok(()),
            true => Err(chains),
        }
    })
    .await;

    proxy.abort();
    let _ = proxy.await;
    remove_table_with(&NftCli::in_netns(&lab.node), TABLE)
        .await
        .unwrap();
    let tables = lab.nft(&["list", "tables"]);
    assert!(!tables.contains(TABLE), "{tables}");
    remove_table_with(&NftCli::in_netns(&lab.node), TABLE)
        .await
        .expect("removing an absent table is fine");
}

/// Sends one datagram from `socket` to `to` and returns the answer.
async fn ask(socket: &Arc<UdpSocket>, to: SocketAddr) -> Result<String, String> {
    let socket = socket.clone();
    tokio::task::spawn_blocking(move || {
        socket.send_to(b"ping", to).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let (n, _) = socket.recv_from(&mut buf).map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_flow_moves_to_the_new_endpoint_when_its_endpoint_goes() {
    let lab = Lab::new();
    lab.serve_udp_backends();
    let key = ServiceKey::new("default", "dns");
    let mut svc = service("10.45.0.40", ServiceKind::ClusterIp, None);
    svc.ports[0].protocol = Protocol::Udp;
    svc.ports[0].port = 53;
    let udp_slice = |last: u8| {
        let mut s = slice("dns", Ipv4Addr::new(10, 44, lab.k as u8, last));
        s.ports = vec![("http".into(), Protocol::Udp, 5353)];
        s
    };
    let state = ClusterState::new();
    state.replace_services(vec![(key, svc)]);
    state.replace_slices(vec![(("default".into(), "dns-abc".into()), udp_slice(2))]);
    state.replace_nodes(vec![]);
    state.replace_service_cidrs(vec![]);
    let config = ProxyConfig {
        node_name: "n1".into(),
        cluster_cidr: Cidr::parse("10.44.0.0/16").unwrap(),
        service_cidr: Cidr::parse("10.45.0.0/16").unwrap(),
        cluster_dns: "10.45.0.10".parse().unwrap(),
        nft_table: TABLE.into(),
        metrics: None,
    };
    let parts = Parts {
        nft: Arc::new(NftNetlink::in_netns(&lab.node)),
        conntrack: Arc::new(ConntrackCli::in_netns(&lab.node)),
        metrics: Metrics::default(),
        canary_period: Duration::from_millis(200),
    };
    let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
    let proxy = tokio::spawn(run_with(config, state.clone(), synced_tx, parts));
    tokio::time::timeout(Duration::from_secs(30), synced_rx)
        .await
        .expect("the first full sync")
        .expect("the proxy runs");

    // One client socket throughout: the same flow (source port) every time.
    let socket = Arc::new(lab.client_udp());
    let to: SocketAddr = "10.45.0.40:53".parse().unwrap();
    let first = format!("10.44.{}.2", lab.k);
    let second = format!("10.44.{}.3", lab.k);
    eventually("the first endpoint to answer", || async {
        match ask(&socket, to).await {
            Ok(from) if from == first => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // The old endpoint still runs: only the conntrack cleanup moves the flow away from it.
    state.set_slice("default", "dns-abc", Some(udp_slice(3)));
    eventually("the same flow to reach the new endpoint", || async {
        match ask(&socket, to).await {
            Ok(from) if from == second => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    proxy.abort();
    let _ = proxy.await;
}
