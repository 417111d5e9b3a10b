//! Pod volumes and container env against the real apiserver in-process on port 0: files and
//! modes on disk, atomic refreshes, optional and missing sources, env from every source,
//! memory-backed emptyDirs (a real tmpfs; needs root), hostPath checks, claims bound to
//! hostPath volumes, and a teardown that leaves nothing mounted.

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

struct Cluster {
    client: Client,
    _server: Server,
    _dir: TempDir,
}

async fn cluster() -> Cluster {
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
struct Host {
    host: VolumeHost,
    pods: TempDir,
}

impl Host {
    fn new(client: &Client) -> Host {
        let pods = tempfile::tempdir().expect("a temp pods dir");
        let host = VolumeHost {
            client: client.clone(),
            pods_dir: pods.path().to_path_buf(),
            node_name: "n1".into(),
        };
        Host { host, pods }
    }

    async fn setup(&self, pod: &Pod) -> Result<PodVolumes, volumes::VolumeError> {
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

fn pod(uid: &str, spec: serde_json::Value) -> Pod {
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

fn container(pod: &Pod, name: &str) -> Container {
    pod.spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .find(|c| c.name == name)
        .cloned()
        .expect("the container")
}

async fn create<K>(client: &Client, object: serde_json::Value) -> K
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

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.as_ref().display()))
}

fn is_mounted(path: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|p| Path::new(p) == path)
}

#[tokio::test]
async fn config_map_and_secret_volumes_hold_their_keys_and_refresh_atomically() {
    let cluster = cluster().await;
    let host = Host::new(&cluster.client);
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "default");
    create::<ConfigMap>(
        &cluster.client,
        json!({ "metadata": { "name": "app" }, "data": { "a.conf": "one", "b.conf": "two" } }),
    )
    .await;
    create::<Secret>(
        &cluster.client,
        json!({ "metadata": { "name": "creds" }, "data": { "password": "czNjcjN0" } }),
    )
    .await;
    let pod = pod(
        "u-cm",
        json!({
            "containers": [{ "name": "app", "image": "busybox", "volumeMounts": [
                { "name": "config", "mountPath": "/etc/app" },
                { "name": "creds", "mountPath": "/etc/creds", "readOnly": false },
                { "name": "picked", "mountPath": "/etc/picked/x.conf", "subPath": "x.conf" },
            ]}],
            "volumes": [
                { "name": "config", "configMap": { "name": "app" } },
                { "name": "creds", "secret": { "secretName": "creds", "defaultMode": 0o400 } },
                { "name": "picked", "configMap": { "name": "app", "items": [{ "key": "a.conf", "path": "x.conf", "mode": 0o600 }] } },
            ],
        }),
    );
    let prepared = host.setup(&pod).await.expect("setting up the volumes");
    let config = &prepared.paths["config"];
    assert_eq!(
        *config,
        host.host
            .pods_dir
            .join("u-cm/volumes/kubernetes.io~configmap/config")
    );
    assert_eq!(read(config.join("a.conf")), "one");
    assert_eq!(read(config.join("b.conf")), "two");
    assert_eq!(mode(&config.join("a.conf")), 0o644, "defaultMode 0644");
    assert!(
        std::fs::symlink_metadata(config.join("a.conf"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "keys are links into ..data"
    );
    let creds = &prepared.paths["creds"];
    assert_eq!(
        *creds,
        host.host
            .pods_dir
            .join("u-cm/volumes/kubernetes.io~secret/creds")
    );
    assert_eq!(
        read(creds.join("password")),
        "s3cr3t",
        "secret data is decoded"
    );
    assert_eq!(mode(&creds.join("password")), 0o400);
    let picked = &prepared.paths["picked"];
    assert_eq!(mode(&picked.join("x.conf")), 0o600, "an item's own mode");
    assert!(!picked.join("b.conf").exists(), "only the listed items");

    let mounts = prepared
        .mounts(&pod, &container(&pod, "app"))
        .expect("mounts");
    assert_eq!(mounts.len(), 3);
    assert!(
        mounts.iter().all(|m| m.readonly),
        "configMap and secret volumes are always read-only: {mounts:?}"
    );
    assert_eq!(mounts[2].destination, "/etc/picked/x.conf");
    assert_eq!(
        read(&mounts[2].source),
        "one",
        "a subPath mount is the file itself"
    );

    // A reader holding the old file open keeps its content; the new version replaces all keys.
    let mut held = std::fs::File::open(config.join("a.conf")).unwrap();
    let mut cm = cms.get("app").await.unwrap();
    cm.data = Some([("a.conf".to_string(), "ONE".to_string())].into());
    cms.replace("app", &PostParams::default(), &cm)
        .await
        .expect("updating the configmap");
    host.setup(&pod).await.expect("refreshing the volumes");
    assert_eq!(read(config.join("a.conf")), "ONE");
    assert!(!config.join("b.conf").exists(), "a removed key disappears");
    let mut old = String::new();
    std::io::Read::read_to_string(&mut held, &mut old).unwrap();
    assert_eq!(old, "one", "an open reader still sees the old version");
    let versions: Vec<_> = std::fs::read_dir(config)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("..") && n != "..data")
        .collect();
    assert_eq!(
        versions.len(),
        1,
        "exactly one version dir after a refresh: {versions:?}"
    );

    volumes::teardown(&host.host, "u-cm")
        .await
        .expect("teardown");
    assert!(!host.host.pods_dir.join("u-cm").exists());
}

