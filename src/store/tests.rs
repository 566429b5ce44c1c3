//! Store tests on real files: round trip, reopen, dedup, gaps, roll and seal, damage and
//! recovery. Helpers build records and read a store back.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;

use super::format::codec;
use super::read::follower;
use super::*;
use crate::record::{EventTime, ParseStatus, Record, Transport};

pub(crate) fn rec(source: &str, origin: &str, origin_seq: u64, t: i64, raw: &str) -> Record {
    Record {
        received_at_micros: t,
        event_time: (t % 3 == 0).then_some(EventTime {
            unix_micros: t - 7,
            utc_offset_secs: -3600,
        }),
        origin: origin.to_string().into(),
        origin_seq,
        peer: (t % 2 == 0).then(|| "192.0.2.1:40000".into()),
        transport: Transport::Udp,
        parse: ParseStatus::Rfc3164,
        truncated: t % 5 == 0,
        source: source.to_string().into(),
        raw: Bytes::from(raw.to_string()),
        lost_from: None,
        tls_peer: None,
        file: None,
    }
}

pub(crate) fn small_config() -> StoreConfig {
    StoreConfig {
        segment_max_bytes: 64 * 1024,
        commit_max_delay: Duration::from_millis(1),
        ..StoreConfig::default()
    }
}

pub(crate) fn read_all(dir: &Path) -> (Vec<StoredRecord>, Vec<String>) {
    let reader = StoreReader::open(dir).unwrap();
    let mut ok = Vec::new();
    let mut errs = Vec::new();
    for item in reader.read(&ReadOptions::default()) {
        match item {
            Ok(r) => ok.push(r),
            Err(e) => errs.push(e.to_string()),
        }
    }
    (ok, errs)
}

fn append(store: &Store, records: Vec<Record>) -> Result<AppendOutcome, StoreError> {
    store.handle().blocking_append(records)?.wait_durable()
}

/// The largest message a listener accepts (16 MiB), forwarded with origin and peer names at
/// their longest, is stored whole: the frame cap leaves room for the record's own fields.
#[test]
fn a_largest_record_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), "me", small_config()).unwrap();
    let mut record = rec("h", &"o".repeat(codec::MAX_NAME_BYTES), 1, 3, "");
    record.peer = Some("p".repeat(codec::MAX_NAME_BYTES).into());
    record.raw = Bytes::from(vec![b'x'; crate::framing::MAX_MESSAGE_BYTES_LIMIT]);
    let outcome = append(&store, vec![record.clone()]).unwrap();
    assert_eq!(outcome.num_stored, 1);
    store.close().unwrap();
    let (got, errs) = read_all(dir.path());
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].record, record);
}

#[test]
fn round_trip_reopen_and_local_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = Store::open(dir.path(), "me", small_config()).unwrap();
    assert_eq!(report, RecoveryReport::default());
    let mut sent = Vec::new();
    for batch in 0..20 {
        let records: Vec<Record> = (0..50)
            .map(|i| {
                let t = 1_000_000 + batch * 1000 + i;
                rec(
                    ["alpha", "Beta", "../x"][(i % 3) as usize],
                    "ignored",
                    0,
                    t,
                    &format!("msg {batch} {i} {}", "x".repeat(i as usize)),
                )
            })
            .collect();
        sent.extend(records.clone());
        let outcome = append(&store, records).unwrap();
        let first = batch as u64 * 50 + 1;
        assert_eq!(
            outcome,
            AppendOutcome {
                num_stored: 50,
                num_duplicates: 0,
                assigned: Some(first..=first + 49)
            }
        );
    }
    assert_eq!(store.handle().high_water_marks().get("me"), Some(&1000));
    store.close().unwrap();

    let (got, errs) = read_all(dir.path());
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(got.len(), 1000);
    let mut by_seq: Vec<_> = got
        .iter()
        .map(|r| (r.record.origin_seq, r.record.clone()))
        .collect();
    by_seq.sort_by_key(|x| x.0);
    for (i, (seq, r)) in by_seq.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        let mut want = sent[i].clone();
        want.origin = "me".into();
        want.origin_seq = *seq;
        assert_eq!(r, &want);
    }
    // Merged by receive time.
    assert!(got
        .windows(2)
        .all(|w| w[0].record.received_at_micros <= w[1].record.received_at_micros));
    let reader = StoreReader::open(dir.path()).unwrap();
    let mut names: Vec<_> = reader.shards().into_iter().map(|s| s.source).collect();
    names.sort();
    assert_eq!(names, vec!["../x", "Beta", "alpha"]);
    assert!(verify(dir.path()).unwrap().is_clean());

    let (store, report) = Store::open(dir.path(), "me", small_config()).unwrap();
    assert!(
        report.problems.is_empty() && report.truncated.is_empty(),
        "{report:?}"
    );
    assert_eq!(store.handle().high_water_marks().get("me"), Some(&1000));
    let outcome = append(&store, vec![rec("alpha", "me", 0, 5, "after reopen")]).unwrap();
    assert_eq!(outcome.assigned, Some(1001..=1001));
    drop(store);
    let (got, errs) = read_all(dir.path());
    assert!(errs.is_empty());
    assert_eq!(got.len(), 1001);
    let alpha: Vec<u64> = got
        .iter()
        .filter(|r| &*r.record.source == "alpha")
        .map(|r| r.shard_seq)
        .collect();
    let mut sorted = alpha.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        (0..alpha.len() as u64).collect::<Vec<_>>(),
        "shard seqs gapless"
    );
}

