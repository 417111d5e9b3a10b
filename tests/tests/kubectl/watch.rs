//! `kubectl get -w`: a long-running watch that prints rows as objects appear.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::common::{Backend, ChildGuard};
use crate::{path_str, Cluster};

/// The next line, skipping rows of `kube-root-ca.crt`, which the serviceaccount loop
/// publishes (and may re-publish) in every namespace.
fn next_line(lines: &mpsc::Receiver<String>, what: &str) -> String {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("kubectl get -w printed no {what} within 20s"));
        if !line.starts_with("kube-root-ca.crt ") {
            return line;
        }
    }
}

#[tokio::test]
async fn kubectl_get_watch_prints_a_row_for_an_object_created_later() {
    let c = Cluster::start(Backend::Embedded).await;
    let k = c.kubectl();
    let first = c.manifest(
        "first.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\n",
    );
    k.run(&["create", "-f", path_str(&first)]);

    let mut child = k
        .command()
        .args(["get", "configmaps", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _watching = ChildGuard(child);
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let header = next_line(&lines, "header");
    assert!(
        header.starts_with("NAME") && header.contains("DATA"),
        "{header}"
    );
    assert!(next_line(&lines, "first row").starts_with("first "));

    let later = c.manifest(
        "later.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: later}\ndata: {k: v}\n",
    );
    k.run(&["create", "-f", path_str(&later)]);
    let row = next_line(&lines, "row for the new object");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[..2], ["later", "1"], "{row}");
}
