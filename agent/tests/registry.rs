//! Pulling from a real registry (Debian's docker-registry on 127.0.0.1, htpasswd auth, a
//! temp storage dir; see `registry_env`) into a private containerd (root only), and
//! importing `docker save` archives: the right credentials (the pod's or the node's) pull
//! and unpack an image, and a re-pull skips layers already held; wrong or missing
//! credentials fail with 401; a missing tag or digest fails "not found"; a manifest list
//! yields its linux/amd64 image; a layer corrupted in the registry or not matching its diff
//! ID is refused; an HTTPS registry is trusted through a configured CA only; a registry
//! with token auth grants pulls for the right credentials only.

mod registry_env;
#[allow(dead_code)] // the harness serves several test binaries; this one uses part of it
mod runtime_env;

use std::path::Path;

use agent::images::docker_archive::write_docker_archive;
use agent::images::oci::{
    read_layout, Layout, MEDIA_TYPE_CONFIG, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST,
};
use agent::images::{sha256_digest, test_images};
use agent::registry::push::push_layout;
use agent::registry::{normalize, Client, Reference, RegistryConfig};
use agent::runtime::{Error, RegistryAuth, Runtime};
use registry_env::{right, Registry, Tls, TokenAuth, TokenServer, USER};
use runtime_env::Env;
use serde_json::json;

fn busybox_layout() -> Layout {
    let busybox = test_images::read(Path::new(test_images::DEBIAN_BUSYBOX)).expect("read busybox");
    read_layout(
        &test_images::busybox_image(&busybox)
            .to_layout_tar()
            .unwrap(),
    )
    .unwrap()
}

async fn push(client: &Client, layout: &Layout, reference: &str) -> String {
    push_layout(
        client,
        layout,
        &Reference::parse(reference).unwrap(),
        Some(&right()),
    )
    .await
    .expect("push")
}

