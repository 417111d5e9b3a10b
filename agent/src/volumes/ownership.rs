//! `securityContext.fsGroup`, applied as the kubelet's `SetVolumeOwnership` does: the
//! volume's files belong to the group, are group-readable (read-only volumes: configMap,
//! secret, downwardAPI, projected) or group-read-writable (emptyDir), and directories carry
//! the setgid bit so new files inherit the group. A secret with `defaultMode: 0400` and
//! `fsGroup: 2000` is thus `0440 root:2000`.

use std::fs;
use std::io;
use std::os::unix::fs::{lchown, PermissionsExt};
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

use super::atomic::Payload;

const READ_ONLY_MASK: u32 = 0o440;
const READ_WRITE_MASK: u32 = 0o660;
const DIR_MASK: u32 = 0o2110;

/// The pod's fsGroup as a gid.
pub(super) fn fs_group(pod: &Pod) -> Option<u32> {
    let gid = pod.spec.as_ref()?.security_context.as_ref()?.fs_group?;
    u32::try_from(gid).ok()
}

/// Adds the group-read bits to every file of a read-only payload up front, so the atomic
/// writer sees an unchanged payload as unchanged on the next refresh.
pub(super) fn group_readable(payload: &mut Payload) {
    for file in payload.values_mut() {
        file.mode |= READ_ONLY_MASK;
    }
}

/// Gives everything under `root` (symlinks themselves, not their targets) to `gid` and adds
/// the group bits; symlinks keep their mode, since chmod would follow them.
pub(super) fn chown_tree(root: &Path, gid: u32, readonly: bool) -> io::Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path)?;
        lchown(&path, None, Some(gid))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mut mask = if readonly {
            READ_ONLY_MASK
        } else {
            READ_WRITE_MASK
        };
        if meta.is_dir() {
            mask |= DIR_MASK;
            for entry in fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode | mask != mode {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode | mask))?;
        }
    }
    Ok(())
}

/// Only the volume's own directory: for an emptyDir, whose content belongs to the
/// containers and must not be rewritten on every refresh.
pub(super) fn chown_dir(dir: &Path, gid: u32) -> io::Result<()> {
    lchown(dir, None, Some(gid))?;
    let mode = fs::metadata(dir)?.permissions().mode() & 0o7777;
    fs::set_permissions(
        dir,
        fs::Permissions::from_mode(mode | READ_WRITE_MASK | DIR_MASK),
    )
}
