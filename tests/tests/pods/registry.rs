//! Images pulled by the agent from a registry: Debian's docker-registry on 127.0.0.1 with
//! htpasswd auth, credentials from the pod's imagePullSecrets. The right password pulls
//! and runs the image; a wrong one leaves the container waiting in ErrImagePull, then
//! ImagePullBackOff, with upstream's events.

use std::path::Path;

use crate::{at, pod_yaml, Node};
use agent::images::oci::read_layout;
use agent::images::test_images;
use agent::registry::push::push_layout;
use agent::registry::{Client, Reference, RegistryConfig};
use agent::runtime::RegistryAuth;
use kybern_testkit::registry::{right, Registry, PASSWORD, USER};

/// Pushes the busybox test image to `reference` (with `auth`, if any); its digest.
pub(crate) fn push_busybox(reference: &str, auth: Option<&RegistryAuth>) -> String {
    let busybox = test_images::read(Path::new(test_images::DEBIAN_BUSYBOX))
        .expect("busybox-static (scripts/install-deps.sh)");
    let layout = read_layout(
        &test_images::busybox_image(&busybox)
            .to_layout_tar()
            .unwrap(),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Client::new(&RegistryConfig::default()).unwrap();
        push_layout(
            &client,
            &layout,
            &Reference::parse(reference).unwrap(),
            auth,
        )
        .await
        .expect("pushing to the test registry")
    })
}

fn pod(name: &str, image: &str, secret: &str) -> String {
    let body = format!("  imagePullSecrets: [{{name: {secret}}}]\n  containers:\n  - name: main\n    image: {image}\n    imagePullPolicy: Always\n    command: [sleep, \"3600\"]\n");
    pod_yaml(name, "Always", &body)
}

#[test]
fn pods_pull_from_a_registry_with_their_pull_secret_and_a_wrong_password_is_err_image_pull() {
    let node = Node::start(&[]);
    let registry = Registry::start(None, None);
    let image = registry.reference("kybern/pulled:v1");
    let digest = push_busybox(&image, Some(&right()));
    let server = format!("127.0.0.1:{}", registry.port);
    for (secret, password) in [("right", PASSWORD), ("wrong", "not-the-password")] {
        node.run(&[
            "create",
            "secret",
            "docker-registry",
            secret,
            &format!("--docker-server={server}"),
            &format!("--docker-username={USER}"),
            &format!("--docker-password={password}"),
        ]);
    }

    node.apply("pulled.yaml", &pod("pulled", &image, "right"));
    let p = node.eventually("the pulled image running", || {
        let p = node.pod("pulled");
        (at(&p, "/status/phase") == "Running")
            .then_some(p.clone())
            .ok_or(p.to_string())
    });
    assert_eq!(at(&p, "/status/containerStatuses/0/image"), image, "{p}");
    assert!(
        at(&p, "/status/containerStatuses/0/imageID").ends_with(&digest),
        "the running image is the one pushed ({digest}): {p}"
    );
    let events = node.run(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=pulled",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        events.contains(&format!("Successfully pulled image \"{image}\"")),
        "{events}"
    );

    node.apply("denied.yaml", &pod("denied", &image, "wrong"));
    for reason in ["ErrImagePull", "ImagePullBackOff"] {
        node.eventually(&format!("the container waiting in {reason}"), || {
            let p = node.pod("denied");
            (at(&p, "/status/containerStatuses/0/state/waiting/reason") == reason)
                .then_some(())
                .ok_or(p.to_string())
        });
    }
    let p = node.pod("denied");
    assert_eq!(at(&p, "/status/phase"), "Pending", "{p}");
    assert_eq!(at(&p, "/status/containerStatuses/0/ready"), "false");
    let events = node.run(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=denied",
        "-o",
        "json",
    ]);
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    let messages: Vec<String> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}: {}", at(e, "/reason"), at(e, "/message")))
        .collect();
    let failed = messages
        .iter()
        .find(|m| m.starts_with(&format!("Failed: Failed to pull image \"{image}\"")))
        .unwrap_or_else(|| panic!("{messages:?}"));
    assert!(
        failed.contains("401") || failed.to_lowercase().contains("unauthorized"),
        "the registry refused the credentials: {failed}"
    );
    assert!(
        messages.iter().any(|m| m == "Failed: Error: ErrImagePull"),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m == &format!("BackOff: Back-off pulling image \"{image}\"")),
        "{messages:?}"
    );
}