#[tokio::test]
async fn optional_missing_sources_are_empty_and_required_ones_fail_the_mount() {
    let cluster = cluster().await;
    let host = Host::new(&cluster.client);
    let optional = pod(
        "u-opt",
        json!({
            "containers": [{ "name": "app", "image": "busybox" }],
            "volumes": [
                { "name": "cm", "configMap": { "name": "absent", "optional": true } },
                { "name": "secret", "secret": { "secretName": "absent", "optional": true } },
            ],
        }),
    );
    let prepared = host
        .setup(&optional)
        .await
        .expect("optional sources may be missing");
    for name in ["cm", "secret"] {
        let names: Vec<_> = std::fs::read_dir(&prepared.paths[name])
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".."))
            .collect();
        assert!(names.is_empty(), "{name}: an empty volume, got {names:?}");
    }

    let required = pod(
        "u-req",
        json!({
            "containers": [{ "name": "app", "image": "busybox" }],
            "volumes": [{ "name": "cm", "configMap": { "name": "absent" } }],
        }),
    );
    let err = host
        .setup(&required)
        .await
        .expect_err("a missing configmap fails the mount");
    assert_eq!(err.reason, "FailedMount");
    assert_eq!(
        err.message,
        "MountVolume.SetUp failed for volume \"cm\" : configmap \"absent\" not found"
    );

    let nfs = pod(
        "u-nfs",
        json!({
            "containers": [{ "name": "app", "image": "busybox" }],
            "volumes": [{ "name": "share", "nfs": { "server": "127.0.0.1", "path": "/x" } }],
        }),
    );
    let err = host.setup(&nfs).await.expect_err("nfs is not supported");
    assert_eq!(err.reason, "FailedMount");
    assert!(
        err.message.contains("\"nfs\""),
        "the message names the type: {}",
        err.message
    );

    let unknown = pod(
        "u-unk",
        json!({
            "containers": [{ "name": "app", "image": "busybox", "volumeMounts": [{ "name": "ghost", "mountPath": "/x" }] }],
        }),
    );
    let prepared = host.setup(&unknown).await.unwrap();
    let err = prepared
        .mounts(&unknown, &container(&unknown, "app"))
        .expect_err("an unknown volume");
    assert_eq!(err.reason, "CreateContainerConfigError");
    assert_eq!(
        err.message,
        "cannot find volume \"ghost\" to mount into container \"app\""
    );
    for uid in ["u-opt", "u-req", "u-nfs", "u-unk"] {
        volumes::teardown(&host.host, uid).await.unwrap();
    }
}

