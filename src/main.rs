//! The `kybern` command: one binary, each role a subcommand.

mod cluster_net;
mod images;
mod node_agent;
mod secrets_encrypt;
mod token;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use apiserver::server::{self, Config, Encryption, StorageBackend};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "kybern",
    version,
    about = "A small Kubernetes-compatible cluster in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server and every control loop (switch parts off with --disable).
    Server(ServerArgs),
    /// Run a single-node cluster with a default data dir and tell how to reach it.
    Up(UpArgs),
    /// Run control loops against an API server: the named ones, or all (see --list).
    Controller(ControllerArgs),
    /// Benchmarks that print figures (`kybern bench api|scheduler|deployment|pods`).
    Bench(kybern_bench::BenchArgs),
    /// Run the node agent: register this host as a node and run its pods on containerd
    /// (or, with `--simulate N`, N simulated nodes for scale tests).
    Agent(AgentArgs),
    /// Images on the node: `kybern images import TAR...` while the node runs.
    Images {
        #[command(subcommand)]
        command: images::ImagesCommand,
    },
    /// Secrets encrypted at rest, on a stopped server's data dir (embedded storage):
    /// `status`, `prepare` (a new key that only reads; the one verb a running server
    /// allows), `rotate` (the prepared or a new key writes, every record re-encrypted,
    /// old keys dropped) and `reencrypt`. Stop the server first for all but `prepare`.
    SecretsEncrypt(secrets_encrypt::SecretsEncryptArgs),
    /// Bootstrap tokens nodes join with: `create`, `list`, `delete` (as kubeadm's).
    Token(token::TokenArgs),
}

