//! One real node for the benchmarks that run containers (root): `kybern server` (every
//! loop), a Node with a /24 of 10.42.0.0/16 no route of the host uses, and `kybern agent`
//! for it as its own process on a private containerd under the temp dir, with a bridge of
//! its own, the node API on loopback and the test images imported. [`RealNode::stop`]
//! stops the agent, resets the node (containers, sandboxes, bridge, containerd) and stops
//! the server.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::procs::{self, Proc, Server, TempDir};
use super::workload;

pub(crate) const NODE: &str = "bench-node";
pub(crate) const BRIDGE: &str = "kybbench0";

pub(crate) struct RealNode {
    pub(crate) client: kube::Client,
    /// The admin kubeconfig, for kubectl.
    pub(crate) kubeconfig: PathBuf,
    pub(crate) agent: Proc,
    server: Server,
    exe: PathBuf,
    agent_dir: PathBuf,
}

impl RealNode {
    /// Starts the server and the agent under `tmp` with the busybox image (and, with
    /// `testserver`, the project's test server image) imported; returns once the node is
    /// Ready.
    pub(crate) async fn start(
        tmp: &TempDir,
        testserver: bool,
        progress: &dyn Fn(&str),
    ) -> Result<RealNode> {
        use agent::images::test_images;
        let data_dir = tmp.sub("data")?;
        let agent_dir = tmp.path.join("agent");
        let busybox = test_images::read(Path::new(test_images::DEBIAN_BUSYBOX))
            .context("reading Debian's busybox-static (scripts/install-deps.sh installs it)")?;
        let mut imports = vec![tmp.path.join("busybox.tar")];
        std::fs::write(
            &imports[0],
            test_images::busybox_image(&busybox).to_layout_tar()?,
        )?;
        if testserver {
            progress("building the test server image");
            let bin = test_images::build_testserver(&tmp.path)
                .context("building the test server (needs cargo)")?;
            let bin = test_images::read(&bin)?;
            let tar = tmp.path.join("testserver.tar");
            std::fs::write(
                &tar,
                test_images::testserver_image(&busybox, &bin).to_layout_tar()?,
            )?;
            imports.push(tar);
        }
        let server =
            procs::start_server_with(&data_dir, None, &tmp.path.join("server.log"), "").await?;
        progress(&format!(
            "server ready at {} (pid {})",
            server.url,
            server.proc.pid()
        ));
        let kubeconfig = data_dir.join("admin.kubeconfig");
        let client = kube::Client::try_from(workload::client_config(&kubeconfig).await?)?;
        let cidr = free_subnet()?;
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": NODE},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        }))?;
        Api::<Node>::all(client.clone())
            .create(&PostParams::default(), &node)
            .await
            .context("registering the node")?;
        let exe = std::env::current_exe().context("finding the kybern executable")?;
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args(["agent", "--kubeconfig"])
            .arg(&kubeconfig)
            .args([
                "--node-name",
                NODE,
                "--node-ip",
                "127.0.0.1",
                "--node-api-listen",
                "127.0.0.1:0",
                "--bridge",
                BRIDGE,
                "--agent-dir",
            ])
            .arg(&agent_dir)
            // The host's disk also holds build output; disk pressure is not what is measured.
            .args(["--eviction-hard", "nodefs.available<1%"]);
        for tar in &imports {
            cmd.arg("--import").arg(tar);
        }
        let agent = procs::spawn(cmd, "kybern agent", &tmp.path.join("agent.log"))?;
        progress(&format!(
            "agent started (pid {}) for node {NODE} with podCIDR {cidr}",
            agent.pid()
        ));
        let node = RealNode {
            client,
            kubeconfig,
            agent,
            server,
            exe,
            agent_dir,
        };
        if let Err(e) = wait_ready(&node.client, progress).await {
            node.stop().await;
            return Err(e);
        }
        Ok(node)
    }

    /// Stops the agent, resets the node and stops the server.
    pub(crate) async fn stop(self) {
        self.agent.stop().await;
        let reset = tokio::process::Command::new(&self.exe)
            .args(["agent", "--reset", "--bridge", BRIDGE, "--agent-dir"])
            .arg(&self.agent_dir)
            .status()
            .await;
        if !reset.is_ok_and(|s| s.success()) {
            eprintln!(
                "kybern agent --reset failed; run it by hand: kybern agent --reset --bridge {BRIDGE} --agent-dir {}",
                self.agent_dir.display()
            );
        }
        self.server.proc.stop().await;
    }
}

/// A /24 of 10.42.0.0/16 that no route of the host mentions.
fn free_subnet() -> Result<String> {
    let out = std::process::Command::new("ip")
        .args(["-4", "route"])
        .output()
        .context("running ip route")?;
    let routes = String::from_utf8_lossy(&out.stdout);
    (250..=254)
        .rev()
        .map(|third| format!("10.42.{third}.0/24"))
        .find(|cidr| !routes.contains(&cidr[..cidr.len() - 4]))
        .context("10.42.250-254.0/24 are all routed on this host; is another kybern running?")
}

async fn wait_ready(client: &kube::Client, progress: &dyn Fn(&str)) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let node = nodes.get(NODE).await?;
        let ready = node
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if ready {
            progress("node Ready");
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the node did not become Ready within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
