//! End-to-end tests: the real `kybern server` binary as a child process, driven by the
//! real kubectl exactly as a user would, with manifests from files.

use kybern_testkit as common;

mod apply;
mod bootstrap_tokens;
mod create;
mod encryption;
mod objects;
mod openapi;
mod restart;
mod secrets_encrypt;
mod services;
mod watch;
mod workloads;

use std::path::{Path, PathBuf};

use common::{Backend, Binary, Etcd, Kubectl};
use tempfile::TempDir;

/// A server started from the binary, its etcd if any, and a folder for manifests.
/// Fields drop in order: the server, then etcd, then the temp dir they used.
pub struct Cluster {
    pub server: Option<Binary>,
    pub etcd: Option<Etcd>,
    pub dir: TempDir,
}

impl Cluster {
    pub async fn start(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let etcd = match backend {
            Backend::Embedded => None,
            Backend::Etcd => Some(Etcd::start().await),
        };
        let server = Binary::start(&dir.path().join("data"), 0, etcd.as_ref());
        Cluster {
            server: Some(server),
            etcd,
            dir,
        }
    }

    pub fn kubectl(&self) -> Kubectl {
        self.server.as_ref().expect("server running").kubectl()
    }

    /// Writes a manifest into the test's folder and returns its path.
    pub fn manifest(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The words of the line of `table` whose first column is `name`.
pub fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.first() == Some(&name))
        .unwrap_or_else(|| panic!("no row {name} in:\n{table}"))
}

pub fn header(table: &str) -> Vec<&str> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect()
}

pub const DEPLOYMENT_YAML: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main
        image: busybox
";