#[tokio::test]
async fn container_env_resolves_every_source_in_kubelet_order() {
    let cluster = cluster().await;
    let host = Host::new(&cluster.client);
    create::<ConfigMap>(&cluster.client, json!({ "metadata": { "name": "env" }, "data": { "MODE": "prod", "LEVEL": "3", "1bad=key": "x" } })).await;
    create::<Secret>(
        &cluster.client,
        json!({ "metadata": { "name": "env" }, "data": { "TOKEN": "dG9r" } }),
    )
    .await;
    create::<Service>(
        &cluster.client,
        json!({ "metadata": { "name": "web" }, "spec": { "clusterIP": "10.43.0.20", "ports": [{ "port": 8080 }] } }),
    )
    .await;
    // The apiserver itself keeps `kubernetes` (10.43.0.1, 443 named https) in `default`.
    let pod = pod(
        "u-env",
        json!({
            "nodeName": "n1", "serviceAccountName": "builder",
            "containers": [{
                "name": "app", "image": "busybox",
                "resources": { "limits": { "cpu": "500m", "memory": "64Mi" } },
                "envFrom": [
                    { "configMapRef": { "name": "env" } },
                    { "prefix": "S_", "secretRef": { "name": "env" } },
                    { "configMapRef": { "name": "absent", "optional": true } },
                ],
                "env": [
                    { "name": "MODE", "value": "dev" },
                { "name": "WEB", "value": "$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT)" },
                    { "name": "URL", "value": "http://$(MODE):$(PORT)/$(LEVEL)$$(LEVEL)" },
                    { "name": "FROM_KEY", "valueFrom": { "configMapKeyRef": { "name": "env", "key": "LEVEL" } } },
                    { "name": "SECRET", "valueFrom": { "secretKeyRef": { "name": "env", "key": "TOKEN" } } },
                    { "name": "SKIPPED", "valueFrom": { "secretKeyRef": { "name": "env", "key": "nope", "optional": true } } },
                    { "name": "POD", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                    { "name": "NS", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } },
                    { "name": "UID", "valueFrom": { "fieldRef": { "fieldPath": "metadata.uid" } } },
                    { "name": "APP", "valueFrom": { "fieldRef": { "fieldPath": "metadata.labels['app']" } } },
                    { "name": "OWNER", "valueFrom": { "fieldRef": { "fieldPath": "metadata.annotations['owner']" } } },
                    { "name": "NODE", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } },
                    { "name": "SA", "valueFrom": { "fieldRef": { "fieldPath": "spec.serviceAccountName" } } },
                    { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
                    { "name": "POD_IPS", "valueFrom": { "fieldRef": { "fieldPath": "status.podIPs" } } },
                    { "name": "HOST_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.hostIP" } } },
                    { "name": "CPU_M", "valueFrom": { "resourceFieldRef": { "resource": "limits.cpu", "divisor": "1m" } } },
                    { "name": "MEM_MI", "valueFrom": { "resourceFieldRef": { "resource": "limits.memory", "divisor": "1Mi" } } },
                ],
            }],
        }),
    );
    let env = volumes::resolve_container_env(&host.host, &pod, &container(&pod, "app"))
        .await
        .expect("the env");
    let get = |name: &str| {
        env.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let expected = [
        ("MODE", Some("dev")),
        ("LEVEL", Some("3")),
        ("S_TOKEN", Some("tok")),
        ("URL", Some("http://dev:$(PORT)/3$(LEVEL)")),
        ("FROM_KEY", Some("3")),
        ("SECRET", Some("tok")),
        ("SKIPPED", None),
        ("POD", Some("pod-u-env")),
        ("NS", Some("default")),
        ("UID", Some("u-env")),
        ("APP", Some("web")),
        ("OWNER", Some("team \"a\"")),
        ("NODE", Some("n1")),
        ("SA", Some("builder")),
        ("POD_IP", Some("10.42.0.7")),
        ("POD_IPS", Some("10.42.0.7")),
        ("HOST_IP", Some("192.168.5.1")),
        ("CPU_M", Some("500")),
        ("MEM_MI", Some("64")),
        ("1bad=key", None),
        ("WEB", Some("10.43.0.20:8080")),
        ("WEB_SERVICE_HOST", Some("10.43.0.20")),
        ("WEB_PORT_8080_TCP_ADDR", Some("10.43.0.20")),
    ];
    for (name, want) in expected {
        assert_eq!(get(name), want, "{name}");
    }
    assert_eq!(
        env.vars.iter().filter(|(n, _)| n == "MODE").count(),
        1,
        "a later entry replaces an earlier one"
    );
    assert_eq!(
        env.invalid_names,
        ["Keys [1bad=key] from the EnvFrom configMap default/env were skipped since they are considered invalid environment variable names."]
    );
    let strings = volumes::container_env(&host.host, &pod, &container(&pod, "app"))
        .await
        .unwrap();
    assert!(strings.contains(&"MODE=dev".to_string()), "{strings:?}");

    // A limit that is not set defaults to the node's allocatable amount.
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "n1" } })).unwrap(),
        )
        .await
        .unwrap();
    nodes
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "allocatable": { "cpu": "4", "memory": "8Gi" } } })),
        )
        .await
        .expect("node status");
    let unlimited = self::pod(
        "u-env2",
        json!({
            "enableServiceLinks": false,
            "containers": [{ "name": "app", "image": "busybox", "env": [
                { "name": "CPUS", "valueFrom": { "resourceFieldRef": { "resource": "limits.cpu" } } },
                { "name": "MEM_GI", "valueFrom": { "resourceFieldRef": { "resource": "limits.memory", "divisor": "1Gi" } } },
            ]}],
        }),
    );
    let env = volumes::container_env(&host.host, &unlimited, &container(&unlimited, "app"))
        .await
        .expect("env");
    assert_eq!(env[..2], ["CPUS=4", "MEM_GI=8"]);
    assert!(
        env.contains(&"KUBERNETES_SERVICE_HOST=10.43.0.1".to_string()),
        "always: {env:?}"
    );
    assert!(
        env.contains(&"KUBERNETES_SERVICE_PORT_HTTPS=443".to_string()),
        "{env:?}"
    );
    assert!(
        !env.iter().any(|e| e.starts_with("WEB_")),
        "no links without enableServiceLinks: {env:?}"
    );

    let failures = [
        (
            "missing configmap",
            json!({ "configMapKeyRef": { "name": "absent", "key": "k" } }),
            "configmap \"absent\" not found",
        ),
        (
            "missing secret",
            json!({ "secretKeyRef": { "name": "absent", "key": "k" } }),
            "secret \"absent\" not found",
        ),
        (
            "missing configmap key",
            json!({ "configMapKeyRef": { "name": "env", "key": "k" } }),
            "couldn't find key k in ConfigMap default/env",
        ),
        (
            "missing secret key",
            json!({ "secretKeyRef": { "name": "env", "key": "k" } }),
            "couldn't find key k in Secret default/env",
        ),
    ];
    for (name, value_from, message) in failures {
        let p = self::pod(
            "u-env3",
            json!({
                "containers": [{ "name": "app", "image": "busybox", "env": [{ "name": "X", "valueFrom": value_from }] }],
            }),
        );
        let err = volumes::container_env(&host.host, &p, &container(&p, "app"))
            .await
            .expect_err(name);
        assert_eq!(
            (err.reason, err.message.as_str()),
            ("CreateContainerConfigError", message),
            "{name}"
        );
    }
}

