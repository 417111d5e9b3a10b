//! hostPath volumes (with the `type` checks of the kubelet's host_path plugin) and
//! persistentVolumeClaims bound to hostPath or local PersistentVolumes on this node.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Api;

use super::objects::api_message;
use super::VolumeHost;

/// Checks (or creates) `path` as hostPath `type` asks. Errors are upstream's words.
pub(super) fn check_type(path: &Path, kind: Option<&str>) -> Result<(), String> {
    let shown = path.display();
    let meta = fs::metadata(path);
    let exists = meta.is_ok();
    let file_type = meta.as_ref().ok().map(|m| m.file_type());
    let is = |check: fn(&fs::FileType) -> bool| file_type.as_ref().is_some_and(check);
    match kind.unwrap_or_default() {
        "" => Ok(()),
        "DirectoryOrCreate" if !exists => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(path)
            .map_err(|e| format!("hostPath type check failed: could not create {shown}: {e}")),
        "DirectoryOrCreate" | "Directory" if !is(fs::FileType::is_dir) => Err(format!(
            "hostPath type check failed: {shown} is not a directory"
        )),
        "DirectoryOrCreate" | "Directory" => Ok(()),
        "FileOrCreate" if !exists => fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map(drop)
            .map_err(|e| format!("hostPath type check failed: could not create {shown}: {e}")),
        "FileOrCreate" | "File" if !is(fs::FileType::is_file) => {
            Err(format!("hostPath type check failed: {shown} is not a file"))
        }
        "FileOrCreate" | "File" => Ok(()),
        "Socket" if !is(FileTypeExt::is_socket) => Err(format!(
            "hostPath type check failed: {shown} is not a socket file"
        )),
        "CharDevice" if !is(FileTypeExt::is_char_device) => Err(format!(
            "hostPath type check failed: {shown} is not a character device"
        )),
        "BlockDevice" if !is(FileTypeExt::is_block_device) => Err(format!(
            "hostPath type check failed: {shown} is not a block device"
        )),
        "Socket" | "CharDevice" | "BlockDevice" => Ok(()),
        other => Err(format!("{other} is an invalid volume type")),
    }
}

/// A hostPath with no `type` that does not exist becomes an empty directory (0755), as the
/// CRI runtimes (containerd, Docker) create a missing bind-mount source; the agent builds
/// the OCI spec itself, so it does that step here.
pub(super) fn check_and_prepare(path: &Path, kind: Option<&str>) -> Result<(), String> {
    check_type(path, kind)?;
    if kind.unwrap_or_default().is_empty() && fs::symlink_metadata(path).is_err() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(path)
            .map_err(|e| format!("creating hostPath {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The host path a claim's PersistentVolume puts at the pod's disposal. The claim must be
/// Bound, its volume must name it, and it must be a hostPath or local volume.
pub(super) async fn claim_path(
    host: &VolumeHost,
    namespace: &str,
    claim: &str,
) -> Result<PathBuf, String> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(host.client.clone(), namespace);
    let pvc = claims
        .get_opt(claim)
        .await
        .map_err(|e| {
            format!(
                "failed to get persistentvolumeclaim {namespace}/{claim}: {}",
                api_message(&e)
            )
        })?
        .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
    let phase = pvc
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default();
    let volume_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or_default();
    if phase != "Bound" || volume_name.is_empty() {
        return Err(format!("persistentvolumeclaim \"{claim}\" is not bound"));
    }
    let volumes: Api<PersistentVolume> = Api::all(host.client.clone());
    let pv = volumes
        .get_opt(volume_name)
        .await
        .map_err(|e| {
            format!(
                "failed to get persistentvolume {volume_name}: {}",
                api_message(&e)
            )
        })?
        .ok_or_else(|| format!("persistentvolume \"{volume_name}\" not found"))?;
    let spec = pv.spec.unwrap_or_default();
    let claim_uid = spec.claim_ref.as_ref().and_then(|r| r.uid.as_deref());
    if claim_uid.is_some_and(|uid| Some(uid) != pvc.metadata.uid.as_deref()) {
        return Err(format!(
            "persistentvolume \"{volume_name}\" is bound to a different claim than \"{claim}\""
        ));
    }
    if let Some(hp) = spec.host_path {
        let path = PathBuf::from(&hp.path);
        check_and_prepare(&path, hp.type_.as_deref())?;
        return Ok(path);
    }
    if let Some(local) = spec.local {
        let path = PathBuf::from(&local.path);
        return match fs::metadata(&path) {
            Ok(_) => Ok(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
                "local volume path {} of persistentvolume \"{volume_name}\" does not exist",
                local.path
            )),
            Err(e) => Err(format!("local volume path {}: {e}", local.path)),
        };
    }
    Err(format!(
        "persistentvolume \"{volume_name}\" has a volume source this node cannot mount (only hostPath and local are supported)"
    ))
}

#[cfg(test)]
mod tests {
    use super::check_type;
    use std::path::Path;

    #[test]
    fn checks_host_path_types_as_upstream() {
        let dir = std::env::temp_dir().join(format!("kybern-hostpath-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("file");
        std::fs::write(&file, "x").unwrap();
        let missing = dir.join("missing");
        let d = dir.display();
        let f = file.display();
        type Case<'a> = (&'a str, &'a Path, Option<&'a str>, Result<(), String>);
        let cases: [Case<'_>; 12] = [
            ("no type, anything goes", &missing, None, Ok(())),
            ("empty type", &missing, Some(""), Ok(())),
            ("directory", &dir, Some("Directory"), Ok(())),
            (
                "file is not a directory",
                &file,
                Some("Directory"),
                Err(format!(
                    "hostPath type check failed: {f} is not a directory"
                )),
            ),
            ("file", &file, Some("File"), Ok(())),
            (
                "directory is not a file",
                &dir,
                Some("File"),
                Err(format!("hostPath type check failed: {d} is not a file")),
            ),
            (
                "missing is not a file",
                &missing,
                Some("File"),
                Err(format!(
                    "hostPath type check failed: {} is not a file",
                    missing.display()
                )),
            ),
            (
                "existing file for DirectoryOrCreate",
                &file,
                Some("DirectoryOrCreate"),
                Err(format!(
                    "hostPath type check failed: {f} is not a directory"
                )),
            ),
            (
                "dev/null is a character device",
                Path::new("/dev/null"),
                Some("CharDevice"),
                Ok(()),
            ),
            (
                "a file is no socket",
                &file,
                Some("Socket"),
                Err(format!(
                    "hostPath type check failed: {f} is not a socket file"
                )),
            ),
            (
                "a file is no block device",
                &file,
                Some("BlockDevice"),
                Err(format!(
                    "hostPath type check failed: {f} is not a block device"
                )),
            ),
            (
                "unknown type",
                &file,
                Some("Pipe"),
                Err("Pipe is an invalid volume type".to_string()),
            ),
        ];
        for (name, path, kind, want) in cases {
            assert_eq!(check_type(path, kind), want, "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