#[derive(Args)]
struct AgentArgs {
    /// Simulate this many nodes (no containers; bound pods are reported Running).
    #[arg(long, value_name = "N")]
    simulate: Option<usize>,
    /// Stop and remove every container, pod sandbox and pod volume the agent made, remove
    /// its bridge, stop its private containerd, and exit. Images stay.
    #[arg(long, conflicts_with = "simulate")]
    reset: bool,
    #[command(flatten)]
    node: node_agent::NodeArgs,
    /// The data dir of the `kybern up` this agent belongs to: its agent dir is
    /// <data-dir>/agent unless --agent-dir says otherwise.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The kubeconfig to reach the apiserver with.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    join: node_agent::join::JoinArgs,
    /// Simulated nodes are named <prefix><index>.
    #[arg(long, default_value = "sim-")]
    name_prefix: String,
    /// CPU capacity of each simulated node.
    #[arg(long, default_value = "32")]
    cpu: String,
    /// Memory capacity of each simulated node.
    #[arg(long, default_value = "128Gi")]
    memory: String,
    /// Pod capacity of each simulated node.
    #[arg(long, default_value = "110")]
    pods: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum StorageArg {
    /// A single crash-safe file in the data dir (default).
    Embedded,
    /// An etcd cluster at --etcd-endpoints.
    Etcd,
}

#[derive(Args)]
struct ServerArgs {
    /// Where certificates, admin.kubeconfig and embedded storage live.
    #[arg(long)]
    data_dir: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    net: cluster_net::ClusterNetArgs,
}

#[derive(Args)]
struct UpArgs {
    /// Where certificates, admin.kubeconfig and embedded storage live.
    #[arg(long, default_value = "/var/lib/kybern")]
    data_dir: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    node: node_agent::NodeArgs,
    /// On Ctrl-C or SIGTERM, leave the pods' containers and the private containerd
    /// running (by default they are stopped, as `kybern agent --reset` does).
    #[arg(long)]
    keep_containers: bool,
}

#[derive(Args)]
struct ControllerArgs {
    /// Control loops to run; all of them when none is named.
    names: Vec<String>,
    /// Kubeconfig to reach the API server with.
    #[arg(long, env = "KUBECONFIG", required_unless_present = "list")]
    kubeconfig: Option<PathBuf>,
    /// List the known control loops and exit.
    #[arg(long)]
    list: bool,
    /// Loops not to run (names that do not exist are ignored).
    #[arg(long, value_delimiter = ',')]
    disable: Vec<String>,
    /// A KubeSchedulerConfiguration file (plugin weights, scoring strategy,
    /// percentageOfNodesToScore) for the scheduler loop.
    #[arg(long)]
    scheduler_config: Option<PathBuf>,
    /// Where the control loops serve /metrics and /healthz over plain HTTP
    /// (kube-controller-manager's port; keep it on loopback); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:10257")]
    metrics_bind_address: SocketAddr,
    /// Run each control loop as its own service account in kube-system (created if
    /// missing; its tokens requested with the kubeconfig's identity), bound by the
    /// `system:controller:*` roles; `=false` runs every loop as the kubeconfig's user.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    use_service_account_credentials: bool,
    /// The range the nodeipam loop gives nodes their podCIDRs from.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,
    #[command(flatten)]
    node_cidr: NodeCidrArgs,
}

#[derive(Args)]
struct NodeCidrArgs {
    /// The prefix length of each node's podCIDR (kube-controller-manager's flag).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u8).range(1..=30))]
    node_cidr_mask_size: u8,
}

impl NodeCidrArgs {
    /// nodeipam's configuration, checked now so a bad pair fails before anything starts.
    fn nodeipam(&self, cluster_cidr: &str) -> anyhow::Result<controllers::nodeipam::Config> {
        let config = controllers::nodeipam::Config {
            cluster_cidr: cluster_cidr.to_string(),
            node_mask: self.node_cidr_mask_size,
        };
        controllers::nodeipam::Range::parse(&config.cluster_cidr, config.node_mask).map_err(
            |_| {
                anyhow::anyhow!(
                    "--node-cidr-mask-size {} does not fit --cluster-cidr {cluster_cidr}: it must be at least the range's prefix length",
                    config.node_mask
                )
            },
        )?;
        Ok(config)
    }
}

#[derive(Args)]
struct CommonArgs {
    /// Address to serve HTTPS on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// The address pods and other nodes reach the API server at: the `kubernetes`
    /// Service's endpoint and a name in the serving certificate; served too (on the
    /// --listen port) when --listen does not cover it. Default: this host's primary
    /// address (under `up`, --node-ip when given).
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// Storage backend.
    #[arg(long, value_enum, default_value = "embedded")]
    storage: StorageArg,
    /// etcd client URLs, comma-separated (with --storage etcd).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    etcd_endpoints: Vec<String>,
    /// Encrypt Secrets at rest (on by default with embedded storage: AES-256-GCM with a
    /// key made on first start in <data-dir>/encryption-config.yaml, mode 0600).
    /// `--secrets-encryption=false` stores new records in plaintext; Secrets encrypted
    /// before then cannot be read, so first put `- identity: {}` first in that file and
    /// run `kybern secrets-encrypt reencrypt` on the stopped data dir. With --storage etcd
    /// only --encryption-provider-config turns it on.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    secrets_encryption: bool,
    /// An EncryptionConfiguration (apiserver.config.k8s.io/v1: aesgcm, secretbox and
    /// identity providers) to use instead of the data dir's own file.
    #[arg(long, value_name = "FILE")]
    encryption_provider_config: Option<PathBuf>,
    /// Parts not to run: `controllers`, `scheduler`, a control loop's name, or (with `up`)
    /// `agent`.
    #[arg(long, value_delimiter = ',')]
    disable: Vec<String>,
    /// A KubeSchedulerConfiguration file (plugin weights, scoring strategy,
    /// percentageOfNodesToScore) for the scheduler.
    #[arg(long)]
    scheduler_config: Option<PathBuf>,
    /// Where the control loops serve /metrics and /healthz over plain HTTP
    /// (kube-controller-manager's port; keep it on loopback); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:10257")]
    metrics_bind_address: SocketAddr,
    /// Run each control loop as its own service account in kube-system and the scheduler
    /// as `system:kube-scheduler` (kube-controller-manager's flag); `=false` runs every
    /// loop and the scheduler as the server's admin identity.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    use_service_account_credentials: bool,
    #[command(flatten)]
    node_cidr: NodeCidrArgs,
}

impl CommonArgs {
    /// The server's configuration; `net` are the cluster network flags (the agent's under
    /// `up`), `advertise` the default of --advertise-address.
    fn config(
        self,
        data_dir: PathBuf,
        net: &cluster_net::ClusterNetArgs,
        advertise: impl FnOnce() -> IpAddr,
    ) -> anyhow::Result<Config> {
        let service_net = apiserver::api::ServiceNet::new(
            (net.service_cidr.network(), net.service_cidr.prefix()),
            net.cluster_dns,
            &net.cluster_domain,
        )
        .map_err(|e| anyhow::anyhow!(e))?;
        Ok(Config {
            listen: self.listen,
            advertise: Some(self.advertise_address.unwrap_or_else(advertise)),
            service_net,
            storage: match self.storage {
                StorageArg::Embedded => StorageBackend::Embedded,
                StorageArg::Etcd => StorageBackend::Etcd,
            },
            etcd_endpoints: self.etcd_endpoints,
            disable: self.disable,
            encryption: match (self.encryption_provider_config, self.secrets_encryption) {
                (Some(path), _) => Encryption::File(path),
                (None, true) => Encryption::Default,
                (None, false) => Encryption::Off,
            },
            ..Config::new(data_dir)
        })
    }
}

/// Long-running roles re-execute themselves once with glibc's allocator tuned for a
/// server: two arenas instead of one per thread, and fixed trim/mmap thresholds so
/// large temporary buffers (a LIST of thousands of objects) go back to the system
/// instead of staying in the heap. Variables the user set are kept.
fn tune_allocator() {
    controllers::runtime::reexec_with_malloc_settings(&[
        ("MALLOC_ARENA_MAX", "2"),
        ("MALLOC_TRIM_THRESHOLD_", "1048576"),
        ("MALLOC_MMAP_THRESHOLD_", "262144"),
    ]);
}

/// Raises the soft limit on open files to the hard limit, as Go's runtime does for
/// kube-apiserver: a server holds a descriptor for every connection, and the soft limit
/// shells start with (1024) only protects programs that use select(2), which kybern does
/// not. The hard limit, set by whoever runs us, stays the bound.
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(soft, hard, error = %e, "raising the open-file soft limit failed");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "reading the open-file limit failed"),
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KYBERN_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    raise_open_file_limit();
    let cli = Cli::parse();
    // Every long-running process; not the short-lived ones (--list, bench drivers).
    let daemon = match &cli.command {
        Command::Server(_) | Command::Up(_) | Command::Agent(_) => true,
        Command::Controller(args) => !args.list,
        Command::Bench(_)
        | Command::Images { .. }
        | Command::SecretsEncrypt(_)
        | Command::Token(_) => false,
    };
    if daemon {
        tune_allocator();
    }
    // Stacks deep enough for the most deeply nested object the API takes (only the
    // pages a request really uses are committed).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(apiserver::json::STACK_BYTES)
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => {
                let (config, loops) = server_of(args)?;
                on_runtime_thread(serve(config, loops, None)).await
            }
            Command::Up(args) => {
                let (config, loops, up) = up_of(args)?;
                on_runtime_thread(serve(config, loops, Some(up))).await
            }
            Command::Controller(args) => controller(args).await,
            Command::Bench(args) => kybern_bench::run(args).await,
            Command::Agent(args) => agent(args).await,
            Command::Images { command } => images::run(command).await,
            Command::SecretsEncrypt(args) => secrets_encrypt::run(args).await,
            Command::Token(args) => token::run(args).await,
        }
    })
}

