//! Retention in a cluster node's store, which is also its spool: the local origin's records
//! that no master has acknowledged stay whatever the limits say, and segments holding local
//! records stay for `spool_retention` against a shorter `max_age`. Other origins' records
//! follow the plain limits.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::tests::{read_all, rec, small_config};
use super::*;

const HOUR_MICROS: i64 = 3600 * 1_000_000;

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// A spool store of origin "me" (spool retention 24 h) whose segments roll every 4 KiB.
fn spool_store(dir: &Path, retention: RetentionConfig) -> Store {
    let config = StoreConfig {
        segment_max_bytes: 4096,
        retention: RetentionConfig {
            spool_retention: Some(Duration::from_secs(24 * 3600)),
            ..retention
        },
        ..small_config()
    };
    Store::open(dir, "me", config).unwrap().0
}

/// Appends one 400-byte record per item durably; `origin_seq` 0 lets the store number it.
fn fill(store: &Store, records: impl IntoIterator<Item = (&'static str, &'static str, u64, i64)>) {
    for (source, origin, seq, t) in records {
        store
            .handle()
            .blocking_append(vec![rec(source, origin, seq, t, &"s".repeat(400))])
            .unwrap()
            .wait_durable()
            .unwrap();
    }
}

/// Sequences of `origin` still in the store, ascending.
fn seqs(dir: &Path, origin: &str) -> Vec<u64> {
    let (got, errs) = read_all(dir);
    assert!(errs.is_empty(), "{errs:?}");
    let mut seqs: Vec<u64> = got
        .iter()
        .filter(|r| &*r.record.origin == origin)
        .map(|r| r.record.origin_seq)
        .collect();
    seqs.sort_unstable();
    seqs
}

#[test]
fn unacknowledged_own_records_stay_whatever_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let store = spool_store(
        dir.path(),
        RetentionConfig {
            max_age: Some(Duration::from_secs(3600)),
            total_max_bytes: Some(8 * 1024),
            ..RetentionConfig::default()
        },
    );
    // Received in 1970: past every age limit. Own records in shard "h", another origin's
    // (forwarded to this node while it was master) in shard "x".
    fill(&store, (0..60).map(|i| ("h", "me", 0, 1_000 + i)));
    fill(
        &store,
        (1..=30).map(|i| ("x", "other", i as u64, 1_000 + i)),
    );
    let handle = store.handle();

    // Nothing acknowledged yet (the state after opening): only the other origin's go.
    handle.run_retention_now().unwrap();
    assert_eq!(seqs(dir.path(), "me"), (1..=60).collect::<Vec<_>>());
    assert!(
        seqs(dir.path(), "other").len() < 30,
        "the other origin's old segments go"
    );
    assert!(handle.stats().retention_held);

    // A master acknowledged up to 30: segments with nothing above it may go.
    handle.set_unforwarded_after(Some(30));
    handle.run_retention_now().unwrap();
    let kept = seqs(dir.path(), "me");
    assert!(kept[0] > 1 && kept[0] <= 31, "{kept:?}");
    assert_eq!(kept, (kept[0]..=60).collect::<Vec<_>>(), "a gapless tail");
    assert!(handle.stats().retention_held, "still over the limits");

    // The node became master: its own records follow the plain limits.
    handle.set_unforwarded_after(None);
    handle.run_retention_now().unwrap();
    let kept = seqs(dir.path(), "me");
    assert!(
        kept.len() < 10,
        "only the active segment's records: {kept:?}"
    );
    assert!(!handle.stats().retention_held);
    store.close().unwrap();

    // Reopened, a spool keeps every own record again until told what a master has.
    let store = spool_store(
        dir.path(),
        RetentionConfig {
            total_max_bytes: Some(1),
            ..RetentionConfig::default()
        },
    );
    fill(&store, (0..20).map(|i| ("h", "me", 0, 2_000 + i)));
    let before = seqs(dir.path(), "me");
    store.handle().run_retention_now().unwrap();
    assert_eq!(seqs(dir.path(), "me"), before);
    store.close().unwrap();
    assert!(verify(dir.path()).unwrap().is_clean());
}

#[test]
fn own_records_stay_for_spool_retention_against_a_shorter_max_age() {
    let dir = tempfile::tempdir().unwrap();
    let store = spool_store(
        dir.path(),
        RetentionConfig {
            max_age: Some(Duration::from_secs(3600)),
            ..RetentionConfig::default()
        },
    );
    let now = now_micros();
    let (day_and_more, two_hours) = (now - 30 * HOUR_MICROS, now - 2 * HOUR_MICROS);
    fill(&store, (0..30).map(|i| ("h", "me", 0, day_and_more + i)));
    fill(&store, (0..30).map(|i| ("h", "me", 0, two_hours + i)));
    fill(
        &store,
        (1..=30).map(|i| ("x", "other", i as u64, two_hours + i)),
    );
    let handle = store.handle();
    handle.set_unforwarded_after(None);
    handle.run_retention_now().unwrap();

    let (got, _) = read_all(dir.path());
    let own_recent = got
        .iter()
        .filter(|r| &*r.record.origin == "me" && r.record.received_at_micros >= two_hours)
        .count();
    assert_eq!(
        own_recent, 30,
        "own records younger than spool retention stay"
    );
    let kept = seqs(dir.path(), "me");
    assert!(
        kept[0] > 1,
        "own records older than spool retention go: {kept:?}"
    );
    assert!(
        seqs(dir.path(), "other").len() < 30,
        "another origin's records follow max-age"
    );
    store.close().unwrap();
}
