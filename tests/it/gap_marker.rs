//! A gap marker in a master's store, read back with the real binary: `starling read --format
//! json` shows it as an ordinary record in the documented shape (its text says what was lost)
//! and `starling verify` finds nothing wrong.

use std::process::Command;

use bytes::Bytes;
use starling::record::{ParseStatus, Record, Transport};
use starling::render::JSON_KEYS;
use starling::store::{Store, StoreConfig};

use crate::sandbox::{read_json, starling_bin};

fn forwarded(seq: u64) -> Record {
    Record {
        received_at_micros: 1_764_000_000_000_000 + seq as i64,
        event_time: None,
        origin: "node-b".into(),
        origin_seq: seq,
        peer: Some("192.0.2.7:514".into()),
        transport: Transport::Udp,
        parse: ParseStatus::Unparsed,
        truncated: false,
        source: "host-b".into(),
        raw: Bytes::from(format!("record {seq}")),
        lost_from: None,
        tls_peer: None,
        file: None,
    }
}

#[test]
fn read_shows_a_gap_marker_as_a_record_and_verify_is_clean() {
    let temp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(temp.path(), "master", StoreConfig::default()).unwrap();
    let mut batch = vec![forwarded(1), forwarded(2)];
    batch.push(Record::gap_marker("node-b", 3, 9, 1_764_000_000_000_005));
    batch.push(forwarded(10));
    let ticket = store.handle().blocking_append(batch).unwrap();
    assert_eq!(ticket.wait_durable().unwrap().num_stored, 4);
    store.close().unwrap();

    let records = read_json(temp.path(), &[]);
    let seqs: Vec<u64> = records
        .iter()
        .map(|record| record["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2, 9, 10], "in receive-time order");
    let marker = records[2].as_object().unwrap();
    for key in JSON_KEYS {
        assert!(marker.contains_key(key), "missing {key}");
    }
    assert_eq!(marker.len(), JSON_KEYS.len(), "no extra keys: {marker:?}");
    let text = "starling: seqs 3..=9 of origin node-b were lost before they were forwarded \
                (no longer in the origin's spool: removed by retention, damaged on disk or never synced)";
    assert_eq!(marker["raw"], text);
    assert_eq!(marker["message"], text);
    assert_eq!(marker["parse"], "unparsed");
    assert_eq!(marker["transport"], "tcp");
    assert_eq!(marker["origin"], "node-b");
    assert_eq!(marker["source"], "node-b");
    assert_eq!(marker["peer"], serde_json::Value::Null);
    assert_eq!(marker["truncated"], false);
    assert_eq!(marker["received_at"], "2025-11-24T16:00:00.000005Z");

    let verify = Command::new(starling_bin())
        .args(["verify", "--data-dir"])
        .arg(temp.path())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "verify: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
}
