//! The host mounts volumes need (tmpfs for `emptyDir.medium: Memory`), made and undone with
//! mount(8) and umount(8) since the workspace forbids the unsafe syscall, and found again
//! through /proc/self/mountinfo.

use std::io;
use std::path::{Path, PathBuf};

/// Mounts a tmpfs on `dir` unless something is mounted there already. `size_bytes` becomes
/// `size=`; without it the kernel's default (half of RAM) applies.
pub(super) async fn mount_tmpfs(dir: &Path, size_bytes: Option<i128>) -> io::Result<()> {
    let dir = &dir.canonicalize()?;
    if mount_points()?.iter().any(|m| m == dir) {
        return Ok(());
    }
    let mut cmd = tokio::process::Command::new("mount");
    cmd.args(["-t", "tmpfs"]);
    if let Some(size) = size_bytes {
        cmd.arg("-o").arg(format!("size={size}"));
    }
    cmd.arg("tmpfs").arg(dir);
    run(cmd, "mount").await
}

/// Unmounts `dir`.
pub(super) async fn unmount(dir: &Path) -> io::Result<()> {
    let mut cmd = tokio::process::Command::new("umount");
    cmd.arg(dir);
    run(cmd, "umount").await
}

async fn run(mut cmd: tokio::process::Command, what: &str) -> io::Result<()> {
    let out = cmd.output().await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Every mount point of this mount namespace.
pub(super) fn mount_points() -> io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect())
}

/// Mount points at or below `root`, deepest first (the order to unmount them in).
pub(super) fn mounts_under(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = mount_points()?
        .into_iter()
        .filter(|p| p.starts_with(root))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    Ok(found)
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let code =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn unescapes_mountinfo_paths() {
        let cases = [
            ("plain", "/var/lib/x", "/var/lib/x"),
            ("space", "/a\\040b", "/a b"),
            ("backslash", "/a\\134b", "/a\\b"),
            ("escape at the end", "/a\\011", "/a\t"),
            ("lone backslash", "/a\\b", "/a\\b"),
        ];
        for (name, input, want) in cases {
            assert_eq!(super::unescape(input), want, "{name}");
        }
    }
}
