//! Where the real binary's logs go: with stderr redirected to a file there is no ANSI escape
//! in it (unless `--log-color always`), `log.format = "json"` makes every stderr line a JSON
//! object, `validate` names a bad `[log]` value's key, and under a journal (`JOURNAL_STREAM`
//! naming stderr) the node logs natively to a real `systemd-journald` (run in its own mount
//! and PID namespace, read back with `journalctl`), or writes plain lines without timestamps
//! when journald's socket is missing.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::sandbox::{have_program, have_root, send_signal, starling_bin, wait_until};

const WAIT: Duration = Duration::from_secs(30);
const ESC: u8 = 0x1b;
const JOURNALD: &str = "/lib/systemd/systemd-journald";

/// Every socket on 127.0.0.1:0, the node id fixed: what `sandbox::Node` passes too.
const NODE_ARGS: [&str; 12] = [
    "--node-id",
    "test-node",
    "--syslog-udp",
    "127.0.0.1:0",
    "--syslog-tcp",
    "127.0.0.1:0",
    "--api",
    "127.0.0.1:0",
    "--gossip",
    "127.0.0.1:0",
    "--forward",
    "127.0.0.1:0",
];

/// Runs a node with stderr redirected to a file until it is ready, stops it with SIGTERM and
/// returns what it wrote to stderr (start-up, recovery and shutdown lines at `info`).
fn stderr_of_a_run(work: &Path, extra_args: &[&str]) -> Vec<u8> {
    let stderr_path = work.join("stderr");
    let mut child = Command::new(starling_bin())
        .arg("run")
        .arg("--data-dir")
        .arg(work.join("data"))
        .args(NODE_ARGS)
        .args(extra_args)
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start starling");
    let stdout = child.stdout.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let reader_lines = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            reader_lines.lock().unwrap().push(line);
        }
    });
    let ready = wait_until(WAIT, || {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|line| line == "starling: ready")
            || child.try_wait().unwrap().is_some()
    });
    assert!(
        ready && child.try_wait().unwrap().is_none(),
        "node did not become ready; stdout {:?}, stderr {}",
        lines.lock().unwrap(),
        String::from_utf8_lossy(&std::fs::read(&stderr_path).unwrap())
    );
    send_signal(child.id(), libc::SIGTERM);
    let mut status = None;
    let exited = wait_until(WAIT, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stderr = std::fs::read(&stderr_path).unwrap();
    assert!(
        exited && status.unwrap().success(),
        "node did not stop cleanly ({status:?}); stderr {}",
        String::from_utf8_lossy(&stderr)
    );
    stderr
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn logs_written_to_a_file_carry_no_colour_escapes() {
    let work = tempfile::tempdir().unwrap();
    let stderr = stderr_of_a_run(work.path(), &[]);
    let lines = text(&stderr);
    assert!(lines.contains("store recovered"), "{lines}");
    assert!(lines.contains("INFO"), "{lines}");
    assert!(
        !stderr.contains(&ESC),
        "ESC in logs written to a file:\n{lines:?}"
    );

    // Asked for, colours come even into a file: the check above is not vacuous.
    let work = tempfile::tempdir().unwrap();
    let coloured = stderr_of_a_run(work.path(), &["--log-color", "always"]);
    assert!(coloured.contains(&ESC), "{:?}", text(&coloured));
}

#[test]
fn json_format_writes_one_object_per_line() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("starling.toml");
    std::fs::write(&config, "[log]\nformat = \"json\"\n").unwrap();
    let stderr = stderr_of_a_run(work.path(), &["--config", config.to_str().unwrap()]);
    let lines = text(&stderr);
    let objects: Vec<Value> = lines
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not JSON ({error}): {line:?}\n{lines}"))
        })
        .collect();
    assert!(objects.len() >= 3, "{lines}");
    for object in &objects {
        assert!(object["level"].is_string(), "no level: {object}");
        assert!(object["message"].is_string(), "no message: {object}");
        assert!(object["timestamp"].is_string(), "no timestamp: {object}");
    }
    let recovered = objects
        .iter()
        .find(|object| object["message"] == "store recovered")
        .unwrap_or_else(|| panic!("no recovery line in {lines}"));
    assert_eq!(recovered["level"], "INFO");
    // The event's fields are keys of their own, for shippers to index.
    assert_eq!(recovered["num_shards"], 0, "{recovered}");
    assert!(!stderr.contains(&ESC));
}

