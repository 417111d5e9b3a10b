//! configMap, secret, downwardAPI and projected volumes: files, modes, refreshes, fsGroup.

use super::*;

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

    volumes::teardown(&host.host.pods_dir, "u-cm")
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
        volumes::teardown(&host.host.pods_dir, uid).await.unwrap();
    }
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

    // New labels reach the file on the next refresh, as the kubelet resyncs them.
    let mut relabelled = downward.clone();
    relabelled.metadata.labels = Some([("app".to_string(), "api".to_string())].into());
    host.setup(&relabelled).await.expect("refreshing");
    assert_eq!(read(info.join("labels")), "app=\"api\"");
    let ca = &prepared.paths["ca"];
    assert_eq!(
        *ca,
        host.host
            .pods_dir
            .join("u-dw/volumes/kubernetes.io~projected/ca")
    );
    assert_eq!(read(ca.join("ca.crt")), "-----BEGIN CERTIFICATE-----\n");
    assert_eq!(read(ca.join("namespace")), "default");
    volumes::teardown(&host.host.pods_dir, "u-dw")
        .await
        .unwrap();

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
    volumes::teardown(&host.host.pods_dir, "u-tok")
        .await
        .unwrap();
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
    volumes::teardown(&host.host.pods_dir, "u-fsg")
        .await
        .unwrap();
}
