//! [`ContainerIo`] with the test standing in for containerd's shim: it opens the write ends
//! of the FIFOs [`ContainerIo::prepare`] made, as the shim does when the task is created.

use std::io::{Read, Write};

use futures::StreamExt;

use super::*;

struct Dirs {
    _root: tempfile::TempDir,
    config: IoConfig,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().unwrap();
    let config = IoConfig {
        fifo_dir: root.path().join("io"),
        logs_dir: root.path().join("logs"),
        limits: LogLimits::default(),
    };
    Dirs {
        _root: root,
        config,
    }
}

fn log_path(config: &IoConfig, attempt: u32) -> PathBuf {
    config
        .logs_dir
        .join("ns_pod_uid1/app")
        .join(format!("{attempt}.log"))
}

/// The shim's side: the write ends of a task's output FIFOs and the read end of its stdin.
struct Shim {
    stdout: std::fs::File,
    stderr: Option<std::fs::File>,
}

fn shim(task: &TaskIo) -> Shim {
    let open = |p: &str| std::fs::OpenOptions::new().write(true).open(p).unwrap();
    Shim {
        stdout: open(&task.stdout),
        stderr: (!task.stderr.is_empty()).then(|| open(&task.stderr)),
    }
}

async fn collect(io: &ContainerIo, opts: &LogOptions) -> String {
    let mut s = io.open_log("ns", "pod", "uid1", "app", opts).unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    String::from_utf8(out).unwrap()
}

fn spec(config: &IoConfig, id: &str, attempt: u32) -> IoSpec {
    IoSpec {
        id: id.into(),
        log_path: Some(log_path(config, attempt)),
        ..Default::default()
    }
}

#[tokio::test]
async fn output_of_both_streams_reaches_the_log_in_cri_format_and_a_follow_ends_with_it() {
    let d = dirs();
    let io = ContainerIo::new(d.config.clone());
    let prepared = io.prepare(&spec(&d.config, "c0", 0)).unwrap();
    let mut shim = shim(prepared.task_io());
    prepared.start();
    let follow = LogOptions {
        follow: true,
        ..Default::default()
    };
    let mut follower = io.open_log("ns", "pod", "uid1", "app", &follow).unwrap();
    shim.stdout.write_all(b"out line\n").unwrap();
    assert_eq!(&follower.next().await.unwrap().unwrap()[..], b"out line\n");
    shim.stderr
        .as_mut()
        .unwrap()
        .write_all(b"err line\n")
        .unwrap();
    assert_eq!(&follower.next().await.unwrap().unwrap()[..], b"err line\n");
    shim.stdout.write_all(b"no newline at exit").unwrap();
    drop(shim);
    assert_eq!(
        &follower.next().await.unwrap().unwrap()[..],
        b"no newline at exit\n"
    );
    assert!(
        follower.next().await.is_none(),
        "the follow ends with the output"
    );

    let raw = std::fs::read_to_string(log_path(&d.config, 0)).unwrap();
    let records: Vec<cri::Record> = raw
        .lines()
        .map(|l| cri::parse_line(l.as_bytes()).unwrap())
        .collect();
    let got: Vec<(LogStream, &[u8])> = records.iter().map(|r| (r.stream, &r.text[..])).collect();
    assert_eq!(
        got,
        [
            (LogStream::Stdout, &b"out line"[..]),
            (LogStream::Stderr, b"err line"),
            (LogStream::Stdout, b"no newline at exit"),
        ]
    );
    assert!(
        io.attach("c0").is_none(),
        "nothing to attach to after the exit"
    );
}

#[tokio::test]
async fn output_ended_waits_for_the_copier_to_put_the_last_output_in_the_log() {
    let d = dirs();
    let io = ContainerIo::new(d.config.clone());
    let prepared = io.prepare(&spec(&d.config, "c0", 0)).unwrap();
    let mut shim = shim(prepared.task_io());
    prepared.start();
    shim.stdout.write_all(b"last words\n").unwrap();
    assert!(
        !io.output_ended("c0", std::time::Duration::from_millis(50))
            .await,
        "the output is open while the shim holds it"
    );
    drop(shim);
    assert!(
        io.output_ended("c0", std::time::Duration::from_secs(30))
            .await
    );
    let log = std::fs::read_to_string(log_path(&d.config, 0)).unwrap();
    assert!(log.ends_with(" stdout F last words\n"), "{log:?}");
    assert!(
        io.output_ended("unknown", std::time::Duration::ZERO).await,
        "nothing to wait for"
    );
}

#[tokio::test]
async fn previous_reads_the_instance_before_and_errors_name_the_container() {
    let d = dirs();
    let io = ContainerIo::new(d.config.clone());
    let none = LogOptions::default();
    match io.open_log("ns", "pod", "uid1", "app", &none) {
        Err(LogError::NotAvailable { .. }) => {}
        Err(other) => panic!("a container that never ran: {other}"),
        Ok(_) => panic!("a container that never ran has no log"),
    }
    let previous = LogOptions {
        previous: true,
        ..Default::default()
    };
    for attempt in 0..2 {
        let prepared = io
            .prepare(&spec(&d.config, &format!("c{attempt}"), attempt))
            .unwrap();
        let mut shim = shim(prepared.task_io());
        prepared.start();
        writeln!(shim.stdout, "run {attempt}").unwrap();
        if attempt == 0 {
            drop(shim);
            assert_eq!(
                collect(
                    &io,
                    &LogOptions {
                        follow: true,
                        ..none.clone()
                    }
                )
                .await,
                "run 0\n"
            );
            match io.open_log("ns", "pod", "uid1", "app", &previous) {
                Err(e @ LogError::PreviousNotFound { .. }) => assert_eq!(
                    e.to_string(),
                    "previous terminated container \"app\" in pod \"pod\" not found"
                ),
                Err(other) => panic!("no previous instance yet: {other}"),
                Ok(_) => panic!("no previous instance yet"),
            }
        }
    }
    assert_eq!(collect(&io, &previous).await, "run 0\n");
}

