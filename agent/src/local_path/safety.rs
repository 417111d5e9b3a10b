//! Which folder a deleted local-path volume may take with it: only a path strictly below
//! the configured root, with no `..` and no symbolic link anywhere below the root, so a
//! volume object can never make the agent remove anything else on the host.

use std::io;
use std::path::{Component, Path, PathBuf};

/// Why a volume's folder is left alone (the message of a `VolumeFailedDelete` event).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("path {0:?} is not absolute")]
    NotAbsolute(PathBuf),
    #[error("path {0:?} contains \"..\"")]
    ParentComponent(PathBuf),
    #[error("path {path:?} is not inside the local-path root {root:?}")]
    Outside { path: PathBuf, root: PathBuf },
    #[error("path {0:?} is the local-path root itself")]
    IsRoot(PathBuf),
    #[error("{0:?} is a symbolic link")]
    Symlink(PathBuf),
    #[error("checking {path:?}: {message}")]
    Io { path: PathBuf, message: String },
}

/// The folder to remove for a volume at `path`, or `None` when nothing is there (never
/// made, or removed before). Every component below `root` is looked at without
/// following links; one that is a link refuses the whole path.
pub fn folder_to_remove(root: &Path, path: &Path) -> Result<Option<PathBuf>, Refusal> {
    if !path.is_absolute() || !root.is_absolute() {
        return Err(Refusal::NotAbsolute(path.to_path_buf()));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(Refusal::ParentComponent(path.to_path_buf()));
    }
    // Component-wise: `/srv/storage-old` is not below `/srv/storage`.
    let below = path.strip_prefix(root).map_err(|_| Refusal::Outside {
        path: path.to_path_buf(),
        root: root.to_path_buf(),
    })?;
    if below.as_os_str().is_empty() {
        return Err(Refusal::IsRoot(path.to_path_buf()));
    }
    let mut current = root.to_path_buf();
    for component in below.components() {
        current.push(component);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => return Err(Refusal::Symlink(current)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Refusal::Io {
                    path: current,
                    message: e.to_string(),
                })
            }
        }
    }
    Ok(Some(current))
}

/// Removes what [`folder_to_remove`] chose. `remove_dir_all` unlinks symbolic links
/// inside the folder instead of following them.
pub fn remove(folder: &Path) -> io::Result<()> {
    let result = match std::fs::symlink_metadata(folder)? {
        m if m.is_dir() => std::fs::remove_dir_all(folder),
        _ => std::fs::remove_file(folder),
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row: its name, the volume's path, and the folder chosen or words of the refusal.
    type Row = (&'static str, PathBuf, Result<Option<PathBuf>, &'static str>);

    #[test]
    fn which_paths_a_deleted_volume_may_remove() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("storage");
        let outside = dir.path().join("precious");
        std::fs::create_dir_all(root.join("pvc-1_ns_data/sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::create_dir_all(dir.path().join("storage-old/pvc-2")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("pvc-3_ns_link")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("linkdir")).unwrap();
        let cases: [Row; 9] = [
            (
                "a folder inside the root",
                root.join("pvc-1_ns_data"),
                Ok(Some(root.join("pvc-1_ns_data"))),
            ),
            (
                "a trailing slash",
                PathBuf::from(format!("{}/pvc-1_ns_data/", root.display())),
                Ok(Some(root.join("pvc-1_ns_data"))),
            ),
            ("a folder not made yet", root.join("pvc-9_ns_new"), Ok(None)),
            ("the root itself", root.clone(), Err("root itself")),
            (
                "a .. escape",
                root.join("pvc-1_ns_data/../../precious"),
                Err("contains \"..\""),
            ),
            (
                "a sibling sharing the root's prefix",
                dir.path().join("storage-old/pvc-2"),
                Err("not inside"),
            ),
            (
                "a symlink out of the root",
                root.join("pvc-3_ns_link"),
                Err("symbolic link"),
            ),
            (
                "a path through a symlink",
                root.join("linkdir/pvc-4"),
                Err("symbolic link"),
            ),
            (
                "a relative path",
                PathBuf::from("storage/pvc-1"),
                Err("not absolute"),
            ),
        ];
        for (name, path, want) in cases {
            let got = folder_to_remove(&root, &path);
            match want {
                Ok(want) => assert_eq!(got, Ok(want), "{name}"),
                Err(words) => assert!(
                    got.as_ref().is_err_and(|e| e.to_string().contains(words)),
                    "{name}: {got:?}"
                ),
            }
        }
        assert!(outside.exists(), "nothing outside the root was touched");
    }

    #[test]
    fn removing_a_folder_leaves_what_its_links_point_at() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("pvc-1");
        let outside = dir.path().join("precious");
        std::fs::create_dir_all(folder.join("a")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, folder.join("a/out")).unwrap();
        remove(&folder).unwrap();
        assert!(!folder.exists());
        assert!(outside.join("keep").exists());
    }
}
