//! Pods for real, end to end (root): the real `kybern server`, the real `kybern agent` on a
//! private containerd with runc, real network namespaces on a bridge of the test's own, and
//! the real kubectl. Traffic to pods only ever comes from a network namespace the test
//! created on that bridge.

use kybern_testkit as common;

mod autoscale;
mod drain;
mod ephemeral;
mod images;
mod io;
mod lifecycle;
mod network;
mod proxy;
mod python;
mod recovery;
mod registry;
mod up;
#[path = "../clients/venv.rs"]
mod venv;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::netlab::Claim;
use common::{kybern_binary, Binary, ChildGuard, Kubectl};
use tempfile::TempDir;

use images::image_tars;
pub use images::{BUSYBOX, TESTSERVER, TEST_EVICTION};

/// A network namespace of the test's own on the node's bridge, to send traffic to pods from.
pub struct ClientNs {
    pub name: String,
    host_link: String,
}

impl ClientNs {
    fn create(subnet: &Claim, bridge: &str) -> ClientNs {
        let name = format!("kbtc-{}", subnet.t());
        let host_link = format!("kbtc{}h", subnet.t());
        let peer = format!("kbtc{}p", subnet.t());
        let ns = ClientNs {
            name: name.clone(),
            host_link: host_link.clone(),
        };
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let _ = Command::new("ip")
            .args(["link", "del", &host_link])
            .status();
        let ip = format!("10.42.{}.250/24", subnet.t());
        for args in [
            vec!["netns", "add", &name],
            vec![
                "link", "add", &host_link, "type", "veth", "peer", "name", &peer,
            ],
            vec!["link", "set", &peer, "netns", &name],
            vec!["link", "set", &host_link, "master", bridge],
            vec!["link", "set", &host_link, "up"],
            vec!["-n", &name, "addr", "add", &ip, "dev", &peer],
            vec!["-n", &name, "link", "set", &peer, "up"],
            vec!["-n", &name, "link", "set", "lo", "up"],
        ] {
            let ok = Command::new("ip")
                .args(&args)
                .status()
                .expect("ip")
                .success();
            assert!(ok, "ip {}", args.join(" "));
        }
        ns
    }

    /// `testserver get ADDR PATH` from inside the namespace: (succeeded, body or error).
    pub fn get(&self, testserver: &Path, addr: &str, path: &str) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(testserver)
            .args(["get", addr, path])
            .output()
            .expect("ip netns exec");
        let text = String::from_utf8_lossy(if out.status.success() {
            &out.stdout
        } else {
            &out.stderr
        })
        .into_owned();
        (out.status.success(), text)
    }
}

