//! emptyDir (tmpfs), hostPath and persistentVolumeClaim volumes, subPaths and teardown.

use super::*;

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

    assert_eq!(volumes::pod_dirs(&host.host.pods_dir).unwrap(), ["u-mem"]);
    volumes::teardown(&host.host.pods_dir, "u-mem")
        .await
        .expect("teardown");
    assert!(!is_mounted(&scratch), "teardown unmounts the tmpfs");
    assert!(
        !host.host.pods_dir.join("u-mem").exists(),
        "and removes the pod dir"
    );
    volumes::teardown(&host.host.pods_dir, "u-mem")
        .await
        .expect("teardown again is a no-op");
    assert!(volumes::pod_dirs(&host.host.pods_dir).unwrap().is_empty());
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
        volumes::teardown(&host.host.pods_dir, uid).await.unwrap();
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
    volumes::teardown(&host.host.pods_dir, "u-pvc")
        .await
        .unwrap();
    assert!(data.is_dir(), "teardown keeps the volume's data");
}

#[tokio::test]
async fn claims_resolve_to_local_volumes_and_honour_read_only() {
    let cluster = cluster().await;
    let host = Host::new(&cluster.client);
    let disk = tempfile::tempdir().unwrap();
    let pvs: Api<PersistentVolume> = Api::all(cluster.client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), "default");
    let claim: PersistentVolumeClaim = create(
        &cluster.client,
        json!({
            "metadata": { "name": "local" },
            "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } }, "volumeName": "pv-local" },
        }),
    )
    .await;
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": { "name": "pv-local" },
        "spec": {
            "capacity": { "storage": "1Gi" }, "accessModes": ["ReadWriteOnce"],
            "local": { "path": disk.path() },
            "nodeAffinity": { "required": { "nodeSelectorTerms": [{ "matchExpressions": [
                { "key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"] },
            ]}]}},
            "claimRef": { "namespace": "default", "name": "local", "uid": claim.metadata.uid },
        },
    }))
    .unwrap();
    pvs.create(&PostParams::default(), &pv)
        .await
        .expect("creating the PV");
    claims
        .patch_status(
            "local",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "phase": "Bound" } })),
        )
        .await
        .expect("binding the claim");
    let pod = pod(
        "u-local",
        json!({
            "containers": [{ "name": "app", "image": "busybox", "volumeMounts": [{ "name": "disk", "mountPath": "/disk" }] }],
            "volumes": [{ "name": "disk", "persistentVolumeClaim": { "claimName": "local", "readOnly": true } }],
        }),
    );
    let prepared = host
        .setup(&pod)
        .await
        .expect("a claim bound to a local volume");
    assert_eq!(prepared.paths["disk"], disk.path());
    let mounts = prepared.mounts(&pod, &container(&pod, "app")).unwrap();
    assert!(
        mounts[0].readonly,
        "the claim's readOnly makes the mount read-only"
    );

    // The volume's directory vanished from the disk: the mount fails instead of using an
    // empty directory in its place.
    let gone = disk.path().to_path_buf();
    drop(disk);
    let err = host.setup(&pod).await.expect_err("a missing local path");
    assert_eq!(err.reason, "FailedMount");
    assert!(
        err.message.contains(&format!(
            "local volume path {} of persistentvolume \"pv-local\" does not exist",
            gone.display()
        )),
        "{}",
        err.message
    );
    volumes::teardown(&host.host.pods_dir, "u-local")
        .await
        .unwrap();
}
