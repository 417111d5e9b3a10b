use std::io::Write;

use super::*;
use crate::logs::cri::{LogStream, Record};

/// A log file of records `(second, stream, full, text)` at 2026-01-01T00:00:<second>Z.
fn log_file(records: &[(u32, LogStream, bool, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    let mut f = std::fs::File::create(&path).unwrap();
    for (sec, stream, full, text) in records {
        let r = Record {
            time: format!("2026-01-01T00:00:{sec:02}.5Z"),
            stream: *stream,
            full: *full,
            text: Bytes::copy_from_slice(text.as_bytes()),
        };
        f.write_all(&r.to_line()).unwrap();
    }
    (dir, path)
}

async fn read_all(rx: mpsc::Receiver<io::Result<Bytes>>) -> String {
    let mut rx = rx;
    let mut out = Vec::new();
    while let Some(chunk) = rx.recv().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    String::from_utf8(out).unwrap()
}

const OUT: LogStream = LogStream::Stdout;
const ERR: LogStream = LogStream::Stderr;

fn sample() -> (tempfile::TempDir, PathBuf) {
    log_file(&[
        (1, OUT, true, "one"),
        (2, ERR, true, "two"),
        (3, OUT, false, "thr"),
        (3, OUT, true, "ee"),
        (4, ERR, true, "four"),
    ])
}

#[tokio::test]
async fn reads_shape_the_log_as_the_kubelet_does() {
    let at = |s: &str| Some(s.parse().unwrap());
    for (name, opts, expected) in [
        (
            "everything",
            LogOptions::default(),
            "one\ntwo\nthree\nfour\n",
        ),
        (
            "tail counts records",
            LogOptions {
                tail_lines: Some(2),
                ..Default::default()
            },
            "ee\nfour\n",
        ),
        (
            "tail of zero",
            LogOptions {
                tail_lines: Some(0),
                ..Default::default()
            },
            "",
        ),
        (
            "tail longer than the log",
            LogOptions {
                tail_lines: Some(100),
                ..Default::default()
            },
            "one\ntwo\nthree\nfour\n",
        ),
        (
            "since a time",
            LogOptions {
                since: at("2026-01-01T00:00:02.5Z"),
                ..Default::default()
            },
            "two\nthree\nfour\n",
        ),
        (
            "timestamps on every record",
            LogOptions {
                tail_lines: Some(3),
                timestamps: true,
                ..Default::default()
            },
            "2026-01-01T00:00:03.5Z thr2026-01-01T00:00:03.5Z ee\n2026-01-01T00:00:04.5Z four\n",
        ),
        (
            "limit bytes cuts mid-line",
            LogOptions {
                limit_bytes: Some(6),
                ..Default::default()
            },
            "one\ntw",
        ),
        (
            "stderr only",
            LogOptions {
                stream: Some(ERR),
                ..Default::default()
            },
            "two\nfour\n",
        ),
    ] {
        let (_dir, path) = sample();
        assert_eq!(
            read_all(stream_log(path, opts, None)).await,
            expected,
            "{name}"
        );
    }
}

#[tokio::test]
async fn lines_that_do_not_parse_are_skipped() {
    let (_dir, path) = log_file(&[(1, OUT, true, "good")]);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"raw bytes from an old log\n").unwrap();
    assert_eq!(
        read_all(stream_log(path, LogOptions::default(), None)).await,
        "good\n"
    );
}

/// A log holding `first`, and a follower of it (with the copier's progress to drive it)
/// that has read that line.
async fn following(
    first: &str,
) -> (
    tempfile::TempDir,
    PathBuf,
    watch::Sender<Progress>,
    mpsc::Receiver<io::Result<Bytes>>,
) {
    let (dir, path) = log_file(&[(1, OUT, true, first)]);
    let (progress, live) = watch::channel(Progress::default());
    let opts = LogOptions {
        follow: true,
        ..Default::default()
    };
    let mut rx = stream_log(path.clone(), opts, Some(live));
    assert_eq!(
        &rx.recv().await.unwrap().unwrap()[..],
        format!("{first}\n").as_bytes()
    );
    (dir, path, progress, rx)
}

/// A writer that rotates the log at `path` every 100 bytes, keeping `max_files`.
fn rotating(path: &Path, max_files: usize) -> crate::logs::rotate::RotatingWriter {
    let limits = crate::logs::rotate::LogLimits {
        max_size: 100,
        max_files,
    };
    crate::logs::rotate::RotatingWriter::open(path, limits).unwrap()
}

/// A full stdout record of `text`, as the copier writes it.
fn line(text: &str) -> Vec<u8> {
    Record {
        time: "2026-01-01T00:00:09Z".into(),
        stream: OUT,
        full: true,
        text: Bytes::copy_from_slice(text.as_bytes()),
    }
    .to_line()
}

#[tokio::test]
async fn a_follow_gets_new_lines_across_a_rotation_and_ends_when_the_output_does() {
    let (dir, path, progress, mut rx) = following("before").await;

    let mut w = rotating(&path, 3);
    // 39 bytes are there; 48 more fit in 100, the next 49 do not: the second line rotates.
    w.write_line(&line("first-after-start")).unwrap();
    progress.send_modify(|p| p.writes += 1);
    assert_eq!(
        &rx.recv().await.unwrap().unwrap()[..],
        b"first-after-start\n"
    );
    w.write_line(&line("after-the-rotation")).unwrap();
    progress.send_modify(|p| p.writes += 1);
    assert_eq!(
        &rx.recv().await.unwrap().unwrap()[..],
        b"after-the-rotation\n"
    );
    assert_eq!(
        crate::logs::rotate::rotated_files(&path).unwrap().len(),
        1,
        "the log was rotated under the follower"
    );
    w.write_line(&line("last")).unwrap();
    progress.send_modify(|p| p.done = true);
    assert_eq!(&rx.recv().await.unwrap().unwrap()[..], b"last\n");
    assert!(rx.recv().await.is_none(), "the follow ends with the output");
    drop(dir);
}

#[tokio::test]
async fn a_follower_two_rotations_behind_reads_every_file_in_order() {
    let (dir, path, progress, rx) = following("before").await;
    let mut w = rotating(&path, 5);
    // Written while the follower waits: the log rotates twice (every 100 bytes).
    for text in [
        "first-after-start",
        "second-rotates-1",
        "third-fits-here",
        "fourth-rotates-2",
    ] {
        w.write_line(&line(text)).unwrap();
    }
    assert_eq!(
        crate::logs::rotate::rotated_files(&path).unwrap().len(),
        2,
        "two rotations behind the follower"
    );
    progress.send_modify(|p| p.done = true);
    assert_eq!(
        read_all(rx).await,
        "first-after-start\nsecond-rotates-1\nthird-fits-here\nfourth-rotates-2\n"
    );
    drop(dir);
}

#[tokio::test]
async fn a_follow_of_a_log_nobody_writes_ends_at_its_end() {
    let (_dir, path) = sample();
    let opts = LogOptions {
        follow: true,
        tail_lines: Some(1),
        ..Default::default()
    };
    assert_eq!(read_all(stream_log(path, opts, None)).await, "four\n");
}

#[test]
fn the_tail_offset_finds_the_start_of_the_last_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    for (name, content, n, expected) in [
        ("empty file", "", 3, 0),
        ("last line", "a\nbb\nccc\n", 1, 5),
        ("two lines", "a\nbb\nccc\n", 2, 2),
        ("all lines", "a\nbb\nccc\n", 3, 0),
        ("more than all", "a\nbb\nccc\n", 9, 0),
        ("unfinished last line counts", "a\nbb", 1, 2),
    ] {
        std::fs::write(&path, content).unwrap();
        assert_eq!(tail_offset(&path, n).unwrap(), expected, "{name}");
    }
    // Across the 64 KiB blocks it reads backwards in.
    let long: String = (0..20_000).map(|i| format!("{i:07}\n")).collect();
    std::fs::write(&path, &long).unwrap();
    assert_eq!(
        tail_offset(&path, 15_000).unwrap(),
        5_000 * 8,
        "15000 lines from the end of 20000"
    );
}
