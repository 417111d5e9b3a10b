//! `kybern up` as the README has users run it: one process, server and agent, and
//! `kubectl create deployment` of an image from a registry ends with containers running.

use std::process::{Command, Stdio};

use crate::common::{kybern_binary, Binary};
use crate::registry::push_busybox;
use crate::{at, eventually, require_root, TEST_EVICTION};
use kybern_testkit::netlab::Claim;
use kybern_testkit::registry::Registry;

/// `kybern up` on a temp data dir; dropping it kills the process by pid and resets the
/// node (`kybern agent --reset`: containers, sandboxes, the bridge, the private containerd).
struct Up {
    server: Option<Binary>,
    data: tempfile::TempDir,
    bridge: String,
    /// The test's number: its own cluster and service ranges, so its routes and DNS
    /// address never collide with another test's.
    _ranges: Claim,
}

impl Up {
    fn start(bridge: &str, node: &str) -> Up {
        let data = tempfile::tempdir().unwrap();
        let ranges = Claim::take();
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
                "--node-api-listen",
                "127.0.0.1:0",
                "--bridge",
                bridge,
                "--eviction-hard",
                TEST_EVICTION,
            ])
            .args(ranges.range_flags())
            .env("KYBERN_LOG", "agent=info,warn");
        let server = Binary::spawn(cmd, data.path());
        Up {
            server: Some(server),
            data,
            bridge: bridge.into(),
            _ranges: ranges,
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
    // The agent acts as its node, not as an administrator: the request for its serving
    // certificate comes from the node's own identity.
    eventually(
        "the agent's CSR as its node",
        &up.data.path().join("server.log"),
        || {
            let users = kubectl.run(&["get", "csr", "-o", "jsonpath={.items[*].spec.username}"]);
            (users.split_whitespace().collect::<Vec<_>>() == ["system:node:e2e-up"])
                .then_some(())
                .ok_or(users)
        },
    );
    // `kubectl describe node` tells how the node came up.
    eventually(
        "the node's events",
        &up.data.path().join("server.log"),
        || {
            let described = kubectl.run(&["describe", "node", "e2e-up"]);
            [
                "Starting kubelet.",
                "Node e2e-up status is now: NodeHasSufficientMemory",
                "Node e2e-up status is now: NodeReady",
                "Node e2e-up event: Registered Node e2e-up in Controller",
            ]
            .iter()
            .all(|line| described.contains(line))
            .then_some(())
            .ok_or(described)
        },
    );
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

/// Whether process `pid` ended (gone, or a zombie its parent has not reaped yet).
fn ended(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Image names in the node's containerd, from the runtime itself.
fn runtime_images(data: &std::path::Path) -> String {
    let socket = data.join("agent/containerd/containerd.sock");
    let out = Command::new("ctr")
        .arg("--address")
        .arg(&socket)
        .args(["-n", "kybern", "images", "ls", "-q"])
        .output()
        .expect("ctr");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_first_pod_runs_from_an_imported_archive_and_sigterm_stops_its_containers() {
    require_root();
    let (busybox, testserver) = crate::image_tars();
    let up = Up::start("kbtfh", "e2e-first-hour");
    let data = up.data.path();
    let log = data.join("server.log");
    let kubectl = up.server.as_ref().unwrap().kubectl();
    eventually("the node's containerd", &log, || {
        let socket = data.join("agent/containerd/containerd.sock");
        socket
            .exists()
            .then_some(())
            .ok_or("no socket yet".to_string())
    });
    // `kybern images import` finds the node's containerd through the data dir.
    let out = Command::new(kybern_binary())
        .args(["images", "import", "--data-dir"])
        .arg(data)
        .arg(busybox)
        .output()
        .expect("kybern images import");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(crate::BUSYBOX),
        "says what it imported: {said}"
    );
    assert!(runtime_images(data).contains(crate::BUSYBOX));
    // An archive dropped into the images folder is imported too.
    std::fs::copy(testserver, data.join("agent/images/testserver.tar")).unwrap();
    eventually("the dropped archive imported", &log, || {
        let images = runtime_images(data);
        images
            .contains(crate::TESTSERVER)
            .then_some(())
            .ok_or(images)
    });
    // A missing node says what to do.
    let out = Command::new(kybern_binary())
        .args(["images", "import", "--data-dir"])
        .arg(data.join("elsewhere"))
        .arg(busybox)
        .output()
        .expect("kybern images import");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(said.contains("start the node first"), "{said}");

    kubectl.run(&[
        "run",
        "hello",
        &format!("--image={}", crate::BUSYBOX),
        "--image-pull-policy=IfNotPresent",
        "--",
        "sleep",
        "3600",
    ]);
    kubectl.run(&[
        "wait",
        "--for=condition=Ready",
        "pod/hello",
        "--timeout=120s",
    ]);
    let server = up.server.as_ref().unwrap();
    let pid = server.pid();
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    eventually("kybern up to stop", &log, || {
        ended(pid).then_some(()).ok_or("running".to_string())
    });
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        said.contains("--keep-containers leaves them running"),
        "says what becomes of the containers: {said}"
    );
    assert!(
        !data.join("agent/containerd/containerd.sock").exists()
            || Command::new("ctr")
                .arg("--address")
                .arg(data.join("agent/containerd/containerd.sock"))
                .args(["version"])
                .output()
                .is_ok_and(|o| !o.status.success()),
        "the private containerd stopped"
    );
}