#[tokio::test]
async fn attach_sees_output_from_then_on_and_writes_reach_stdin() {
    let d = dirs();
    let io = ContainerIo::new(d.config.clone());
    let closed = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = closed.clone();
    io.set_stdin_closer(Arc::new(move |id| seen.lock().unwrap().push(id)));
    let prepared = io
        .prepare(&IoSpec {
            stdin: true,
            stdin_once: true,
            tty: true,
            ..spec(&d.config, "tty", 0)
        })
        .unwrap();
    let task = prepared.task_io().clone();
    assert!(task.terminal && task.stderr.is_empty() && !task.stdin.is_empty());
    let mut shim = shim(&task);
    // The shim reads the container's stdin from the FIFO.
    let mut stdin_reader = std::fs::File::open(&task.stdin).unwrap();
    prepared.start();
    shim.stdout.write_all(b"before attach\n").unwrap();

    let mut attached = io.attach("tty").expect("a running container");
    assert!(attached.tty);
    shim.stdout.write_all(b"$ ").unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"$ ") {
        got.extend_from_slice(&attached.output.recv().await.unwrap().data);
    }
    assert!(
        !String::from_utf8_lossy(&got).contains("before attach") || got.starts_with(b"before"),
        "attach shows output from when it attached (a chunk already read may come first)"
    );
    let stdin = attached.stdin.take().expect("stdin");
    stdin.write(b"ls\n").await.unwrap();
    let mut buf = [0u8; 3];
    stdin_reader.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ls\n");
    stdin.finish().await;
    assert_eq!(
        *closed.lock().unwrap(),
        ["tty"],
        "stdinOnce closes stdin in the runtime"
    );
    let again = io.attach("tty").unwrap();
    assert!(
        again.stdin.unwrap().write(b"x").await.is_err(),
        "stdin stays closed after a stdinOnce client finished"
    );
    drop(shim);
}

/// A first agent that copies "one\n" into the log of container c0 and dies (its runtime
/// dropped, as with kill -9: its copiers stop and its ends of the FIFOs close); returns the
/// shim's ends: the output writer and the read end the shim keeps of its own.
fn first_agent_dies(config: &IoConfig) -> (Shim, std::fs::File) {
    let config = config.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let io = ContainerIo::new(config.clone());
        let ends = rt.block_on(async {
            let prepared = io.prepare(&spec(&config, "c0", 0)).unwrap();
            let mut shim = shim(prepared.task_io());
            let shim_reader = std::fs::File::open(&prepared.task_io().stdout).unwrap();
            prepared.start();
            shim.stdout.write_all(b"one\n").unwrap();
            let follow = LogOptions {
                follow: true,
                ..Default::default()
            };
            let mut follower = io.open_log("ns", "pod", "uid1", "app", &follow).unwrap();
            assert_eq!(&follower.next().await.unwrap().unwrap()[..], b"one\n");
            (shim, shim_reader)
        });
        drop(rt);
        ends
    })
    .join()
    .unwrap()
}

/// The whole log with follow, which ends with the container's output; a hang is a failure.
async fn follow_to_end(io: &ContainerIo) -> String {
    let follow = LogOptions {
        follow: true,
        ..Default::default()
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), collect(io, &follow))
        .await
        .expect("the follow ends with the output")
}

#[tokio::test]
async fn a_restarted_agent_reopens_the_fifos_and_the_output_goes_on_into_the_log() {
    let d = dirs();
    let (mut shim, _shim_reader) = first_agent_dies(&d.config);
    // Waits in the pipe, which the shim's own read end keeps.
    shim.stdout.write_all(b"while down\n").unwrap();

    let second = ContainerIo::new(d.config.clone());
    assert_eq!(
        second.recover().unwrap(),
        1,
        "the container's FIFOs are found"
    );
    shim.stdout.write_all(b"after\n").unwrap();
    drop(shim);
    assert_eq!(follow_to_end(&second).await, "one\nwhile down\nafter\n");
}

#[tokio::test]
async fn output_that_ended_while_the_agent_was_down_is_seen_to_end_after_a_restart() {
    let d = dirs();
    let (shim, shim_reader) = first_agent_dies(&d.config);
    drop(shim);
    let second = ContainerIo::new(d.config.clone());
    assert_eq!(second.recover().unwrap(), 1);
    assert_eq!(follow_to_end(&second).await, "one\n");
    drop(shim_reader);
}

#[test]
fn only_the_current_and_previous_instances_logs_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["0.log", "1.log", "1.log.20260101-000000", "2.log", "3.log"] {
        std::fs::write(dir.path().join(name), "x").unwrap();
    }
    remove_older_logs(dir.path(), 3);
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["2.log", "3.log"]);
}
