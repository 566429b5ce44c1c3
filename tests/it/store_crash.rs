//! kill -9 loop: a child process (this test binary re-executed with an env var) appends
//! durably-acknowledged batches and logs each acknowledgement; the parent SIGKILLs it at
//! random points 50 times, reopening the store each time. Afterwards no acknowledged record
//! may be missing, none may be stored twice, and every origin's sequences must be gapless.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use starling::record::{ParseStatus, Record, Transport};
use starling::store::{verify, ReadOptions, Store, StoreConfig, StoreReader};

use crate::sandbox::wait_until;

const DIR_ENV: &str = "STARLING_KILL9_DIR";
const ACKS_ENV: &str = "STARLING_KILL9_ACKS";

fn record(source: &str, origin: &str, origin_seq: u64, i: u64) -> Record {
    Record {
        received_at_micros: 1_700_000_000_000_000 + i as i64,
        event_time: None,
        origin: origin.to_string().into(),
        origin_seq,
        peer: None,
        transport: Transport::Tcp,
        parse: ParseStatus::Unparsed,
        truncated: false,
        source: source.to_string().into(),
        raw: Bytes::from(format!(
            "<13>kill9 test message {i} {}",
            "p".repeat((i % 97) as usize)
        )),
        lost_from: None,
        tls_peer: None,
        file: None,
    }
}

/// The child: appends until killed. Runs only when the parent sets the env vars.
#[test]
#[ignore = "child process of kill9_loop_loses_no_durable_record"]
fn kill9_child() {
    let (Ok(dir), Ok(acks)) = (std::env::var(DIR_ENV), std::env::var(ACKS_ENV)) else {
        return;
    };
    let config = StoreConfig {
        segment_max_bytes: 256 * 1024,
        ..StoreConfig::default()
    };
    let (store, _) = Store::open(Path::new(&dir), "node", config).expect("child opens the store");
    let handle = store.handle();
    let mut agent_next = handle.high_water_marks().get("agent").copied().unwrap_or(0) + 1;
    // A forwarder retrying its last batch after the crash: all duplicates, nothing stored.
    if agent_next > 10 {
        let retry: Vec<Record> = (agent_next - 10..agent_next)
            .map(|s| record("b", "agent", s, s))
            .collect();
        let outcome = handle
            .blocking_append(retry)
            .unwrap()
            .wait_durable()
            .expect("retry durable");
        assert_eq!((outcome.num_stored, outcome.num_duplicates), (0, 10));
    }
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(acks)
        .expect("acks file");
    let mut i = 0u64;
    loop {
        let mut batch = Vec::new();
        for k in 0..30u64 {
            i += 1;
            batch.push(record(["a", "b", "c"][(k % 3) as usize], "node", 0, i));
        }
        for k in 0..10u64 {
            batch.push(record(
                ["b", "d"][(k % 2) as usize],
                "agent",
                agent_next + k,
                i + k,
            ));
        }
        let ticket = handle.blocking_append(batch).expect("append");
        let outcome = ticket.wait_durable().expect("durable");
        let assigned = outcome.assigned.expect("local seqs");
        let line = format!(
            "node {} {}\nagent {} {}\n",
            assigned.start(),
            assigned.end(),
            agent_next,
            agent_next + 9
        );
        agent_next += 10;
        log.write_all(line.as_bytes()).expect("log ack");
    }
}

fn acked(path: &Path) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        if let [origin, from, to] = parts[..] {
            for seq in from.parse::<u64>().unwrap()..=to.parse::<u64>().unwrap() {
                out.push((origin.to_string(), seq));
            }
        }
    }
    out
}

#[test]
fn kill9_loop_loses_no_durable_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acks = dir.path().join("acks");
    let exe = std::env::current_exe().unwrap();
    let mut rng_state = 0x2545_f491_4f6c_dd1du64;
    for kill in 0..50 {
        let before = std::fs::read_to_string(&acks).map_or(0, |t| t.lines().count());
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        let wait_for = 2 + (rng_state % 6) as usize;
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "store_crash::kill9_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, &data)
            .env(ACKS_ENV, &acks)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let progressed = wait_until(Duration::from_secs(20), || {
            std::fs::read_to_string(&acks).map_or(0, |t| t.lines().count()) >= before + wait_for
        });
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(
            progressed,
            "kill {kill}: child made no progress (exit {status})"
        );
    }
    let acked = acked(&acks);
    assert!(acked.len() > 50 * 20, "only {} acks", acked.len());

    let report = verify(&data).unwrap();
    assert!(report.is_clean(), "{report}");
    let reader = StoreReader::open(&data).unwrap();
    let mut stored: HashMap<String, Vec<u64>> = HashMap::new();
    for item in reader.read(&ReadOptions::default()) {
        let r = item.expect("no corrupt frame after kill -9");
        stored
            .entry(r.record.origin.to_string())
            .or_default()
            .push(r.record.origin_seq);
    }
    for (origin, seqs) in &mut stored {
        let n = seqs.len();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), n, "origin {origin}: duplicate records");
        assert_eq!(
            *seqs,
            (1..=n as u64).collect::<Vec<_>>(),
            "origin {origin}: seqs not gapless"
        );
    }
    let present: HashSet<(String, u64)> = stored
        .iter()
        .flat_map(|(o, s)| s.iter().map(move |q| (o.clone(), *q)))
        .collect();
    let lost: Vec<_> = acked.iter().filter(|a| !present.contains(a)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged records lost: {:?}",
        &lost[..lost.len().min(10)]
    );

    let (store, report) = Store::open(&data, "node", StoreConfig::default()).unwrap();
    assert!(report.problems.is_empty(), "{report:?}");
    store.close().unwrap();
    assert!(verify(&data).unwrap().is_clean());
}
