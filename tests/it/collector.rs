//! End-to-end tests of a single-node collector: the real binary, real senders (`logger`),
//! real sockets on loopback, read back with `starling read`.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::sandbox::{
    assert_nothing_outside_data_dir, count_records, have_program, raw_bytes, wait_until, Node,
};

const WAIT: Duration = Duration::from_secs(20);

fn logger(node: &Node, extra: &[&str], message: &str) {
    let (transport, address) = if extra.contains(&"-d") {
        ("-d", node.udp.unwrap())
    } else {
        ("-T", node.tcp.unwrap())
    };
    let status = Command::new("logger")
        .args([
            "-n",
            "127.0.0.1",
            "-P",
            &address.port().to_string(),
            transport,
        ])
        .args(extra.iter().filter(|arg| **arg != "-d"))
        .arg(message)
        .status()
        .expect("run logger");
    assert!(status.success(), "logger {extra:?} failed");
}

fn by_message<'a>(records: &'a [Value], message: &str) -> &'a Value {
    records
        .iter()
        .find(|record| record["message"] == message)
        .unwrap_or_else(|| panic!("no record with message {message:?} in {records:#?}"))
}

#[test]
fn logger_over_udp_tcp_and_octet_counting() {
    if !have_program("logger", "logger_over_udp_tcp_and_octet_counting") {
        return;
    }
    let node = Node::start(&[]);
    let common = [
        "-t",
        "e2e-app",
        "-p",
        "local3.warning",
        "--msgid",
        "ID7",
        "--rfc5424",
    ];
    logger(&node, &[&common[..], &["-d"]].concat(), "hello over udp");
    logger(&node, &common, "hello over tcp");
    logger(
        &node,
        &[&common[..], &["--octet-count"]].concat(),
        "hello octet counted",
    );
    assert!(
        wait_until(WAIT, || count_records(&node.data_dir) == 3),
        "3 records stored"
    );
    let records = node.read_json(&[]);
    for (message, transport) in [
        ("hello over udp", "udp"),
        ("hello over tcp", "tcp"),
        ("hello octet counted", "tcp"),
    ] {
        let record = by_message(&records, message);
        assert_eq!(record["transport"], transport, "{record}");
        assert_eq!(record["parse"], "rfc5424", "{record}");
        assert_eq!(record["app_name"], "e2e-app");
        assert_eq!(record["msgid"], "ID7");
        assert_eq!(record["facility"], 19);
        assert_eq!(record["severity"], 4);
        assert_eq!(record["pri"], 19 * 8 + 4);
        assert_eq!(record["version"], 1);
        assert_eq!(record["origin"], "test-node");
        let hostname = record["hostname"]
            .as_str()
            .expect("logger sends a hostname");
        assert_eq!(record["source"], hostname, "shard key is the HOSTNAME");
        let raw = record["raw"].as_str().unwrap();
        assert!(
            raw.starts_with("<156>1 ") && raw.ends_with(message),
            "{raw:?}"
        );
        assert!(record["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert_eq!(record["truncated"], false);
    }
}

/// A TCP sender's messages as RFC 5424 lines of about 150 bytes.
fn numbered_message(index: usize) -> String {
    format!(
        "<134>1 2026-11-26T10:00:00.000Z load-host bench 4242 - - message number {index:08} \
         padded to a realistic syslog line length with some more text here ok"
    )
}

#[test]
fn hundred_thousand_tcp_messages_are_exactly_hundred_thousand_records_after_sigterm() {
    let mut node = Node::start(&[]);
    const COUNT: usize = 100_000;
    let mut stream = TcpStream::connect(node.tcp.unwrap()).unwrap();
    let mut buffer = Vec::with_capacity(COUNT * 170);
    for index in 0..COUNT {
        let message = numbered_message(index);
        // Alternate the two framings on one connection, as mixed senders do.
        if index % 2 == 0 {
            write!(buffer, "{} {}", message.len(), message).unwrap();
        } else {
            writeln!(buffer, "{message}").unwrap();
        }
    }
    stream.write_all(&buffer).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    drop(stream);
    // Everything the kernel acknowledged to the sender must be stored, even though the
    // node is asked to stop right away.
    let status = node.terminate(Duration::from_secs(10));
    assert!(
        status.success(),
        "exit status {status}; stderr: {}",
        node.stderr()
    );
    let records = node.read_json(&[]);
    assert_eq!(records.len(), COUNT);
    let mut seen = vec![false; COUNT];
    for record in &records {
        let message = record["message"].as_str().unwrap();
        let index: usize = message["message number ".len().."message number ".len() + 8]
            .parse()
            .unwrap();
        assert!(!seen[index], "message {index} stored twice");
        seen[index] = true;
    }
    let mut seqs: Vec<u64> = records
        .iter()
        .map(|record| record["seq"].as_u64().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=COUNT as u64).collect::<Vec<_>>(),
        "sequences gapless and unique"
    );
}

#[test]
fn kill_9_and_restart_loses_nothing_stored_and_sequences_stay_gapless() {
    let mut node = Node::start(&[]);
    let mut total = 0;
    for round in 0..3 {
        let mut stream = TcpStream::connect(node.tcp.unwrap()).unwrap();
        for index in 0..2_000 {
            writeln!(
                stream,
                "<13>1 - kill-host app - - - round {round} message {index}"
            )
            .unwrap();
        }
        drop(stream);
        total += 2_000;
        assert!(
            wait_until(WAIT, || count_records(&node.data_dir) == total),
            "round {round}: {total} records visible before the kill"
        );
        node.kill();
        node.spawn();
    }
    let status = node.terminate(Duration::from_secs(10));
    assert!(status.success());
    let records = node.read_json(&[]);
    assert_eq!(records.len(), total);
    let mut seqs: Vec<u64> = records
        .iter()
        .map(|record| record["seq"].as_u64().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>());
}

#[test]
fn unparseable_and_hostile_input_is_stored_raw_and_costs_one_connection() {
    let mut node = Node::start(&["--max-message-bytes", "65536"]);
    let tcp = node.tcp.unwrap();
    // A well-behaved sender on its own connection, before and after the hostile ones.
    let mut good = TcpStream::connect(tcp).unwrap();
    writeln!(good, "<14>1 - good-host app - - - good before").unwrap();

    // Unparseable text, NUL bytes, invalid UTF-8 and an escaping host name: stored raw.
    let mut hostile = TcpStream::connect(tcp).unwrap();
    hostile.write_all(b"this is not syslog at all\n").unwrap();
    hostile
        .write_all(b"<13>1 - nul-host app - - - has\x01control\n")
        .unwrap();
    hostile
        .write_all(b"<13>1 - utf8-host app - - - bad \xff\xfe bytes\n")
        .unwrap();
    hostile
        .write_all(b"<13>1 2026-11-26T10:00:00Z ../../etc/passwd app - - - escape\n")
        .unwrap();
    // A 1 MiB line: truncated to the limit and flagged.
    let mut long_line = b"<13>1 - long-host app - - - ".to_vec();
    long_line.resize(1024 * 1024, b'x');
    long_line.push(b'\n');
    hostile.write_all(&long_line).unwrap();
    drop(hostile);

    // A 20-digit length prefix: that connection is closed, nothing else is affected.
    let mut garbage = TcpStream::connect(tcp).unwrap();
    garbage
        .write_all(b"12345678901234567890 <13>1 - x y - - - never\n")
        .unwrap();
    drop(garbage);

    // UDP: a datagram of invalid UTF-8 without PRI.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"\xc3\x28 raw udp garbage\n", node.udp.unwrap())
        .unwrap();

    writeln!(good, "<14>1 - good-host app - - - good after").unwrap();
    drop(good);
    assert!(
        wait_until(WAIT, || count_records(&node.data_dir) == 8),
        "8 records stored"
    );
    assert!(node.is_running());

    let records = node.read_json(&[]);
    let find = |needle: &[u8]| -> &Value {
        records
            .iter()
            .find(|record| {
                raw_bytes(record)
                    .windows(needle.len())
                    .any(|window| window == needle)
            })
            .unwrap_or_else(|| panic!("no record containing {:?}", String::from_utf8_lossy(needle)))
    };
    assert_eq!(find(b"not syslog at all")["parse"], "unparsed");
    assert_eq!(
        raw_bytes(find(b"control")),
        b"<13>1 - nul-host app - - - has\x01control"
    );
    let invalid = find(b"bad \xff\xfe bytes");
    assert_eq!(
        raw_bytes(invalid),
        b"<13>1 - utf8-host app - - - bad \xff\xfe bytes"
    );
    assert!(
        invalid["raw_base64"].is_string(),
        "invalid UTF-8 comes with raw_base64"
    );
    let long = find(b"long-host");
    assert_eq!(long["truncated"], true);
    assert_eq!(raw_bytes(long).len(), 65536);
    assert_eq!(
        raw_bytes(find(b"raw udp garbage")),
        b"\xc3\x28 raw udp garbage"
    );
    find(b"good before");
    find(b"good after");
    assert!(!records
        .iter()
        .any(|record| raw_bytes(record).ends_with(b"never")));
    let escape = find(b"escape");
    assert_eq!(
        escape["source"], "../../etc/passwd",
        "the original name is kept"
    );
    assert!(
        node.metric("starling_framing_errors_total") >= 1.0,
        "{}",
        node.metrics()
    );

    assert_nothing_outside_data_dir(&node);
    let status = node.terminate(Duration::from_secs(10));
    assert!(status.success());
}

/// Bad values exit 2 with one line; clap's own usage errors are printed whole (see
/// `validate::usage_errors_print_clap_s_whole_message_and_exit_2`).
#[test]
fn cli_contract_usage_errors_exit_2_with_one_line() {
    for args in [
        &["run", "--syslog-udp", "not-an-address"][..],
        &["run", "--config", "/nonexistent/starling.toml"],
        &["read", "--since", "yesterday-ish", "--data-dir", "."],
    ] {
        let output = Command::new(crate::sandbox::starling_bin())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.starts_with("starling: "), "{stderr:?}");
    }
}

