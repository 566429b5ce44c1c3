//! Gap markers in the store: accepted only right after the origin's high-water mark (which
//! then moves to the marker's end), trimmed where they overlap what is stored, dropped when
//! wholly stored, refused when impossible, counted, and kept across reopen and crash recovery
//! as a present range, never as a hole.

use std::path::Path;
use std::time::Duration;

use super::tests::{read_all, rec};
use super::*;
use crate::record::Record;

const FAR: &str = "far";

fn config() -> StoreConfig {
    StoreConfig {
        // Nothing is synced by time or size: recovery sees unsynced tails.
        commit_max_delay: Duration::from_secs(3600),
        commit_max_bytes: u64::MAX,
        ..StoreConfig::default()
    }
}

fn open(dir: &Path) -> (Store, RecoveryReport) {
    Store::open(dir, "me", config()).unwrap()
}

fn append(store: &Store, records: Vec<Record>) -> Result<AppendOutcome, StoreError> {
    let ticket = store.handle().blocking_append(records)?;
    store.handle().commit_now()?;
    ticket.wait_durable()
}

fn forwarded(source: &str, seqs: std::ops::RangeInclusive<u64>) -> Vec<Record> {
    seqs.map(|seq| rec(source, FAR, seq, seq as i64 * 10, &format!("far {seq}")))
        .collect()
}

fn hwm(store: &Store) -> u64 {
    store.handle().high_water_mark(FAR)
}

/// Every stored record of `FAR` as (first seq, seq, raw text), in sequence order.
fn far_ranges(dir: &Path) -> Vec<(u64, u64, String)> {
    let (got, errs) = read_all(dir);
    assert!(errs.is_empty(), "{errs:?}");
    let mut ranges: Vec<_> = got
        .into_iter()
        .map(|stored| stored.record)
        .filter(|record| *record.origin == *FAR)
        .map(|record| {
            let text = String::from_utf8_lossy(&record.raw).into_owned();
            (record.first_seq(), record.origin_seq, text)
        })
        .collect();
    ranges.sort();
    ranges
}

#[test]
fn a_marker_right_after_the_high_water_mark_moves_it_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    append(&store, forwarded("a", 1..=3)).unwrap();
    // A marker too far ahead is a gap, like any record.
    let error = append(&store, vec![Record::gap_marker(FAR, 5, 10, 40)]).unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Gap {
                stored: 3,
                got: 5,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(hwm(&store), 3);
    let outcome = append(&store, vec![Record::gap_marker(FAR, 4, 10, 40)]).unwrap();
    assert_eq!((outcome.num_stored, outcome.num_duplicates), (1, 0));
    assert_eq!(hwm(&store), 10);
    append(&store, forwarded("a", 11..=12)).unwrap();
    let stats = store.handle().stats();
    assert_eq!(
        (stats.gap_markers, stats.lost_seqs, stats.gaps_refused),
        (1, 7, 1)
    );
    store.close().unwrap();

    let (store, report) = open(dir.path());
    assert!(
        report.problems.is_empty() && report.truncated.is_empty(),
        "{report:?}"
    );
    assert_eq!(hwm(&store), 12);
    // The marker again (a retry) is a duplicate.
    let outcome = append(&store, vec![Record::gap_marker(FAR, 4, 10, 40)]).unwrap();
    assert_eq!((outcome.num_stored, outcome.num_duplicates), (0, 1));
    store.close().unwrap();
    let ranges = far_ranges(dir.path());
    let firsts: Vec<(u64, u64)> = ranges.iter().map(|(a, b, _)| (*a, *b)).collect();
    assert_eq!(
        firsts,
        vec![(1, 1), (2, 2), (3, 3), (4, 10), (11, 11), (12, 12)]
    );
    assert!(
        ranges[3].2.starts_with(
            "starling: seqs 4..=10 of origin far were lost before they were forwarded"
        ),
        "{:?}",
        ranges[3].2
    );
}

#[test]
fn an_overlapping_marker_is_trimmed_to_what_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    append(&store, forwarded("a", 1..=6)).unwrap();
    let outcome = append(&store, vec![Record::gap_marker(FAR, 4, 10, 70)]).unwrap();
    assert_eq!((outcome.num_stored, outcome.num_duplicates), (1, 0));
    assert_eq!(hwm(&store), 10);
    let stats = store.handle().stats();
    assert_eq!((stats.gap_markers, stats.lost_seqs), (1, 4));
    // In one batch: records, then a marker overlapping them, then more records.
    let mut batch = forwarded("a", 11..=12);
    batch.push(Record::gap_marker(FAR, 12, 15, 80));
    batch.extend(forwarded("a", 16..=16));
    append(&store, batch).unwrap();
    assert_eq!(hwm(&store), 16);
    store.close().unwrap();
    let ranges = far_ranges(dir.path());
    let marker_7 = ranges.iter().find(|(_, seq, _)| *seq == 10).unwrap();
    assert_eq!(marker_7.0, 7);
    assert!(
        marker_7.2.starts_with("starling: seqs 7..=10 "),
        "{}",
        marker_7.2
    );
    let marker_13 = ranges.iter().find(|(_, seq, _)| *seq == 15).unwrap();
    assert_eq!(marker_13.0, 13);
    assert!(
        marker_13.2.starts_with("starling: seqs 13..=15 "),
        "{}",
        marker_13.2
    );
}

#[test]
fn an_impossible_marker_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    for (from, to) in [(0, 3), (5, 3), (1, 0)] {
        let mut marker = Record::gap_marker(FAR, 1, to, 1);
        marker.lost_from = Some(from);
        let error = append(&store, vec![marker]).unwrap_err();
        assert!(
            matches!(&error, StoreError::BadGapMarker { from: f, to: t, .. } if (*f, *t) == (from, to)),
            "{error}"
        );
    }
    assert_eq!(hwm(&store), 0);
    store.close().unwrap();
}

#[test]
fn recovery_counts_a_marker_as_its_range_not_as_a_hole() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    // Unsynced tails in two shards: records 1..=3 and 11..=12 in shard a, the marker for
    // 4..=10 in shard far. A process crash keeps them all (closed frames); recovery must cut
    // none of them. The frame still open at the crash (another origin, shard b) is torn.
    let h = store.handle();
    h.blocking_append(forwarded("a", 1..=3)).unwrap();
    h.blocking_append(vec![Record::gap_marker(FAR, 4, 10, 40)])
        .unwrap();
    h.blocking_append(forwarded("a", 11..=12)).unwrap();
    h.blocking_append(vec![rec("b", "other", 1, 5, "left open by the crash")])
        .unwrap();
    store.abandon();

    let (store, report) = open(dir.path());
    assert!(report.problems.is_empty(), "{report:?}");
    assert!(
        report
            .truncated
            .iter()
            .all(|cut| cut.file.to_string_lossy().contains("/s-b/")),
        "only the open frame is cut: {report:?}"
    );
    assert_eq!(report.num_tail_records, 6);
    assert_eq!(hwm(&store), 12);
    // Forwarding goes on right after the high-water mark.
    append(&store, forwarded("a", 13..=13)).unwrap();
    store.close().unwrap();
    let firsts: Vec<(u64, u64)> = far_ranges(dir.path())
        .iter()
        .map(|(a, b, _)| (*a, *b))
        .collect();
    assert_eq!(
        firsts,
        vec![
            (1, 1),
            (2, 2),
            (3, 3),
            (4, 10),
            (11, 11),
            (12, 12),
            (13, 13)
        ]
    );
}