/// What `kybern server` runs: the server's configuration and its loops'. Fails on
/// inconsistent flags (a --cluster-dns outside --service-cidr) before anything starts.
fn server_of(args: ServerArgs) -> anyhow::Result<(Config, LoopArgs)> {
    let loops = LoopArgs::of(&args.common, &args.net)?;
    let primary = || agent::node::primary_ip().into();
    let config = args.common.config(args.data_dir, &args.net, primary)?;
    Ok((config, loops))
}

/// What `kybern up` runs: as [`server_of`], with the cluster network flags its agent
/// takes (declared once, in the agent's flags) and, by default, the agent's --node-ip
/// as the advertised address.
fn up_of(args: UpArgs) -> anyhow::Result<(Config, LoopArgs, UpNode)> {
    let loops = LoopArgs::of(&args.common, &args.node.net)?;
    let node_ip = args.node.node_ip;
    let primary = || node_ip.unwrap_or_else(agent::node::primary_ip).into();
    let config = args
        .common
        .config(args.data_dir.clone(), &args.node.net, primary)?;
    let mut node = args.node;
    node.under_data_dir(&args.data_dir);
    let up = UpNode {
        node,
        keep_containers: args.keep_containers,
    };
    Ok((config, loops, up))
}

/// Runs the server on a runtime thread, not the main thread: start-up reads every
/// stored object, and runtime threads have stacks sized for the deepest one.
async fn on_runtime_thread(
    f: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
) -> anyhow::Result<()> {
    tokio::spawn(f).await?
}

