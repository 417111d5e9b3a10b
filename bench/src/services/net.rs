//! The namespaces of `kybern bench services` on the agent's bridge: `kbb-back` holds the
//! 230 backend addresses with the test server answering on each, `kbb-cli` is a client
//! with a pod's view. Removed on drop.

use anyhow::{bail, Result};

use super::BRIDGE;

/// The bench's namespaces: backends and client.
pub(super) const BACKENDS: &str = "kbb-back";
pub(super) const CLIENT: &str = "kbb-cli";

/// The backend and client namespaces on the agent's bridge, removed on drop.
pub(super) struct BenchNet {
    backends: Option<tokio::process::Child>,
}

impl BenchNet {
    pub(super) fn create(testserver: &std::path::Path, log: &std::path::Path) -> Result<BenchNet> {
        let mut net = BenchNet { backends: None };
        for (ns, link) in [(BACKENDS, "kbbback"), (CLIENT, "kbbcli")] {
            let peer = format!("{link}p");
            for args in [
                vec!["netns", "add", ns],
                vec!["link", "add", link, "type", "veth", "peer", "name", &peer],
                vec!["link", "set", &peer, "netns", ns],
                vec!["link", "set", link, "master", BRIDGE],
                vec!["link", "set", link, "up"],
                vec!["-n", ns, "link", "set", "lo", "up"],
                vec!["-n", ns, "link", "set", &peer, "up"],
            ] {
                ip(&args)?;
            }
        }
        let mut batch: String = (20..250)
            .map(|i| format!("addr add 10.42.250.{i}/24 dev kbbbackp\n"))
            .collect();
        batch.push_str("route add default via 10.42.250.1\n");
        let status = std::process::Command::new("ip")
            .args(["-n", BACKENDS, "-batch", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(batch.as_bytes())?;
                c.wait()
            })?;
        if !status.success() {
            bail!("adding the backend addresses failed");
        }
        ip(&[
            "-n",
            CLIENT,
            "addr",
            "add",
            "10.42.250.10/24",
            "dev",
            "kbbclip",
        ])?;
        ip(&[
            "-n",
            CLIENT,
            "route",
            "add",
            "default",
            "via",
            "10.42.250.1",
        ])?;
        let log = std::fs::File::create(log)?;
        net.backends = Some(
            tokio::process::Command::new("ip")
                .args(["netns", "exec", BACKENDS])
                .arg(testserver)
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true)
                .spawn()?,
        );
        Ok(net)
    }

    /// `testserver ARGS` in the client namespace.
    pub(super) fn client_command(
        &self,
        testserver: &std::path::Path,
        args: &[&str],
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", CLIENT])
            .arg(testserver)
            .args(args);
        cmd
    }
}

impl Drop for BenchNet {
    fn drop(&mut self) {
        if let Some(mut child) = self.backends.take() {
            let _ = child.start_kill();
        }
        for (ns, link) in [(BACKENDS, "kbbback"), (CLIENT, "kbbcli")] {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", link])
                .output();
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .output();
        }
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("ip").args(args).output()?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
