//! A failed `fdatasync` (or seal, or `shard.meta` rename) never leaves the store trusting the
//! page cache: every shard goes back to the last good point, every forwarded origin's mark
//! goes back to what the shards hold, every unacknowledged ticket fails (a batch of only
//! duplicates too), and what the forwarder then resends is stored exactly once.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::tests::{read_all, rec};
use super::write::fileops::{FileOps, RealFileOps};
use super::*;
use crate::record::Record;

/// Real files; the next `n` calls of a kind fail with EIO once armed. Remembers, per file,
/// whether its last `fdatasync` succeeded.
#[derive(Debug, Default)]
struct SyncFaults {
    sync_written: AtomicU64,
    sync_data: AtomicU64,
    rename: AtomicU64,
    last_sync_ok: Mutex<HashMap<PathBuf, bool>>,
}

fn path_of(file: &File) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap_or_default()
}

impl SyncFaults {
    fn note(&self, file: &File, result: io::Result<()>) -> io::Result<()> {
        self.last_sync_ok
            .lock()
            .unwrap()
            .insert(path_of(file), result.is_ok());
        result
    }
}

fn take(counter: &AtomicU64) -> io::Result<()> {
    if counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    Ok(())
}

impl FileOps for SyncFaults {
    fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        RealFileOps.allocate(file, len)
    }
    fn sync_written(&self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        let result =
            take(&self.sync_written).and_then(|()| RealFileOps.sync_written(file, offset, len));
        self.note(file, result)
    }
    fn sync_data(&self, file: &File) -> io::Result<()> {
        let result = take(&self.sync_data).and_then(|()| RealFileOps.sync_data(file));
        self.note(file, result)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFileOps.sync_dir(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        take(&self.rename)?;
        RealFileOps.rename(from, to)
    }
}

/// Commits only when the test says so (`commit_now`).
fn manual_config() -> StoreConfig {
    StoreConfig {
        segment_max_bytes: 64 * 1024,
        commit_max_delay: Duration::from_secs(3600),
        commit_max_bytes: u64::MAX,
        ..StoreConfig::default()
    }
}

/// Forwarded records of origin "peer", alternating between shards "a" and "b".
fn peer(seqs: std::ops::RangeInclusive<u64>) -> Vec<Record> {
    seqs.map(|s| rec(["a", "b"][s as usize % 2], "peer", s, s as i64, "forwarded"))
        .collect()
}

fn local(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| rec("c", "me", 0, 1_000 + i as i64, "local"))
        .collect()
}

/// (first, last) origin sequences of every stored record of `origin`, ascending.
fn stored(dir: &Path, origin: &str) -> Vec<(u64, u64)> {
    let (got, errs) = read_all(dir);
    assert!(errs.is_empty(), "{errs:?}");
    let mut v: Vec<(u64, u64)> = got
        .iter()
        .map(|s| &s.record)
        .filter(|r| *r.origin == *origin)
        .map(|r| (r.first_seq(), r.origin_seq))
        .collect();
    v.sort_unstable();
    v
}

fn singles(seqs: std::ops::RangeInclusive<u64>) -> Vec<(u64, u64)> {
    seqs.map(|s| (s, s)).collect()
}

#[test]
fn a_failed_sync_cuts_every_shard_back_and_lowers_forwarded_marks() {
    let dir = tempfile::tempdir().unwrap();
    let ops = Arc::new(SyncFaults::default());
    let (store, _) = Store::open_with_ops(dir.path(), "me", manual_config(), ops.clone()).unwrap();
    let h = store.handle();
    let t = h.blocking_append(peer(1..=4)).unwrap();
    h.commit_now().unwrap();
    t.wait_durable().unwrap();

    // Forwarded records in shards a and b, local ones in c; the first range sync fails (the
    // other shards' syncs succeed, and are cut back all the same).
    let mut batch = peer(5..=8);
    batch.extend(local(3));
    let t = h.blocking_append(batch).unwrap();
    ops.sync_written.store(1, Ordering::SeqCst);
    h.commit_now().unwrap();
    let err = t.wait_durable().unwrap_err();
    assert!(matches!(err, StoreError::SyncFailed { .. }), "{err}");
    assert_eq!(h.stats().sync_errors, 1);
    // The forwarder is told to resend from 5: nothing of 5..=8 counts as stored.
    assert_eq!(h.high_water_mark("peer"), 4);
    // What the shards hold is what was synced before: the failed batch, still in the page
    // cache, is not read back as stored.
    assert_eq!(stored(dir.path(), "peer"), singles(1..=4));

    // The forwarder resends; the uploader of the local records sends them again.
    let t = h.blocking_append(peer(5..=10)).unwrap();
    let l = h.blocking_append(local(3)).unwrap();
    h.commit_now().unwrap();
    let o = t.wait_durable().unwrap();
    assert_eq!((o.num_stored, o.num_duplicates), (6, 0));
    // The local sequences cut are not given again: they are a gap marker.
    assert_eq!(l.wait_durable().unwrap().assigned, Some(4..=6));
    store.close().unwrap();
    assert_eq!(stored(dir.path(), "peer"), singles(1..=10), "each once");
    let mut expected = vec![(1, 3)];
    expected.extend(singles(4..=6));
    assert_eq!(stored(dir.path(), "me"), expected);
    let report = verify(dir.path()).unwrap();
    assert!(report.is_clean(), "{report}");
    let (store, report) = Store::open(dir.path(), "me", manual_config()).unwrap();
    assert!(report.problems.is_empty(), "{report:?}");
    assert_eq!(store.handle().high_water_mark("peer"), 10);
    assert_eq!(store.handle().high_water_mark("me"), 6);
    store.close().unwrap();
}