#[tokio::test]
async fn memory_empty_dir_is_a_tmpfs_until_teardown() {
    let cluster = cluster().await;
    let host = Host::new(&cluster.client);
    let pod = pod(
        "u-mem",
        json!({
            "containers": [{ "name": "app", "image": "busybox", "volumeMounts": [
                { "name": "scratch", "mountPath": "/scratch" },
                { "name": "cache", "mountPath": "/cache/sub", "subPath": "a/b" },
            ]}],
            "volumes": [
                { "name": "scratch", "emptyDir": { "medium": "Memory", "sizeLimit": "8Mi" } },
                { "name": "cache", "emptyDir": {} },
            ],
        }),
    );
    let prepared = host.setup(&pod).await.expect("setting up");
    let scratch = prepared.paths["scratch"].clone();
    assert_eq!(
        scratch,
        host.host
            .pods_dir
            .join("u-mem/volumes/kubernetes.io~empty-dir/scratch")
    );
    assert!(is_mounted(&scratch), "a memory emptyDir is a mount point");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(scratch.to_str().unwrap()))
        .unwrap();
    assert!(line.contains(" - tmpfs "), "a tmpfs: {line}");
    assert!(
        line.contains("size=8192k"),
        "sizeLimit is the tmpfs size: {line}"
    );
    assert_eq!(mode(&scratch), 0o777);
    assert_eq!(mode(&prepared.paths["cache"]), 0o777);

    host.setup(&pod)
        .await
        .expect("setting up again is harmless");
    let again = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(
        again
            .lines()
            .filter(|l| l.split(' ').nth(4) == Some(scratch.to_str().unwrap()))
            .count(),
        1,
        "no second tmpfs"
    );

    let mounts = prepared.mounts(&pod, &container(&pod, "app")).unwrap();
    assert!(!mounts[0].readonly, "an emptyDir is writable");
    assert_eq!(
        mounts[1].source,
        prepared.paths["cache"].join("a/b").canonicalize().unwrap()
    );
    assert!(mounts[1].source.is_dir(), "a missing subPath is created");

    // subPathExpr expands the container's env; a variable without a value is an error.
    let mut with_expr = container(&pod, "app");
    with_expr.volume_mounts = Some(vec![serde_json::from_value(
        json!({ "name": "cache", "mountPath": "/per-pod", "subPathExpr": "pods/$(POD_NAME)" }),
    )
    .unwrap()]);
    let mounts = prepared
        .mounts_with_env(&pod, &with_expr, &["POD_NAME=web-0".to_string()])
        .expect("an expanded subPathExpr");
    assert_eq!(
        mounts[0].source,
        prepared.paths["cache"]
            .join("pods/web-0")
            .canonicalize()
            .unwrap()
    );
    let err = prepared
        .mounts_with_env(&pod, &with_expr, &[])
        .expect_err("POD_NAME is not set");
    assert_eq!(
        (err.reason, err.message.as_str()),
        ("CreateContainerConfigError", "missing value for POD_NAME")
    );

    // A subPath that is a symlink leading out of the volume is refused, so a container
    // cannot get a host directory of its choosing mounted on its next start.
    std::os::unix::fs::symlink("/etc", prepared.paths["cache"].join("escape")).unwrap();
    let mut escaping = container(&pod, "app");
    escaping.volume_mounts = Some(vec![serde_json::from_value(
        json!({ "name": "cache", "mountPath": "/x", "subPath": "escape" }),
    )
    .unwrap()]);
    let err = prepared
        .mounts(&pod, &escaping)
        .expect_err("a symlink out of the volume");
    assert_eq!(err.reason, "CreateContainerConfigError");
    assert!(
        err.message.contains("not within volume path"),
        "{}",
        err.message
    );
    let mut backstep = container(&pod, "app");
    backstep.volume_mounts = Some(vec![serde_json::from_value(
        json!({ "name": "cache", "mountPath": "/x", "subPath": "../../.." }),
    )
    .unwrap()]);
    let err = prepared
        .mounts(&pod, &backstep)
        .expect_err("a subPath with ..");
    assert_eq!(
        err.message,
        "unable to provision SubPath `../../..`: must not contain '..'"
    );

    assert_eq!(volumes::pod_dirs(&host.host).unwrap(), ["u-mem"]);
    volumes::teardown(&host.host, "u-mem")
        .await
        .expect("teardown");
    assert!(!is_mounted(&scratch), "teardown unmounts the tmpfs");
    assert!(
        !host.host.pods_dir.join("u-mem").exists(),
        "and removes the pod dir"
    );
    volumes::teardown(&host.host, "u-mem")
        .await
        .expect("teardown again is a no-op");
    assert!(volumes::pod_dirs(&host.host).unwrap().is_empty());
}

