//! Reading a container's CRI log as the kubelet's `ReadLogs` does: from the last `tailLines`
//! records, skipping those before `since`, the text of each record (its time first with
//! `timestamps`), at most `limitBytes`; with `follow`, on past the end as the copier
//! writes (woken by it, so a line reaches a follower at once) and across rotations, until
//! the container instance's output ends.

use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::{mpsc, watch};

use super::cri::parse_line;
use super::options::LogOptions;

/// How far the copier of a log has got: `writes` grows with each write, `done` once the
/// container's output has ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub writes: u64,
    pub done: bool,
}

/// A follower re-checks the file this often even without a wake-up (a rotation by another
/// writer, a copier that went away), so nothing is left waiting for good.
const RECHECK: Duration = Duration::from_millis(250);

/// Streams the log at `path` as `opts` asks. `live` is the copier's progress when the
/// container instance still runs; without it a follow ends at the end of the file.
pub fn stream_log(
    path: PathBuf,
    opts: LogOptions,
    live: Option<watch::Receiver<Progress>>,
) -> mpsc::Receiver<io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        if let Err(e) = pump(&path, &opts, live, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    rx
}

/// Stops the pump when the reader went away or the byte limit is reached.
struct Stop;

async fn pump(
    path: &Path,
    opts: &LogOptions,
    mut live: Option<watch::Receiver<Progress>>,
    tx: &mpsc::Sender<io::Result<Bytes>>,
) -> io::Result<()> {
    let start = match opts.tail_lines {
        Some(n) => {
            let path = path.to_path_buf();
            let n = u64::try_from(n).unwrap_or(0);
            tokio::task::spawn_blocking(move || tail_offset(&path, n))
                .await
                .map_err(io::Error::other)??
        }
        None => 0,
    };
    let file = tokio::fs::File::open(path).await?;
    let mut inode = file.metadata().await?.ino();
    let mut reader = BufReader::new(file);
    reader.seek(SeekFrom::Start(start)).await?;
    let mut left = opts.limit_bytes.map(|n| u64::try_from(n).unwrap_or(0));
    let mut line = Vec::new();
    // Lines are sent in batches of what the file already holds, up to BATCH bytes.
    let mut out = Vec::new();
    // Set once the end is in sight (the copier is done, or the file was rotated): one more
    // read to the end of the file, then stop or move to the new file.
    let mut last_pass = false;
    let mut rotated = false;
    loop {
        reader.read_until(b'\n', &mut line).await?;
        if line.ends_with(b"\n") {
            let limit_reached = render(&line, opts, &mut left, &mut out);
            line.clear();
            let more_at_hand = !reader.buffer().is_empty() && out.len() < BATCH;
            if (limit_reached || !more_at_hand) && send(&mut out, tx).await.is_err() {
                return Ok(());
            }
            if limit_reached {
                return Ok(());
            }
            continue;
        }
        if send(&mut out, tx).await.is_err() {
            return Ok(());
        }
        // At the end of the file (`line` may hold the start of a line being written).
        if !opts.follow {
            return Ok(());
        }
        if rotated {
            // The file after the one just read: the next rotated one when the log rotated
            // more than once meanwhile, else the current log.
            let next = {
                let path = path.to_path_buf();
                tokio::task::spawn_blocking(move || next_after(&path, inode))
                    .await
                    .map_err(io::Error::other)?
            };
            let file = tokio::fs::File::open(&next).await?;
            inode = file.metadata().await?.ino();
            reader = BufReader::new(file);
            line.clear();
            rotated = false;
            continue;
        }
        // Checked before stopping: a log rotated after the last write announced still has
        // lines in the files after this one.
        if tokio::fs::metadata(path)
            .await
            .is_ok_and(|m| m.ino() != inode)
        {
            rotated = true;
            continue;
        }
        if last_pass {
            return Ok(());
        }
        let Some(progress) = live.as_mut() else {
            return Ok(());
        };
        // A write the copier announced after the read above reached the end is read now;
        // marking the announcement seen before that read means none is missed.
        match progress.has_changed() {
            Err(_) => {
                // The copier is gone (its container was removed): read what is left.
                last_pass = true;
                continue;
            }
            Ok(true) => {
                last_pass = progress.borrow_and_update().done;
                continue;
            }
            Ok(false) if progress.borrow().done => {
                last_pass = true;
                continue;
            }
            Ok(false) => {}
        }
        tokio::select! {
            changed = progress.changed() => if changed.is_err() {
                last_pass = true;
            },
            _ = tokio::time::sleep(RECHECK) => {}
            _ = tx.closed() => return Ok(()),
        }
    }
}

/// The file to read after the one with `inode`, which was rotated away from `path`: the
/// next rotated file (oldest first), else the current log. When the file is gone (more
/// rotations than the log keeps), the current log.
fn next_after(path: &Path, inode: u64) -> PathBuf {
    let rotated = super::rotate::rotated_files(path).unwrap_or_default();
    let at = rotated
        .iter()
        .position(|p| std::fs::metadata(p).is_ok_and(|m| m.ino() == inode));
    match at.and_then(|i| rotated.get(i + 1)) {
        Some(next) => next.clone(),
        None => path.to_path_buf(),
    }
}

/// A batch of output is sent once it reaches this size.
const BATCH: usize = 64 * 1024;

/// Sends what `out` holds (nothing when empty); `Err` when the reader went away.
async fn send(out: &mut Vec<u8>, tx: &mpsc::Sender<io::Result<Bytes>>) -> Result<(), Stop> {
    if out.is_empty() {
        return Ok(());
    }
    let chunk = Bytes::from(std::mem::take(out));
    tx.send(Ok(chunk)).await.map_err(|_| Stop)
}

/// Appends one log line's text to `out` as `opts` shapes it; `true` when that reached the
/// byte limit.
fn render(line: &[u8], opts: &LogOptions, left: &mut Option<u64>, out: &mut Vec<u8>) -> bool {
    let record = match parse_line(line) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "skipping a log line that does not parse");
            return false;
        }
    };
    if opts.stream.is_some_and(|s| s != record.stream) {
        return false;
    }
    if let Some(since) = opts.since {
        if record.timestamp().is_none_or(|t| t < since) {
            return false;
        }
    }
    let start = out.len();
    if opts.timestamps {
        out.extend_from_slice(record.time.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(&record.text);
    if record.full {
        out.push(b'\n');
    }
    let Some(left) = left.as_mut() else {
        return false;
    };
    let len = ((out.len() - start) as u64).min(*left);
    out.truncate(start + len as usize);
    *left -= len;
    *left == 0
}

/// Where the last `n` complete lines of the file start (its end for 0).
fn tail_offset(path: &Path, n: u64) -> io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if n == 0 {
        return Ok(len);
    }
    const BLOCK: u64 = 64 * 1024;
    let mut end = len;
    let mut seen = 0;
    let mut buf = vec![0u8; BLOCK as usize];
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        for (i, b) in chunk.iter().enumerate().rev() {
            let at = start + i as u64;
            // The newline that ends the last line starts no line.
            if *b == b'\n' && at + 1 < len {
                seen += 1;
                if seen == n {
                    return Ok(at + 1);
                }
            }
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
