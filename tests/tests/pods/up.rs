//! `kybern up` as the README has users run it: one process, server and agent, and
//! `kubectl create deployment` of an image from a registry ends with containers running.

use std::process::{Command, Stdio};

use crate::common::{kybern_binary, Binary};
use crate::registry::push_busybox;
use crate::registry_env::Registry;
use crate::{at, eventually, require_root, TEST_EVICTION};

/// `kybern up` on a temp data dir; dropping it kills the process by pid and resets the
/// node (`kybern agent --reset`: containers, sandboxes, the bridge, the private containerd).
struct Up {
    server: Option<Binary>,
    data: tempfile::TempDir,
    bridge: String,
}

impl Up {
    fn start(bridge: &str, node: &str) -> Up {
        let data = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(kybern_binary());
        cmd.arg("up")
            .arg("--data-dir")
            .arg(data.path())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--node-name",
                node,
                "--node-ip",
                "127.0.0.1",
                "--bridge",
                bridge,
                "--eviction-hard",
                TEST_EVICTION,
            ])
            .env("KYBERN_LOG", "agent=info,warn");
        let server = Binary::spawn(cmd, data.path());
        Up {
            server: Some(server),
            data,
            bridge: bridge.into(),
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.server = None;
        let status = Command::new(kybern_binary())
            .args(["agent", "--reset", "--bridge", &self.bridge])
            .arg("--agent-dir")
            .arg(self.data.path().join("agent"))
            .stdout(Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!(
                "kybern agent --reset failed for {}",
                self.data.path().display()
            );
        }
    }
}

#[test]
fn kybern_up_runs_a_deployment_created_with_kubectl() {
    require_root();
    let registry = Registry::start_anonymous();
    let image = registry.reference("library/busybox:1.36");
    push_busybox(&image, None);

    let up = Up::start("kbtup", "e2e-up");
    let kubectl = up.server.as_ref().unwrap().kubectl();
    // The node registers itself and gets a podCIDR from the node IPAM loop of the same process.
    eventually("the node Ready", &up.data.path().join("server.log"), || {
        let out = kubectl.output(&[
            "get",
            "node",
            "e2e-up",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        let ready = String::from_utf8_lossy(&out.stdout).into_owned();
        (ready == "True").then_some(()).ok_or(format!(
            "Ready={ready:?} {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    });
    kubectl.run(&[
        "create",
        "deployment",
        "sleeper",
        &format!("--image={image}"),
        "--replicas=2",
        "--",
        "sleep",
        "3600",
    ]);
    kubectl.run(&["rollout", "status", "deployment/sleeper", "--timeout=120s"]);
    let pods: serde_json::Value =
        serde_json::from_str(&kubectl.run(&["get", "pods", "-l", "app=sleeper", "-o", "json"]))
            .unwrap();
    let items = pods["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{pods}");
    let node: serde_json::Value =
        serde_json::from_str(&kubectl.run(&["get", "node", "e2e-up", "-o", "json"])).unwrap();
    let cidr = at(&node, "/spec/podCIDR");
    let prefix = cidr
        .rsplit_once('.')
        .map(|(p, _)| format!("{p}."))
        .unwrap_or_default();
    let socket = up.data.path().join("agent/containerd/containerd.sock");
    let out = Command::new("ctr")
        .arg("--address")
        .arg(&socket)
        .args(["-n", "kybern", "tasks", "ls"])
        .output()
        .expect("ctr");
    let tasks = String::from_utf8_lossy(&out.stdout).into_owned();
    for pod in items {
        assert_eq!(at(pod, "/spec/nodeName"), "e2e-up");
        assert_eq!(at(pod, "/status/phase"), "Running", "{pod}");
        assert!(
            at(pod, "/status/podIP").starts_with(&prefix),
            "a pod IP of the node's podCIDR {cidr}: {pod}"
        );
        let id = at(pod, "/status/containerStatuses/0/containerID");
        let id = id
            .strip_prefix("containerd://")
            .unwrap_or_else(|| panic!("a containerd container: {pod}"));
        assert!(
            tasks
                .lines()
                .any(|l| l.starts_with(id) && l.contains("RUNNING")),
            "container {id} runs in containerd:\n{tasks}"
        );
    }
}