#[tokio::test]
async fn host_path_types_are_checked_and_created() {
    let cluster = cluster().await;
    let host = Host::new(&cluster.client);
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let created = root.path().join("made/by/agent");
    let ok = pod(
        "u-hp",
        json!({
            "containers": [{ "name": "app", "image": "busybox" }],
            "volumes": [
                { "name": "made", "hostPath": { "path": created, "type": "DirectoryOrCreate" } },
                { "name": "file", "hostPath": { "path": file, "type": "File" } },
                { "name": "new-file", "hostPath": { "path": root.path().join("new"), "type": "FileOrCreate" } },
                { "name": "untyped", "hostPath": { "path": root.path().join("anything") } },
            ],
        }),
    );
    let prepared = host.setup(&ok).await.expect("valid host paths");
    assert!(created.is_dir());
    assert_eq!(mode(&created), 0o755);
    assert!(root.path().join("new").is_file());
    assert_eq!(prepared.paths["file"], file);
    assert!(
        root.path().join("anything").is_dir(),
        "a missing untyped hostPath becomes a directory, as runtimes do"
    );

    let wrong = pod(
        "u-hp2",
        json!({
            "containers": [{ "name": "app", "image": "busybox" }],
            "volumes": [{ "name": "dir", "hostPath": { "path": file, "type": "Directory" } }],
        }),
    );
    let err = host
        .setup(&wrong)
        .await
        .expect_err("a file is not a directory");
    assert_eq!(err.reason, "FailedMount");
    assert_eq!(
        err.message,
        format!("MountVolume.SetUp failed for volume \"dir\" : hostPath type check failed: {} is not a directory", file.display())
    );
    for uid in ["u-hp", "u-hp2"] {
        volumes::teardown(&host.host, uid).await.unwrap();
    }
    assert!(file.exists(), "teardown never touches host paths");
}

