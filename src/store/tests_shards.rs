//! Shard lifetime tests: a quiet shard's active segment is sealed, trimmed and closed after
//! `idle_shard_seal` (and retention then reaches it), and no more than `max_open_shards`
//! segments are open at once, the least recently used sealed first.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::tests::{read_all, rec, small_config};
use super::*;
use crate::testutil::wait_until_blocking;

/// Segment files of `dir` this process holds open (from `/proc/self/fd`).
fn open_segments(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            if target.starts_with(dir) && target.extension().is_some_and(|e| e == "seg") {
                out.push(target);
            }
        }
    }
    out
}

/// Segment files of `dir` (every shard) with their length and allocated bytes.
fn segment_files(dir: &Path) -> Vec<(PathBuf, u64, u64)> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir).unwrap().flatten() {
        if !shard.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(shard.path()).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == "seg") {
                let m = f.metadata().unwrap();
                out.push((f.path(), m.len(), m.blocks() * 512));
            }
        }
    }
    out
}

fn append_one(store: &Store, source: &str, t: i64) {
    store
        .handle()
        .blocking_append(vec![rec(source, "me", 0, t, "a quiet source")])
        .unwrap()
        .wait_durable()
        .unwrap();
}

/// Two sources send once and go quiet: after `idle_shard_seal` both segments are sealed,
/// trimmed to their data (no preallocation left) and closed, with nothing else arriving.
#[test]
fn idle_shards_are_sealed_trimmed_and_closed() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        idle_shard_seal: Duration::from_millis(300),
        ..small_config()
    };
    let (store, _) = Store::open(dir.path(), "me", config).unwrap();
    append_one(&store, "a", 10);
    append_one(&store, "b", 11);
    assert_eq!(
        open_segments(dir.path()).len(),
        2,
        "both active while fresh"
    );
    let sealed = wait_until_blocking(Duration::from_secs(10), || {
        store.handle().stats().segments_sealed == 2
    });
    assert!(sealed, "{:?}", store.handle().stats());
    assert!(
        open_segments(dir.path()).is_empty(),
        "{:?}",
        open_segments(dir.path())
    );
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    for (path, len, allocated) in &files {
        assert!(
            *len < 4096,
            "{} still holds its preallocation: {len}",
            path.display()
        );
        assert!(
            *allocated <= 8192,
            "{} reserves {allocated} bytes",
            path.display()
        );
    }
    // A source that sends again gets a new active segment after its sealed one.
    append_one(&store, "a", 12);
    assert_eq!(open_segments(dir.path()).len(), 1);
    store.close().unwrap();
    let (got, errs) = read_all(dir.path());
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(got.len(), 3);
    assert!(verify(dir.path()).unwrap().is_clean());
}

/// Retention's `max-age` reaches the records of a source that went quiet: its idle segment is
/// sealed and then deleted, without the source (or anyone) sending again.
#[test]
fn max_age_applies_to_a_shard_that_went_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        idle_shard_seal: Duration::from_millis(200),
        retention: RetentionConfig {
            max_age: Some(Duration::from_secs(3600)),
            ..RetentionConfig::default()
        },
        ..small_config()
    };
    let (store, _) = Store::open(dir.path(), "me", config).unwrap();
    // Received in 1970: far older than max-age.
    append_one(&store, "old", 1_000);
    let deleted = wait_until_blocking(Duration::from_secs(10), || {
        store.handle().stats().segments_deleted == 1
    });
    assert!(deleted, "{:?}", store.handle().stats());
    assert!(segment_files(dir.path()).is_empty());
    store.close().unwrap();
    let (got, errs) = read_all(dir.path());
    assert!(errs.is_empty(), "{errs:?}");
    assert!(got.is_empty(), "{got:?}");
}

/// With `max_open_shards = 4`, 40 sources sending one after the other never hold more than
/// four segments open; a source that keeps sending (used between every other one) is never
/// the least recently used, so its segment stays open and unsealed throughout.
#[test]
fn open_segments_stay_bounded_and_the_least_recently_used_go_first() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        max_open_shards: 4,
        ..small_config()
    };
    let (store, _) = Store::open(dir.path(), "me", config).unwrap();
    let mut t = 0;
    let mut most_open = 0;
    for i in 0..40 {
        t += 1;
        append_one(&store, "hot", t);
        t += 1;
        append_one(&store, &format!("cold-{i}"), t);
        most_open = most_open.max(open_segments(dir.path()).len());
    }
    assert!(most_open <= 4, "{most_open} segments open at once");
    assert_eq!(most_open, 4, "the limit is used");
    let hot: Vec<_> = segment_files(dir.path())
        .into_iter()
        .filter(|(p, _, _)| p.parent().unwrap().ends_with("s-hot"))
        .collect();
    assert_eq!(hot.len(), 1, "the hot shard was never sealed: {hot:?}");
    assert!(open_segments(dir.path()).contains(&hot[0].0));
    let stats = store.handle().stats();
    assert_eq!(stats.num_shards, 41);
    store.close().unwrap();
    let (got, errs) = read_all(dir.path());
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(got.len(), 80);
    let seqs: Vec<u64> = {
        let mut s: Vec<u64> = got.iter().map(|r| r.record.origin_seq).collect();
        s.sort_unstable();
        s
    };
    assert_eq!(seqs, (1..=80).collect::<Vec<u64>>());
    assert!(verify(dir.path()).unwrap().is_clean());
}
