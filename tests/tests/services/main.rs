//! Services, cluster DNS and multi-node pod networking, end to end (root): the real `kybern
//! server` and two real `kybern agent`s, the second inside a network namespace of the test's
//! own ([`kybern_testkit::netlab`]), each on a private containerd. Traffic only ever goes to
//! the test's own pods, service and node addresses, from its own namespaces.
mod cross;
mod dns;
mod external;
#[path = "../pods/images.rs"]
mod images;
mod network;
mod proxy;
mod tokens;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kybern_testkit::netlab::{self, NetLab};
use kybern_testkit::{kybern_binary, Binary, ChildGuard, Kubectl};
use tempfile::TempDir;

pub use images::{BUSYBOX, TESTSERVER, TEST_EVICTION};

/// The one outside name the fake upstream knows: `outside.test`, at an address of
/// TEST-NET-1 that nothing ever sends to.
pub const OUTSIDE_TEST: &str = "192.0.2.80";

/// A two-node cluster on a [`NetLab`]: the server and node 1 in the host (on 198.18.T.1),
/// node 2 in `kbn-T` (198.18.T.2), both with the test's own cluster, service and DNS
/// ranges. Dropping it (also on panic) stops the agents, resets both nodes, stops the
/// server and removes the network.
pub struct TwoNodes {
    pub kubectl: Kubectl,
    pub dir: TempDir,
    pub nodes: [String; 2],
    /// The test server binary, to run as a client inside the test's namespaces.
    pub testserver: PathBuf,
    agents: Vec<ChildGuard>,
    upstream: Option<ChildGuard>,
    server: Option<Binary>,
    lab: Option<NetLab>,
}