async fn controller(args: ControllerArgs) -> anyhow::Result<()> {
    if args.list {
        for name in controllers::runtime::known(&loops()) {
            println!("{name}");
        }
        return Ok(());
    }
    // Unknown names fail here, before any connection, with the list of known ones.
    controllers::runtime::select(&loops(), &args.names, &args.disable)?;
    let scheduler = load_scheduler_config(args.scheduler_config.as_deref())?;
    let kubeconfig = args
        .kubeconfig
        .expect("clap requires --kubeconfig without --list");
    let nodeipam = args.node_cidr.nodeipam(&args.cluster_cidr)?;
    let ctx = controllers::runtime::context_with_credentials(
        &kubeconfig,
        args.use_service_account_credentials,
    )
    .await?
    .with_setting(scheduler)
    .with_setting(Some(nodeipam));
    // A port in use is fatal here, as for kube-controller-manager: this process exists
    // to run the loops, and a monitor should not scrape someone else's figures.
    serve_metrics(args.metrics_bind_address, &ctx).await?;
    let all = loops();
    tokio::select! {
        r = controllers::runtime::run_with(&all, &args.names, ctx, &args.disable) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// The in-process loops' identities: each controller loop its service account's tokens
/// (`controllers::identity`), the scheduler `system:kube-scheduler` through
/// `<data-dir>/scheduler.kubeconfig` (as kubeadm writes scheduler.conf; `kybern
/// controller scheduler` can use the file too), its client certificate kept in
/// `<data-dir>/pki/scheduler.crt` and renewed at start as the admin's is.
async fn loop_credentials(
    ctx: &controllers::Context,
    server: &server::Server,
    data_dir: &std::path::Path,
    pki: &apiserver::pki::Pki,
) -> anyhow::Result<controllers::identity::Credentials> {
    const SCHEDULER: &str = "system:kube-scheduler";
    use controllers::runtime::{kubeconfig_config, CONTROLLER_MANAGER};
    let admin = kubeconfig_config(&server.kubeconfig, CONTROLLER_MANAGER).await?;
    let (cert, key) = pki
        .stored_client_cert(data_dir, "scheduler", SCHEDULER, &[])
        .map_err(|e| anyhow::anyhow!("issuing the scheduler's certificate: {e}"))?;
    let path = data_dir.join("scheduler.kubeconfig");
    apiserver::pki::write_kubeconfig(&path, &server.url, pki, &cert, &key)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    let scheduler = kubeconfig_config(&path, controllers::runtime::SCHEDULER).await?;
    let scheduler = kube::Client::try_from(scheduler)?;
    Ok(
        controllers::identity::Credentials::new(ctx.client.clone(), admin)
            .with_user(SCHEDULER, scheduler),
    )
}

/// Serves the loops' `/metrics` and `/healthz` on `address` in the background.
async fn serve_metrics(address: SocketAddr, ctx: &controllers::Context) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("binding --metrics-bind-address {address}: {e}"))?;
    let bound = listener.local_addr()?;
    eprintln!("control-loop metrics on http://{bound}/metrics");
    tokio::spawn(controllers::runtime::metrics::serve(
        listener,
        ctx.metrics.clone(),
    ));
    Ok(())
}

