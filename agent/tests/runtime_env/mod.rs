//! Harness for tests on real containerd (root only): a private containerd in a temp dir, the
//! test images imported into it, network namespaces of the test's own, and a guard that
//! removes all of it on drop, also when the test fails.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use agent::images::test_images;
use agent::runtime::containerd::Containerd;
use agent::runtime::daemon::ContainerdDaemon;
use agent::runtime::Runtime;

pub(crate) struct Env {
    pub rt: Containerd,
    daemon: Option<ContainerdDaemon>,
    pub dir: tempfile::TempDir,
    /// A cgroup parent of this test's own; containers go below it.
    pub cgroup_parent: String,
    netns: Vec<String>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Fails with a clear message when the machine cannot run these tests; scripts/install-deps.sh
/// installs what they need.
fn require_prerequisites() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
        });
    assert_eq!(uid.as_deref(), Some("0"), "containerd tests run as root");
    for bin in ["containerd", "containerd-shim-runc-v2", "runc", "ip"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
            .unwrap_or(false);
        assert!(found, "{bin} not on PATH: run scripts/install-deps.sh");
    }
    assert!(
        Path::new(test_images::DEBIAN_BUSYBOX).is_file(),
        "no /bin/busybox: install busybox-static"
    );
}

impl Env {
    pub(crate) async fn start() -> Env {
        require_prerequisites();
        let dir = tempfile::Builder::new()
            .prefix("kyb-ctrd")
            .tempdir()
            .expect("temp dir");
        let daemon = ContainerdDaemon::start(&dir.path().join("containerd"))
            .await
            .expect("start containerd");
        let rt = Containerd::connect(daemon.socket(), "kybern")
            .await
            .expect("connect");
        Env {
            rt,
            daemon: Some(daemon),
            dir,
            cgroup_parent: format!("/{}", unique("kybern-test")),
            netns: Vec::new(),
        }
    }

    pub(crate) async fn import_busybox(&self) -> String {
        let busybox =
            test_images::read(Path::new(test_images::DEBIAN_BUSYBOX)).expect("read busybox");
        let tar = test_images::busybox_image(&busybox)
            .to_layout_tar()
            .expect("pack busybox");
        self.rt
            .import_image(&tar)
            .await
            .expect("import busybox")
            .remove(0)
    }

    /// Builds the test server, imports its image, and returns the image name and the host
    /// copy of the binary (its client mode talks to the server from inside a netns).
    pub(crate) async fn import_testserver(&self) -> (String, PathBuf) {
        let bin = test_images::build_testserver(self.dir.path()).expect("build testserver");
        let busybox =
            test_images::read(Path::new(test_images::DEBIAN_BUSYBOX)).expect("read busybox");
        let server = test_images::read(&bin).expect("read testserver");
        let tar = test_images::testserver_image(&busybox, &server)
            .to_layout_tar()
            .expect("pack testserver");
        (
            self.rt
                .import_image(&tar)
                .await
                .expect("import testserver")
                .remove(0),
            bin,
        )
    }

    /// A network namespace with only loopback up: nothing in it can reach beyond it.
    pub(crate) fn netns(&mut self) -> String {
        let name = unique("kyb-test");
        run("ip", &["netns", "add", &name]);
        self.netns.push(name.clone());
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// The private containerd's data dir (config, root, state, socket).
    pub(crate) fn containerd_dir(&self) -> PathBuf {
        self.dir.path().join("containerd")
    }

    pub(crate) fn log_path(&self, id: &str) -> PathBuf {
        self.dir.path().join(format!("{id}.log"))
    }

    /// Mount points under this test's data dir (snapshots, container root filesystems).
    pub(crate) fn mounts_under_data_dir(&self) -> Vec<String> {
        mounts_under(self.dir.path())
    }
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&prefix))
        .collect()
}

pub(crate) fn run(cmd: &str, args: &[&str]) {
    let status = std::process::Command::new(cmd)
        .args(args)
        .status()
        .expect(cmd);
    assert!(status.success(), "{cmd} {args:?}: {status}");
}

impl Drop for Env {
    fn drop(&mut self) {
        // Async cleanup from a sync Drop: a thread with its own runtime, so this works both
        // inside and outside the test's runtime.
        let rt = self.rt.clone();
        let daemon = self.daemon.take();
        let cleanup = std::thread::spawn(move || {
            let tokio = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            tokio.block_on(async move {
                if let Ok(all) = rt.list_containers().await {
                    for id in all.into_iter().map(|c| c.id) {
                        let _ = rt.kill(&id, 9).await;
                        let _ = tokio::time::timeout(Duration::from_secs(10), rt.wait(&id)).await;
                        if let Err(e) = rt.delete(&id).await {
                            eprintln!("cleanup: deleting container {id}: {e}");
                        }
                    }
                }
                if let Some(mut daemon) = daemon {
                    if let Err(e) = daemon.stop().await {
                        eprintln!("cleanup: stopping containerd: {e}");
                    }
                }
            });
        });
        let _ = cleanup.join();
        for mount in self.mounts_under_data_dir().iter().rev() {
            let _ = std::process::Command::new("umount")
                .args(["-l", mount])
                .status();
        }
        for ns in &self.netns {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
        // runc removed each container's cgroup; the parent is ours to remove.
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in hierarchies.flatten() {
                let _ =
                    std::fs::remove_dir(h.path().join(self.cgroup_parent.trim_start_matches('/')));
            }
        }
        let _ = std::fs::remove_dir(
            Path::new("/sys/fs/cgroup").join(self.cgroup_parent.trim_start_matches('/')),
        );
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`
/// (testkit's `eventually_some`, with this harness's argument order).
pub(crate) async fn eventually<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    kybern_testkit::eventually_some(timeout, what, check).await
}

/// `testserver get 127.0.0.1:PORT PATH` inside `netns`: (exit success, body).
pub(crate) async fn get_in_netns(
    netns: &str,
    client: &Path,
    addr: &str,
    path: &str,
) -> (bool, String) {
    let out = tokio::process::Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(client)
        .args(["get", addr, path])
        .output()
        .await
        .expect("ip netns exec");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
