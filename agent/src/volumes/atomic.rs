//! Writes a volume's files the way the kubelet's AtomicWriter does, so a refresh swaps all
//! of them at once and a reader that has a file open keeps its old content:
//!
//! ```text
//! <dir>/..2026_11_23_08_30_00.1234567/   the files of one version (0755)
//! <dir>/..data -> ..2026_11_23_08_30_00.1234567
//! <dir>/<key>  -> ..data/<key>           one link per top-level name of the payload
//! ```
//!
//! A new version is written into a fresh timestamped directory, `..data` is replaced by a
//! rename (atomic), then links for new names are added, links for vanished names removed
//! and the old directory deleted.

use std::collections::BTreeMap;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Relative path → file.
pub type Payload = BTreeMap<String, FileProjection>;

/// Checks a payload path as upstream does: relative, not too long, no `..` element and not
/// starting with `..` (those names are the writer's own).
pub fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("invalid path: must not be empty".into());
    }
    if path.len() > 4096 {
        return Err(format!(
            "invalid path: must be less than or equal to 4096 characters: {path}"
        ));
    }
    if Path::new(path).is_absolute() {
        return Err(format!("invalid path: must be relative path: {path}"));
    }
    if path.split('/').any(|part| part == "..") {
        return Err(format!("invalid path: must not contain '..': {path}"));
    }
    if path.starts_with("..") {
        return Err(format!("invalid path: must not start with '..': {path}"));
    }
    Ok(())
}

/// Writes `payload` into `dir` (created if missing). Returns whether anything changed.
pub fn write(dir: &Path, payload: &Payload) -> io::Result<bool> {
    for path in payload.keys() {
        validate_path(path).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    }
    fs::create_dir_all(dir)?;
    let old_version = fs::read_link(dir.join(DATA_DIR)).ok();
    let old_files = match &old_version {
        Some(version) => read_tree(&dir.join(version))?,
        None => Payload::new(),
    };
    let unchanged = old_version.is_some() && old_files == *payload;
    if !unchanged {
        let version = new_version_dir(dir)?;
        for (path, file) in payload {
            let target = dir.join(&version).join(path);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(file.mode)
                .open(&target)
                .and_then(|mut f| io::Write::write_all(&mut f, &file.data))?;
            // The umask may have taken bits off the requested mode.
            fs::set_permissions(&target, fs::Permissions::from_mode(file.mode))?;
        }
        let tmp = dir.join(DATA_DIR_TMP);
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        symlink(&version, &tmp)?;
        fs::rename(&tmp, dir.join(DATA_DIR))?;
    }
    let wanted: std::collections::BTreeSet<String> = payload.keys().map(|p| top_level(p)).collect();
    for name in &wanted {
        let link = dir.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_DIR).join(name), &link)?;
        }
    }
    for name in old_files.keys().map(|p| top_level(p)) {
        if !wanted.contains(&name) {
            remove_if_present(&dir.join(&name))?;
        }
    }
    if !unchanged {
        if let Some(old) = old_version {
            remove_if_present(&dir.join(old))?;
        }
    }
    Ok(!unchanged)
}

fn top_level(path: &str) -> String {
    path.split('/')
        .find(|p| !p.is_empty() && *p != ".")
        .unwrap_or(path)
        .to_string()
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Creates `..<UTC timestamp>.<random>` (0755) in `dir` and returns its name.
fn new_version_dir(dir: &Path) -> io::Result<PathBuf> {
    let stamp = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y_%m_%d_%H_%M_%S")
        .to_string();
    loop {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let name = PathBuf::from(format!("..{stamp}.{}", random % 10_000_000_000));
        match fs::create_dir(dir.join(&name)) {
            Ok(()) => {
                fs::set_permissions(dir.join(&name), fs::Permissions::from_mode(0o755))?;
                return Ok(name);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The files under `root` (recursively) with their content and mode bits.
fn read_tree(root: &Path) -> io::Result<Payload> {
    let mut out = Payload::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                let rel = entry.path();
                let rel = rel.strip_prefix(root).unwrap_or(&rel);
                let rel: Vec<_> = rel
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(s) => s.to_str(),
                        _ => None,
                    })
                    .collect();
                out.insert(
                    rel.join("/"),
                    FileProjection {
                        data: fs::read(entry.path())?,
                        mode: meta.permissions().mode() & 0o7777,
                    },
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn temp_dir(name: &str) -> PathBuf {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let dir = std::env::temp_dir().join(format!("kybern-atomic-{name}-{random}"));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn lays_out_versions_links_and_modes_like_the_kubelet() {
        let dir = temp_dir("layout");
        let payload = Payload::from([
            ("app.conf".to_string(), file("a=1", 0o644)),
            ("nested/deep/key".to_string(), file("deep", 0o400)),
        ]);
        assert!(
            write(&dir, &payload).unwrap(),
            "first write changes something"
        );
        let listing = names(&dir);
        assert_eq!(
            listing.len(),
            4,
            "one version dir, ..data and two links: {listing:?}"
        );
        assert!(
            listing[0].starts_with("..20"),
            "a timestamped version dir: {listing:?}"
        );
        assert_eq!(&listing[1..], ["..data", "app.conf", "nested"]);
        assert_eq!(
            fs::read_link(dir.join("..data")).unwrap(),
            PathBuf::from(&listing[0])
        );
        assert_eq!(
            fs::read_link(dir.join("app.conf")).unwrap(),
            PathBuf::from("..data/app.conf")
        );
        assert_eq!(
            fs::read_to_string(dir.join("nested/deep/key")).unwrap(),
            "deep"
        );
        let mode = |p: &str| fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("app.conf"), 0o644);
        assert_eq!(mode("nested/deep/key"), 0o400);
        assert_eq!(mode(&listing[0]), 0o755);

        assert!(
            !write(&dir, &payload).unwrap(),
            "the same payload again changes nothing"
        );
        assert_eq!(
            names(&dir),
            listing,
            "an unchanged payload keeps its version dir"
        );

        let updated = Payload::from([("app.conf".to_string(), file("a=2", 0o644))]);
        // A reader that opened the old file keeps reading the old content.
        let open = fs::read_to_string(dir.join("app.conf")).unwrap();
        assert!(write(&dir, &updated).unwrap());
        assert_eq!(open, "a=1");
        assert_eq!(fs::read_to_string(dir.join("app.conf")).unwrap(), "a=2");
        let after = names(&dir);
        assert_eq!(
            after.len(),
            3,
            "the old version and the vanished link are gone: {after:?}"
        );
        assert_ne!(after[0], listing[0], "a new version dir");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn validates_payload_paths_as_upstream() {
        let cases = [
            ("plain", "key", true),
            ("nested", "a/b/c", true),
            ("dots inside a name", "a..b", true),
            ("empty", "", false),
            ("absolute", "/etc/passwd", false),
            ("backstep", "a/../b", false),
            ("leading backstep", "../x", false),
            ("writer's own names", "..data", false),
            ("too long", &"x".repeat(4097), false),
        ];
        for (name, path, ok) in cases {
            assert_eq!(validate_path(path).is_ok(), ok, "{name}: {path}");
        }
    }
}
