//! The project's test images, built from files on this machine so tests never pull:
//! busybox from Debian's busybox-static (`/bin/busybox`) and the test server
//! (images/testserver), compiled here with `rustc` as a static binary.

use std::path::{Path, PathBuf};

use super::oci::{ImageConfig, OciImage};
use super::tar::Tree;
use super::{Error, Result};

pub const BUSYBOX_IMAGE: &str = "kybern.local/busybox:latest";
pub const TESTSERVER_IMAGE: &str = "kybern.local/testserver:latest";
/// Where Debian's busybox-static installs its binary.
pub const DEBIAN_BUSYBOX: &str = "/bin/busybox";

/// Applets linked to /bin/busybox in the image: what test commands, probes and `kubectl
/// exec` sessions use.
const APPLETS: &[&str] = &[
    "cat", "cp", "date", "dd", "df", "echo", "env", "false", "grep", "head", "hostname", "id",
    "ip", "kill", "ln", "ls", "mkdir", "mount", "mv", "nc", "nslookup", "ping", "printenv", "ps",
    "pwd", "rm", "sed", "sh", "sleep", "stat", "stty", "tail", "tar", "tee", "test", "timeout",
    "top", "touch", "tr", "true", "tty", "uname", "usleep", "wc", "wget", "whoami", "yes",
];

/// The source of the test server, a single std-only file.
pub fn testserver_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/testserver/src/main.rs")
}

/// The common base: directories a container expects, users, and busybox with its applets.
fn base_tree(busybox: &[u8]) -> Tree {
    let mut t = Tree::new();
    for dir in ["bin", "dev", "etc", "proc", "root", "sys", "var"] {
        t.dir(dir, 0o755);
    }
    t.dir("tmp", 0o1777);
    t.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n".to_vec(),
    );
    t.file(
        "etc/group",
        0o644,
        b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
    );
    t.file("bin/busybox", 0o755, busybox.to_vec());
    for applet in APPLETS {
        t.symlink(&format!("bin/{applet}"), "busybox");
    }
    t
}

/// busybox: `sh` by default, PATH=/bin.
pub fn busybox_image(busybox: &[u8]) -> OciImage {
    OciImage {
        name: BUSYBOX_IMAGE.into(),
        config: ImageConfig {
            cmd: vec!["sh".into()],
            env: vec!["PATH=/bin".into()],
            working_dir: "/".into(),
            ..Default::default()
        },
        rootfs: base_tree(busybox),
    }
}

/// The test server on top of the busybox base (so exec probes and shells work in it too);
/// its entrypoint is `/testserver`, listening on $PORT (8080).
pub fn testserver_image(busybox: &[u8], testserver: &[u8]) -> OciImage {
    let mut rootfs = base_tree(busybox);
    rootfs.file("testserver", 0o755, testserver.to_vec());
    OciImage {
        name: TESTSERVER_IMAGE.into(),
        config: ImageConfig {
            entrypoint: vec!["/testserver".into()],
            env: vec!["PATH=/bin".into(), "PORT=8080".into()],
            working_dir: "/".into(),
            ..Default::default()
        },
        rootfs,
    }
}

/// Compiles the test server into `out_dir/testserver` as a static executable, so it runs
/// in an image without a C library. `rustc` is `$RUSTC` or the one on PATH; paths are
/// remapped so the binary does not depend on where the checkout lives.
pub fn build_testserver(out_dir: &Path) -> Result<PathBuf> {
    let source = testserver_source();
    let out = out_dir.join("testserver");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let src_dir = source
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let output = std::process::Command::new(&rustc)
        .args([
            "--edition",
            "2021",
            "-C",
            "opt-level=2",
            "-C",
            "strip=debuginfo",
            "-C",
            "target-feature=+crt-static",
        ])
        .arg(format!(
            "--remap-path-prefix={}=testserver",
            src_dir.display()
        ))
        .arg(&source)
        .arg("-o")
        .arg(&out)
        .output()
        .map_err(|e| Error::Build(format!("running {rustc}: {e}")))?;
    if !output.status.success() {
        return Err(Error::Build(
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ));
    }
    Ok(out)
}

/// Reads a file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        context: format!("reading {}", path.display()),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::oci::read_layout;
    use crate::images::tar::read_files;

    #[test]
    fn busybox_image_links_applets_to_the_busybox_binary() {
        let layout = read_layout(&busybox_image(b"fake busybox").to_layout_tar().unwrap()).unwrap();
        let img = &layout.images[0];
        assert_eq!(img.name, BUSYBOX_IMAGE);
        let layer = &layout.blobs[&img.layers[0].digest];
        assert_eq!(read_files(layer).unwrap()["bin/busybox"], b"fake busybox");
        // Symlinks are not regular files; find the sh entry's header by name and type.
        let sh = layer
            .chunks(512)
            .find(|h| h.starts_with(b"bin/sh\0"))
            .expect("bin/sh entry");
        assert_eq!((sh[156], &sh[157..164]), (b'2', &b"busybox"[..]));
    }

    #[test]
    fn testserver_image_runs_the_server_by_default() {
        let layout =
            read_layout(&testserver_image(b"bb", b"srv").to_layout_tar().unwrap()).unwrap();
        let img = &layout.images[0];
        assert_eq!(img.image_config.entrypoint, vec!["/testserver"]);
        assert_eq!(
            read_files(&layout.blobs[&img.layers[0].digest]).unwrap()["testserver"],
            b"srv"
        );
    }
}
