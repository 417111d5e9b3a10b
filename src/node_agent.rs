//! `kybern agent` (and the agent inside `kybern up`): flags to configuration, containerd
//! (the one on --containerd-socket, or a private one under the data dir), image imports,
//! the node network's safety routes, and `--reset` (in `reset.rs`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use agent::kubelet::AgentConfig;
use agent::network::linux::HostNetwork;
use agent::network::Network;
use agent::runtime::containerd::{Containerd, DEFAULT_NAMESPACE};
use agent::runtime::daemon::ContainerdDaemon;
use agent::runtime::Runtime;
use anyhow::Context;
use clap::Args;

/// The component name the agent's requests start their User-Agent with, as kubelet's.
pub(crate) const USER_AGENT: &str = "kubelet";

mod identity;
pub(crate) mod join;
mod reset;
pub(crate) use identity::local_kubeconfig;
pub(crate) use reset::reset;

#[derive(Args, Clone, Debug)]
pub(crate) struct NodeArgs {
    /// The node's name (default: this host's name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The address other nodes reach this one at (default: the source address of the
    /// host's default route, else 127.0.0.1).
    #[arg(long)]
    pub node_ip: Option<Ipv4Addr>,
    /// Labels to add to the node, `key=value,...`.
    #[arg(long, value_delimiter = ',')]
    pub node_labels: Vec<String>,
    /// Where pods' volumes and logs, the network state and the private containerd live
    /// (default: /var/lib/kybern/agent; under `kybern up`, <data-dir>/agent).
    #[arg(long)]
    pub agent_dir: Option<PathBuf>,
    /// Use the containerd on this socket instead of starting a private one.
    #[arg(long)]
    pub containerd_socket: Option<PathBuf>,
    /// The bridge pods are attached to.
    #[arg(long, default_value = agent::network::BRIDGE)]
    pub bridge: String,
    #[command(flatten)]
    pub net: crate::cluster_net::ClusterNetArgs,
    /// The host's resolv.conf, as the kubelet's flag: pods with dnsPolicy Default get its
    /// nameservers, and the cluster DNS server forwards other names to them.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// A nameserver (ADDR or ADDR:PORT) the cluster DNS server forwards names outside the
    /// cluster to, instead of those of --resolv-conf; repeat for several.
    #[arg(long = "dns-upstream", value_name = "ADDR[:PORT]", value_parser = upstream)]
    pub dns_upstreams: Vec<std::net::SocketAddr>,
    /// The nftables table (family ip) the service proxy owns (default: kybern, or
    /// kybern-<bridge> when --bridge is not kybern0, so two agents on one host keep apart).
    #[arg(long)]
    pub nft_table: Option<String>,
    /// Run no service proxy (as k3s's --disable-kube-proxy).
    #[arg(long)]
    pub disable_proxy: bool,
    /// Run no cluster DNS server on this node.
    #[arg(long)]
    pub disable_dns: bool,
    /// Add no routes to other nodes' podCIDRs (host-gw).
    #[arg(long)]
    pub disable_peer_routes: bool,
    /// Where the service proxy and DNS server serve /metrics over plain HTTP
    /// (kube-proxy's port; keep it on loopback), or `none`.
    #[arg(long, default_value = "127.0.0.1:10249", value_parser = listen_or_none)]
    pub proxy_metrics_bind_address: Listen,
    /// Image archives (OCI image layouts or `docker save` tarballs) to import at start.
    #[arg(long = "import", value_name = "TAR")]
    pub imports: Vec<PathBuf>,
    /// A folder of static pod manifests, run without the API and mirrored into it.
    #[arg(long)]
    pub pod_manifest_path: Option<PathBuf>,
    /// Container restart back-off: the first delay, doubled up to --restart-backoff-max.
    #[arg(long, default_value = "10s", value_parser = humantime_secs)]
    pub restart_backoff: std::time::Duration,
    #[arg(long, default_value = "300s", value_parser = humantime_secs)]
    pub restart_backoff_max: std::time::Duration,
    /// Hard eviction thresholds, as the kubelet's flag: the node reports MemoryPressure or
    /// DiskPressure (and takes no new pods) below them, and allocatable leaves them aside.
    #[arg(long, default_value_t = agent::node::Eviction::default())]
    pub eviction_hard: agent::node::Eviction,
    /// The folder local-path volumes live in on this node; a deleted volume's folder is
    /// removed only below it (default: /var/lib/kybern/storage; under `kybern up` and
    /// with --data-dir, <data-dir>/storage).
    #[arg(long)]
    pub local_path_root: Option<PathBuf>,
    /// Where the node API listens (logs, exec, attach, port-forward, stats for the API
    /// server), as the kubelet's port; `none` serves none.
    #[arg(long, default_value = "0.0.0.0:10250", value_parser = listen_or_none)]
    pub node_api_listen: Listen,
    /// The size a container's log file grows to before it is rotated, as the kubelet's
    /// containerLogMaxSize (a quantity: 10Mi, 500Ki).
    #[arg(long, default_value = "10Mi", value_parser = log_size)]
    pub container_log_max_size: u64,
    /// How many log files a container keeps, the current one included (at least 2), as
    /// the kubelet's containerLogMaxFiles.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..))]
    pub container_log_max_files: u32,
}

