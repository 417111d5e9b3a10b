//! Pod networking on the real kernel (root only): sandboxes get namespaces joinable by path,
//! an address on eth0 and a default route; pods reach each other and the host reaches them
//! over the bridge; teardown leaves nothing behind; a restarted agent finds its sandboxes.
//! Each test uses a bridge and a /24 of its own, sends traffic only between its own
//! namespaces and the bridge, and removes all it made on drop, also when it fails.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use agent::network::ipam::Cidr;
use agent::network::linux::{host_veth_name, HostNetwork};
use agent::network::{Error, Network, PeerRoute, Sandbox, SandboxRequest};
use nix::sched::{setns, CloneFlags};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `init` leaves net.ipv4.ip_forward alone unless the network was built with forwarding on;
/// these tests never ask for it, so the host's setting is never changed.
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// What a test made on the host, removed on drop with plain tools (not the code under test).
struct Guard {
    state: tempfile::TempDir,
    bridge: String,
    cidr: String,
    prefix: String,
    /// For a pretend other node's pods.
    peer_cidr: String,
}

impl Guard {
    /// A unique bridge name (`kybt` + 8 hex digits) and a 10.251.N.0/24 no route on this host
    /// mentions yet.
    fn new() -> Guard {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let uid = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap_or_default();
        assert_eq!(
            uid.split_whitespace().nth(1),
            Some("0"),
            "network tests run as root"
        );
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let bridge = format!("kybt{:08x}", (std::process::id() << 4) ^ n);
        let routes = output("ip", &["-4", "route", "show", "table", "all"]);
        let addrs = output("ip", &["-4", "addr"]);
        let third = (0..250)
            .map(|i| (std::process::id() + n * 7 + i) % 250 + 1)
            .find(|t| {
                [format!("10.251.{t}."), format!("10.252.{t}.")]
                    .iter()
                    .all(|p| !routes.contains(p) && !addrs.contains(p))
            })
            .expect("a free 10.251.x.0/24 and 10.252.x.0/24");
        let state = tempfile::Builder::new()
            .prefix("kybern-net-")
            .tempdir()
            .unwrap();
        Guard {
            state,
            bridge,
            cidr: format!("10.251.{third}.0/24"),
            prefix: format!("10.251.{third}."),
            peer_cidr: format!("10.252.{third}.0/24"),
        }
    }

    fn network(&self) -> HostNetwork {
        HostNetwork::with_bridge(self.state.path().join("network"), &self.bridge)
    }

