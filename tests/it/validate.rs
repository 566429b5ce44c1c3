//! `validate` refuses what `run` refuses (issue 19): every refusal `run` gives before it
//! binds a socket, driven through the real binary both ways with the same file, must come
//! out of `validate` with the same message and exit code 2 — the packaged unit's
//! `ExecStartPre=starling validate` is only worth something if it does. Also: the whole of
//! clap's usage errors, and a bare `starling` printing its help.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::sandbox::{starling_bin, wait_until};

/// A file that `run` starts with: every listener on 127.0.0.1:0, a private data directory.
fn base(data_dir: &Path) -> BTreeMap<(&'static str, &'static str), String> {
    let mut keys = BTreeMap::new();
    keys.insert(("", "node-id"), "\"refusals\"".to_string());
    keys.insert(
        ("", "data-dir"),
        format!("{:?}", data_dir.display().to_string()),
    );
    keys.insert(("syslog", "udp"), "[\"127.0.0.1:0\"]".into());
    keys.insert(("syslog", "tcp"), "[\"127.0.0.1:0\"]".into());
    keys.insert(("cluster", "gossip"), "\"127.0.0.1:0\"".into());
    keys.insert(("cluster", "forward"), "\"127.0.0.1:0\"".into());
    keys.insert(("api", "listen"), "\"127.0.0.1:0\"".into());
    keys
}

/// The TOML text of `keys`, section by section.
fn render(keys: &BTreeMap<(&'static str, &'static str), String>) -> String {
    let mut text = String::new();
    let mut section = "";
    for ((table, key), value) in keys {
        if *table != section {
            text.push_str(&format!("[{table}]\n"));
            section = table;
        }
        text.push_str(&format!("{key} = {value}\n"));
    }
    text
}