/// A listen address, or none (`none`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Listen(pub Option<std::net::SocketAddr>);

fn listen_or_none(s: &str) -> Result<Listen, String> {
    if s == "none" {
        return Ok(Listen(None));
    }
    s.parse()
        .map(|a| Listen(Some(a)))
        .map_err(|_| format!("{s:?} is not an address like 0.0.0.0:10250 (or none)"))
}

fn upstream(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse()
        .or_else(|_| s.parse::<Ipv4Addr>().map(|ip| (ip, 53).into()))
        .map_err(|_| format!("{s:?} is not a nameserver like 192.0.2.53 or 192.0.2.53:5353"))
}

fn log_size(s: &str) -> Result<u64, String> {
    agent::volumes::quantity::parse_nanos(s)
        .map(|nanos| nanos / 1_000_000_000)
        .and_then(|bytes| u64::try_from(bytes).ok())
        .filter(|bytes| *bytes > 0)
        .ok_or_else(|| format!("{s:?} is not a positive size like 10Mi"))
}

fn humantime_secs(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 10s, 5m or 500ms"))?;
    match unit {
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "s" | "" => Ok(std::time::Duration::from_secs(n)),
        "m" => Ok(std::time::Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?} is not a duration like 10s, 5m or 500ms")),
    }
}

impl NodeArgs {
    /// The dirs of the `kybern up` on `data_dir`, unless flags name others: the agent dir
    /// `<data-dir>/agent` and the local-path root `<data-dir>/storage` (where that up's
    /// local-path loop puts volumes). How `kybern up` and `kybern agent --data-dir` agree.
    pub(crate) fn under_data_dir(&mut self, data_dir: &std::path::Path) {
        self.agent_dir.get_or_insert_with(|| data_dir.join("agent"));
        self.local_path_root
            .get_or_insert_with(|| data_dir.join("storage"));
    }

    /// The agent's container I/O: FIFOs under `<agent dir>/io`, logs under
    /// `<agent dir>/logs` (where the pods' logs are written), rotated as the flags say.
    pub(crate) fn container_io(&self) -> Arc<agent::logs::ContainerIo> {
        agent::logs::ContainerIo::new(agent::logs::IoConfig {
            fifo_dir: self.dir().join("io"),
            logs_dir: self.dir().join("logs"),
            limits: agent::logs::LogLimits {
                max_size: self.container_log_max_size,
                max_files: self.container_log_max_files as usize,
            },
        })
    }

    /// The nftables table this agent's proxy owns: --nft-table, else derived from the
    /// bridge so that agents with their own bridges never share a table.
    pub(crate) fn nft_table(&self) -> String {
        match &self.nft_table {
            Some(table) => table.clone(),
            None if self.bridge == agent::network::BRIDGE => "kybern".into(),
            None => format!("kybern-{}", self.bridge),
        }
    }

    /// The node network settings of `agent::kubelet::AgentConfig`.
    pub(crate) fn net_config(&self) -> agent::kubelet::NetConfig {
        agent::kubelet::NetConfig {
            cluster_cidr: self.net.cluster_cidr,
            service_cidr: self.net.service_cidr,
            cluster_dns: self.net.cluster_dns,
            resolv_conf: self.resolv_conf.clone(),
            dns_upstreams: self.dns_upstreams.clone(),
            nft_table: self.nft_table(),
            disabled: agent::kubelet::Disabled {
                proxy: self.disable_proxy,
                dns: self.disable_dns,
                peer_routes: self.disable_peer_routes,
            },
            metrics: self.proxy_metrics_bind_address.0,
        }
    }

    /// The node's name: `--node-name`, else this host's name.
    pub(crate) fn name(&self) -> String {
        self.node_name.clone().unwrap_or_else(host_name)
    }

    pub(crate) fn dir(&self) -> PathBuf {
        self.agent_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/var/lib/kybern/agent"))
    }

    /// The local-path root, absolute (the local-path loop writes absolute paths).
    pub(crate) fn local_path_root(&self) -> std::io::Result<PathBuf> {
        let root = self
            .local_path_root
            .clone()
            .unwrap_or_else(|| PathBuf::from(agent::local_path::DEFAULT_ROOT));
        std::path::absolute(root)
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_lowercase())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "kybern-node".into())
}

