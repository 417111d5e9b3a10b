//! The real kubectl, pointed at one test cluster.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The real kubectl pointed at one server, with its own discovery cache.
pub struct Kubectl {
    pub kubeconfig: PathBuf,
    pub(crate) cache_dir: PathBuf,
    /// The namespace commands run in (kubectl's `-n`), when not the kubeconfig's.
    pub(crate) namespace: Option<String>,
}

impl Kubectl {
    pub fn binary() -> PathBuf {
        let preferred = Path::new("/usr/bin/kubectl");
        if preferred.exists() {
            preferred.to_path_buf()
        } else {
            "kubectl".into()
        }
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(Self::binary());
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache_dir);
        if let Some(ns) = &self.namespace {
            cmd.args(["-n", ns]);
        }
        cmd
    }

    pub fn output(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .expect("running kubectl (is it installed?)")
    }

    /// Runs kubectl, asserts it succeeded and returns its stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "kubectl {} failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("kubectl prints UTF-8")
    }
}