#[test]
fn a_batch_of_only_duplicates_fails_with_the_commit_whose_sync_failed() {
    let dir = tempfile::tempdir().unwrap();
    let ops = Arc::new(SyncFaults::default());
    let (store, _) = Store::open_with_ops(dir.path(), "me", manual_config(), ops.clone()).unwrap();
    let h = store.handle();
    let t = h.blocking_append(peer(1..=4)).unwrap();
    h.commit_now().unwrap();
    t.wait_durable().unwrap();
    // 5..=8 written, then sent again (a forwarder's retry) before the commit: all
    // duplicates of records that are only in the page cache.
    let first = h.blocking_append(peer(5..=8)).unwrap();
    let retry = h.blocking_append(peer(5..=8)).unwrap();
    ops.sync_written.store(1, Ordering::SeqCst);
    h.commit_now().unwrap();
    assert!(first.wait_durable().is_err());
    let retried = retry.wait_durable();
    assert!(
        matches!(retried, Err(StoreError::SyncFailed { .. })),
        "acknowledged by the commit whose sync failed: {retried:?}"
    );
    assert_eq!(h.high_water_mark("peer"), 4);
    let t = h.blocking_append(peer(5..=8)).unwrap();
    h.commit_now().unwrap();
    assert_eq!(t.wait_durable().unwrap().num_stored, 4);
    store.close().unwrap();
    assert_eq!(stored(dir.path(), "peer"), singles(1..=8));
}

#[test]
fn a_failed_seal_cuts_back_to_the_sync_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let ops = Arc::new(SyncFaults::default());
    let config = StoreConfig {
        segment_max_bytes: 8 * 1024,
        ..manual_config()
    };
    let (store, _) = Store::open_with_ops(dir.path(), "me", config, ops.clone()).unwrap();
    let h = store.handle();
    let t = h.blocking_append(peer(1..=2)).unwrap();
    h.commit_now().unwrap();
    t.wait_durable().unwrap();
    // Enough to roll shard a's segment mid-batch: its seal (whose fdatasync fails) comes
    // after a sync of everything written so far, which stays.
    let big: Vec<Record> = (3..=200u64)
        .map(|s| rec("a", "peer", s, s as i64, &"x".repeat(200)))
        .collect();
    let t = h.blocking_append(big).unwrap();
    ops.sync_data.store(1, Ordering::SeqCst);
    h.commit_now().unwrap();
    assert!(matches!(
        t.wait_durable(),
        Err(StoreError::SyncFailed { .. })
    ));
    let mark = h.high_water_mark("peer");
    assert!((2..200).contains(&mark), "{mark}");
    // The footer whose fdatasync failed is not trusted from the page cache: the segment was
    // cut back and sealed again, and that seal's fdatasync succeeded.
    let shard = dir.path().join("s-a");
    for base in super::format::segment::list_segments(&shard).unwrap() {
        let path = shard.join(super::format::segment::segment_file_name(base));
        let ok = ops.last_sync_ok.lock().unwrap().get(&path).copied();
        assert_eq!(ok, Some(true), "{}: last fdatasync", path.display());
    }
    // On disk: exactly the records up to the mark (the seal's footer was cut off and the
    // segment sealed again by recovery).
    assert_eq!(stored(dir.path(), "peer"), singles(1..=mark));
    let resend: Vec<Record> = (mark + 1..=200u64)
        .map(|s| rec("a", "peer", s, s as i64, &"x".repeat(200)))
        .collect();
    let t = h.blocking_append(resend).unwrap();
    h.commit_now().unwrap();
    t.wait_durable().unwrap();
    store.close().unwrap();
    assert_eq!(stored(dir.path(), "peer"), singles(1..=200));
    let report = verify(dir.path()).unwrap();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn a_failed_shard_meta_rename_fails_the_batch_and_leaves_no_hole() {
    let dir = tempfile::tempdir().unwrap();
    let ops = Arc::new(SyncFaults::default());
    let (store, _) = Store::open_with_ops(dir.path(), "me", manual_config(), ops.clone()).unwrap();
    let h = store.handle();
    let t = h.blocking_append(local(2)).unwrap();
    h.commit_now().unwrap();
    assert_eq!(t.wait_durable().unwrap().assigned, Some(1..=2));
    ops.rename.store(1, Ordering::SeqCst);
    let t = h
        .blocking_append(vec![rec("new-host", "me", 0, 5, "cannot be stored yet")])
        .unwrap();
    h.commit_now().unwrap();
    let err = t.wait_durable().unwrap_err();
    assert!(err.to_string().contains("Input/output error"), "{err}");
    let t = h
        .blocking_append(vec![rec("new-host", "me", 0, 6, "stored")])
        .unwrap();
    h.commit_now().unwrap();
    assert_eq!(t.wait_durable().unwrap().assigned, Some(3..=3));
    store.close().unwrap();
    assert_eq!(stored(dir.path(), "me"), singles(1..=3));
    assert!(verify(dir.path()).unwrap().is_clean());
}