/// Every control loop: controllers' and the scheduler's (last, as `--list` shows them).
fn loops() -> Vec<controllers::Loop> {
    let mut all = controllers::loops();
    all.push(scheduler::LOOP);
    all
}

/// Reads `--scheduler-config`, failing before anything starts when it is invalid.
fn load_scheduler_config(
    path: Option<&std::path::Path>,
) -> anyhow::Result<Option<scheduler::config::SchedulerConfig>> {
    path.map(|p| {
        scheduler::config::SchedulerConfig::from_file(p).map_err(|e| {
            anyhow::anyhow!("reading the scheduler configuration {}: {e:#}", p.display())
        })
    })
    .transpose()
}

/// What the control loops of `server` and `up` take from the command line.
struct LoopArgs {
    scheduler: Option<PathBuf>,
    metrics_address: SocketAddr,
    nodeipam: controllers::nodeipam::Config,
    service_accounts: bool,
}

impl LoopArgs {
    fn of(common: &CommonArgs, net: &cluster_net::ClusterNetArgs) -> anyhow::Result<Self> {
        Ok(LoopArgs {
            scheduler: common.scheduler_config.clone(),
            metrics_address: common.metrics_bind_address,
            nodeipam: common.node_cidr.nodeipam(&net.cluster_cidr.to_string())?,
            service_accounts: common.use_service_account_credentials,
        })
    }
}

/// The node of `kybern up`, and what becomes of its containers when it stops.
struct UpNode {
    node: node_agent::NodeArgs,
    keep_containers: bool,
}

/// Ctrl-C (SIGINT) or SIGTERM, whichever comes first.
async fn stop_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

/// `kybern up` is its own node: claims' local-path volumes live under its data dir
/// (`<data-dir>/storage`, absolute). `kybern server` keeps the loop's default.
fn local_path_config(
    up: bool,
    data_dir: &std::path::Path,
) -> std::io::Result<Option<controllers::localpath::Config>> {
    if !up {
        return Ok(None);
    }
    Ok(Some(controllers::localpath::Config {
        base_path: std::path::absolute(data_dir.join("storage"))?
            .display()
            .to_string(),
    }))
}

