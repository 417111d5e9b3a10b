//! The test images every end-to-end test binary imports into its nodes: busybox and the
//! project's test server, built once per test binary as OCI layouts. (Also compiled into
//! the services tests through `#[path]`.)

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tempfile::TempDir;

/// Test images built once per test binary: busybox and the test server, as OCI layouts.
pub(crate) fn image_tars() -> &'static (PathBuf, PathBuf) {
    static TARS: OnceLock<(TempDir, PathBuf, PathBuf)> = OnceLock::new();
    let (_, busybox, server) = TARS.get_or_init(|| {
        use agent::images::test_images;
        let dir = tempfile::tempdir().unwrap();
        let busybox_bin = test_images::read(Path::new(test_images::DEBIAN_BUSYBOX))
            .expect("busybox-static (scripts/install-deps.sh)");
        let server_bin =
            test_images::build_testserver(dir.path()).expect("building the test server");
        let server_bin = test_images::read(&server_bin).unwrap();
        let busybox = dir.path().join("busybox.tar");
        std::fs::write(
            &busybox,
            test_images::busybox_image(&busybox_bin)
                .to_layout_tar()
                .unwrap(),
        )
        .unwrap();
        let server = dir.path().join("testserver.tar");
        std::fs::write(
            &server,
            test_images::testserver_image(&busybox_bin, &server_bin)
                .to_layout_tar()
                .unwrap(),
        )
        .unwrap();
        (dir, busybox, server)
    });
    static PATHS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    PATHS.get_or_init(|| (busybox.clone(), server.clone()))
}

/// The test nodes share this host's disk with build output, which can leave less than
/// the kubelet's 10% free: they keep 1%, so a full target dir does not give them
/// DiskPressure (and its NoSchedule taint).
pub const TEST_EVICTION: &str = "memory.available<100Mi,nodefs.available<1%";

pub const BUSYBOX: &str = agent::images::test_images::BUSYBOX_IMAGE;
pub const TESTSERVER: &str = agent::images::test_images::TESTSERVER_IMAGE;