#[tokio::test]
async fn claims_resolve_to_their_bound_host_path_volume() {
    let cluster = cluster().await;
    let host = Host::new(&cluster.client);
    let storage = tempfile::tempdir().unwrap();
    let data = storage.path().join("pv-data");
    let pvs: Api<PersistentVolume> = Api::all(cluster.client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), "default");
    let claim: PersistentVolumeClaim = create(&cluster.client, json!({
        "metadata": { "name": "data" },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } }, "volumeName": "pv-1" },
    }))
    .await;
    let pod = pod(
        "u-pvc",
        json!({
            "containers": [{ "name": "app", "image": "busybox", "volumeMounts": [{ "name": "data", "mountPath": "/data" }] }],
            "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": "data" } }],
        }),
    );
    let err = host.setup(&pod).await.expect_err("an unbound claim");
    assert_eq!(err.message, "MountVolume.SetUp failed for volume \"data\" : persistentvolumeclaim \"data\" is not bound");

    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": { "name": "pv-1" },
        "spec": {
            "capacity": { "storage": "1Gi" }, "accessModes": ["ReadWriteOnce"],
            "hostPath": { "path": data, "type": "DirectoryOrCreate" },
            "claimRef": { "namespace": "default", "name": "data", "uid": claim.metadata.uid },
        },
    }))
    .unwrap();
    pvs.create(&PostParams::default(), &pv)
        .await
        .expect("creating the PV");
    claims
        .patch_status(
            "data",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "phase": "Bound" } })),
        )
        .await
        .expect("binding the claim");
    let prepared = host.setup(&pod).await.expect("a bound claim");
    assert_eq!(prepared.paths["data"], data);
    assert!(data.is_dir(), "DirectoryOrCreate made the directory");
    let mounts = prepared.mounts(&pod, &container(&pod, "app")).unwrap();
    assert_eq!(
        (mounts[0].source.clone(), mounts[0].readonly),
        (PathBuf::from(&data), false)
    );
    volumes::teardown(&host.host, "u-pvc").await.unwrap();
    assert!(data.is_dir(), "teardown keeps the volume's data");
}