fn pull_error(result: agent::runtime::Result<agent::runtime::ImageInfo>) -> String {
    match result {
        Err(Error::Pull(msg)) => {
            eprintln!("pull error: {msg}");
            msg
        }
        Err(e) => panic!("expected a pull error, got {e}"),
        Ok(info) => panic!("pull succeeded: {info:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulling_with_the_right_credentials_stores_the_image_and_its_config() {
    let env = Env::start().await;
    let registry = Registry::start(None, None);
    let client = Client::new(&RegistryConfig::default()).unwrap();
    let reference = registry.reference("kybern/busybox:v1");
    let pushed = push(&client, &busybox_layout(), &reference).await;

    let info = env
        .rt
        .pull_image(&reference, Some(&right()))
        .await
        .expect("pull");
    assert_eq!(info.name, normalize(&reference));
    assert_eq!(info.digest, pushed, "the stored manifest is the one pushed");
    // Only the GC labels keep the pulled content once the pull's lease is gone.
    env.rt.collect_garbage().await.unwrap();
    let stored = env
        .rt
        .image(&info.name)
        .await
        .unwrap()
        .expect("pulled image is listed");
    assert_eq!(stored.config.cmd, ["sh"], "image config survives the pull");

    // With the layer gone from the registry, a second pull still works: layers the
    // content store holds are not downloaded again.
    let layout = busybox_layout();
    let target = Reference::parse(&reference).unwrap();
    let mut session = client.session(&target, Some(&right()), true);
    session
        .delete_blob(&layout.images[0].layers[0].digest)
        .await
        .expect("delete layer");
    let again = env
        .rt
        .pull_image(&reference, Some(&right()))
        .await
        .expect("pull again");
    assert_eq!(again.digest, pushed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_credentials_fail_with_401_node_credentials_fill_in_and_a_missing_tag_is_not_found(
) {
    let env = Env::start().await;
    let registry = Registry::start(None, None);
    let client = Client::new(&RegistryConfig::default()).unwrap();
    let reference = registry.reference("kybern/busybox:v1");
    push(&client, &busybox_layout(), &reference).await;

    let wrong = RegistryAuth {
        username: USER.into(),
        password: "wrong".into(),
    };
    let cases = [("wrong password", Some(&wrong)), ("no credentials", None)];
    for (name, auth) in cases {
        let msg = pull_error(env.rt.pull_image(&reference, auth).await);
        assert!(
            msg.starts_with(&format!("failed to pull and unpack image \"{reference}\"")),
            "{name}: {msg}"
        );
        assert!(msg.contains("401 Unauthorized"), "{name}: {msg}");
    }

    // Node-wide credentials for the registry stand in for a pod without pull secrets.
    let configured = RegistryConfig {
        auths: [(format!("127.0.0.1:{}", registry.port), right())].into(),
        ..Default::default()
    };
    let node = env.rt.clone().with_registry(&configured).unwrap();
    node.pull_image(&reference, None)
        .await
        .expect("pull with the node's credentials");

    let missing = registry.reference("kybern/busybox:nope");
    let msg = pull_error(env.rt.pull_image(&missing, Some(&right())).await);
    assert!(msg.contains("not found"), "{msg}");
    assert!(msg.contains(&normalize(&missing)), "names the image: {msg}");
    assert!(env.rt.image(&normalize(&missing)).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_list_yields_its_linux_amd64_image_and_digests_pin_manifests() {
    let env = Env::start().await;
    let registry = Registry::start(None, None);
    let client = Client::new(&RegistryConfig::default()).unwrap();
    let layout = busybox_layout();
    let image = &layout.images[0];
    let amd64 = push(&client, &layout, &registry.reference("kybern/multi:amd64")).await;

    // A bogus arm64 image: its own config, busybox's layer.
    let target = Reference::parse(&registry.reference("kybern/multi:latest")).unwrap();
    let mut session = client.session(&target, Some(&right()), true);
    let arm_config = serde_json::to_vec(&json!({
        "architecture": "arm64", "os": "linux",
        "config": {"Cmd": ["arm-only"]},
        "rootfs": {"type": "layers", "diff_ids": image.diff_ids},
    }))
    .unwrap();
    session.push_blob(&arm_config).await.unwrap();
    let arm_manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": sha256_digest(&arm_config), "size": arm_config.len()},
        "layers": image.layers,
    }))
    .unwrap();
    let arm64 = sha256_digest(&arm_manifest);
    session
        .push_manifest(&arm64, MEDIA_TYPE_MANIFEST, &arm_manifest)
        .await
        .unwrap();
    let entry = |digest: &str, size: usize, arch: &str| {
        json!({"mediaType": MEDIA_TYPE_MANIFEST, "digest": digest, "size": size,
               "platform": {"architecture": arch, "os": "linux"}})
    };
    let amd64_size = layout.blobs[&amd64].len();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_INDEX,
        "manifests": [entry(&arm64, arm_manifest.len(), "arm64"), entry(&amd64, amd64_size, "amd64")],
    }))
    .unwrap();
    session
        .push_manifest("latest", MEDIA_TYPE_INDEX, &index)
        .await
        .unwrap();

    let info = env
        .rt
        .pull_image(&target.to_string(), Some(&right()))
        .await
        .expect("pull the list");
    assert_eq!(info.digest, amd64, "the amd64 manifest is picked");
    assert_eq!(info.config.cmd, ["sh"]);

    // A reference pinned by digest pulls exactly that manifest and is stored under it.
    let pinned = format!("{}@{amd64}", target.name());
    let info = env
        .rt
        .pull_image(&pinned, Some(&right()))
        .await
        .expect("pull by digest");
    assert_eq!(
        (info.name.as_str(), info.digest.as_str()),
        (pinned.as_str(), amd64.as_str())
    );
    assert!(env.rt.image(&pinned).await.unwrap().is_some());
    let wrong = format!("{}@{}", target.name(), sha256_digest(b"no such manifest"));
    let msg = pull_error(env.rt.pull_image(&wrong, Some(&right())).await);
    assert!(msg.contains("not found"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_save_archive_imports_under_its_normalized_tag() {
    let env = Env::start().await;
    let layout = busybox_layout();
    let image = &layout.images[0];
    let layers: Vec<Vec<u8>> = image
        .layers
        .iter()
        .map(|l| layout.blobs[&l.digest].clone())
        .collect();
    let archive = write_docker_archive(
        &layers,
        &layout.blobs[&image.config.digest],
        &["busybox:saved"],
    )
    .unwrap();
    let names = env
        .rt
        .import_image(&archive)
        .await
        .expect("import docker archive");
    assert_eq!(names, ["docker.io/library/busybox:saved"]);
    let info = env
        .rt
        .image(&normalize("busybox:saved"))
        .await
        .unwrap()
        .expect("listed");
    assert_eq!(info.config.cmd, ["sh"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_registry_is_trusted_through_a_configured_ca_only() {
    let env = Env::start().await;
    let pki_dir = tempfile::tempdir().unwrap();
    apiserver::pki::ensure(pki_dir.path(), &["127.0.0.1".into()]).expect("pki");
    let pki = pki_dir.path().join("pki");
    let tls = Tls {
        cert: pki.join("server.crt"),
        key: pki.join("server.key"),
    };
    let registry = Registry::start(Some(&tls), None);
    let trusting = RegistryConfig {
        ca_files: vec![pki.join("ca.crt")],
        ..Default::default()
    };
    let client = Client::new(&trusting).unwrap();
    let reference = registry.reference("kybern/busybox:tls");
    let pushed = push(&client, &busybox_layout(), &reference).await;

    let msg = pull_error(env.rt.pull_image(&reference, Some(&right())).await);
    assert!(
        msg.to_lowercase().contains("certificate"),
        "untrusted CA: {msg}"
    );

    let rt = env.rt.clone().with_registry(&trusting).unwrap();
    let info = rt
        .pull_image(&reference, Some(&right()))
        .await
        .expect("pull over TLS");
    assert_eq!(info.digest, pushed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_registry_grants_pulls_to_the_right_credentials_only() {
    let env = Env::start().await;
    let pki_dir = tempfile::tempdir().unwrap();
    apiserver::pki::ensure(pki_dir.path(), &["127.0.0.1".into()]).expect("pki");
    let pki = pki_dir.path().join("pki");
    // The token server signs with the serving key; the registry trusts the CA above it.
    let tokens = TokenServer::start(&pki.join("server.crt"), &pki.join("server.key"));
    let registry = Registry::start(
        None,
        Some(&TokenAuth {
            realm: format!("http://127.0.0.1:{}/token", tokens.port),
            root_bundle: pki.join("ca.crt"),
        }),
    );
    let client = Client::new(&RegistryConfig::default()).unwrap();
    let reference = registry.reference("kybern/busybox:bearer");
    let pushed = push(&client, &busybox_layout(), &reference).await;

    let info = env
        .rt
        .pull_image(&reference, Some(&right()))
        .await
        .expect("pull with a token");
    assert_eq!(info.digest, pushed);

    let wrong = RegistryAuth {
        username: USER.into(),
        password: "wrong".into(),
    };
    let msg = pull_error(env.rt.pull_image(&reference, Some(&wrong)).await);
    assert!(
        msg.contains("failed to fetch token") && msg.contains("401 Unauthorized"),
        "{msg}"
    );
    let msg = pull_error(env.rt.pull_image(&reference, None).await);
    assert!(
        msg.contains("failed to fetch anonymous token") && msg.contains("401"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_that_does_not_match_its_diff_id_is_refused() {
    let env = Env::start().await;
    let registry = Registry::start(None, None);
    let client = Client::new(&RegistryConfig::default()).unwrap();
    let layout = busybox_layout();
    let image = &layout.images[0];
    let reference = registry.reference("kybern/lying:v1");
    let target = Reference::parse(&reference).unwrap();
    let mut session = client.session(&target, Some(&right()), true);
    session
        .push_blob(&layout.blobs[&image.layers[0].digest])
        .await
        .unwrap();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(b"some other layer")]},
    }))
    .unwrap();
    session.push_blob(&config).await.unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": sha256_digest(&config), "size": config.len()},
        "layers": image.layers,
    }))
    .unwrap();
    session
        .push_manifest("v1", MEDIA_TYPE_MANIFEST, &manifest)
        .await
        .unwrap();

    let msg = pull_error(env.rt.pull_image(&reference, Some(&right())).await);
    assert!(msg.contains("does not match diff ID"), "{msg}");
    assert!(
        env.rt
            .image(&normalize(&reference))
            .await
            .unwrap()
            .is_none(),
        "nothing recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_corrupted_in_the_registry_is_refused() {
    let env = Env::start().await;
    let registry = Registry::start(None, None);
    let client = Client::new(&RegistryConfig::default()).unwrap();
    let layout = busybox_layout();
    let reference = registry.reference("kybern/busybox:corrupt");
    push(&client, &layout, &reference).await;
    // Flip one byte of the stored layer (same length, so the registry serves it as is).
    let layer = &layout.images[0].layers[0].digest;
    let hex = layer.trim_start_matches("sha256:");
    let data = registry.dir.path().join(format!(
        "data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut bytes = std::fs::read(&data).expect("stored layer");
    bytes[600] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();

    let msg = pull_error(env.rt.pull_image(&reference, Some(&right())).await);
    assert!(msg.contains(&format!("failed to copy {layer}")), "{msg}");
    assert!(msg.contains("digest mismatch"), "{msg}");
    assert!(env
        .rt
        .image(&normalize(&reference))
        .await
        .unwrap()
        .is_none());
}
