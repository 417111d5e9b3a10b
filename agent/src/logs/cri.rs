//! The CRI container log format, one record a line, as containerd's CRI plugin writes it
//! and the kubelet reads it: `<RFC3339Nano time> <stdout|stderr> <F|P> <text>\n`. A line the
//! container writes is one `F` (full) record; a line longer than [`MAX_LINE`] is cut into
//! `P` (partial) records of [`MAX_LINE`] bytes and a last `F` one, so a reader can join them.

use bytes::{Bytes, BytesMut};
use k8s_openapi::jiff::Timestamp;

/// The longest text one record holds: containerd's `max_container_log_line_size` default.
pub const MAX_LINE: usize = 16 * 1024;

/// Which of a container's output streams a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// One record of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The time as written, RFC 3339 with up to nanoseconds.
    pub time: String,
    pub stream: LogStream,
    /// `false` for a `P` record: its text continues in the next record of the stream.
    pub full: bool,
    /// The text, without the newline a full record stands for.
    pub text: Bytes,
}

impl Record {
    /// The record as a line of the log file, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let tag = if self.full { "F" } else { "P" };
        let mut line = Vec::with_capacity(self.time.len() + self.text.len() + 12);
        line.extend_from_slice(self.time.as_bytes());
        line.push(b' ');
        line.extend_from_slice(self.stream.as_str().as_bytes());
        line.push(b' ');
        line.extend_from_slice(tag.as_bytes());
        line.push(b' ');
        line.extend_from_slice(&self.text);
        line.push(b'\n');
        line
    }

    /// The record's time, `None` when it does not parse.
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.time.parse().ok()
    }
}

/// Parses one line of a CRI log (with or without its newline), as the kubelet's
/// `parseCRILog`: time, stream, tag (its first `:`-separated part is `F` or `P`), text.
pub fn parse_line(line: &[u8]) -> Result<Record, String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut fields = line.splitn(4, |b| *b == b' ');
    let time = fields.next().filter(|t| !t.is_empty());
    let stream = fields.next();
    let tag = fields.next();
    let (Some(time), Some(stream), Some(tag)) = (time, stream, tag) else {
        return Err(format!(
            "{:?} is not a CRI log line",
            String::from_utf8_lossy(line)
        ));
    };
    let time = std::str::from_utf8(time).map_err(|_| "the time is not UTF-8".to_string())?;
    time.parse::<Timestamp>()
        .map_err(|e| format!("unexpected timestamp {time:?}: {e}"))?;
    let stream = match stream {
        b"stdout" => LogStream::Stdout,
        b"stderr" => LogStream::Stderr,
        other => {
            return Err(format!(
                "unexpected stream type {:?}",
                String::from_utf8_lossy(other)
            ))
        }
    };
    let full = match tag.split(|b| *b == b':').next() {
        Some(b"F") => true,
        Some(b"P") => false,
        _ => return Err(format!("unexpected tag {:?}", String::from_utf8_lossy(tag))),
    };
    Ok(Record {
        time: time.to_string(),
        stream,
        full,
        text: Bytes::copy_from_slice(fields.next().unwrap_or_default()),
    })
}

/// Now, as a CRI record's time (UTC, trailing zeros of the fraction dropped as Go's
/// RFC3339Nano does).
pub fn now() -> String {
    Timestamp::now().to_string()
}

/// Cuts one stream's bytes into records: a record per line, and a `P` record whenever
/// [`MAX_LINE`] bytes arrive without a newline.
#[derive(Debug)]
pub struct LineSplitter {
    stream: LogStream,
    pending: BytesMut,
}

impl LineSplitter {
    pub fn new(stream: LogStream) -> Self {
        LineSplitter {
            stream,
            pending: BytesMut::new(),
        }
    }

    /// The records `data` completes, stamped `time`.
    pub fn feed(&mut self, data: &[u8], time: &str) -> Vec<Record> {
        let mut out = Vec::new();
        for chunk in data.split_inclusive(|b| *b == b'\n') {
            let (text, ends_line) = match chunk.strip_suffix(b"\n") {
                Some(text) => (text, true),
                None => (chunk, false),
            };
            let mut text = text;
            // Fill the pending line up to MAX_LINE; a full buffer is a partial record.
            while self.pending.len() + text.len() > MAX_LINE
                || (!ends_line && self.pending.len() + text.len() == MAX_LINE)
            {
                let take = MAX_LINE - self.pending.len();
                self.pending.extend_from_slice(&text[..take]);
                text = &text[take..];
                out.push(self.record(time, false));
                if text.is_empty() {
                    break;
                }
            }
            self.pending.extend_from_slice(text);
            if ends_line {
                out.push(self.record(time, true));
            }
        }
        out
    }