/// The API server and the control loops; with `agent` (from `kybern up`), also the node
/// agent for this host unless `--disable agent`, whose containers and private containerd
/// are stopped when a signal ends the process (unless `--keep-containers`).
async fn serve(config: Config, loop_args: LoopArgs, agent: Option<UpNode>) -> anyhow::Result<()> {
    let LoopArgs {
        scheduler,
        metrics_address,
        nodeipam,
        service_accounts,
    } = loop_args;
    let up = agent.is_some();
    let agent = agent.filter(|_| !config.disable.iter().any(|d| d == "agent"));
    let reset_on_stop = agent.as_ref().map(|a| (a.node.clone(), a.keep_containers));
    let agent = agent.map(|a| a.node);
    let scheduler = load_scheduler_config(scheduler.as_deref())?;
    let disable = config.disable.clone();
    let storage = local_path_config(up, &config.data_dir)?;
    let data_dir = config.data_dir.clone();
    let advertise = config.advertise;
    let server = server::start(config).await?;
    wait_ready(&server).await?;
    // The csrsigning loop signs with this server's CA.
    let signing = apiserver::pki::ensure(&data_dir, &[])
        .map(controllers::csrsigning::SigningCa)
        .map_err(|e| anyhow::anyhow!("reading the cluster CA: {e}"))?;
    // The tokens loop signs legacy tokens with the server's service-account key.
    let token_key = apiserver::api::TokenSigner::ensure(&data_dir)
        .map(|k| controllers::tokens::TokenKey(std::sync::Arc::new(k)))
        .map_err(|e| anyhow::anyhow!("reading the service-account key: {e}"))?;
    // The loops reach the server as any client would: over HTTPS, each loop as its own
    // identity (admin.kubeconfig's asks for their tokens and runs the shared informers).
    let ctx = controllers::runtime::context_from_kubeconfig(&server.kubeconfig).await?;
    let credentials = match service_accounts {
        true => Some(loop_credentials(&ctx, &server, &data_dir, &signing.0).await?),
        false => None,
    };
    let ctx = ctx
        .with_credentials(credentials)
        .with_setting(scheduler)
        .with_setting(storage)
        .with_setting(Some(signing))
        .with_setting(Some(token_key))
        .with_setting(Some(cluster_info(&server, advertise)))
        .with_setting(Some(nodeipam));
    // Beside the API server the endpoint is secondary: without it the cluster still
    // runs (two servers on one host, a test fleet), so a port in use is a warning.
    if let Err(e) = serve_metrics(metrics_address, &ctx).await {
        tracing::warn!(error = format!("{e:#}"), "control-loop metrics not served");
        eprintln!("warning: control-loop metrics not served: {e:#}");
    }
    tokio::spawn(async move {
        if let Err(e) = controllers::runtime::run_with(&loops(), &[], ctx, &disable).await {
            tracing::error!(error = format!("{e:#}"), "control loops stopped");
        }
    });
    let mut agent_task = None;
    if let Some(node) = agent {
        // The agent is this host's node, with the node identity any node has.
        let kubeconfig =
            node_agent::local_kubeconfig(&data_dir, &node.dir(), &server.url, &node.name())?;
        let (client, ca) = connect(&kubeconfig).await?;
        agent_task = Some(tokio::spawn(async move {
            if let Err(e) = node_agent::run(client, ca, node).await {
                tracing::error!(error = format!("{e:#}"), "the node agent stopped");
                eprintln!("error: the node agent stopped: {e:#}");
            }
        }));
    }
    println!("ready {}", server.url);
    if up {
        eprintln!(
            "kybern is up. Point kubectl at it with:\n\n    export KUBECONFIG={}\n    kubectl get namespaces\n",
            server.kubeconfig.display()
        );
    }
    tokio::select! {
        r = server.wait() => r,
        r = stop_signal() => {
            r?;
            // The agent goes first, so no pod worker restarts what the reset stops (the
            // workers end when the agent that feeds them is gone).
            if let Some(task) = agent_task {
                task.abort();
                let _ = task.await;
            }
            match reset_on_stop {
                Some((node, false)) => {
                    eprintln!("stopping: removing this node's containers and stopping its containerd (--keep-containers leaves them running)");
                    node_agent::reset(node).await
                }
                Some((node, true)) => {
                    eprintln!(
                        "stopping: the pods' containers and containerd keep running (--keep-containers); `kybern agent --reset --agent-dir {}` stops them",
                        node.dir().display()
                    );
                    Ok(())
                }
                None => Ok(()),
            }
        }
    }
}

/// The URL joining nodes reach the server at (`cluster-info`'s): the advertised address
/// on the port the server serves.
fn cluster_info(
    server: &server::Server,
    advertise: Option<IpAddr>,
) -> controllers::bootstrapsigner::ClusterInfo {
    let server = match advertise {
        Some(ip) => format!("https://{}", SocketAddr::new(ip, server.addr.port())),
        None => server.url.clone(),
    };
    controllers::bootstrapsigner::ClusterInfo { server }
}

/// A client from a kubeconfig, and the cluster CA it trusts (the agent's node API takes
/// client certificates from it and gets its own signed by it).
async fn connect(
    path: &std::path::Path,
) -> anyhow::Result<(kube::Client, agent::nodeapi::cert::ClusterCa)> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    controllers::runtime::set_user_agent(&mut config, node_agent::USER_AGENT);
    let ca = agent::nodeapi::cert::ClusterCa(config.root_cert.clone().unwrap_or_default());
    Ok((kube::Client::try_from(config)?, ca))
}