/// containerd: the given socket, or the private one under the agent dir (started when not
/// running; left running when the agent stops, so containers keep theirs).
async fn containerd(args: &NodeArgs) -> anyhow::Result<Containerd> {
    if let Some(socket) = &args.containerd_socket {
        return Containerd::connect(socket, DEFAULT_NAMESPACE)
            .await
            .with_context(|| {
                format!(
                    "connecting to containerd at {}; is it running?",
                    socket.display()
                )
            });
    }
    let dir = args.dir().join("containerd");
    eprintln!(
        "starting containerd under {} (if not already running)",
        dir.display()
    );
    let (client, daemon) = ContainerdDaemon::connect_or_start(&dir, DEFAULT_NAMESPACE)
        .await
        .with_context(|| {
            format!(
                "starting containerd under {}; is containerd installed (scripts/install-deps.sh)?",
                dir.display()
            )
        })?;
    if let Some(daemon) = daemon {
        daemon.detach();
    }
    Ok(client)
}

fn network(args: &NodeArgs) -> Arc<dyn Network> {
    Arc::new(host_network(args))
}

/// The host network of this agent's bridge and state dir. Forwarding (and
/// bridge-nf-call-iptables) is on unless neither the proxy nor the peer routes run: pods on
/// other nodes and pod-to-ClusterIP-to-pod on one bridge need it, as k3s and kubeadm set it.
fn host_network(args: &NodeArgs) -> HostNetwork {
    HostNetwork::with_bridge(args.dir().join("network"), &args.bridge)
        .forwarding(!(args.disable_proxy && args.disable_peer_routes))
}