impl TwoNodes {
    pub fn start() -> TwoNodes {
        require_root();
        let (busybox, server_tar) = images::image_tars();
        let lab = NetLab::create();
        let claim = lab.claim();
        let t = lab.t();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut cmd = Command::new(kybern_binary());
        cmd.arg("server")
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", &format!("{}:0", lab.node1_ip())])
            .args(["--advertise-address", &lab.node1_ip().to_string()])
            .args(["--cluster-cidr", &claim.cluster_cidr()])
            .args(["--service-cidr", &claim.service_cidr()])
            .args(["--node-cidr-mask-size", "25"])
            .args(["--cluster-dns", &claim.cluster_dns().to_string()]);
        let server = Binary::spawn(cmd, &data);
        let kubectl = server.kubectl();
        let nodes = [format!("n1-{t}"), format!("n2-{t}")];
        let testserver = agent::images::test_images::build_testserver(dir.path())
            .expect("building the test server client");
        let mut two = TwoNodes {
            kubectl,
            nodes: nodes.clone(),
            testserver,
            agents: Vec::new(),
            upstream: None,
            server: Some(server),
            lab: None,
            dir,
        };
        // The nodes with podCIDRs of the test's choosing; the agents adopt them.
        for (name, cidr) in [
            (&nodes[0], lab.node1_pod_cidr()),
            (&nodes[1], lab.node2_pod_cidr()),
        ] {
            two.apply(
                &format!("{name}.yaml"),
                &format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\nspec:\n  podCIDR: {cidr}\n  podCIDRs: [{cidr}]\n"),
            );
        }
        let kubeconfig = two.server.as_ref().unwrap().kubeconfig.clone();
        let imports = [busybox.as_path(), server_tar.as_path()];
        let node1 = agent_command(
            Command::new(kybern_binary()),
            &lab,
            &kubeconfig,
            &nodes[0],
            &two.agent_dir(0),
            &imports,
        );
        let node2 = agent_command(
            lab.in_node2(kybern_binary()),
            &lab,
            &kubeconfig,
            &nodes[1],
            &two.agent_dir(1),
            &imports,
        );
        // The fake upstream resolver both agents forward non-cluster names to.
        let questions = std::fs::File::create(two.dir.path().join("upstream.log")).unwrap();
        let upstream = lab
            .in_upstream(&two.testserver)
            .args(["fake-dns", "53", &format!("outside.test={OUTSIDE_TEST}")])
            .stdout(questions)
            .spawn()
            .expect("starting the fake upstream resolver");
        two.upstream = Some(ChildGuard(upstream));
        two.lab = Some(lab);
        for (i, mut cmd) in [node1, node2].into_iter().enumerate() {
            let log =
                std::fs::File::create(two.dir.path().join(format!("agent{}.log", i + 1))).unwrap();
            let child = cmd
                .args(["--node-ip", &two.node_ip(i).to_string()])
                .args(["--node-api-listen", &format!("{}:0", two.node_ip(i))])
                .env("KYBERN_LOG", "agent=info,warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("starting kybern agent");
            two.agents.push(ChildGuard(child));
        }
        for i in 0..2 {
            two.wait_ready(i);
        }
        two
    }

    pub fn lab(&self) -> &NetLab {
        self.lab.as_ref().expect("the test network")
    }

    /// Node `i`'s InternalIP: 198.18.T.1 or 198.18.T.2.
    pub fn node_ip(&self, i: usize) -> std::net::Ipv4Addr {
        [self.lab().node1_ip(), self.lab().node2_ip()][i]
    }

    fn agent_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("agent{}", i + 1))
    }

    fn wait_ready(&self, i: usize) {
        let name = &self.nodes[i];
        self.eventually(&format!("node {name} to be Ready"), || {
            let out = self.kubectl.output(&[
                "get",
                "node",
                name,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (text == "True").then_some(()).ok_or(text)
        });
    }

    /// The questions the fake upstream resolver got, `name type` (type as a number).
    pub fn upstream_questions(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("upstream.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn run(&self, args: &[&str]) -> String {
        self.kubectl.run(args)
    }

    pub fn apply(&self, name: &str, yaml: &str) {
        let path = self.dir.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        self.run(&["apply", "-f", path.to_str().unwrap()]);
    }

    /// `testserver ARGS` from the outside client's namespace (198.18.T.6): (succeeded,
    /// stdout or stderr).
    pub fn from_outside(&self, args: &[&str]) -> (bool, String) {
        output(self.lab().in_outside(&self.testserver).args(args))
    }

    /// `/testserver ARGS` inside pod `pod` (`kubectl exec`): (succeeded, stdout or stderr).
    pub fn from_pod(&self, pod: &str, args: &[&str]) -> (bool, String) {
        let mut all = vec!["exec", pod, "--", "/testserver"];
        all.extend_from_slice(args);
        let out = self.kubectl.output(&all);
        let ok = out.status.success();
        let text = if ok { out.stdout } else { out.stderr };
        (ok, String::from_utf8_lossy(&text).trim().to_string())
    }

    /// Polls `check` every 250 ms for up to 120 s; on timeout shows both agents' logs.
    pub fn eventually<T>(&self, what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match check() {
                Ok(v) => return v,
                Err(state) if Instant::now() > deadline => {
                    let tails: String = (1..=2)
                        .map(|i| tail(&self.dir.path().join(format!("agent{i}.log"))))
                        .collect();
                    panic!("timed out waiting for {what}; last state:\n{state}\n{tails}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }

    /// The pod IPs of pods labelled `app=<app>`, by pod name.
    pub fn pod_ips(&self, app: &str) -> Vec<(String, String)> {
        let out = self.run(&[
            "get",
            "pods",
            "-l",
            &format!("app={app}"),
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.podIP}{\"\\n\"}{end}",
        ]);
        out.lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(n, ip)| (n.to_string(), ip.to_string()))
            .collect()
    }
}

impl Drop for TwoNodes {
    fn drop(&mut self) {
        self.agents.clear();
        self.upstream = None;
        if let Some(lab) = &self.lab {
            let resets = [
                (Command::new(kybern_binary()), lab.claim().bridge(), 0),
                (lab.in_node2(kybern_binary()), lab.node2_bridge(), 1),
            ];
            for (mut cmd, bridge, i) in resets {
                let status = cmd
                    .args(["agent", "--reset", "--bridge", &bridge])
                    .arg("--agent-dir")
                    .arg(self.agent_dir(i))
                    .stdout(Stdio::null())
                    .status();
                if !status.is_ok_and(|s| s.success()) {
                    eprintln!("kybern agent --reset failed for node {}", i + 1);
                }
            }
        }
        self.server = None;
        self.lab = None;
    }
}

/// The `kybern agent` command line both nodes share, each with its node's own identity;
/// the caller adds the node's address.
fn agent_command(
    mut cmd: Command,
    lab: &NetLab,
    kubeconfig: &Path,
    name: &str,
    agent_dir: &Path,
    imports: &[&Path],
) -> Command {
    let claim = lab.claim();
    let bridge = if name.starts_with("n1-") {
        claim.bridge()
    } else {
        lab.node2_bridge()
    };
    // Each agent is a node like any other: `system:node:<name>` in `system:nodes`.
    let node_user = format!("system:node:{name}");
    let kubeconfig =
        kybern_testkit::users::kubeconfig_for(kubeconfig, &node_user, Some("system:nodes"));
    cmd.args(["agent", "--kubeconfig"])
        .arg(kubeconfig)
        .args(["--node-name", name, "--bridge", &bridge])
        .arg("--agent-dir")
        .arg(agent_dir)
        .args(["--cluster-cidr", &claim.cluster_cidr()])
        .args(["--service-cidr", &claim.service_cidr()])
        .args(["--cluster-dns", &claim.cluster_dns().to_string()])
        .args(["--dns-upstream", &format!("{}:53", lab.upstream_ip())])
        .args(["--proxy-metrics-bind-address", "none"])
        .args(["--restart-backoff", "2s", "--restart-backoff-max", "16s"])
        .args(["--eviction-hard", TEST_EVICTION]);
    for tar in imports {
        cmd.arg("--import").arg(tar);
    }
    cmd
}

fn output(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("running a command in a test namespace");
    let ok = out.status.success();
    let text = if ok { out.stdout } else { out.stderr };
    (ok, String::from_utf8_lossy(&text).trim().to_string())
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(30).collect();
    format!("{} (newest first):\n{}\n", log.display(), lines.join("\n"))
}

/// Stops the cluster and asserts that nothing of its number is left: namespaces, links,
/// routes, rules, nft tables ([`netlab::assert_nothing_left`]) and mounts under its agents'
/// directories.
pub fn stop_and_assert_nothing_left(two: TwoNodes) {
    let claim = two.lab().held_claim();
    let dirs: Vec<String> = (0..2)
        .map(|i| two.agent_dir(i).to_string_lossy().into_owned())
        .collect();
    drop(two);
    netlab::assert_nothing_left(claim.t());
    let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| dirs.iter().any(|d| m.starts_with(d.as_str())))
        .collect();
    assert!(
        mounts.is_empty(),
        "mounts left under the agent dirs: {mounts:?}"
    );
}

pub fn require_root() {
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

/// A test-server pod on node `node` labelled `app: <app>`: HTTP on 8080 (ready while its
/// `/ready` answers 200, probed every second) and UDP echo on 9000.
pub fn server_pod(name: &str, node: &str, app: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {app}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: server
    image: {TESTSERVER}
    imagePullPolicy: IfNotPresent
    env: [{{name: UDP_PORT, value: "9000"}}]
    ports: [{{containerPort: 8080}}, {{containerPort: 9000, protocol: UDP}}]
    readinessProbe:
      httpGet: {{path: /ready, port: 8080}}
      periodSeconds: 1
      failureThreshold: 1
"#
    )
}

/// A Service `name` selecting `app: <app>` (none when `app` is empty): `http` 80 -> 8080
/// over TCP and `echo` 9000 over UDP; `spec` adds lines to its spec (two spaces indented).
pub fn service(name: &str, app: &str, spec: &str) -> String {
    let selector = if app.is_empty() {
        String::new()
    } else {
        format!("  selector: {{app: {app}}}\n")
    };
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
{selector}  ports:
  - {{name: http, port: 80, targetPort: 8080, protocol: TCP}}
  - {{name: echo, port: 9000, targetPort: 9000, protocol: UDP}}
{spec}"#
    )
}

impl TwoNodes {
    /// Waits until the named pods are Ready; returns their IPs in the same order.
    pub fn wait_pods_ready(&self, names: &[&str]) -> Vec<String> {
        names
            .iter()
            .map(|name| {
                self.eventually(&format!("pod {name} to be Ready"), || {
                    let out = self.kubectl.output(&[
                        "get",
                        "pod",
                        name,
                        "-o",
                        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.status.podIP}",
                    ]);
                    let text = String::from_utf8_lossy(&out.stdout).into_owned();
                    match text.split_once(' ') {
                        Some(("True", ip)) if !ip.is_empty() => Ok(ip.to_string()),
                        _ => Err(text),
                    }
                })
            })
            .collect()
    }

    /// A field of Service `name` through a jsonpath (`{.spec.clusterIP}`), once it is set.
    pub fn service_field(&self, name: &str, jsonpath: &str) -> String {
        self.eventually(&format!("{jsonpath} of service {name}"), || {
            let out = self.kubectl.output(&[
                "get",
                "service",
                name,
                "-o",
                &format!("jsonpath={jsonpath}"),
            ]);
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (!text.is_empty()).then_some(text.clone()).ok_or(text)
        })
    }

    /// GET `path` at `addr` from pod `pod` until it answers; the body.
    pub fn pod_gets(&self, pod: &str, addr: &str, path: &str) -> String {
        self.eventually(&format!("{pod} to GET http://{addr}{path}"), || match self
            .from_pod(pod, &["get", addr, path])
        {
            (true, body) => Ok(body),
            (false, err) => Err(err),
        })
    }

    /// GET `path` at `addr` from the outside client until it answers; the body.
    pub fn outside_gets(&self, addr: &str, path: &str) -> String {
        self.eventually(
            &format!("the outside client to GET http://{addr}{path}"),
            || match self.from_outside(&["get", addr, path]) {
                (true, body) => Ok(body),
                (false, err) => Err(err),
            },
        )
    }
}