async fn agent(mut args: AgentArgs) -> anyhow::Result<()> {
    if let Some(data_dir) = &args.data_dir {
        args.node.under_data_dir(data_dir);
    }
    if args.reset {
        return node_agent::reset(args.node).await;
    }
    // --server means joining (or the credentials of an earlier join), even with a
    // $KUBECONFIG in the environment.
    let path = match (args.join.wanted(), args.kubeconfig) {
        (true, _) => {
            let path = node_agent::join::join(&args.join, &args.node).await?;
            if args.join.join_only {
                return Ok(());
            }
            path
        }
        (false, Some(path)) => path,
        (false, None) => {
            eprintln!(
                "error: --kubeconfig (or $KUBECONFIG), or --server with --token, is required"
            );
            std::process::exit(2);
        }
    };
    let (client, ca) = connect(&path).await?;
    let Some(count) = args.simulate else {
        return tokio::select! {
            r = node_agent::run(client, ca, args.node) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        };
    };
    let sim = agent::simulate::SimConfig {
        name_prefix: args.name_prefix,
        cpu: args.cpu,
        memory: args.memory,
        pods: args.pods,
        ..agent::simulate::SimConfig::new(count)
    };
    let simulator = agent::simulate::Simulator::start(client, sim).await?;
    println!("simulating {} nodes", simulator.nodes().len());
    tokio::select! {
        r = simulator.wait() => Ok(r?),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// Waits until /readyz answers ok, as a client would see it.
async fn wait_ready(server: &server::Server) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if server.probe_ready().await {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    anyhow::bail!(
        "the server did not answer /readyz within 10 seconds; run with KYBERN_LOG=debug to see why"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The agent dir and the local-path root each command line works on.
    fn agent_dirs(args: &[&str]) -> (PathBuf, PathBuf) {
        let cli = Cli::try_parse_from(args).unwrap();
        let node = match cli.command {
            Command::Up(up) => {
                let mut node = up.node;
                node.under_data_dir(&up.data_dir);
                node
            }
            Command::Agent(mut agent) => {
                if let Some(d) = &agent.data_dir {
                    agent.node.under_data_dir(d);
                }
                agent.node
            }
            _ => unreachable!("only up and agent have an agent dir"),
        };
        (node.dir(), node.local_path_root().unwrap())
    }

    #[test]
    fn agent_reset_finds_the_dirs_of_the_kybern_up_it_belongs_to() {
        let cases = [
            (
                "up's default",
                vec!["kybern", "up"],
                ("/var/lib/kybern/agent", "/var/lib/kybern/storage"),
            ),
            (
                "reset without a data dir finds up's default",
                vec!["kybern", "agent", "--reset"],
                ("/var/lib/kybern/agent", "/var/lib/kybern/storage"),
            ),
            (
                "up with a data dir",
                vec!["kybern", "up", "--data-dir", "/srv/k"],
                ("/srv/k/agent", "/srv/k/storage"),
            ),
            (
                "reset with the same data dir",
                vec!["kybern", "agent", "--reset", "--data-dir", "/srv/k"],
                ("/srv/k/agent", "/srv/k/storage"),
            ),
            (
                "explicit dirs win",
                vec![
                    "kybern",
                    "agent",
                    "--reset",
                    "--data-dir",
                    "/srv/k",
                    "--agent-dir",
                    "/a",
                    "--local-path-root",
                    "/v",
                ],
                ("/a", "/v"),
            ),
        ];
        for (name, args, (dir, root)) in cases {
            let want = (PathBuf::from(dir), PathBuf::from(root));
            assert_eq!(agent_dirs(&args), want, "{name}");
        }
    }

    /// The server configuration and nodeipam's of a `server` or `up` command line.
    fn server_config(args: &[&str]) -> anyhow::Result<(Config, controllers::nodeipam::Config)> {
        let cli = Cli::try_parse_from(args).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (config, loops) = match cli.command {
            Command::Server(a) => server_of(a)?,
            Command::Up(a) => {
                let (config, loops, _) = up_of(a)?;
                (config, loops)
            }
            _ => unreachable!("only server and up run an API server"),
        };
        Ok((config, loops.nodeipam))
    }

    #[test]
    fn server_and_up_take_the_cluster_network_flags_once() {
        use std::net::Ipv4Addr;
        let primary = IpAddr::from(agent::node::primary_ip());
        let flags = [
            "--service-cidr=10.96.0.0/24",
            "--cluster-dns=10.96.0.53",
            "--cluster-domain=example.internal",
            "--cluster-cidr=10.244.0.0/16",
            "--node-cidr-mask-size=26",
        ];
        let with = |role: &'static str, extra: &[&'static str]| {
            let mut args = vec!["kybern", role, "--data-dir=/d"];
            args.extend(extra);
            args
        };
        let configured = (
            "10.96.0.0/24".to_string(),
            Ipv4Addr::new(10, 96, 0, 1),
            Ipv4Addr::new(10, 96, 0, 53),
            "example.internal".to_string(),
            "10.244.0.0/16".to_string(),
            26,
        );
        let defaults = (
            "10.43.0.0/16".to_string(),
            Ipv4Addr::new(10, 43, 0, 1),
            Ipv4Addr::new(10, 43, 0, 10),
            "cluster.local".to_string(),
            "10.42.0.0/16".to_string(),
            24,
        );
        let cases = [
            (
                "server's defaults",
                with("server", &[]),
                defaults.clone(),
                primary,
            ),
            ("up's defaults", with("up", &[]), defaults.clone(), primary),
            (
                "server with flags",
                with("server", &flags),
                configured.clone(),
                primary,
            ),
            (
                "up with flags",
                with("up", &flags),
                configured.clone(),
                primary,
            ),
            (
                "an explicit advertise address",
                with("server", &["--advertise-address=192.0.2.7"]),
                defaults.clone(),
                "192.0.2.7".parse().unwrap(),
            ),
            (
                "up advertises its node's address",
                with("up", &["--node-ip=192.0.2.8"]),
                defaults,
                "192.0.2.8".parse().unwrap(),
            ),
        ];
        for (name, args, want, advertise) in cases {
            let (config, ipam) = server_config(&args).unwrap_or_else(|e| panic!("{name}: {e}"));
            let net = &config.service_net;
            let got = (
                net.cidr(),
                net.kubernetes_ip(),
                net.dns_ip(),
                net.domain().to_string(),
                ipam.cluster_cidr,
                ipam.node_mask,
            );
            assert_eq!(got, want, "{name}");
            assert_eq!(config.advertise, Some(advertise), "{name}");
        }
    }

    #[test]
    fn inconsistent_network_flags_fail_before_anything_starts() {
        let cases = [
            (
                "cluster DNS outside the service range",
                vec![
                    "kybern",
                    "server",
                    "--data-dir=/d",
                    "--service-cidr=10.96.0.0/16",
                ],
                "--cluster-dns 10.43.0.10 is not an address of --service-cidr 10.96.0.0/16",
            ),
            (
                "cluster DNS at the kubernetes Service's address",
                vec!["kybern", "up", "--cluster-dns=10.43.0.1"],
                "--cluster-dns 10.43.0.1 is the kubernetes Service's address",
            ),
            (
                "node blocks larger than the cluster range",
                vec![
                    "kybern",
                    "server",
                    "--data-dir=/d",
                    "--cluster-cidr=10.42.0.0/16",
                    "--node-cidr-mask-size=8",
                ],
                "--node-cidr-mask-size 8 does not fit --cluster-cidr 10.42.0.0/16",
            ),
        ];
        for (name, args, want) in cases {
            let err = server_config(&args)
                .err()
                .unwrap_or_else(|| panic!("{name}: accepted"));
            assert!(err.to_string().contains(want), "{name}: {err}");
        }
    }

    #[test]
    fn every_flag_is_declared_once() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn kybern_up_keeps_local_path_volumes_under_its_data_dir() {
        let cases = [
            (
                "up with an absolute data dir",
                true,
                "/srv/kybern",
                Some("/srv/kybern/storage".to_string()),
            ),
            (
                "up with a relative data dir",
                true,
                "data",
                Some(
                    std::env::current_dir()
                        .unwrap()
                        .join("data/storage")
                        .display()
                        .to_string(),
                ),
            ),
            ("server keeps the default", false, "/srv/kybern", None),
        ];
        for (name, up, dir, want) in cases {
            let got = local_path_config(up, std::path::Path::new(dir)).unwrap();
            assert_eq!(got.map(|c| c.base_path), want, "{name}");
        }
    }
}