#[tokio::test]
async fn downward_and_projected_volumes_hold_pod_fields_and_the_cluster_ca() {
    let cluster = cluster().await;
    let host = Host::new(&cluster.client);
    create::<ConfigMap>(&cluster.client, json!({ "metadata": { "name": "kube-root-ca.crt" }, "data": { "ca.crt": "-----BEGIN CERTIFICATE-----\n" } })).await;
    let downward = pod(
        "u-dw",
        json!({
            "containers": [{ "name": "app", "image": "busybox", "resources": { "limits": { "memory": "64Mi" } } }],
            "volumes": [
                { "name": "info", "downwardAPI": { "items": [
                    { "path": "labels", "fieldRef": { "fieldPath": "metadata.labels" } },
                    { "path": "annotations", "fieldRef": { "fieldPath": "metadata.annotations" } },
                    { "path": "name", "fieldRef": { "fieldPath": "metadata.name" } },
                    { "path": "mem", "resourceFieldRef": { "containerName": "app", "resource": "limits.memory", "divisor": "1Mi" } },
                ]}},
                { "name": "ca", "projected": { "sources": [
                    { "configMap": { "name": "kube-root-ca.crt", "items": [{ "key": "ca.crt", "path": "ca.crt" }] } },
                    { "downwardAPI": { "items": [{ "path": "namespace", "fieldRef": { "fieldPath": "metadata.namespace" } }] } },
                ]}},
            ],
        }),
    );
    let prepared = host
        .setup(&downward)
        .await
        .expect("downward and projected volumes");
    let info = &prepared.paths["info"];
    assert_eq!(
        *info,
        host.host
            .pods_dir
            .join("u-dw/volumes/kubernetes.io~downward-api/info")
    );
    assert_eq!(read(info.join("labels")), "app=\"web\"\ntier=\"front\"");
    assert_eq!(read(info.join("annotations")), "owner=\"team \\\"a\\\"\"");
    assert_eq!(read(info.join("name")), "pod-u-dw");
    assert_eq!(read(info.join("mem")), "64");
    let ca = &prepared.paths["ca"];
    assert_eq!(
        *ca,
        host.host
            .pods_dir
            .join("u-dw/volumes/kubernetes.io~projected/ca")
    );
    assert_eq!(read(ca.join("ca.crt")), "-----BEGIN CERTIFICATE-----\n");
    assert_eq!(read(ca.join("namespace")), "default");
    volumes::teardown(&host.host, "u-dw").await.unwrap();

    // The service-account token comes from the TokenRequest API and nowhere else: when the
    // apiserver cannot issue one the mount fails, it never holds a made-up token.
    let with_token = pod(
        "u-tok",
        json!({
            "serviceAccountName": "default",
            "containers": [{ "name": "app", "image": "busybox" }],
            "volumes": [{ "name": "kube-api-access", "projected": { "sources": [
                { "serviceAccountToken": { "path": "token", "expirationSeconds": 3607 } },
            ]}}],
        }),
    );
    match host.setup(&with_token).await {
        Ok(prepared) => {
            let token = read(prepared.paths["kube-api-access"].join("token"));
            assert_eq!(
                token.split('.').count(),
                3,
                "a JWT from the apiserver: {token}"
            );
        }
        Err(err) => {
            assert_eq!(err.reason, "FailedMount");
            assert!(
                err.message.starts_with("MountVolume.SetUp failed for volume \"kube-api-access\" : failed to fetch token for service account default/default: "),
                "{}",
                err.message
            );
            let dir = host
                .host
                .pods_dir
                .join("u-tok/volumes/kubernetes.io~projected/kube-api-access");
            assert!(!dir.join("token").exists(), "no token file without a token");
        }
    }
    volumes::teardown(&host.host, "u-tok").await.unwrap();
}

#[tokio::test]
async fn fs_group_owns_volume_files_as_upstream() {
    use std::os::unix::fs::MetadataExt;
    let cluster = cluster().await;
    let host = Host::new(&cluster.client);
    create::<Secret>(
        &cluster.client,
        json!({ "metadata": { "name": "key" }, "data": { "key.pem": "cGVt" } }),
    )
    .await;
    let pod = pod(
        "u-fsg",
        json!({
            "securityContext": { "fsGroup": 2000 },
            "containers": [{ "name": "app", "image": "busybox" }],
            "volumes": [
                { "name": "key", "secret": { "secretName": "key", "defaultMode": 0o400 } },
                { "name": "scratch", "emptyDir": {} },
            ],
        }),
    );
    let prepared = host.setup(&pod).await.expect("setting up");
    let key = prepared.paths["key"].join("key.pem");
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.gid()),
        (0o440, 2000),
        "0400 becomes group-readable for the fsGroup"
    );
    let scratch = std::fs::metadata(&prepared.paths["scratch"]).unwrap();
    assert_eq!(
        (scratch.mode() & 0o7777, scratch.gid()),
        (0o2777, 2000),
        "emptyDir: group-owned, setgid"
    );

    let data_link = std::fs::read_link(prepared.paths["key"].join("..data")).unwrap();
    host.setup(&pod).await.expect("refreshing");
    assert_eq!(
        std::fs::read_link(prepared.paths["key"].join("..data")).unwrap(),
        data_link,
        "an unchanged secret is not rewritten because of its fsGroup bits"
    );
    volumes::teardown(&host.host, "u-fsg").await.unwrap();
}