#[test]
fn forwarded_records_are_deduplicated_and_gaps_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), "me", small_config()).unwrap();
    let batch = |from: u64, to: u64| {
        (from..=to)
            .map(|s| rec("h", "agent", s, s as i64, "m"))
            .collect::<Vec<_>>()
    };
    assert_eq!(append(&store, batch(1, 10)).unwrap().num_stored, 10);
    let o = append(&store, batch(5, 15)).unwrap();
    assert_eq!((o.num_stored, o.num_duplicates, o.assigned), (5, 6, None));
    let err = append(&store, batch(17, 20)).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Gap {
                stored: 15,
                got: 17,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.handle().high_water_marks().get("agent"), Some(&15));
    let stats = store.handle().stats();
    assert_eq!((stats.duplicates_dropped, stats.gaps_refused), (6, 1));
    assert_eq!((stats.num_shards, stats.num_segments), (1, 1));
    assert!(
        stats.bytes_on_disk > 0 && stats.appended_records == 15 && stats.commits > 0,
        "{stats:?}"
    );
    store.close().unwrap();
    let (store, _) = Store::open(dir.path(), "me", small_config()).unwrap();
    assert_eq!(store.handle().high_water_marks().get("agent"), Some(&15));
    let o = append(&store, batch(1, 16)).unwrap();
    assert_eq!((o.num_stored, o.num_duplicates), (1, 15));
    drop(store);
    let (got, _) = read_all(dir.path());
    let mut seqs: Vec<u64> = got.iter().map(|r| r.record.origin_seq).collect();
    seqs.sort();
    assert_eq!(seqs, (1..=16).collect::<Vec<_>>());
}

#[test]
fn second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, _) = Store::open(dir.path(), "me", small_config()).unwrap();
    assert!(matches!(
        Store::open(dir.path(), "me", small_config()),
        Err(StoreError::Locked { .. })
    ));
}

fn segment_bytes(dir: &Path) -> (usize, u64) {
    let mut n = 0;
    let mut bytes = 0;
    for shard in std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
    {
        for f in std::fs::read_dir(shard.path()).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == "seg") {
                n += 1;
                bytes += f.metadata().unwrap().len();
            }
        }
    }
    (n, bytes)
}

#[test]
fn retention_by_age_deletes_only_old_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let retention = RetentionConfig {
        max_age: Some(Duration::from_secs(3600)),
        ..RetentionConfig::default()
    };
    let config = StoreConfig {
        segment_max_bytes: 4096,
        retention,
        ..small_config()
    };
    let (store, _) = Store::open(dir.path(), "me", config).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    // Old records (received in 1970), then recent ones.
    for i in 0..40 {
        let t = if i < 30 { 1_000 + i } else { now + i };
        store
            .handle()
            .blocking_append(vec![rec("h", "me", 0, t, &"r".repeat(400))])
            .unwrap()
            .wait_durable()
            .unwrap();
    }
    let stats = store.handle().stats();
    assert!(stats.segments_deleted > 0, "{stats:?}");
    store.close().unwrap();
    let (got, errs) = read_all(dir.path());
    assert!(errs.is_empty(), "{errs:?}");
    assert!(
        got.iter()
            .filter(|r| r.record.received_at_micros >= now)
            .count()
            == 10,
        "recent records kept"
    );
    assert!(got.len() < 40, "old sealed segments deleted");
    assert!(verify(dir.path()).unwrap().is_clean());
}

