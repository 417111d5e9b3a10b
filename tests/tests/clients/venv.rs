//! The virtualenv the Python client checks run in: the clients installed once per
//! machine from PyPI (pinned in tests/clients/python/requirements.txt) under cargo's
//! target tmp dir (or `$KYBERN_PYTHON_CLIENTS`). Shared by the `clients` tests and the
//! `pods` tests (which include this file by path), so both use one virtualenv.

use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python")
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "{what}: could not start {:?}: {e} (install python3 and python3-venv)",
            cmd.get_program()
        )
    });
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The virtualenv's python, creating the virtualenv on first use. Test processes run in
/// parallel: each builds in its own staging dir and moves it into place with one rename.
pub(crate) fn python() -> PathBuf {
    let dir = std::env::var_os("KYBERN_PYTHON_CLIENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("kybern-python-clients"));
    let requirements = std::fs::read_to_string(scripts().join("requirements.txt")).unwrap();
    // A changed pin makes a new virtualenv.
    let venv = dir.join(format!("venv-{:016x}", fnv(requirements.as_bytes())));
    let python = venv.join("bin/python");
    if python.exists() {
        return python;
    }
    let staging = dir.join(format!("staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&dir).unwrap();
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&staging),
        "python3 -m venv",
    );
    run(
        Command::new(staging.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(scripts().join("requirements.txt")),
        "pip install -r tests/clients/python/requirements.txt",
    );
    if std::fs::rename(&staging, &venv).is_err() {
        // Another test process got there first.
        let _ = std::fs::remove_dir_all(&staging);
    }
    python
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}
