//! The test images are reproducible: building them again from the same inputs on this
//! machine gives byte-identical layout archives, hence the same image digests (what lets a
//! registry or containerd skip re-importing them). Needs rustc and Debian's busybox-static.

use std::path::Path;

use agent::images::oci::read_layout;
use agent::images::test_images::{self, DEBIAN_BUSYBOX};

fn manifest_digest(layout_tar: &[u8]) -> String {
    read_layout(layout_tar).expect("layout").images[0]
        .manifest
        .digest
        .clone()
}

#[test]
fn test_images_built_twice_have_the_same_digests() {
    let busybox = test_images::read(Path::new(DEBIAN_BUSYBOX)).expect("install busybox-static");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server_a = test_images::read(&test_images::build_testserver(a.path()).unwrap()).unwrap();
    let server_b = test_images::read(&test_images::build_testserver(b.path()).unwrap()).unwrap();
    assert!(
        server_a == server_b,
        "the test server compiles to the same bytes in another dir"
    );

    let first = test_images::testserver_image(&busybox, &server_a)
        .to_layout_tar()
        .unwrap();
    let second = test_images::testserver_image(&busybox, &server_b)
        .to_layout_tar()
        .unwrap();
    assert_eq!(manifest_digest(&first), manifest_digest(&second));

    let bb1 = test_images::busybox_image(&busybox)
        .to_layout_tar()
        .unwrap();
    let bb2 = test_images::busybox_image(&busybox)
        .to_layout_tar()
        .unwrap();
    assert_eq!(manifest_digest(&bb1), manifest_digest(&bb2));
    assert_ne!(
        manifest_digest(&bb1),
        manifest_digest(&first),
        "different images, different digests"
    );
}

#[test]
fn test_server_binary_is_static() {
    let dir = tempfile::tempdir().unwrap();
    let bin = test_images::read(&test_images::build_testserver(dir.path()).unwrap()).unwrap();
    // A dynamically linked ELF names its loader in a PT_INTERP segment; a static one has
    // none, so it runs in an image without a C library.
    assert_eq!(&bin[..4], b"\x7fELF");
    let interp = b"/lib64/ld-linux-x86-64.so.2";
    assert!(
        !bin.windows(interp.len()).any(|w| w == interp),
        "the test server must not need the dynamic loader"
    );
}
