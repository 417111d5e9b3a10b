//! A container's log file with rotation, as the kubelet's container log manager keeps it:
//! when the next record would take the file past the size limit, `N.log` is renamed to
//! `N.log.<YYYYMMDD-hhmmss>` and a fresh `N.log` started; of the rotated files only the
//! newest `max_files - 1` stay. (The kubelet also gzips all but the newest rotated file;
//! kybern keeps them plain.)

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use k8s_openapi::jiff::Timestamp;

/// How big a log file grows and how many are kept (the kubelet's containerLogMaxSize and
/// containerLogMaxFiles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    pub max_size: u64,
    /// The current file included; at least 2.
    pub max_files: usize,
}

impl Default for LogLimits {
    /// 10 MiB x 5 files, the kubelet's defaults.
    fn default() -> Self {
        LogLimits {
            max_size: 10 << 20,
            max_files: 5,
        }
    }
}

/// Appends whole records to a log file and rotates it.
#[derive(Debug)]
pub struct RotatingWriter {
    path: PathBuf,
    file: File,
    size: u64,
    limits: LogLimits,
}

impl RotatingWriter {
    /// Opens (appending to) or creates the log at `path`.
    pub fn open(path: &Path, limits: LogLimits) -> io::Result<Self> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingWriter {
            path: path.to_path_buf(),
            file,
            size,
            limits,
        })
    }

    /// Writes one record's line in a single write, rotating first when it would take the
    /// file past the limit (a file holds at least one record, however long).
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.limits.max_size {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// Writes many lines with as few writes as rotation allows.
    pub fn write_lines<'a>(&mut self, lines: impl IntoIterator<Item = &'a [u8]>) -> io::Result<()> {
        let mut batch = Vec::new();
        for line in lines {
            let size = self.size + batch.len() as u64;
            if size > 0 && size + line.len() as u64 > self.limits.max_size {
                self.file.write_all(&batch)?;
                self.size += batch.len() as u64;
                batch.clear();
                self.rotate()?;
            }
            batch.extend_from_slice(line);
        }
        self.file.write_all(&batch)?;
        self.size += batch.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let stamp = Timestamp::now().strftime("%Y%m%d-%H%M%S").to_string();
        let mut rotated = suffixed(&self.path, &stamp);
        // Two rotations within a second (only with tiny limits) get a counter, which
        // still sorts after the first.
        let mut n = 1;
        while rotated.exists() {
            rotated = suffixed(&self.path, &format!("{stamp}.{n}"));
            n += 1;
        }
        std::fs::rename(&self.path, &rotated)?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        let mut old = rotated_files(&self.path)?;
        let keep = self.limits.max_files.saturating_sub(1);
        if old.len() > keep {
            for path in old.drain(..old.len() - keep) {
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "removing a rotated log");
                }
            }
        }
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// The rotated files of the log at `path`, oldest first.
pub fn rotated_files(path: &Path) -> io::Result<Vec<PathBuf>> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_rotates_past_its_size_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let limits = LogLimits {
            max_size: 100,
            max_files: 3,
        };
        let mut w = RotatingWriter::open(&path, limits).unwrap();
        let line = [b'x'; 39].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        for _ in 0..4 {
            w.write_line(&line).unwrap();
        }
        // The rest in batches, as the copier writes what one read brought.
        for _ in 0..2 {
            w.write_lines(std::iter::repeat_n(&line[..], 8)).unwrap();
        }
        let rotated = rotated_files(&path).unwrap();
        assert_eq!(
            rotated.len(),
            2,
            "max_files counts the current file: {rotated:?}"
        );
        for p in rotated.iter().chain([&path]) {
            let len = std::fs::metadata(p).unwrap().len();
            assert!(len <= 100, "{} holds {len} bytes", p.display());
            assert_eq!(len % 40, 0, "{} holds whole lines", p.display());
        }
        // 20 lines, 2 per file: the current file holds the last two.
        assert_eq!(std::fs::read(&path).unwrap().len(), 80);
    }

    #[test]
    fn a_reopened_log_appends_and_counts_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        let limits = LogLimits {
            max_size: 10,
            max_files: 2,
        };
        RotatingWriter::open(&path, limits)
            .unwrap()
            .write_line(b"12345678\n")
            .unwrap();
        let mut again = RotatingWriter::open(&path, limits).unwrap();
        again.write_line(b"abc\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abc\n");
        let rotated = rotated_files(&path).unwrap();
        assert_eq!(rotated.len(), 1);
        assert_eq!(std::fs::read(&rotated[0]).unwrap(), b"12345678\n");
    }
}