impl Drop for ClientNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A one-node cluster: `kybern server`, and `kybern agent` (with the node's own identity)
/// on a private containerd with a bridge and subnet of the test's own. Dropping it stops the agent and resets the node.
pub struct Node {
    pub name: String,
    pub kubectl: Kubectl,
    pub dir: TempDir,
    pub agent_dir: PathBuf,
    pub bridge: String,
    agent: Option<ChildGuard>,
    server: Option<Binary>,
    subnet: Claim,
    pub testserver: PathBuf,
    client: Option<ClientNs>,
}

impl Node {
    /// Starts everything; `extra` are more `kybern agent` flags.
    pub fn start(extra: &[&str]) -> Node {
        require_root();
        let (busybox, server_tar) = image_tars();
        let dir = tempfile::tempdir().unwrap();
        let subnet = Claim::take();
        let data = dir.path().join("data");
        let mut cmd = Command::new(kybern_binary());
        cmd.arg("server")
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", "127.0.0.1:0"])
            .args(subnet.range_flags());
        let server = Binary::spawn(cmd, &data);
        let name = format!("e2e-{}", subnet.t());
        let bridge = subnet.bridge();
        let kubectl = server.kubectl();
        // The node with a podCIDR of the test's choosing; the agent adopts it.
        let manifest = dir.path().join("node.yaml");
        std::fs::write(&manifest, format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\nspec:\n  podCIDR: {}\n  podCIDRs: [{}]\n", subnet.cluster_cidr(), subnet.cluster_cidr())).unwrap();
        kubectl.run(&["apply", "-f", manifest.to_str().unwrap()]);
        let agent_dir = dir.path().join("agent");
        let testserver = dir.path().join("testserver");
        agent::images::test_images::build_testserver(dir.path())
            .expect("building the test server client");
        let mut node = Node {
            name,
            kubectl,
            agent_dir,
            bridge,
            agent: None,
            server: Some(server),
            subnet,
            testserver,
            client: None,
            dir,
        };
        let mut flags = vec![
            "--import",
            busybox.to_str().unwrap(),
            "--import",
            server_tar.to_str().unwrap(),
        ];
        flags.extend_from_slice(extra);
        node.start_agent(&flags);
        node.wait_ready();
        node.client = Some(ClientNs::create(&node.subnet, &node.bridge));
        node
    }

    /// The cluster DNS address of this test's node (`10.43.T.10`, in its service CIDR).
    pub fn cluster_dns(&self) -> std::net::Ipv4Addr {
        self.subnet.cluster_dns()
    }

    /// Starts `kybern agent` (again, after [`Node::kill_agent`]).
    ///
    /// Each test's agent gets the ranges of its own number (cluster CIDR = its podCIDR,
    /// service CIDR `10.43.T.0/24`, DNS `10.43.T.10`), so agents of concurrent tests never
    /// install routes or rules for the same prefixes. The server has the same ranges.
    pub fn start_agent(&mut self, extra: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .unwrap();
        // The agent is a node like any other: `system:node:<name>` in `system:nodes`, so
        // the Node authorizer and NodeRestriction govern what it may do.
        let admin = &self.server.as_ref().unwrap().kubeconfig;
        let node_user = format!("system:node:{}", self.name);
        let kubeconfig = common::users::kubeconfig_for(admin, &node_user, Some("system:nodes"));
        let child = Command::new(kybern_binary())
            .args(["agent", "--kubeconfig"])
            .arg(&kubeconfig)
            .args([
                "--node-name",
                &self.name,
                "--node-ip",
                "127.0.0.1",
                "--node-api-listen",
                "127.0.0.1:0",
                "--bridge",
                &self.bridge,
            ])
            .args(self.subnet.range_flags())
            .arg("--agent-dir")
            .arg(&self.agent_dir)
            .args(["--restart-backoff", "2s", "--restart-backoff-max", "16s"])
            .args(["--eviction-hard", TEST_EVICTION])
            .args(extra)
            .env("KYBERN_LOG", "agent=info,warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting kybern agent");
        self.agent = Some(ChildGuard(child));
    }

    /// SIGKILL the agent, as a crash would; its containers keep running.
    pub fn kill_agent(&mut self) {
        self.agent = None;
    }

    fn wait_ready(&self) {
        self.eventually("the node to be Ready", || {
            let out = self.kubectl.output(&[
                "get",
                "node",
                &self.name,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (text == "True").then_some(()).ok_or(text)
        });
    }

    pub fn client(&self) -> &ClientNs {
        self.client.as_ref().expect("client namespace")
    }

    pub fn run(&self, args: &[&str]) -> String {
        self.kubectl.run(args)
    }

    pub fn apply(&self, name: &str, yaml: &str) {
        let path = self.dir.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        self.run(&["apply", "-f", path.to_str().unwrap()]);
    }

    /// `kubectl get pod NAME -o json`.
    pub fn pod(&self, name: &str) -> serde_json::Value {
        let out = self.kubectl.output(&["get", "pod", name, "-o", "json"]);
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Polls `check` every 250 ms for up to 120 s; on timeout shows the agent's log.
    pub fn eventually<T>(&self, what: &str, check: impl FnMut() -> Result<T, String>) -> T {
        eventually(what, &self.dir.path().join("agent.log"), check)
    }

    /// Containers in the agent's containerd namespace, from the runtime itself.
    pub fn runtime_containers(&self) -> Vec<String> {
        let socket = self.agent_dir.join("containerd/containerd.sock");
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args(["-n", "kybern", "containers", "ls", "-q"])
            .output()
            .expect("ctr (from the containerd package)");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Mounts below the agent's directory.
    pub fn mounts(&self) -> Vec<String> {
        let dir = self.agent_dir.to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&dir) && !m.contains("/containerd/"))
            .collect()
    }

    /// Links attached to the node's bridge besides the test's client.
    pub fn pod_links(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
            .expect("ip link");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                l.split(':')
                    .nth(1)
                    .map(|s| s.trim().split('@').next().unwrap_or("").to_string())
            })
            .filter(|l| !l.starts_with("kbtc"))
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.client = None;
        self.agent = None;
        let status = Command::new(kybern_binary())
            .args(["agent", "--reset", "--bridge", &self.bridge])
            .arg("--agent-dir")
            .arg(&self.agent_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!(
                "kybern agent --reset failed for {}",
                self.agent_dir.display()
            );
        }
        self.server = None;
    }
}

/// Polls `check` every 250 ms for up to 120 s; on timeout shows the tail of `log`.
pub fn eventually<T>(what: &str, log: &Path, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match check() {
            Ok(v) => return v,
            Err(state) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                panic!("timed out waiting for {what}; last state:\n{state}\nlog tail (newest first):\n{}", tail.join("\n"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

fn require_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        });
    assert_eq!(
        uid.as_deref(),
        Some("0"),
        "these tests run as root (containerd, network namespaces)"
    );
}

/// A pod manifest: `body` is the rest of its spec, indented by two spaces.
pub fn pod_yaml(name: &str, restart: &str, body: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: {restart}
  terminationGracePeriodSeconds: 1
{body}"#
    )
}

/// A JSON value at a pointer as a string ("" when absent).
pub fn at(v: &serde_json::Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}