    /// The unterminated text left at the end of the stream, as a full record (as containerd
    /// writes the last line a container leaves without a newline).
    pub fn finish(&mut self, time: &str) -> Option<Record> {
        (!self.pending.is_empty()).then(|| self.record(time, true))
    }

    fn record(&mut self, time: &str, full: bool) -> Record {
        Record {
            time: time.to_string(),
            stream: self.stream,
            full,
            text: self.pending.split().freeze(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "2026-01-02T03:04:05.123456789Z";

    fn texts(records: &[Record]) -> Vec<(String, bool)> {
        records
            .iter()
            .map(|r| (String::from_utf8_lossy(&r.text).into_owned(), r.full))
            .collect()
    }

    #[test]
    fn a_record_round_trips_through_its_line() {
        for (name, text, full) in [
            ("full line", "hello world", true),
            ("partial line", "no newline yet", false),
            ("empty line", "", true),
            ("text with spaces at the ends", "  padded  ", true),
        ] {
            let record = Record {
                time: T.into(),
                stream: LogStream::Stderr,
                full,
                text: Bytes::copy_from_slice(text.as_bytes()),
            };
            let line = record.to_line();
            assert_eq!(parse_line(&line), Ok(record), "{name}");
        }
    }

    #[test]
    fn lines_are_written_in_the_cri_format() {
        let record = Record {
            time: T.into(),
            stream: LogStream::Stdout,
            full: true,
            text: Bytes::from_static(b"hi"),
        };
        assert_eq!(record.to_line(), format!("{T} stdout F hi\n").into_bytes());
    }

    #[test]
    fn malformed_lines_are_rejected() {
        for (name, line) in [
            ("empty", ""),
            ("no tag", "2026-01-02T03:04:05Z stdout"),
            ("bad time", "yesterday stdout F x"),
            ("bad stream", "2026-01-02T03:04:05Z stdin F x"),
            ("bad tag", "2026-01-02T03:04:05Z stdout X x"),
        ] {
            assert!(parse_line(line.as_bytes()).is_err(), "{name}");
        }
    }

    #[test]
    fn a_tag_with_extra_fields_is_read_by_its_first_one() {
        let r = parse_line(b"2026-01-02T03:04:05Z stdout P:extra x").unwrap();
        assert!(!r.full);
        assert_eq!(&r.text[..], b"x");
    }

    #[test]
    fn the_splitter_makes_a_record_per_line_across_reads() {
        let mut s = LineSplitter::new(LogStream::Stdout);
        assert_eq!(texts(&s.feed(b"one\ntw", T)), [("one".into(), true)]);
        assert_eq!(
            texts(&s.feed(b"o\n\nthree", T)),
            [("two".into(), true), (String::new(), true)]
        );
        assert_eq!(
            s.finish(T).map(|r| texts(&[r])),
            Some(vec![("three".into(), true)])
        );
        assert_eq!(s.finish(T), None, "nothing is left after finish");
    }

    #[test]
    fn the_splitter_cuts_long_lines_into_partial_records_of_16_kib() {
        for (name, len, expected) in [
            ("exactly 16 KiB", MAX_LINE, vec![(MAX_LINE, true)]),
            (
                "one byte over",
                MAX_LINE + 1,
                vec![(MAX_LINE, false), (1, true)],
            ),
            (
                "two and a half",
                2 * MAX_LINE + 100,
                vec![(MAX_LINE, false), (MAX_LINE, false), (100, true)],
            ),
        ] {
            let mut s = LineSplitter::new(LogStream::Stdout);
            let mut data = vec![b'x'; len];
            data.push(b'\n');
            // In small reads, as a pipe delivers them.
            let mut records = Vec::new();
            for chunk in data.chunks(4000) {
                records.extend(s.feed(chunk, T));
            }
            let got: Vec<(usize, bool)> = records.iter().map(|r| (r.text.len(), r.full)).collect();
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn now_is_a_parseable_record_time() {
        assert!(now().parse::<Timestamp>().is_ok());
    }
}