#[test]
fn validate_accepts_good_and_rejects_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[syslog]\nudp = [\"127.0.0.1:1514\"]\n").unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[syslog]\nudp = [\"127.0.0.1:1514\"]\nmax-mesage-bytes = 5\n",
    )
    .unwrap();
    let run = |path: &std::path::Path| {
        Command::new(crate::sandbox::starling_bin())
            .args(["validate", "--config"])
            .arg(path)
            .output()
            .unwrap()
    };
    assert_eq!(run(&good).status.code(), Some(0));
    let output = run(&bad);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("max-mesage-bytes") && stderr.contains("line 3"),
        "{stderr}"
    );
}

/// One host sending without pause: `segment-max-age` rolls its segment on time, and age
/// retention then deletes the sealed ones. (The age was checked only when a run of another
/// shard's records began, so a store fed by one busy source kept one segment until it was
/// full: nothing sealed, nothing deleted.) The node runs alone, so its own records need no
/// spool floor (`--spool-retention 0s`, as the README says for a lone node).
#[test]
fn one_busy_source_rolls_by_age_and_age_retention_deletes_its_old_segments() {
    let node = Node::start(&[
        "--segment-max-age",
        "1s",
        "--retention-max-age",
        "3s",
        "--spool-retention",
        "0s",
    ]);
    let mut stream = TcpStream::connect(node.tcp.unwrap()).unwrap();
    let mut sent = 0usize;
    let rolled_and_deleted = wait_until(Duration::from_secs(60), || {
        for _ in 0..10 {
            sent += 1;
            let line = format!("<13>Dec  4 10:00:00 busy app: message {sent}\n");
            stream.write_all(line.as_bytes()).unwrap();
        }
        node.metric("starling_store_segments_sealed_total") >= 3.0
            && node.metric("starling_store_segments_deleted_total") >= 1.0
    });
    assert!(
        rolled_and_deleted,
        "after {sent} messages: {} sealed, {} deleted",
        node.metric("starling_store_segments_sealed_total"),
        node.metric("starling_store_segments_deleted_total")
    );
    // What is left is the newest part, ending with the last message stored.
    let last = format!("message {sent}");
    assert!(wait_until(WAIT, || node
        .read_json(&[])
        .iter()
        .any(|r| r["message"] == last.as_str())));
    let kept = node.read_json(&[]).len();
    assert!(kept < sent, "{kept} of {sent} kept: old segments deleted");
}
