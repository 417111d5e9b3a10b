//! `kybern secrets-encrypt` as an operator runs it: prepare while the server runs, the
//! rest refused until it stops, then status and rotate on the stopped data dir, and the
//! Secret still readable by kubectl.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{kybern_binary, Backend};
use crate::Cluster;

fn secrets_encrypt(verb: &str, data_dir: &Path) -> Output {
    Command::new(kybern_binary())
        .args(["secrets-encrypt", verb, "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("running kybern secrets-encrypt")
}

fn stdout(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The key `status` says writes Secrets.
fn active_key(status: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix("active key for secrets: "))
        .unwrap_or_else(|| panic!("no active key in {status}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_encrypt_refuses_a_running_server_and_rotates_the_key_of_a_stopped_one() {
    let mut c = Cluster::start(Backend::Embedded).await;
    c.kubectl().run(&[
        "create",
        "secret",
        "generic",
        "s",
        "--from-literal=password=rotate-me",
    ]);
    let server = c.server.take().unwrap();
    let (data_dir, port) = (server.data_dir.clone(), server.port);

    let refused = secrets_encrypt("status", &data_dir);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("the server is running on") && stderr.contains("stop"),
        "{stderr}"
    );

    let prepared = stdout("prepare", &secrets_encrypt("prepare", &data_dir));
    assert!(
        prepared.contains("prepared key \"prepared-aesgcm-"),
        "{prepared}"
    );

    server.kill();
    let before = stdout("status", &secrets_encrypt("status", &data_dir));
    assert!(before.contains("keys for secrets: aesgcm-"), "{before}");
    assert!(before.contains(", prepared-aesgcm-"), "{before}");
    let old = active_key(&before);
    assert!(old.starts_with("aesgcm key \"aesgcm-"), "{before}");
    assert!(before.contains(&format!("  {old}: ")), "{before}");

    let rotated = stdout("rotate", &secrets_encrypt("rotate", &data_dir));
    assert!(rotated.contains("re-encrypted "), "progress: {rotated}");
    assert!(rotated.contains(" 0 unreadable"), "{rotated}");
    let after = stdout("status", &secrets_encrypt("status", &data_dir));
    let new = active_key(&after);
    assert_ne!(new, old, "{after}");
    assert!(
        !after.contains("prepared-"),
        "the prepared key was promoted: {after}"
    );
    let counts: Vec<&str> = after.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(counts.len(), 1, "only the new key holds records: {after}");
    assert!(counts[0].starts_with(&format!("  {new}: ")), "{after}");

    c.server = Some(crate::common::Binary::start(&data_dir, port, None));
    let password = c
        .kubectl()
        .run(&["get", "secret", "s", "-o", "jsonpath={.data.password}"]);
    assert_eq!(password.trim(), "cm90YXRlLW1l", "base64 of rotate-me");
}