/// Runs `starling ARGS`; a `run` that starts after all is stopped and reported.
fn starling(args: &[&str], config: &Path) -> Output {
    let mut child = Command::new(starling_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_until(Duration::from_secs(20), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    child.wait_with_output().unwrap()
}

#[test]
fn validate_refuses_everything_run_refuses_with_the_same_message() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    // (section, key, value, what the message must contain besides the key and a line)
    let cases: &[(&str, &str, &str, &str)] = &[
        ("", "node-id", "\"has space\"", "contains the character ' '"),
        ("", "node-id", "5", "5 is not a quoted string"),
        ("", "data-dir", "\"\"", "must not be empty"),
        ("", "bogus", "1", "unknown field `bogus`"),
        (
            "syslog",
            "max-mesage-bytes",
            "5",
            "unknown field `max-mesage-bytes`",
        ),
        (
            "syslog",
            "max-message-bytes",
            "\"64x\"",
            "is not a size like 64KiB",
        ),
        (
            "syslog",
            "max-message-bytes",
            "100",
            "100 bytes is outside 480 bytes to 16 MiB",
        ),
        (
            "syslog",
            "pipeline-max-bytes",
            "\"1KiB\"",
            "is less than syslog.max-message-bytes",
        ),
        ("syslog", "max-connections", "0", "must be at least 1"),
        (
            "syslog",
            "idle-timeout",
            "\"0s\"",
            "must be greater than zero",
        ),
        (
            "syslog",
            "idle-timeout",
            "30",
            "30 is not a duration like \"30s\"",
        ),
        ("syslog", "udp-sockets", "-1", "-1 is not a whole number"),
        (
            "syslog",
            "udp",
            "[\"nowhere\"]",
            "is not an address of the form IP:PORT",
        ),
        (
            "syslog",
            "tcp",
            "[\"none\", \"127.0.0.1:0\"]",
            "cannot be combined",
        ),
        (
            "syslog",
            "udp",
            "[{ address = \"127.0.0.1:0\", rfc3164-timezone = \"Mars/X\" }]",
            "`syslog.udp.rfc3164-timezone`: unknown time zone \"Mars/X\"",
        ),
        (
            "syslog",
            "rfc3164-timezone",
            "\"Mars/X\"",
            "unknown time zone",
        ),
        ("syslog", "shard-by", "\"color\"", "unknown variant `color`"),
        (
            "store",
            "segment-max-bytes",
            "10",
            "below the minimum of 64 KiB",
        ),
        (
            "store",
            "segment-max-age",
            "\"0s\"",
            "must be greater than zero",
        ),
        (
            "store",
            "idle-shard-seal",
            "\"0s\"",
            "must be greater than zero",
        ),
        ("store", "max-open-shards", "0", "must be at least 1"),
        ("store", "source-name-max-bytes", "10", "is outside"),
        (
            "store",
            "commit-max-delay",
            "\"11s\"",
            "above the maximum of 10s",
        ),
        (
            "store.retention",
            "max-age",
            "\"soon\"",
            "is not a duration like",
        ),
        (
            "store.retention",
            "total-max-bytes",
            "\"lots\"",
            "is not a size like",
        ),
        ("cluster", "cluster-id", "\"\"", "must not be empty"),
        (
            "cluster",
            "priority",
            "-5",
            "-5 is not a whole number from 0 to 4294967295",
        ),
        (
            "cluster",
            "may-be-master",
            "\"yes\"",
            "\"yes\" is not true or false",
        ),
        (
            "cluster",
            "seeds",
            "[\"no-port\"]",
            "is not of the form HOST:PORT",
        ),
        (
            "cluster",
            "gossip",
            "\"0.0.0.0:5515\"",
            "an address peers cannot reach",
        ),
        (
            "cluster",
            "gossip-advertise",
            "\"0.0.0.0:1\"",
            "an address peers cannot reach",
        ),
        ("cluster", "forward", "\"127.0.0.1\"", "is not an address"),
        ("api", "listen", "\"bad\"", "is not an address"),
        ("api", "max-connections", "0", "must be at least 1"),
        (
            "api",
            "header-timeout",
            "\"0s\"",
            "must be greater than zero",
        ),
        ("api", "body-timeout", "\"0s\"", "must be greater than zero"),
        ("api", "upload-max-entry-bytes", "0", "must be at least 1"),
        ("api", "upload-max-journals", "0", "must be at least 1"),
        ("log", "level", "\"verbose!!\"", "is not a log level"),
        ("log", "level", "\"warning\"", "is not a log level"),
        ("log", "color", "\"blue\"", "is not auto, always or never"),
        ("log", "format", "\"xml\"", "is not text or json"),
    ];
    // The base file starts: the table is not a list of files that fail for another reason.
    let good = work.path().join("good.toml");
    std::fs::write(&good, render(&base(&data_dir))).unwrap();
    let output = starling(&["validate"], &good);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let mut started = crate::sandbox::Node::start(&["--config", good.to_str().unwrap()]);
    started.terminate(Duration::from_secs(10));

    for (index, (section, key, value, expected)) in cases.iter().enumerate() {
        let mut keys = base(&data_dir);
        keys.insert((section, key), value.to_string());
        // A second key in the same place where one check needs its neighbour.
        if *key == "gossip-advertise" {
            keys.insert(("cluster", "gossip"), "\"0.0.0.0:0\"".into());
        }
        let file = work.path().join(format!("case-{index}.toml"));
        std::fs::write(&file, render(&keys)).unwrap();
        let run = starling(&["run"], &file);
        let validate = starling(&["validate"], &file);
        let run_stderr = String::from_utf8_lossy(&run.stderr);
        let validate_stderr = String::from_utf8_lossy(&validate.stderr);
        let case = format!("{section}.{key} = {value}");
        assert_eq!(run.status.code(), Some(2), "run {case}: {run_stderr}");
        assert_eq!(
            validate.status.code(),
            Some(2),
            "validate {case}: {validate_stderr}"
        );
        assert_eq!(run_stderr, validate_stderr, "{case}");
        let full_key = if section.is_empty() {
            key.to_string()
        } else {
            format!("{section}.{key}")
        };
        assert!(
            validate_stderr.contains(&format!("`{full_key}")) || expected.contains("unknown field"),
            "{case}: {validate_stderr}"
        );
        assert!(
            validate_stderr.contains(": line "),
            "{case}: {validate_stderr}"
        );
        assert!(
            validate_stderr.contains(expected),
            "{case}: {validate_stderr}"
        );
        assert_eq!(
            validate_stderr.lines().count(),
            1,
            "{case}: {validate_stderr}"
        );
        // Refused before anything was created or bound.
        assert!(!data_dir.exists(), "{case}: run created the data directory");
    }
}

/// clap's whole message is printed: usage, what is missing, the allowed values.
#[test]
fn usage_errors_print_clap_s_whole_message_and_exit_2() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["validate"],
            &[
                "the following required arguments were not provided",
                "--config <FILE>",
                "Usage:",
            ],
        ),
        (
            &["status", "--format", "xml"],
            &["invalid value 'xml'", "[possible values: table, json]"],
        ),
        (
            &["run", "--seeed", "a:1"],
            &["unexpected argument '--seeed'", "--seed"],
        ),
        (
            &["valdate"],
            &["unrecognized subcommand 'valdate'", "validate"],
        ),
    ];
    for (args, expected) in cases {
        let output = Command::new(starling_bin()).args(*args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        for fragment in *expected {
            assert!(
                stderr.contains(fragment),
                "{args:?}: {fragment:?} not in {stderr}"
            );
        }
    }
    // A bare `starling` prints the help (every subcommand) and exits 2.
    let output = Command::new(starling_bin()).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for subcommand in ["run", "read", "verify", "validate", "status", "Usage:"] {
        assert!(stderr.contains(subcommand), "{subcommand}: {stderr}");
    }
    // Help asked for is not an error.
    let output = Command::new(starling_bin()).arg("--help").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
}
