//! Pod volumes and container env against the real apiserver in-process on port 0: files and
//! modes on disk, atomic refreshes, optional and missing sources, env from every source,
//! memory-backed emptyDirs (a real tmpfs; needs root), hostPath checks, claims bound to
//! hostPath volumes, and a teardown that leaves nothing mounted.

#[path = "volumes/env.rs"]
mod env;
#[path = "volumes/files.rs"]
mod files;
#[path = "volumes/host.rs"]
mod host;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use agent::volumes::{self, PodVolumes, VolumeHost};
use apiserver::server::{self, Config, Server};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service,
};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::json;
use tempfile::TempDir;

pub struct Cluster {
    pub client: Client,
    _server: Server,
    _dir: TempDir,
}

pub async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().expect("a temp data dir");
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::new(dir.path())
    };
    let server = server::start(config)
        .await
        .expect("starting the apiserver in-process");
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).expect("reading admin.kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable admin.kubeconfig");
    let client = Client::try_from(config).expect("a client");
    Cluster {
        client,
        _server: server,
        _dir: dir,
    }
}

/// A volume host on a temp pods dir that unmounts whatever is still mounted below it when
/// dropped, so a failing test leaves no tmpfs behind.
pub struct Host {
    pub host: VolumeHost,
    pods: TempDir,
}

impl Host {
    pub fn new(client: &Client) -> Host {
        let pods = tempfile::tempdir().expect("a temp pods dir");
        let host = VolumeHost {
            client: client.clone(),
            pods_dir: pods.path().to_path_buf(),
            node_name: "n1".into(),
        };
        Host { host, pods }
    }

    pub async fn setup(&self, pod: &Pod) -> Result<PodVolumes, volumes::VolumeError> {
        volumes::setup(&self.host, pod).await
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Best effort, synchronously: umount(8) whatever is still mounted below the pods dir.
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounted: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| Path::new(p).starts_with(self.pods.path()))
            .collect();
        mounted.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in mounted {
            let _ = std::process::Command::new("umount").arg(point).status();
        }
    }
}

pub fn pod(uid: &str, spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("pod-{uid}"), "namespace": "default", "uid": uid,
            "labels": { "app": "web", "tier": "front" },
            "annotations": { "owner": "team \"a\"" },
        },
        "spec": spec,
        "status": { "podIP": "10.42.0.7", "hostIP": "192.168.5.1" },
    }))
    .expect("a valid pod")
}

pub fn container(pod: &Pod, name: &str) -> Container {
    pod.spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .find(|c| c.name == name)
        .cloned()
        .expect("the container")
}

pub async fn create<K>(client: &Client, object: serde_json::Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), "default");
    let object: K = serde_json::from_value(object).expect("a valid object");
    api.create(&PostParams::default(), &object)
        .await
        .expect("creating the object")
}

pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

pub fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.as_ref().display()))
}

pub fn is_mounted(path: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|p| Path::new(p) == path)
}