#[test]
fn validate_and_run_name_a_bad_log_value() {
    let work = tempfile::tempdir().unwrap();
    for (toml, expected) in [
        (
            "[log]\ncolor = \"blue\"\n",
            "line 2: invalid value for `log.color`: \"blue\" is not auto, always or never",
        ),
        (
            "[log]\nformat = \"xml\"\n",
            "line 2: invalid value for `log.format`: \"xml\" is not text or json",
        ),
    ] {
        let config = work.path().join("bad.toml");
        std::fs::write(&config, toml).unwrap();
        let output = Command::new(starling_bin())
            .args(["validate", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{toml:?} was accepted");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(expected), "{toml:?}: {stderr}");
    }
    let output = Command::new(starling_bin())
        .args(["run", "--log-color", "blue"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("'--log-color <WHEN>': \"blue\" is not auto, always or never"),
        "{stderr}"
    );
}

/// Runs `script` with `sh` as PID 1 of a new PID and mount namespace (so `/run` can be a
/// private tmpfs and every process it starts dies with it); returns whether it succeeded,
/// and a report of its exit status, stdout and stderr.
fn in_namespace(script: &str, env: &[(&str, &Path)]) -> (bool, String) {
    let mut child = Command::new("unshare")
        .args([
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
        ])
        .envs(env.iter().map(|(key, value)| (key, value)))
        .env("STARLING", starling_bin())
        .env("JOURNALD", JOURNALD)
        .env("NODE_ARGS", NODE_ARGS.join(" "))
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run unshare");
    let mut status = None;
    let exited = wait_until(Duration::from_secs(90), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    let report = format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    (exited && output.status.success(), report)
}

/// Sets up the namespace's `/run` (and a journal directory that must not reach the host),
/// starts journald when `$WITH_JOURNALD` is 1, then runs a node whose `JOURNAL_STREAM`
/// names its stderr file `$ERR` until it is ready, and stops it with SIGTERM.
const RUN_UNDER_A_JOURNAL: &str = r#"
set -u
mount -t tmpfs tmpfs /run || exit 10
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal || exit 10; fi
mkdir -p /run/systemd/journal /run/log/journal
if [ "$WITH_JOURNALD" = 1 ]; then
    "$JOURNALD" >/dev/null 2>&1 &
    n=0
    until [ -S /run/systemd/journal/socket ]; do
        n=$((n + 1)); [ $n -lt 600 ] || { echo "journald did not start" >&2; exit 11; }
        sleep 0.05
    done
fi
: >"$ERR"
JOURNAL_STREAM=$(stat -c %d:%i "$ERR") "$STARLING" run --data-dir "$DATA" $NODE_ARGS \
    >"$OUT" 2>"$ERR" &
node=$!
n=0
until grep -qx 'starling: ready' "$OUT"; do
    n=$((n + 1))
    if [ $n -ge 600 ] || ! kill -0 $node 2>/dev/null; then
        echo "node did not become ready" >&2; cat "$ERR" >&2; kill -9 $node; exit 12
    fi
    sleep 0.05
done
kill -TERM $node
wait $node || { echo "node exited with $?" >&2; exit 13; }
if [ "$WITH_JOURNALD" = 1 ]; then
    journal() { journalctl --file='/run/log/journal/*/*.journal' --no-pager -o json "$@"; }
    n=0
    until journal SYSLOG_IDENTIFIER=starling MESSAGE=stopped 2>/dev/null | grep -q .; do
        n=$((n + 1)); [ $n -lt 600 ] || { echo "no 'stopped' entry" >&2; exit 14; }
        sleep 0.05
    done
    journal SYSLOG_IDENTIFIER=starling >"$JSON"
fi
"#;

#[test]
fn under_systemd_logs_go_natively_to_journald() {
    const TEST: &str = "under_systemd_logs_go_natively_to_journald";
    if !have_root(TEST)
        || !have_program("unshare", TEST)
        || !have_program(JOURNALD, TEST)
        || !have_program("journalctl", TEST)
    {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (err, json) = (work.path().join("stderr"), work.path().join("journal.json"));
    let (ok, report) = in_namespace(
        &format!("WITH_JOURNALD=1\n{RUN_UNDER_A_JOURNAL}"),
        &[
            ("ERR", &err),
            ("OUT", &work.path().join("stdout")),
            ("DATA", &work.path().join("data")),
            ("JSON", &json),
        ],
    );
    assert!(ok, "{report}");
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert_eq!(stderr, "", "logs went to stderr, not to journald");
    let entries: Vec<Value> = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let entry = |message: &str| {
        entries
            .iter()
            .find(|entry| entry["MESSAGE"] == message)
            .unwrap_or_else(|| panic!("no {message:?} entry in {entries:#?}"))
    };
    let recovered = entry("store recovered");
    // Native protocol, info as syslog's informational, fields as journal fields.
    assert_eq!(recovered["_TRANSPORT"], "journal", "{recovered}");
    assert_eq!(recovered["PRIORITY"], "6", "{recovered}");
    assert_eq!(recovered["F_NUM_SHARDS"], "0", "{recovered}");
    assert_eq!(entry("stopped")["PRIORITY"], "6");
    for entry in &entries {
        let message = entry["MESSAGE"].as_str().unwrap_or_default();
        assert!(!message.contains('\u{1b}'), "ESC in {entry}");
    }
}

#[test]
fn under_systemd_without_journald_logs_are_plain_lines_without_timestamps() {
    const TEST: &str = "under_systemd_without_journald_logs_are_plain_lines_without_timestamps";
    if !have_root(TEST) || !have_program("unshare", TEST) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let err = work.path().join("stderr");
    let (ok, report) = in_namespace(
        &format!("WITH_JOURNALD=0\n{RUN_UNDER_A_JOURNAL}"),
        &[
            ("ERR", &err),
            ("OUT", &work.path().join("stdout")),
            ("DATA", &work.path().join("data")),
        ],
    );
    assert!(ok, "{report}");
    let stderr = std::fs::read(&err).unwrap();
    let lines = text(&stderr);
    assert!(!stderr.contains(&ESC), "{lines:?}");
    assert!(lines.contains("cannot reach journald"), "{lines}");
    assert!(lines.contains("store recovered"), "{lines}");
    for line in lines.lines() {
        // The journal stamps each line itself: a line starts with its level.
        let start = line.trim_start();
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"]
                .iter()
                .any(|level| start.starts_with(level)),
            "a line that does not start with its level: {line:?}"
        );
    }
}
