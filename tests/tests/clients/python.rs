//! The Python clients, installed once per machine from PyPI (pinned in
//! tests/clients/python/requirements.txt) into a virtualenv under cargo's target tmp dir
//! (or `$KYBERN_PYTHON_CLIENTS`), each check a function of a script in tests/clients/python
//! run against a fresh server.

use std::process::Command;

use kybern_testkit::Binary;

use crate::venv::{python, scripts};

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