#[test]
fn retention_by_bytes_per_shard_and_total() {
    for (shard_max, total_max) in [(Some(16 * 1024), None), (None, Some(24 * 1024))] {
        let dir = tempfile::tempdir().unwrap();
        let retention = RetentionConfig {
            max_age: None,
            shard_max_bytes: shard_max,
            total_max_bytes: total_max,
            spool_retention: None,
        };
        let config = StoreConfig {
            segment_max_bytes: 4096,
            retention,
            ..small_config()
        };
        let (store, _) = Store::open(dir.path(), "me", config).unwrap();
        for i in 0..150 {
            let source = ["x", "y"][i % 2];
            let r = rec(source, "me", 0, i as i64, &"q".repeat(300));
            store
                .handle()
                .blocking_append(vec![r])
                .unwrap()
                .wait_durable()
                .unwrap();
        }
        assert!(store.handle().stats().segments_deleted > 0);
        store.close().unwrap();
        let (_, bytes) = segment_bytes(dir.path());
        let limit = shard_max.map_or(0, |m| 2 * m) + total_max.unwrap_or(0);
        // Active segments count at their preallocated size while open; allow one roll of slack.
        assert!(
            bytes <= limit + 2 * 4096,
            "{bytes} bytes on disk, limit {limit}"
        );
        let (got, errs) = read_all(dir.path());
        assert!(errs.is_empty(), "{errs:?}");
        // What remains is the newest records of each shard, gapless at the end.
        let newest = got.iter().map(|r| r.record.origin_seq).max().unwrap();
        assert_eq!(newest, 150);
        assert!(verify(dir.path()).unwrap().is_clean());
    }
}

/// A store of origin "me" whose segments roll every 4 KiB.
fn rolling_store(dir: &Path) -> Store {
    let config = StoreConfig {
        segment_max_bytes: 4096,
        ..small_config()
    };
    Store::open(dir, "me", config).unwrap().0
}

#[test]
fn follower_tails_across_rolls_and_new_shards_while_writing() {
    let dir = tempfile::tempdir().unwrap();
    let store = rolling_store(dir.path());
    let reader = StoreReader::open(dir.path()).unwrap();
    let mut follower = reader.follow(&ReadOptions::default());
    assert!(follower.poll().is_empty());
    let mut seen = Vec::new();
    for round in 0..6i64 {
        for i in 0..10 {
            let source = if round < 3 { "first" } else { "second" };
            let r = rec(source, "me", 0, round * 100 + i, &"f".repeat(200));
            append(&store, vec![r]).unwrap();
        }
        let got: Vec<_> = follower.poll().into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(got.len(), 10, "round {round}");
        seen.extend(got.into_iter().map(|r| r.record.origin_seq));
        // Reading a live store from the same directory works too.
        let (all, errs) = read_all(dir.path());
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(all.len() as i64, (round + 1) * 10);
    }
    assert!(
        store.handle().stats().segments_sealed > 2,
        "the follower crossed rolls"
    );
    store.close().unwrap();
    assert!(follower.poll().is_empty(), "sealing adds no records");
    seen.sort();
    assert_eq!(seen, (1..=60).collect::<Vec<_>>());
}

#[test]
fn a_follower_continues_exactly_where_a_shard_scan_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let store = rolling_store(dir.path());
    let append_to = |source: &str, t: i64| {
        append(&store, vec![rec(source, "me", 0, t, &"p".repeat(300))]).unwrap();
    };
    // "a" rolls several times; "b" stays in its first segment.
    for t in 0..25 {
        append_to(if t % 5 == 4 { "b" } else { "a" }, t);
    }
    let reader = StoreReader::open(dir.path()).unwrap();
    let mut scanned = Vec::new();
    let mut positions = Vec::new();
    for shard in reader.shards() {
        let mut scan = reader.read_shard(&shard, &ReadOptions::default());
        scanned.extend(scan.by_ref().map(|r| r.unwrap().record.origin_seq));
        positions.push(scan.position());
    }
    assert_eq!(scanned.len(), 25);
    let mut follower = reader.follow_from(&ReadOptions::default(), positions);
    assert!(follower.poll().is_empty(), "nothing is read twice");
    // More in both shards (crossing rolls) and in a shard that did not exist.
    for t in 25..60 {
        append_to(["a", "b", "c"][t as usize % 3], t);
    }
    let mut followed = Vec::new();
    loop {
        let got = follower.poll();
        if got.is_empty() {
            break;
        }
        followed.extend(got.into_iter().map(|r| r.unwrap().record.origin_seq));
    }
    store.close().unwrap();
    followed.sort();
    assert_eq!(followed, (26..=60).collect::<Vec<_>>());
}

