//! The real `kybern` binary raises its open-file soft limit to the hard limit at start, as
//! Go does for kube-apiserver, so a server started from a shell with the usual soft limit
//! can hold more connections than that limit.

use std::process::Command;

use crate::common::{kybern_binary, Binary};

/// The (soft, hard) "Max open files" of a process, as /proc/<pid>/limits shows them.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .unwrap_or_else(|| panic!("no open-file limit in:\n{limits}"));
    let mut fields = line.split_whitespace();
    let (soft, hard) = (fields.next().unwrap(), fields.next().unwrap());
    (soft.to_string(), hard.to_string())
}

#[test]
fn the_server_raises_its_open_file_soft_limit_to_the_hard_limit() {
    let (_, hard) = open_file_limits(std::process::id());
    let low = hard.parse::<u64>().map_or(512, |h| (h / 2).min(512));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Started from a shell that lowered the soft limit, as a login shell's 1024 is.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -Sn {low} && exec \"$0\" \"$@\""))
        .arg(kybern_binary())
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--disable",
            "controllers",
            "--data-dir",
        ])
        .arg(&data);
    let server = Binary::spawn(cmd, &data);
    let (soft, hard_now) = open_file_limits(server.pid());
    assert_eq!(hard_now, hard, "the hard limit is left as it was");
    assert_eq!(soft, hard, "the soft limit was started at {low}");
}
