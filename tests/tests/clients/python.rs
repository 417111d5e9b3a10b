//! The Python clients, installed once per machine from PyPI (pinned in
//! tests/clients/python/requirements.txt) into a virtualenv under cargo's target tmp dir
//! (or `$KYBERN_PYTHON_CLIENTS`), each check a function of a script in tests/clients/python
//! run against a fresh server.

use std::path::{Path, PathBuf};
use std::process::Command;

use kybern_testkit::Binary;

fn scripts() -> PathBuf {
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
fn python() -> PathBuf {
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

/// Runs `check` of `script` against a fresh server and asserts it passed.
fn check(script: &str, check: &str) {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let server = Binary::start(&dir.path().join("data"), 0, None);
    let out = Command::new(&python)
        .arg(scripts().join(script))
        .arg(&server.kubeconfig)
        .arg(check)
        .output()
        .expect("running the virtualenv's python");
    assert!(
        out.status.success(),
        "{script} {check} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_python_clients_typed_deletes_return_the_deleted_object() {
    check(
        "kubernetes_client.py",
        "typed_deletes_return_the_deleted_object",
    );
}

#[test]
fn the_python_client_sees_upstreams_status_on_a_created_service() {
    check(
        "kubernetes_client.py",
        "created_services_carry_upstreams_status",
    );
}

#[test]
fn the_python_client_gets_error_bodies_byte_identical_to_upstreams() {
    check(
        "kubernetes_client.py",
        "error_bodies_are_byte_identical_to_upstreams",
    );
}

#[test]
fn the_python_client_reads_objects_kind_first_without_empty_fields() {
    check(
        "kubernetes_client.py",
        "objects_read_back_with_kind_first_and_no_empty_fields",
    );
}

#[test]
fn lightkube_round_trips_services_through_its_typed_models() {
    check(
        "lightkube_client.py",
        "services_round_trip_through_typed_models",
    );
}

#[test]
fn lightkube_server_side_apply_and_watch_see_the_same_object() {
    check(
        "lightkube_client.py",
        "server_side_apply_and_watch_see_the_same_object",
    );
}
