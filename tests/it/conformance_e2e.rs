//! The conformance corpus sent to a real node: every RFC 5424 and RFC 3164 input of
//! `tests/data/conformance/` (cases from peer projects' own test suites; its README names the
//! sources) goes over one TCP connection, octet-counted, to a node whose RFC 3164 zone is
//! UTC. Every input must come back from `starling read` with its exact raw bytes, and the
//! parse verdict must never be lost: rows that their source calls valid must not be stored
//! `unparsed` more often than the in-process conformance score allows.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::sandbox::{raw_bytes, wait_until, Node};

/// The input bytes of one corpus line (`bytes_as_latin1`: each char is one byte).
fn input_bytes(row: &Value) -> Vec<u8> {
    let input = row["input"].as_str().expect("input");
    if row["bytes_as_latin1"] == true {
        input
            .chars()
            .map(|c| u8::try_from(u32::from(c)).expect("latin1 char"))
            .collect()
    } else {
        input.as_bytes().to_vec()
    }
}

fn corpus(name: &str) -> Vec<Value> {
    let path = format!(
        "{}/tests/data/conformance/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
    text.lines()
        .map(|line| serde_json::from_str(line).expect("corpus line"))
        .collect()
}

#[test]
fn every_conformance_input_is_stored_byte_exact() {
    let mut node = Node::start(&["--rfc3164-timezone", "UTC"]);
    let mut rows = corpus("rfc5424.jsonl");
    rows.extend(corpus("rfc3164.jsonl"));
    // An empty frame carries no message; the framing tests cover it.
    rows.retain(|row| !input_bytes(row).is_empty());
    let mut expected: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut stream = TcpStream::connect(node.tcp.unwrap()).unwrap();
    for row in &rows {
        let bytes = input_bytes(row);
        write!(stream, "{} ", bytes.len()).unwrap();
        stream.write_all(&bytes).unwrap();
        *expected.entry(bytes).or_default() += 1;
    }
    drop(stream);
    // Some inputs contain LF, so count JSON records rather than raw lines.
    assert!(wait_until(Duration::from_secs(30), || node
        .read_json(&[])
        .len()
        == rows.len()));
    let records = node.read_json(&[]);
    let mut stored: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut verdicts: HashMap<Vec<u8>, String> = HashMap::new();
    for record in &records {
        let raw = raw_bytes(record);
        verdicts.insert(raw.clone(), record["parse"].as_str().unwrap().to_string());
        *stored.entry(raw).or_default() += 1;
    }
    assert_eq!(
        stored, expected,
        "every input stored exactly once with its exact bytes"
    );

    // Valid RFC 5424 rows: no more than 3% may end up unparsed.
    let valid_5424: Vec<_> = rows
        .iter()
        .filter(|row| row["id"].as_str().unwrap().starts_with("rfc5424") && row["valid"] == true)
        .collect();
    let unparsed = valid_5424
        .iter()
        .filter(|row| verdicts[&input_bytes(row)] == "unparsed")
        .count();
    assert!(
        unparsed * 100 <= valid_5424.len() * 3,
        "{unparsed} of {} valid RFC 5424 rows stored unparsed",
        valid_5424.len()
    );
    assert!(node.terminate(Duration::from_secs(10)).success());
}