/// Runs the agent until it fails or the process ends.
pub(crate) async fn run(
    client: kube::Client,
    ca: agent::nodeapi::cert::ClusterCa,
    args: NodeArgs,
) -> anyhow::Result<()> {
    // One ContainerIo per agent: the runtime copies task output with it, and the node API
    // reads logs and attaches through it. Containers a previous agent left running get
    // their output copied on.
    // Safety routes before anything else: containers a previous run left may be running.
    let network = network(&args);
    let net = args.net_config();
    agent::kubelet::install_safety_routes(network.as_ref(), &net)
        .await
        .context("installing the unreachable routes for the cluster's ranges")?;
    if !net.disabled.proxy {
        agent::network::HostState::record_nft_table(&args.dir().join("network"), &net.nft_table)
            .context("recording the service proxy's nftables table")?;
    }
    if !net.disabled.peer_routes {
        agent::network::HostState::record_cluster_cidr(
            &args.dir().join("network"),
            &net.cluster_cidr,
        )
        .context("recording the cluster CIDR of the routes to other nodes' pods")?;
    }
    let io = args.container_io();
    let runtime = containerd(&args).await?.with_io(io.clone());
    let recovered = io
        .recover()
        .with_context(|| format!("reopening container FIFOs under {}", args.dir().display()))?;
    if recovered > 0 {
        eprintln!("copying the output of {recovered} containers on");
    }
    let version = runtime.version().await?;
    for path in &args.imports {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let names = runtime
            .import_image(&data)
            .await
            .with_context(|| format!("importing {}", path.display()))?;
        eprintln!("imported {} from {}", names.join(", "), path.display());
    }
    let labels: BTreeMap<String, String> = args
        .node_labels
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("--node-labels: {l:?} is not key=value"))
        })
        .collect::<anyhow::Result<_>>()?;
    let config = AgentConfig {
        node_name: args.name(),
        node_ip: args.node_ip.unwrap_or_else(agent::node::primary_ip),
        data_dir: args.dir(),
        labels,
        dns: agent::pods::ClusterDns {
            servers: vec![args.net.cluster_dns.to_string()],
            domain: args.net.cluster_domain.clone(),
            resolv_conf: args.resolv_conf.clone(),
        },
        net,
        runtime_version: format!("containerd://{version}"),
        backoff: agent::pods::BackoffConfig {
            initial: args.restart_backoff,
            max: args.restart_backoff_max,
        },
        static_pods_dir: args.pod_manifest_path.clone(),
        eviction: args.eviction_hard,
        local_path_root: args
            .local_path_root()
            .context("resolving --local-path-root")?,
        node_api: args
            .node_api_listen
            .0
            .map(|listen| agent::kubelet::NodeApiConfig { listen, ca }),
        io: Some(io.clone()),
    };
    eprintln!(
        "agent: node {} ({}), containerd {version}",
        config.node_name, config.node_ip
    );
    let runtime: Arc<dyn Runtime> = Arc::new(runtime);
    let folder = tokio::spawn(crate::images::watch_folder(
        runtime.clone(),
        args.dir().join("images"),
    ));
    let result = agent::kubelet::run(client, config, runtime, network).await;
    folder.abort();
    result?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        node: NodeArgs,
    }

    fn limits(args: &[&str]) -> Result<agent::logs::LogLimits, String> {
        let flags = Flags::try_parse_from(std::iter::once("agent").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Ok(flags.node.container_io().config().limits)
    }

    fn node(args: &[&str]) -> NodeArgs {
        Flags::try_parse_from(std::iter::once("agent").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .node
    }

    #[test]
    fn node_network_flags_become_the_proxy_and_dns_settings() {
        use agent::kubelet::{Disabled, NetConfig};
        struct Case {
            name: &'static str,
            args: &'static [&'static str],
            check: fn(&NetConfig) -> bool,
        }
        let cases = [
            Case {
                name: "defaults: everything on, table kybern, kube-proxy's metrics port",
                args: &[],
                check: |c| {
                    c.nft_table == "kybern"
                        && c.disabled == Disabled::default()
                        && c.metrics == Some("127.0.0.1:10249".parse().unwrap())
                        && c.resolv_conf == std::path::Path::new("/etc/resolv.conf")
                        && c.dns_upstreams.is_empty()
                        && c.cluster_dns == Ipv4Addr::new(10, 43, 0, 10)
                },
            },
            Case {
                name: "another bridge gets a table of its own",
                args: &["--bridge", "kyb7"],
                check: |c| c.nft_table == "kybern-kyb7",
            },
            Case {
                name: "--nft-table wins over the bridge",
                args: &["--bridge", "kyb7", "--nft-table", "mine"],
                check: |c| c.nft_table == "mine",
            },
            Case {
                name: "upstreams take port 53 unless given one",
                args: &[
                    "--dns-upstream",
                    "192.0.2.53",
                    "--dns-upstream",
                    "127.0.0.1:5353",
                ],
                check: |c| {
                    c.dns_upstreams
                        == [
                            "192.0.2.53:53".parse().unwrap(),
                            "127.0.0.1:5353".parse().unwrap(),
                        ]
                },
            },
            Case {
                name: "services switch off one by one, metrics with none",
                args: &[
                    "--disable-proxy",
                    "--disable-peer-routes",
                    "--proxy-metrics-bind-address",
                    "none",
                    "--resolv-conf",
                    "/run/resolv.conf",
                ],
                check: |c| {
                    c.disabled
                        == Disabled {
                            proxy: true,
                            dns: false,
                            peer_routes: true,
                        }
                        && c.metrics.is_none()
                        && c.resolv_conf == std::path::Path::new("/run/resolv.conf")
                },
            },
        ];
        for case in cases {
            let config = node(case.args).net_config();
            assert!((case.check)(&config), "{}: {config:?}", case.name);
        }
        let proxy = node(&[]).net_config().proxy_config("n1");
        assert_eq!(
            (proxy.node_name.as_str(), proxy.nft_table.as_str()),
            ("n1", "kybern")
        );
        assert!(
            Flags::try_parse_from(["agent", "--dns-upstream", "resolver.example"]).is_err(),
            "an upstream is an address, not a name"
        );
    }

    #[test]
    fn node_flags_leave_disable_and_metrics_bind_address_to_the_server_under_up() {
        // `kybern up` flattens the server's flags (with --disable and
        // --metrics-bind-address) beside these; clap refuses a flag defined twice.
        #[derive(Parser)]
        struct Up {
            #[command(flatten)]
            node: NodeArgs,
            #[arg(long, value_delimiter = ',')]
            disable: Vec<String>,
            #[arg(long, default_value = "127.0.0.1:10257")]
            metrics_bind_address: std::net::SocketAddr,
        }
        use clap::CommandFactory;
        Up::command().debug_assert();
    }

    #[test]
    fn container_log_rotation_flags_default_to_the_kubelets_and_take_quantities() {
        let lim = |max_size, max_files| agent::logs::LogLimits {
            max_size,
            max_files,
        };
        assert_eq!(limits(&[]), Ok(lim(10 << 20, 5)), "the kubelet's defaults");
        assert_eq!(
            limits(&[
                "--container-log-max-size",
                "500Ki",
                "--container-log-max-files",
                "2"
            ]),
            Ok(lim(500 << 10, 2))
        );
        for (name, args) in [
            ("one file", ["--container-log-max-files", "1"]),
            ("no size", ["--container-log-max-size", "0"]),
            ("not a size", ["--container-log-max-size", "big"]),
        ] {
            assert!(limits(&args).is_err(), "{name} is refused");
        }
    }
}
