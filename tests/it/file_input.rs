//! Local files as an input, end to end with the real binary: lines of a tailed file are
//! stored exactly once across kill -9, while the real `logrotate` rotates the file (by rename
//! with `compress` + `delaycompress`, and by `copytruncate`, whose loss must be counted).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::sandbox::{have_program, metric_value, starling_bin, wait_until, Node};

/// Kills of the kill -9 loops; `STARLING_FILE_KILLS` raises it (`bench/file_kill9.sh` runs
/// the 200 and more).
fn kills() -> usize {
    std::env::var("STARLING_FILE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
}

/// Appends numbered lines to `path` (reopened for every burst, as a logger that reopens by
/// name), each burst written in two `write`s cut at an arbitrary byte so readers see partial
/// lines; about `per_ms` lines a millisecond until `stop`.
fn writer(path: PathBuf, stop: Arc<AtomicBool>, written: Arc<AtomicU64>, per_ms: u64) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut burst = Vec::new();
        for _ in 0..per_ms {
            n += 1;
            writeln!(burst, "file-line {n:09} {}", "x".repeat((n % 61) as usize)).unwrap();
        }
        let cut = (n as usize * 7919) % burst.len();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open the log to append");
        file.write_all(&burst[..cut]).unwrap();
        file.write_all(&burst[cut..]).unwrap();
        drop(file);
        written.store(n, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `logrotate -f` with `config` every `every` until `stop`; returns the rotations run.
fn rotator(
    dir: PathBuf,
    config: String,
    stop: Arc<AtomicBool>,
    rotated: Arc<AtomicU64>,
    every: Duration,
) -> u64 {
    let conf = dir.join("logrotate.conf");
    std::fs::write(&conf, config).unwrap();
    let state = dir.join("logrotate.state");
    let mut rotations = 0;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(every);
        let status = Command::new("logrotate")
            .arg("-f")
            .arg("-s")
            .arg(&state)
            .arg(&conf)
            .status()
            .expect("run logrotate");
        assert!(status.success(), "logrotate failed: {status}");
        rotations += 1;
        rotated.store(rotations, Ordering::Relaxed);
    }
    rotations
}

/// The stored raw lines of `data_dir`, with how many times each was stored.
fn stored_lines(data_dir: &Path) -> HashMap<Vec<u8>, u32> {
    let output = Command::new(starling_bin())
        .args(["read", "--format", "raw", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("starling read");
    assert!(output.status.success(), "read failed: {output:?}");
    let mut lines = HashMap::new();
    for line in output
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
    {
        *lines.entry(line.to_vec()).or_insert(0) += 1;
    }
    lines
}

fn expected_line(n: u64) -> Vec<u8> {
    format!("file-line {n:09} {}", "x".repeat((n % 61) as usize)).into_bytes()
}

struct LoopResult {
    written: u64,
    missing: Vec<u64>,
    duplicated: Vec<u64>,
    rotations: u64,
}

/// The kill -9 loop: a writer appends, logrotate rotates with `rotate_config` (its `{log}`
/// replaced by the log's path), the node tailing the log is killed at random points `kills`
/// times; then everything written must be stored once (or be missing, for the caller to judge).
fn kill9_loop(test: &str, rotate_config: &str, kills: usize, final_wait: Duration) -> LoopResult {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("app.log");
    let glob = log.display().to_string();
    let mut node = Node::start(&["--file", &glob, "--syslog-udp", "none"]);
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer_thread = {
        let (log, stop, written) = (log.clone(), stop.clone(), written.clone());
        std::thread::spawn(move || writer(log, stop, written, 10))
    };
    let rotated = Arc::new(AtomicU64::new(0));
    let rotator_thread = {
        let config = rotate_config.replace("{log}", &glob);
        let (dir, stop) = (logs.path().to_path_buf(), stop.clone());
        let rotated = rotated.clone();
        std::thread::spawn(move || rotator(dir, config, stop, rotated, Duration::from_secs(2)))
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    // At least `kills` kills, and on until logrotate has rotated three times.
    let mut kill = 0;
    while kill < kills || (rotated.load(Ordering::Relaxed) < 3 && kill < kills + 10_000) {
        kill += 1;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let lines = 1 + seed % 4000;
        let progressed = wait_until(Duration::from_secs(30), || {
            metric_value(&node.metrics(), "starling_file_lines_total") >= lines as f64
        });
        assert!(
            progressed,
            "{test}: kill {kill}: the node stored no lines: {}",
            node.stderr()
        );
        node.kill();
        node.spawn();
    }
    stop.store(true, Ordering::Relaxed);
    writer_thread.join().unwrap();
    let rotations = rotator_thread.join().unwrap();
    let written = written.load(Ordering::Relaxed);
    // Everything written reaches the store (or the caller's loss is all there is).
    wait_until(final_wait, || {
        stored_lines(&node.data_dir).len() as u64 >= written
    });
    node.terminate(Duration::from_secs(10));
    let stored = stored_lines(&node.data_dir);
    let mut missing = Vec::new();
    let mut duplicated = Vec::new();
    for n in 1..=written {
        match stored.get(&expected_line(n)) {
            None => missing.push(n),
            Some(1) => {}
            Some(_) => duplicated.push(n),
        }
    }
    let extra = stored.len() as u64 + missing.len() as u64 - written;
    assert_eq!(extra, 0, "{test}: lines stored that were never written");
    LoopResult {
        written,
        missing,
        duplicated,
        rotations,
    }
}

/// The test: kill -9 over and over while logrotate rotates by rename, compressing
/// the previous rotation (`delaycompress`): 0 missing, 0 duplicates.
#[test]
fn kill9_loop_with_logrotate_rename_loses_and_repeats_nothing() {
    if !have_program("logrotate", "kill9_loop_with_logrotate_rename") {
        return;
    }
    let config =
        "{log} {\n  rotate 1000\n  compress\n  delaycompress\n  missingok\n  nocreate\n}\n";
    let result = kill9_loop("rename", config, kills(), Duration::from_secs(60));
    eprintln!(
        "rename: {} lines written, {} rotations, {} kills",
        result.written,
        result.rotations,
        kills()
    );
    assert!(
        result.rotations >= 3,
        "logrotate ran {} times",
        result.rotations
    );
    assert!(
        result.missing.is_empty() && result.duplicated.is_empty(),
        "missing {} (first {:?}), duplicated {} (first {:?})",
        result.missing.len(),
        result.missing.first(),
        result.duplicated.len(),
        result.duplicated.first()
    );
}

/// The same with copytruncate: nothing is stored twice; what is lost is reported (the
/// bytes appended between logrotate's copy and its truncation, which no copy holds).
#[test]
#[ignore = "known defect (issue #16): under copytruncate + kill -9 a whole rotated copy is read \
            again (~33,000 duplicates in 25 kills); run with --ignored once fixed"]
fn kill9_loop_with_logrotate_copytruncate_repeats_nothing() {
    if !have_program("logrotate", "kill9_loop_with_logrotate_copytruncate") {
        return;
    }
    let config =
        "{log} {\n  rotate 1000\n  copytruncate\n  compress\n  delaycompress\n  missingok\n}\n";
    let result = kill9_loop("copytruncate", config, kills(), Duration::from_secs(20));
    eprintln!(
        "copytruncate: {} lines written, {} rotations, {} kills, {} lines lost ({:.4}%)",
        result.written,
        result.rotations,
        kills(),
        result.missing.len(),
        100.0 * result.missing.len() as f64 / result.written.max(1) as f64
    );
    assert!(
        result.rotations >= 3,
        "logrotate ran {} times",
        result.rotations
    );
    assert!(
        result.duplicated.is_empty(),
        "duplicated {} (first {:?})",
        result.duplicated.len(),
        result.duplicated.first()
    );
}

/// Truncation: what the node had read of a line but not stored (an unterminated last line)
/// is counted in `starling_file_lost_bytes_total{reason="truncate"}`, byte for byte; with
/// copytruncate, the unread tail is taken from the rotated copy, each line stored once.
#[test]
fn truncation_loss_is_counted_and_a_copy_gives_the_tail_back() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("app.log");
    std::fs::write(&log, "a 1\npartial").unwrap();
    let node = Node::start(&["--file", &log.display().to_string()]);
    let lines = |node: &Node| metric_value(&node.metrics(), "starling_file_lines_total");
    let lost = |node: &Node| {
        metric_value(
            &node.metrics(),
            "starling_file_lost_bytes_total{reason=\"truncate\"}",
        )
    };
    assert!(wait_until(Duration::from_secs(10), || lines(&node) >= 1.0));
    // The pending "partial" is gone with the truncation: 7 bytes lost.
    let file = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    file.set_len(0).unwrap();
    drop(file);
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    file.write_all(b"b 1\n").unwrap();
    assert!(wait_until(Duration::from_secs(10), || lines(&node) >= 2.0));
    assert_eq!(lost(&node), "partial".len() as f64);
    // copytruncate: the lines written before the copy are stored once, whether the node read
    // them from the file before the truncation or from the copy after it.
    file.write_all(b"b 2\nb 3\n").unwrap();
    std::fs::copy(&log, logs.path().join("app.log.1")).unwrap();
    file.set_len(0).unwrap();
    file.write_all(b"c 1\n").unwrap();
    drop(file);
    let want = ["a 1", "b 1", "b 2", "b 3", "c 1"];
    let complete = wait_until(Duration::from_secs(10), || {
        stored_lines(&node.data_dir).len() >= want.len()
    });
    let stored = stored_lines(&node.data_dir);
    assert!(complete, "{stored:?}");
    for line in want {
        assert_eq!(stored.get(line.as_bytes()), Some(&1), "{line}: {stored:?}");
    }
    assert_eq!(stored.len(), want.len(), "{stored:?}");
    assert_eq!(lost(&node), "partial".len() as f64);
}

/// `read --format json` shows a tailed line's file and offset, its transport, the input's
/// severity and facility and the file's stem as APP-NAME; a line over `max-line-bytes` is cut
/// and flagged, a line without terminator waits, and a path with spaces and non-UTF-8 bytes
/// works.
#[test]
fn a_tailed_line_has_its_file_offset_and_defaults() {
    use std::os::unix::ffi::OsStrExt;
    let logs = tempfile::tempdir().unwrap();
    let dir = logs
        .path()
        .join(std::ffi::OsStr::from_bytes(b"my logs \xff"));
    std::fs::create_dir(&dir).unwrap();
    let log = dir.join("web.access.log");
    std::fs::write(&log, format!("first\n{}\nwaiting", "L".repeat(70_000))).unwrap();
    let config = logs.path().join("starling.toml");
    let glob = format!("{}/**/*.log", logs.path().display());
    std::fs::write(
        &config,
        format!(
            "[[input.file]]\npaths = [\"{glob}\"]\nseverity = \"err\"\nfacility = \"local3\"\n\
             max-line-bytes = 65536\n"
        ),
    )
    .unwrap();
    let node = Node::start(&["--config", &config.display().to_string()]);
    assert!(wait_until(Duration::from_secs(10), || node
        .read_json(&[])
        .len()
        >= 2));
    let records = node.read_json(&[]);
    assert_eq!(records.len(), 2, "the unterminated line waits: {records:?}");
    let first = &records[0];
    assert_eq!(first["transport"], "file");
    assert_eq!(first["raw"], "first");
    assert_eq!(first["offset"], 6);
    assert_eq!(first["app_name"], "web");
    assert_eq!(first["severity"], 3);
    assert_eq!(first["facility"], 19);
    assert_eq!(first["source"], "test-node");
    assert_eq!(
        first["file"],
        String::from_utf8_lossy(log.as_os_str().as_bytes()).as_ref()
    );
    let long = &records[1];
    assert_eq!(long["truncated"], true);
    assert_eq!(long["raw"].as_str().unwrap().len(), 65_536);
    assert_eq!(long["offset"], 6 + 70_001);
    assert_eq!(
        metric_value(&node.metrics(), "starling_file_lines_truncated_total"),
        1.0
    );
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    file.write_all(b" done\n").unwrap();
    assert!(wait_until(Duration::from_secs(10), || node
        .read_json(&[])
        .len()
        >= 3));
    let records = node.read_json(&[]);
    assert_eq!(records[2]["raw"], "waiting done");
}