/// Making room for a new shard (`max-open-shards`) first syncs every dirty shard, then
/// seals the least recently used one. If that sync fails, the records of the batch written
/// so far are cut: the batch must fail as a whole (its sender retries) rather than go on in a
/// new segment and be acknowledged without them.
#[test]
fn a_failed_sync_while_making_room_fails_the_batch_and_its_retry_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let ops = Arc::new(SyncFaults::default());
    let config = StoreConfig {
        max_open_shards: 2,
        ..manual_config()
    };
    let (store, _) = Store::open_with_ops(dir.path(), "me", config, ops.clone()).unwrap();
    let h = store.handle();
    for batch in [vec!["a", "b"], vec!["c"]] {
        let records = batch
            .iter()
            .map(|s| rec(s, "me", 0, 10, "before"))
            .collect();
        let t = h.blocking_append(records).unwrap();
        h.commit_now().unwrap();
        t.wait_durable().unwrap();
    }
    // Shards b and c are open. The batch writes to c, then needs room for a: the sync of
    // c's new record before the seal fails.
    let batch = || {
        vec![
            rec("c", "me", 0, 20, "first"),
            rec("a", "me", 0, 21, "second"),
        ]
    };
    ops.sync_written.store(1, Ordering::SeqCst);
    let t = h.blocking_append(batch()).unwrap();
    h.commit_now().unwrap();
    let outcome = t.wait_durable();
    assert!(
        matches!(outcome, Err(StoreError::SyncFailed { .. })),
        "acknowledged although its first record was cut: {outcome:?}"
    );
    // The sender retries.
    let t = h.blocking_append(batch()).unwrap();
    h.commit_now().unwrap();
    t.wait_durable().unwrap();
    store.close().unwrap();
    let (got, errs) = read_all(dir.path());
    assert!(errs.is_empty(), "{errs:?}");
    for text in [&b"first"[..], b"second"] {
        let copies = got.iter().filter(|s| s.record.raw.as_ref() == text).count();
        assert_eq!(copies, 1, "{} stored once", String::from_utf8_lossy(text));
    }
}

/// A seal first syncs every dirty shard: that is a good point, and the batches written before
/// it are durable. A failure after it (the seal's own `fdatasync`) must not fail their
/// tickets: their records stay on disk, and a sender told they failed sends them again.
#[test]
fn a_failure_after_a_seals_sync_fails_only_what_came_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let ops = Arc::new(SyncFaults::default());
    let config = StoreConfig {
        segment_max_bytes: 8 * 1024,
        ..manual_config()
    };
    let (store, _) = Store::open_with_ops(dir.path(), "me", config, ops.clone()).unwrap();
    let h = store.handle();
    // Shards a and c exist (creating one syncs its meta and segment header with
    // `sync_data`, the call that fails below).
    let t = h
        .blocking_append(vec![rec("a", "peer", 1, 1, "first")])
        .unwrap();
    let l = h.blocking_append(local(1)).unwrap();
    h.commit_now().unwrap();
    t.wait_durable().unwrap();
    l.wait_durable().unwrap();
    ops.sync_data.store(1, Ordering::SeqCst);
    // Local records in shard c, waiting for a commit.
    let before = h.blocking_append(local(3)).unwrap();
    // Enough to roll shard a's segment: its seal syncs shard c too, then its own fdatasync
    // fails.
    let big: Vec<Record> = (2..=200u64)
        .map(|s| rec("a", "peer", s, s as i64, &"x".repeat(200)))
        .collect();
    let t = h.blocking_append(big).unwrap();
    h.commit_now().unwrap();
    assert!(matches!(
        t.wait_durable(),
        Err(StoreError::SyncFailed { .. })
    ));
    let outcome = before.wait_durable();
    assert_eq!(
        outcome.as_ref().ok().and_then(|o| o.assigned.clone()),
        Some(2..=4),
        "records synced before the failure: {outcome:?}"
    );
    store.close().unwrap();
    assert_eq!(stored(dir.path(), "me"), singles(1..=4));
}