#[test]
fn a_follower_poll_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), "me", StoreConfig::default()).unwrap();
    // Appended 100 at a time, so no frame holds more than 100 records.
    let num_chunks = follower::MAX_POLL_RECORDS / 100 + 10;
    let total = num_chunks * 100;
    for chunk in 0..num_chunks {
        let records = (0..100)
            .map(|i| rec("a", "me", 0, (chunk * 100 + i) as i64, "x"))
            .collect();
        append(&store, records).unwrap();
    }
    let reader = StoreReader::open(dir.path()).unwrap();
    let mut follower = reader.follow(&ReadOptions::default());
    let first = follower.poll();
    assert!(
        (follower::MAX_POLL_RECORDS..follower::MAX_POLL_RECORDS + 100).contains(&first.len()),
        "the first poll returned {} records",
        first.len()
    );
    let mut seqs: Vec<u64> = first
        .into_iter()
        .map(|r| r.unwrap().record.origin_seq)
        .collect();
    seqs.extend(
        follower
            .poll()
            .into_iter()
            .map(|r| r.unwrap().record.origin_seq),
    );
    let expected: Vec<u64> = (1..=total as u64).collect();
    assert!(
        seqs == expected,
        "{} records, first {:?}, last {:?}",
        seqs.len(),
        seqs.first(),
        seqs.last()
    );
    assert!(follower.poll().is_empty());
    store.close().unwrap();
}

#[test]
fn verify_names_file_and_offset_of_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), "me", small_config()).unwrap();
    for i in 0..3 {
        store
            .handle()
            .blocking_append(vec![rec("v", "me", 0, i, "verify me")])
            .unwrap()
            .wait_durable()
            .unwrap();
    }
    store.close().unwrap();
    let clean = verify(dir.path()).unwrap();
    assert!(clean.is_clean());
    assert_eq!(clean.shards[0].num_records, 3);
    assert!(
        clean.to_string().contains("\"v\": 3 records in 1 segments"),
        "{clean}"
    );
    let seg = dir.path().join("s-v").join("00000000000000000000.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[64 + 100] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    let report = verify(dir.path()).unwrap();
    assert_eq!(report.num_problems(), 1);
    let text = report.to_string();
    assert!(
        text.contains(&format!("{} at offset 64: ", seg.display())),
        "{text}"
    );
}

#[test]
fn an_unrecoverable_shard_is_reported_and_fenced_off_without_stopping_open() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), "me", small_config()).unwrap();
    for source in ["good", "bad"] {
        store
            .handle()
            .blocking_append(vec![rec(source, "me", 0, 1, "x")])
            .unwrap()
            .wait_durable()
            .unwrap();
    }
    store.close().unwrap();
    // A directory where a segment file should be: every open of it fails.
    std::fs::create_dir(dir.path().join("s-bad").join("00000000000000000009.seg")).unwrap();
    let (store, report) = Store::open(dir.path(), "me", small_config()).unwrap();
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert!(
        report.problems[0].reason.contains("cannot recover shard"),
        "{report:?}"
    );
    let h = store.handle();
    assert!(h
        .blocking_append(vec![rec("bad", "me", 0, 2, "y")])
        .unwrap()
        .wait_durable()
        .is_err());
    let o = h
        .blocking_append(vec![rec("good", "me", 0, 3, "z")])
        .unwrap()
        .wait_durable()
        .unwrap();
    assert_eq!(o.num_stored, 1);
    store.close().unwrap();
    let bad_files: Vec<_> = std::fs::read_dir(dir.path().join("s-bad"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    // shard.meta, the sealed segment (one frame: no .tix) and the directory in its way.
    assert_eq!(
        bad_files.len(),
        3,
        "nothing in the fenced shard was touched: {bad_files:?}"
    );
}

/// A merged read needs every shard's next record, not every shard's file: with a limit of 4
/// open segment files over 40 interleaved shards it reads exactly what an unlimited read
/// does, in the same order, and never holds more than 4 files open (each shard is closed and
/// reopened where it stopped, many times over).
#[test]
fn a_merged_read_of_many_shards_keeps_few_files_open_and_reads_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), "me", small_config()).unwrap();
    for round in 0..5 {
        let batch = (0..40)
            .map(|s| rec(&format!("h{s}"), "me", 0, round * 100 + s, "message"))
            .collect();
        store
            .handle()
            .blocking_append(batch)
            .unwrap()
            .wait_durable()
            .unwrap();
    }
    store.close().unwrap();

    let reader = StoreReader::open(dir.path()).unwrap();
    let mut unlimited = reader.read(&ReadOptions::default());
    let all: Vec<_> = unlimited.by_ref().map(|r| r.unwrap()).collect();
    assert_eq!(all.len(), 200);
    assert_eq!(unlimited.peak_open_files(), 40, "every shard open at once");

    let mut limited = reader.read(&ReadOptions::default()).with_max_open(4);
    let bounded: Vec<_> = limited.by_ref().map(|r| r.unwrap()).collect();
    assert_eq!(bounded, all);
    assert_eq!(limited.peak_open_files(), 4);
}
