//! Shard lifetime tests: a quiet shard's active segment is sealed, trimmed and closed after
//! `idle_shard_seal` (and retention then reaches it), and no more than `max_open_shards`
//! segments are open at once, the least recently used sealed first.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::tests::{read_all, rec, small_config};
use super::write::fileops::{FileOps, RealFileOps};
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

/// Real file operations that log every directory sync.
#[derive(Debug, Default)]
struct DirSyncLog {
    synced: std::sync::Mutex<Vec<PathBuf>>,
}

impl FileOps for DirSyncLog {
    fn allocate(&self, file: &std::fs::File, len: u64) -> std::io::Result<()> {
        RealFileOps.allocate(file, len)
    }
    fn sync_written(&self, file: &std::fs::File, offset: u64, len: u64) -> std::io::Result<()> {
        RealFileOps.sync_written(file, offset, len)
    }
    fn sync_data(&self, file: &std::fs::File) -> std::io::Result<()> {
        RealFileOps.sync_data(file)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.synced.lock().unwrap().push(dir.to_path_buf());
        RealFileOps.sync_dir(dir)
    }
}

/// One batch from 50 new sources: the new directory entries (50 shard directories with their
/// `shard.meta` and first segment) are synced once per directory at the commit — 51 directory
/// syncs, not three per shard — and all of them before the batch is reported durable.
#[test]
fn new_shards_share_their_directory_syncs_per_commit() {
    let dir = tempfile::tempdir().unwrap();
    let ops = Arc::new(DirSyncLog::default());
    let config = StoreConfig {
        commit_max_delay: Duration::from_secs(3600),
        ..small_config()
    };
    let (store, _) = Store::open_with_ops(dir.path(), "me", config, ops.clone()).unwrap();
    ops.synced.lock().unwrap().clear();
    let batch = (0..50)
        .map(|i| rec(&format!("new-{i}"), "me", 0, i, "first words"))
        .collect();
    let ticket = store.handle().blocking_append(batch).unwrap();
    store.handle().commit_now().unwrap();
    ticket.wait_durable().unwrap();
    let synced = ops.synced.lock().unwrap().clone();
    assert_eq!(synced.len(), 51, "{synced:?}");
    let unique: std::collections::HashSet<&PathBuf> = synced.iter().collect();
    assert_eq!(unique.len(), 51, "each directory once: {synced:?}");
    assert!(unique.contains(&dir.path().to_path_buf()));
    for i in 0..50 {
        let shard = dir.path().join(format!("s-new-{i}"));
        assert!(unique.contains(&shard), "{} not synced", shard.display());
    }
    store.close().unwrap();
    let (got, errs) = read_all(dir.path());
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(got.len(), 50);
}

/// Sources longer than `source_name_max_bytes` (two that share their first 200 bytes, one
/// past the 16-bit length of the record's other names) are stored in shards named by their
/// hashed form, with a small `shard.meta`, and every record reads back with its full name.
#[test]
fn a_long_source_name_shortens_its_shard_and_stays_whole_in_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        source_name_max_bytes: 100,
        ..small_config()
    };
    let (store, _) = Store::open(dir.path(), "me", config.clone()).unwrap();
    let long_a = format!("{}a", "Long.Host-".repeat(20));
    let long_b = format!("{}b", "Long.Host-".repeat(20));
    let huge = "h".repeat(70_000);
    let at_cap = "c".repeat(100);
    let mut t = 0;
    for source in [&long_a, &long_b, &huge, &at_cap, &long_a] {
        t += 1;
        append_one(&store, source, t);
    }
    store.close().unwrap();
    let reader = StoreReader::open(dir.path()).unwrap();
    let mut shards: Vec<String> = reader.shards().into_iter().map(|s| s.source).collect();
    shards.sort();
    let mut want: Vec<String> = [&long_a, &long_b, &huge]
        .iter()
        .map(|s| shardname::shard_name(s, 100).into_owned())
        .chain([at_cap.clone()])
        .collect();
    want.sort();
    assert_eq!(shards, want);
    for shard in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let meta = shard.path().join(shardname::META_FILE);
        if let Ok(m) = std::fs::metadata(&meta) {
            assert!(m.len() <= 16 + 100, "{}: {} bytes", meta.display(), m.len());
        }
    }
    let (got, errs) = read_all(dir.path());
    assert!(errs.is_empty(), "{errs:?}");
    let mut names: Vec<&str> = got.iter().map(|r| &*r.record.source).collect();
    names.sort_unstable();
    let mut sent = vec![
        long_a.as_str(),
        long_b.as_str(),
        huge.as_str(),
        at_cap.as_str(),
        long_a.as_str(),
    ];
    sent.sort_unstable();
    assert_eq!(names, sent);
    assert!(verify(dir.path()).unwrap().is_clean());
    // Reopened, the writer finds the shortened shards again (no second shard per source).
    let (store, _) = Store::open(dir.path(), "me", config).unwrap();
    append_one(&store, &long_b, 10);
    store.close().unwrap();
    assert_eq!(StoreReader::open(dir.path()).unwrap().shards().len(), 4);
    assert_eq!(read_all(dir.path()).0.len(), 6);
}

/// A shard whose segment rolled several times counts once against `max_open_shards`: with a
/// limit of 2, a second source opening a segment does not seal the first one's.
#[test]
fn a_rolled_shard_counts_once_against_the_open_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        segment_max_bytes: 4096,
        max_open_shards: 2,
        ..small_config()
    };
    let (store, _) = Store::open(dir.path(), "me", config).unwrap();
    for t in 0..40 {
        store
            .handle()
            .blocking_append(vec![rec("roll", "me", 0, t, &"r".repeat(400))])
            .unwrap()
            .wait_durable()
            .unwrap();
    }
    let sealed = store.handle().stats().segments_sealed;
    assert!(sealed >= 3, "rolled {sealed} times");
    append_one(&store, "other", 100);
    assert_eq!(
        store.handle().stats().segments_sealed,
        sealed,
        "opening a second segment under a limit of 2 sealed nothing"
    );
    assert_eq!(open_segments(dir.path()).len(), 2);
    store.close().unwrap();
}
