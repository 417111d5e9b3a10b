//! A deterministic ustar writer and a small reader, enough for image layers and OCI image
//! layout archives. Every entry gets mtime 0, uid/gid 0 and no user/group names, and entries
//! are written sorted by path, so the same files always give the same bytes (and digest).

use std::collections::BTreeMap;

use super::{Error, Result};

const BLOCK: usize = 512;

/// One entry of an archive, keyed by its path (relative, no leading `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File { mode: u32, data: Vec<u8> },
    Dir { mode: u32 },
    Symlink { target: String },
}

/// Files to archive: a sorted map from path to entry, so insertion order never matters.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
}

impl Tree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.entries.insert(clean(path), Entry::Dir { mode });
        self
    }

    pub fn file(&mut self, path: &str, mode: u32, data: impl Into<Vec<u8>>) -> &mut Self {
        self.entries.insert(
            clean(path),
            Entry::File {
                mode,
                data: data.into(),
            },
        );
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.entries.insert(
            clean(path),
            Entry::Symlink {
                target: target.to_string(),
            },
        );
        self
    }

    /// The archive: headers and data blocks in path order, then two zero blocks.
    pub fn to_tar(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for (path, entry) in &self.entries {
            let (name, kind, mode, size, link) = match entry {
                Entry::File { mode, data } => (path.clone(), b'0', *mode, data.len(), ""),
                Entry::Dir { mode } => (format!("{path}/"), b'5', *mode, 0, ""),
                Entry::Symlink { target } => (path.clone(), b'2', 0o777, 0, target.as_str()),
            };
            out.extend_from_slice(&header(&name, kind, mode, size as u64, link)?);
            if let Entry::File { data, .. } = entry {
                out.extend_from_slice(data);
                out.resize(out.len().next_multiple_of(BLOCK), 0);
            }
        }
        out.resize(out.len() + 2 * BLOCK, 0);
        Ok(out)
    }
}

fn clean(path: &str) -> String {
    path.trim_matches('/').to_string()
}

fn header(name: &str, kind: u8, mode: u32, size: u64, link: &str) -> Result<[u8; BLOCK]> {
    let mut h = [0u8; BLOCK];
    // Names up to 100 bytes go in `name`; longer ones are split at a `/` into prefix (155)
    // and name (100), as ustar defines.
    let (prefix, short) = if name.len() <= 100 {
        ("", name)
    } else {
        let split = name[..name.len().min(156)]
            .rfind('/')
            .filter(|&i| name.len() - i - 1 <= 100 && i > 0)
            .ok_or_else(|| Error::Tar(format!("path too long for ustar: {name}")))?;
        (&name[..split], &name[split + 1..])
    };
    if link.len() > 100 {
        return Err(Error::Tar(format!(
            "symlink target too long for ustar: {link}"
        )));
    }
    h[..short.len()].copy_from_slice(short.as_bytes());
    octal(&mut h[100..108], mode as u64);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 0);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    // The checksum is the byte sum of the header with the checksum field read as spaces.
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    octal(&mut h[148..155], sum);
    Ok(h)
}

/// Zero-padded octal digits filling all but the last byte of the field, which stays NUL.
fn octal(field: &mut [u8], value: u64) {
    let digits = format!("{value:0width$o}", width = field.len() - 1);
    field[..digits.len()].copy_from_slice(digits.as_bytes());
    field[digits.len()] = 0;
}

/// The regular files of an archive, by path (without a leading `./` or `/`). Directories and
/// links are skipped: this reads OCI layout archives, which only need their files. GNU long
/// names and pax headers are not supported.
pub fn read_files(archive: &[u8]) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let mut at = 0;
    while at + BLOCK <= archive.len() {
        let h = &archive[at..at + BLOCK];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let name = field_str(&h[..100]);
        let prefix = if &h[257..262] == b"ustar" {
            field_str(&h[345..500])
        } else {
            String::new()
        };
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let size = parse_octal(&h[124..136])
            .ok_or_else(|| Error::Tar(format!("bad size in header of {path}")))?;
        let data_start = at + BLOCK;
        let data_end = data_start + size as usize;
        if data_end > archive.len() {
            return Err(Error::Tar(format!(
                "{path} runs past the end of the archive"
            )));
        }
        if matches!(h[156], b'0' | 0 | b'7') {
            let key = path
                .trim_start_matches("./")
                .trim_start_matches('/')
                .to_string();
            files.insert(key, archive[data_start..data_end].to_vec());
        }
        at = data_start + (size as usize).next_multiple_of(BLOCK);
    }
    Ok(files)
}

fn field_str(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let text = field_str(field);
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_files_in_any_insertion_order_give_identical_archives() {
        let mut a = Tree::new();
        a.dir("bin", 0o755)
            .file("bin/busybox", 0o755, b"elf".to_vec())
            .symlink("bin/sh", "busybox");
        let mut b = Tree::new();
        b.symlink("/bin/sh", "busybox")
            .file("/bin/busybox", 0o755, b"elf".to_vec())
            .dir("/bin/", 0o755);
        assert_eq!(a.to_tar().unwrap(), b.to_tar().unwrap());
    }

    #[test]
    fn written_files_read_back_with_their_contents() {
        let long_dir = "d".repeat(90);
        let long_path = format!("{long_dir}/{}", "f".repeat(40));
        let mut t = Tree::new();
        t.file("index.json", 0o644, b"{}".to_vec())
            .file("blobs/sha256/abc", 0o644, vec![7u8; 1000])
            .file(&long_path, 0o644, b"long".to_vec())
            .dir("blobs", 0o755)
            .symlink("link", "index.json");
        let files = read_files(&t.to_tar().unwrap()).unwrap();
        assert_eq!(
            files.len(),
            3,
            "only regular files are read: {:?}",
            files.keys()
        );
        assert_eq!(files["index.json"], b"{}");
        assert_eq!(files["blobs/sha256/abc"], vec![7u8; 1000]);
        assert_eq!(files[&long_path], b"long");
    }

    #[test]
    fn header_checksum_matches_the_ustar_definition() {
        let h = header("bin/sh", b'2', 0o777, 0, "busybox").unwrap();
        let mut copy = h;
        copy[148..156].fill(b' ');
        let sum: u64 = copy.iter().map(|&b| b as u64).sum();
        assert_eq!(parse_octal(&h[148..156]), Some(sum));
    }

    #[test]
    fn paths_that_cannot_be_split_are_rejected() {
        let mut t = Tree::new();
        t.file(&"x".repeat(120), 0o644, Vec::new());
        assert!(matches!(t.to_tar(), Err(Error::Tar(_))));
    }
}