    fn ip(&self, last: u8) -> Ipv4Addr {
        format!("{}{last}", self.prefix).parse().unwrap()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["route", "del", &self.peer_cidr])
            .output();
        let ns_root = self.state.path().join("network/ns");
        for sandbox in std::fs::read_dir(&ns_root).into_iter().flatten().flatten() {
            let uid = sandbox.file_name().to_string_lossy().to_string();
            let _ = Command::new("ip")
                .args(["link", "del", &host_veth_name(&uid)])
                .output();
            for kind in ["net", "ipc", "uts"] {
                let _ = Command::new("umount")
                    .arg("-l")
                    .arg(sandbox.path().join(kind))
                    .output();
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

fn output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cmd` run by nsenter(1) in the namespace file `ns` of kind `flag` ("--net", "--uts").
fn in_ns(flag: &str, ns: &Path, cmd: &[&str]) -> String {
    let mut args = vec![format!("{flag}={}", ns.display())];
    args.extend(cmd.iter().map(|s| s.to_string()));
    let out = Command::new("nsenter")
        .args(&args)
        .output()
        .expect("nsenter");
    assert!(
        out.status.success(),
        "nsenter {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .output()
        .unwrap()
        .status
        .success()
}

fn mounted(path: &Path) -> bool {
    let needle = path.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(&needle))
}

fn inode(path: impl AsRef<Path>) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

fn req(uid: &str, hostname: &str) -> SandboxRequest {
    SandboxRequest {
        uid: uid.into(),
        namespace: "default".into(),
        name: hostname.into(),
        hostname: hostname.into(),
    }
}

/// Runs `f` on a thread inside the network namespace `netns`.
fn spawn_in_netns<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let file = std::fs::File::open(netns).unwrap();
    std::thread::spawn(move || {
        setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
}

/// Sends "ping" to `addr` and returns the reply line.
fn ping(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(b"ping\n").unwrap();
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).unwrap();
    reply.trim().to_string()
}

fn assert_configured(sandbox: &Sandbox, gateway: Ipv4Addr) {
    let addrs = in_ns(
        "--net",
        &sandbox.netns,
        &["ip", "-4", "-o", "addr", "show", "dev", "eth0"],
    );
    assert!(
        addrs.contains(&format!("inet {}/24", sandbox.ip)),
        "{}: eth0 has {addrs:?}",
        sandbox.uid
    );
    let links = in_ns("--net", &sandbox.netns, &["ip", "-o", "link", "show", "up"]);
    assert!(
        links.contains("eth0") && links.contains("lo"),
        "{}: links up: {links:?}",
        sandbox.uid
    );
    let routes = in_ns(
        "--net",
        &sandbox.netns,
        &["ip", "-4", "route", "show", "default"],
    );
    assert!(
        routes.contains(&format!("default via {gateway} dev eth0")),
        "{}: default route {routes:?}",
        sandbox.uid
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_namespaces_and_addresses_and_reach_each_other_over_the_bridge() {
    let guard = Guard::new();
    let net = guard.network();
    assert!(matches!(
        net.setup(&req("pod-a", "alpha")).await,
        Err(Error::NotInitialised)
    ));
    let forward_before = std::fs::read_to_string(IP_FORWARD).unwrap();
    net.init(&guard.cidr).await.unwrap();
    net.init(&guard.cidr).await.expect("init is idempotent");
    let bridge_addrs = output("ip", &["-4", "-o", "addr", "show", "dev", &guard.bridge]);
    assert!(
        bridge_addrs.contains(&format!("inet {}/24", guard.ip(1))),
        "bridge has {bridge_addrs:?}"
    );
    assert_eq!(
        std::fs::read_to_string(IP_FORWARD).unwrap(),
        forward_before,
        "forwarding is left alone unless asked for"
    );

    let a = net.setup(&req("pod-a", "alpha")).await.unwrap();
    let b = net.setup(&req("pod-b", "bravo")).await.unwrap();
    assert_eq!(
        (a.ip, b.ip),
        (guard.ip(2), guard.ip(3)),
        "first addresses after the gateway"
    );
    for (sandbox, hostname) in [(&a, "alpha"), (&b, "bravo")] {
        assert_configured(sandbox, guard.ip(1));
        let seen = in_ns(
            "--uts",
            &sandbox.uts_ns,
            &["cat", "/proc/sys/kernel/hostname"],
        );
        assert_eq!(seen.trim(), hostname, "{}: hostname", sandbox.uid);
        for (ns, own) in [
            (&sandbox.netns, "net"),
            (&sandbox.ipc_ns, "ipc"),
            (&sandbox.uts_ns, "uts"),
        ] {
            assert_ne!(
                inode(ns),
                inode(format!("/proc/self/ns/{own}")),
                "{}: {own} is the host's",
                sandbox.uid
            );
        }
        let veth = output("ip", &["-d", "link", "show", &host_veth_name(&sandbox.uid)]);
        assert!(
            veth.contains(&format!("master {}", guard.bridge)) && veth.contains("hairpin on"),
            "{}: host veth on the bridge with hairpin: {veth}",
            sandbox.uid
        );
    }
    assert_eq!(
        net.setup(&req("pod-a", "alpha")).await.unwrap(),
        a,
        "setup again returns the same sandbox"
    );

    // B listens on its address; A and then the host (the agent's probes) connect to it.
    let b_ip = b.ip;
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let server = spawn_in_netns(&b.netns, move || {
        let listener = TcpListener::bind((b_ip, 0)).unwrap();
        port_tx.send(listener.local_addr().unwrap().port()).unwrap();
        let mut peers = Vec::new();
        for _ in 0..2 {
            let (mut stream, peer) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(stream.try_clone().unwrap())
                .read_line(&mut line)
                .unwrap();
            writeln!(stream, "pong from bravo to {}", line.trim()).unwrap();
            peers.push(peer.ip());
        }
        peers
    });
    let port = port_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("B listens");
    let target = SocketAddr::from((b.ip, port));
    let from_a = spawn_in_netns(&a.netns, move || ping(target))
        .join()
        .unwrap();
    assert_eq!(from_a, "pong from bravo to ping");
    let from_host = tokio::task::spawn_blocking(move || ping(target))
        .await
        .unwrap();
    assert_eq!(from_host, "pong from bravo to ping");
    let peers = server.join().unwrap();
    assert_eq!(
        peers,
        vec![a.ip, guard.ip(1)],
        "A came from its own address, the host from the gateway"
    );

    // Teardown leaves no veth, namespace file, mount or reservation of A.
    net.teardown("pod-a").await.unwrap();
    assert!(!link_exists(&host_veth_name("pod-a")), "A's veth is gone");
    for ns in [&a.netns, &a.ipc_ns, &a.uts_ns] {
        assert!(!ns.exists(), "{} is gone", ns.display());
        assert!(!mounted(ns), "{} is unmounted", ns.display());
    }
    assert_eq!(
        net.reservations().unwrap(),
        vec![(b.ip, "pod-b".to_string())]
    );
    assert_eq!(net.sandboxes().await.unwrap(), vec!["pod-b".to_string()]);
    net.teardown("pod-a")
        .await
        .expect("teardown again is a no-op");
    net.teardown("never-was")
        .await
        .expect("teardown of an unknown pod is a no-op");

    // A restarted agent: the same state dir gives B the same address and namespaces, and
    // setup repairs what changed meanwhile (a stray address, a lost default route).
    let stray = format!("{}/24", guard.ip(200));
    in_ns(
        "--net",
        &b.netns,
        &["ip", "addr", "add", &stray, "dev", "eth0"],
    );
    in_ns("--net", &b.netns, &["ip", "route", "del", "default"]);
    let b_netns_inode = inode(&b.netns);
    drop(net);
    let restarted = guard.network();
    restarted.init(&guard.cidr).await.unwrap();
    assert_eq!(
        restarted.sandboxes().await.unwrap(),
        vec!["pod-b".to_string()]
    );
    let again = restarted.setup(&req("pod-b", "bravo")).await.unwrap();
    assert_eq!(again, b, "B after a restart");
    assert_eq!(
        inode(&again.netns),
        b_netns_inode,
        "B keeps its network namespace"
    );
    assert_configured(&again, guard.ip(1));
    let addrs = in_ns(
        "--net",
        &again.netns,
        &["ip", "-4", "-o", "addr", "show", "dev", "eth0"],
    );
    assert!(
        !addrs.contains(&stray),
        "the stray address is removed: {addrs}"
    );
    // The address A freed is not the next one handed out (round-robin).
    let c = restarted.setup(&req("pod-c", "charlie")).await.unwrap();
    assert_eq!(c.ip, guard.ip(4));

    restarted.teardown("pod-b").await.unwrap();
    restarted.teardown("pod-c").await.unwrap();
    assert_eq!(restarted.sandboxes().await.unwrap(), Vec::<String>::new());
    assert!(restarted.reservations().unwrap().is_empty());
    restarted.remove_bridge().await.unwrap();
    assert!(!link_exists(&guard.bridge), "bridge removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_whose_namespaces_are_gone_is_made_again_with_its_address() {
    let guard = Guard::new();
    let net = guard.network();
    net.init(&guard.cidr).await.unwrap();

    // A sandbox that cannot be made (the kernel refuses a 100-character hostname) leaves
    // no namespace file, mount, veth or reservation behind.
    let refused = net.setup(&req("pod-bad", &"h".repeat(100))).await;
    assert!(matches!(refused, Err(Error::Io { .. })), "{refused:?}");
    assert_eq!(net.sandboxes().await.unwrap(), Vec::<String>::new());
    assert!(net.reservations().unwrap().is_empty());
    assert!(!link_exists(&host_veth_name("pod-bad")));
    assert!(!mounted(&guard.state.path().join("network/ns/pod-bad")));

    let first = net.setup(&req("pod-r", "romeo")).await.unwrap();

    // As after a reboot: the namespace files are plain empty files; the veth died with the
    // network namespace.
    for ns in [&first.netns, &first.ipc_ns, &first.uts_ns] {
        let status = Command::new("umount").arg(ns).status().unwrap();
        assert!(status.success(), "umount {}", ns.display());
    }
    let veth = host_veth_name("pod-r");
    for _ in 0..200 {
        if !link_exists(&veth) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!link_exists(&veth), "the veth went with its namespace");

    let remade = net.setup(&req("pod-r", "romeo")).await.unwrap();
    assert_eq!(remade, first, "same paths and address");
    assert_configured(&remade, guard.ip(1));
    let seen = in_ns(
        "--uts",
        &remade.uts_ns,
        &["cat", "/proc/sys/kernel/hostname"],
    );
    assert_eq!(seen.trim(), "romeo");

    // A teardown interrupted after the namespaces went is finished by the next one.
    for ns in [&remade.netns, &remade.ipc_ns, &remade.uts_ns] {
        Command::new("umount").arg(ns).status().unwrap();
        std::fs::remove_file(ns).unwrap();
    }
    net.teardown("pod-r").await.unwrap();
    assert!(net.sandboxes().await.unwrap().is_empty());
    assert!(net.reservations().unwrap().is_empty());
    net.remove_bridge().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_to_a_peer_nodes_pods_go_through_that_node_until_it_leaves() {
    let guard = Guard::new();
    let net = guard.network();
    net.init(&guard.cidr).await.unwrap();
    // Pod P plays the other node: its address is the node address, and it holds an
    // address of the peer podCIDR the way that node's pod would.
    let node = net.setup(&req("pod-p", "peer")).await.unwrap();
    let peer_pod: Ipv4Addr = guard.peer_cidr.replace("0/24", "5").parse().unwrap();
    // The range this test's peer routes live in; routes outside it (other tests' agents)
    // are not this sync's to remove.
    let cluster = Cidr::parse(&guard.peer_cidr).unwrap();
    in_ns(
        "--net",
        &node.netns,
        &["ip", "addr", "add", &format!("{peer_pod}/32"), "dev", "lo"],
    );
    let peers = [
        PeerRoute {
            pod_cidr: guard.peer_cidr.clone(),
            node_ip: node.ip,
        },
        // This node's own podCIDR is never routed elsewhere.
        PeerRoute {
            pod_cidr: guard.cidr.clone(),
            node_ip: node.ip,
        },
    ];
    net.sync_peer_routes(cluster, &peers).await.unwrap();
    net.sync_peer_routes(cluster, &peers)
        .await
        .expect("a sync is idempotent");
    let routes = output("ip", &["-4", "route", "show", "proto", "75"]);
    let expected = format!("{} via {} dev {}", guard.peer_cidr, node.ip, guard.bridge);
    assert!(
        routes.contains(&expected),
        "route {expected:?} in {routes:?}"
    );
    assert!(
        !routes.contains(&guard.cidr),
        "own podCIDR routed away: {routes:?}"
    );

    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let server = spawn_in_netns(&node.netns, move || {
        let listener = TcpListener::bind((peer_pod, 0)).unwrap();
        port_tx.send(listener.local_addr().unwrap().port()).unwrap();
        let (mut stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(stream.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        writeln!(stream, "pong from the peer's pod").unwrap();
    });
    let port = port_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("listening");
    let target = SocketAddr::from((peer_pod, port));
    let reply = tokio::task::spawn_blocking(move || ping(target))
        .await
        .unwrap();
    assert_eq!(reply, "pong from the peer's pod");
    server.join().unwrap();

    net.sync_peer_routes(cluster, &[]).await.unwrap();
    let routes = output("ip", &["-4", "route", "show", &guard.peer_cidr]);
    assert_eq!(routes.trim(), "", "the departed peer's route is removed");

    net.teardown("pod-p").await.unwrap();
    net.remove_bridge().await.unwrap();
}

/// A network namespace of the test's own (`ip netns add`), deleted on drop with all it
/// holds; the host's routes, rules and sysctls are never touched.
struct ScratchNetns {
    name: String,
}

impl ScratchNetns {
    fn new(test: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("kybt-{test}-{}-{n}", std::process::id());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap();
        assert!(out.status.success(), "ip netns add {name}: {out:?}");
        Self { name }
    }

    fn path(&self) -> std::path::PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// `ip ARGS` inside the namespace.
    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        output("ip", &all)
    }

    fn sysctl(&self, path: &str) -> String {
        output("ip", &["netns", "exec", &self.name, "cat", path])
            .trim()
            .to_string()
    }

    /// Runs `f` on a current-thread runtime on a thread inside the namespace, so every
    /// netlink socket and /proc/sys/net write of the code under test lands there.
    fn run<T: Send + 'static, Fut: std::future::Future<Output = T>>(
        &self,
        f: impl FnOnce() -> Fut + Send + 'static,
    ) -> T {
        spawn_in_netns(&self.path(), move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl Drop for ScratchNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

#[test]
fn safety_routes_and_the_host_rule_come_and_go_leaving_other_agents_routes_alone() {
    use agent::network::ipam::Cidr;
    use agent::network::HostRouting;
    let ns = ScratchNetns::new("safety");
    let dirs = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (dirs.path().join("a"), dirs.path().join("b"));
    let cidr = |t: &str| Cidr::parse(t).unwrap();
    // Agent A: cluster 10.45.0.0/16 (its podCIDR 10.45.3.0/24), services 10.46.0.0/16.
    // Agent B, another cluster on the same host: 10.47.0.0/16 and 10.48.0.0/16.
    let safety_a = HostRouting {
        unreachable: vec![cidr("10.46.0.0/16"), cidr("10.45.0.0/16")],
        local_service_cidrs: vec![],
    };
    let full_a = HostRouting {
        local_service_cidrs: vec![cidr("10.46.0.0/16")],
        ..safety_a.clone()
    };
    let safety_b = HostRouting {
        unreachable: vec![cidr("10.48.0.0/16"), cidr("10.47.0.0/16")],
        local_service_cidrs: vec![],
    };
    {
        let (dir_a, dir_b, full_a, safety_b) = (
            dir_a.clone(),
            dir_b.clone(),
            full_a.clone(),
            safety_b.clone(),
        );
        ns.run(move || async move {
            let a = HostNetwork::with_bridge(dir_a, "kyba").forwarding(true);
            let b = HostNetwork::with_bridge(dir_b, "kybb");
            // Safety first, before any bridge exists; twice, as after a restart.
            a.sync_host_routing(&safety_a).await.unwrap();
            a.sync_host_routing(&safety_a).await.expect("idempotent");
            b.sync_host_routing(&safety_b).await.unwrap();
            a.init("10.45.3.0/24").await.unwrap();
            a.add_local_address(Ipv4Addr::new(10, 46, 0, 10))
                .await
                .unwrap();
            a.add_local_address(Ipv4Addr::new(10, 46, 0, 10))
                .await
                .expect("idempotent");
            a.sync_host_routing(&full_a).await.unwrap();
            a.sync_host_routing(&full_a).await.expect("idempotent");
        });
    }
    let unreachable = ns.ip(&["-4", "route", "show", "proto", "76", "type", "unreachable"]);
    for prefix in [
        "10.45.0.0/16",
        "10.46.0.0/16",
        "10.47.0.0/16",
        "10.48.0.0/16",
    ] {
        assert!(
            unreachable.contains(&format!("unreachable {prefix} metric 4096")),
            "{prefix} in {unreachable:?}"
        );
    }
    let rules = ns.ip(&["-4", "rule", "show"]);
    assert_eq!(
        rules
            .matches("32000:\tfrom all to 10.46.0.0/16 iif lo lookup 76")
            .count(),
        1,
        "one rule, however often synced: {rules:?}"
    );
    let table = ns.ip(&["-4", "route", "show", "table", "76"]);
    assert!(
        table.contains("10.46.0.0/16 dev kyba proto 76"),
        "{table:?}"
    );
    // The host reaches a ClusterIP through the bridge; forwarded traffic does not.
    let host = ns.ip(&["-4", "route", "get", "10.46.0.99"]);
    assert!(host.contains("dev kyba"), "host socket route: {host:?}");
    let forwarded = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "ip",
            "-4",
            "route",
            "get",
            "10.46.0.99",
        ])
        .args(["from", "10.45.3.5", "iif", "kyba"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&forwarded.stderr).contains("No route to host"),
        "a pod's packet meets the unreachable route: {forwarded:?}"
    );
    let pod_route = ns.ip(&["-4", "route", "get", "10.45.3.5"]);
    assert!(
        pod_route.contains("dev kyba"),
        "own podCIDR stays on the bridge: {pod_route:?}"
    );
    let dns = ns.ip(&["-4", "-o", "addr", "show", "dev", "kyba"]);
    assert!(
        dns.contains("inet 10.46.0.10/32"),
        "the DNS address: {dns:?}"
    );
    assert_eq!(ns.sysctl("/proc/sys/net/ipv4/ip_forward"), "1");
    assert_eq!(
        ns.sysctl("/proc/sys/net/bridge/bridge-nf-call-iptables"),
        "1"
    );

    // A's service range leaves (flags changed): only its routes and rule go.
    {
        let dir_a = dir_a.clone();
        ns.run(move || async move {
            let a = HostNetwork::with_bridge(dir_a, "kyba");
            a.sync_host_routing(&HostRouting {
                unreachable: vec![cidr("10.45.0.0/16")],
                local_service_cidrs: vec![],
            })
            .await
            .unwrap();
        });
    }
    let unreachable = ns.ip(&["-4", "route", "show", "proto", "76"]);
    assert!(!unreachable.contains("10.46.0.0/16"), "{unreachable:?}");
    assert!(unreachable.contains("10.45.0.0/16"), "{unreachable:?}");
    assert!(!ns.ip(&["-4", "rule", "show"]).contains("10.46.0.0/16"));
    assert_eq!(ns.ip(&["-4", "route", "show", "table", "76"]).trim(), "");

    // --reset of A removes what A installed and nothing of B's.
    {
        let dir_a = dir_a.clone();
        ns.run(move || async move {
            let a = HostNetwork::with_bridge(dir_a, "kyba");
            a.sync_host_routing(&full_a).await.unwrap();
            a.remove_host_routing().await.unwrap();
            a.remove_host_routing().await.expect("idempotent");
        });
    }
    let left = ns.ip(&["-4", "route", "show", "proto", "76", "table", "all"]);
    assert!(
        !left.contains("10.45.") && !left.contains("10.46."),
        "A's routes gone: {left:?}"
    );
    assert!(
        left.contains("10.47.0.0/16") && left.contains("10.48.0.0/16"),
        "B's stay: {left:?}"
    );
    assert!(!ns.ip(&["-4", "rule", "show"]).contains("lookup 76"));

    // --reset also removes the routes to other nodes' pods (proto 75), without `init`.
    ns.ip(&["route", "add", "unreachable", "10.45.9.0/24", "proto", "75"]);
    ns.run(move || async move {
        let a = HostNetwork::with_bridge(dir_a, "kyba");
        a.remove_peer_routes(Cidr::parse("10.45.0.0/16").unwrap())
            .await
            .unwrap();
    });
    assert_eq!(ns.ip(&["-4", "route", "show", "proto", "75"]).trim(), "");
}
