//! End-to-end tests with the real Helm 3 against the real `kybern server` binary: the
//! release lifecycle of `helm create`'s chart and of a chart using CRDs, a StatefulSet,
//! RBAC, a config checksum and a hook (tests/charts/stateful).

use kybern_testkit as common;

mod binary;
mod operator;
mod releases;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Binary, Kubectl};
use tempfile::TempDir;

/// A server from the binary, and Helm pointed at it with its own cache, config and data
/// dirs. Fields drop in order: the server, then the temp dir it used.
pub struct Cluster {
    pub server: Binary,
    pub dir: TempDir,
}

impl Cluster {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server = Binary::start(&dir.path().join("data"), 0, None);
        Cluster { server, dir }
    }

    pub fn kubectl(&self) -> Kubectl {
        self.server.kubectl()
    }

    pub fn helm_command(&self) -> Command {
        let mut cmd = Command::new(binary::helm());
        let home = self.dir.path().join("helm");
        cmd.env("KUBECONFIG", &self.server.kubeconfig)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env_remove("HELM_DRIVER")
            .env_remove("HELM_NAMESPACE")
            .current_dir(self.dir.path());
        cmd
    }

    pub fn helm_output(&self, args: &[&str]) -> Output {
        self.helm_command()
            .args(args)
            .output()
            .expect("running helm")
    }

    /// Runs helm, asserts it succeeded and returns its stdout.
    pub fn helm(&self, args: &[&str]) -> String {
        let out = self.helm_output(args);
        assert!(
            out.status.success(),
            "helm {} failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("helm prints UTF-8")
    }

    /// `kubectl get <what> -o jsonpath=<jsonpath>`.
    pub fn get(&self, what: &str, jsonpath: &str) -> String {
        self.kubectl()
            .run(&["get", what, "-o", &format!("jsonpath={jsonpath}")])
    }

    /// The names (`kind/name`) of every object of these kinds, `-o name`.
    pub fn names(&self, kinds: &str) -> Vec<String> {
        self.kubectl()
            .run(&["get", kinds, "-o", "name"])
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// A chart of this crate's `charts/` folder.
pub fn test_chart(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts")
        .join(name)
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
