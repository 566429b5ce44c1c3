//! Crash and corruption tests on real files: torn tails at every
//! byte, zero/garbage/stale tails, single-bit flips in sealed and active segments, garbage
//! length fields, missing middle segments, index damage, injected sync failures.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::format::scan::{read_header, ScanStep, Scanner};
use super::format::segment::segment_file_name;
use super::format::shardname::{encode, encode_meta};
use super::tests::{read_all, rec, small_config};
use super::write::fileops::{FileOps, RealFileOps};
use super::*;
use crate::record::Record;

const SOURCE: &str = "h";

/// Real files without the syncs: these tests check recovery logic, not the disk.
#[derive(Debug)]
struct NoSyncOps;

impl FileOps for NoSyncOps {
    fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        RealFileOps.allocate(file, len)
    }
    fn sync_written(&self, _file: &File, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
    fn sync_data(&self, _file: &File) -> io::Result<()> {
        Ok(())
    }
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}

fn open(dir: &Path, config: StoreConfig) -> (Store, RecoveryReport) {
    Store::open_with_ops(dir, "me", config, Arc::new(NoSyncOps)).unwrap()
}

fn seg_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(encode(SOURCE.as_bytes()))
        .join(segment_file_name(base))
}

/// Writes `frames` frames of 3 records each into shard "h" (one durable batch per frame),
/// then seals (close) or leaves the segment active (abandon). Returns the stored records.
fn build(dir: &Path, frames: usize, seal: bool) -> Vec<Record> {
    let config = StoreConfig {
        segment_max_bytes: 16 << 10,
        ..small_config()
    };
    let (store, _) = open(dir, config);
    let mut stored = Vec::new();
    for f in 0..frames {
        let batch: Vec<Record> = (0..3)
            .map(|i| {
                rec(
                    SOURCE,
                    "me",
                    0,
                    1_000 + (f * 3 + i) as i64,
                    &format!("frame {f} record {i} payload"),
                )
            })
            .collect();
        let outcome = store
            .handle()
            .blocking_append(batch.clone())
            .unwrap()
            .wait_durable()
            .unwrap();
        let first = *outcome.assigned.unwrap().start();
        for (i, mut r) in batch.into_iter().enumerate() {
            r.origin_seq = first + i as u64;
            stored.push(r);
        }
    }
    if seal {
        store.close().unwrap();
    } else {
        store.abandon();
    }
    stored
}

/// (offset, bytes) of every data frame of a segment.
fn frame_spans(path: &Path) -> Vec<(u64, u64)> {
    let file = File::open(path).unwrap();
    let header = read_header(&file).unwrap().unwrap();
    let mut scanner = Scanner::new(&file, &header, false).unwrap();
    let mut spans = Vec::new();
    while let Some(item) = scanner.next_step().unwrap() {
        match item {
            ScanStep::Frame { offset, header, .. } => spans.push((offset, header.frame_bytes())),
            _ => break,
        }
    }
    spans
}

/// A data dir holding only shard "h" with `bytes` as its segment 0.
fn make_dir(bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let shard = dir.path().join(encode(SOURCE.as_bytes()));
    std::fs::create_dir_all(&shard).unwrap();
    std::fs::write(shard.join("shard.meta"), encode_meta(SOURCE.as_bytes())).unwrap();
    std::fs::write(shard.join(segment_file_name(0)), bytes).unwrap();
    dir
}

fn records_of(got: &[StoredRecord]) -> Vec<Record> {
    let mut v: Vec<Record> = got.iter().map(|r| r.record.clone()).collect();
    v.sort_by_key(|r| r.origin_seq);
    v
}

#[test]
fn torn_tail_cut_at_every_byte_of_the_last_frame() {
    let template = tempfile::tempdir().unwrap();
    let stored = build(template.path(), 4, false);
    let bytes = std::fs::read(seg_path(template.path(), 0)).unwrap();
    let spans = frame_spans(&seg_path(template.path(), 0));
    assert_eq!(spans.len(), 4);
    let (last, len) = spans[3];
    for cut in last..last + len {
        let dir = make_dir(&bytes[..cut as usize]);
        let (store, report) = open(dir.path(), small_config());
        assert!(report.problems.is_empty(), "cut {cut}: {report:?}");
        if cut > last {
            assert_eq!(report.truncated.len(), 1, "cut {cut}");
            assert_eq!(report.truncated[0].offset, last);
        }
        let o = store
            .handle()
            .blocking_append(vec![rec(SOURCE, "me", 0, 9, "next")])
            .unwrap()
            .wait_durable()
            .unwrap();
        assert_eq!(
            o.assigned,
            Some(10..=10),
            "cut {cut}: numbering resumes after the last whole frame"
        );
        drop(store);
        let (got, errs) = read_all(dir.path());
        assert!(errs.is_empty(), "cut {cut}: {errs:?}");
        assert_eq!(records_of(&got)[..9], stored[..9]);
        let mut seqs: Vec<u64> = got.iter().map(|r| r.shard_seq).collect();
        seqs.sort();
        assert_eq!(seqs, (0..10).collect::<Vec<_>>(), "cut {cut}");
    }
}

#[test]
fn zero_garbage_and_stale_copy_tails_end_cleanly() {
    let template = tempfile::tempdir().unwrap();
    let stored = build(template.path(), 4, false);
    let bytes = std::fs::read(seg_path(template.path(), 0)).unwrap();
    let spans = frame_spans(&seg_path(template.path(), 0));
    let end = (spans[3].0 + spans[3].1) as usize;
    let mut garbage = vec![0u8; 4096];
    let mut x = 0x9e37_79b9u32;
    for b in &mut garbage {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let stale = bytes[spans[1].0 as usize..(spans[1].0 + spans[1].1) as usize].to_vec();
    for (name, tail) in [
        ("zeros", vec![0u8; 4096]),
        ("garbage", garbage),
        ("stale copy", stale),
    ] {
        let mut file = bytes[..end].to_vec();
        file.extend_from_slice(&tail);
        let dir = make_dir(&file);
        let (got, errs) = read_all(dir.path());
        assert!(errs.is_empty(), "{name}: reader {errs:?}");
        assert_eq!(records_of(&got), stored, "{name}");
        let (store, report) = open(dir.path(), small_config());
        assert!(report.problems.is_empty(), "{name}: {report:?}");
        drop(store);
        let (got, errs) = read_all(dir.path());
        assert!(errs.is_empty(), "{name}: {errs:?}");
        assert_eq!(records_of(&got), stored, "{name}");
        assert!(verify(dir.path()).unwrap().is_clean(), "{name}");
    }
}

fn check_flips(sealed: bool, recover_every: usize) {
    let template = tempfile::tempdir().unwrap();
    let stored = build(template.path(), 5, sealed);
    let bytes = std::fs::read(seg_path(template.path(), 0)).unwrap();
    let (offset, len) = frame_spans(&seg_path(template.path(), 0))[2];
    let mut expected = stored.clone();
    expected.drain(6..9);
    let dir = make_dir(&bytes);
    let path = seg_path(dir.path(), 0);
    for bit in 0..(len as usize * 8) {
        let mut damaged = bytes.clone();
        damaged[offset as usize + bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&path, &damaged).unwrap();
        let (got, errs) = read_all(dir.path());
        assert_eq!(errs.len(), 1, "bit {bit}: {errs:?}");
        assert!(
            errs[0].contains(&format!("at offset {offset}")),
            "bit {bit}: {errs:?}"
        );
        assert_eq!(records_of(&got), expected, "bit {bit}");
        let report = verify(dir.path()).unwrap();
        assert_eq!(report.num_problems(), 1, "bit {bit}: {report}");
        if bit % recover_every == 0 {
            let fresh = make_dir(&damaged);
            let (store, report) = open(fresh.path(), small_config());
            assert!(
                report.truncated.is_empty(),
                "bit {bit}: synced data must not be cut: {report:?}"
            );
            if !sealed {
                assert_eq!(report.problems.len(), 1, "bit {bit}: {report:?}");
                assert_eq!(report.problems[0].offset, offset);
                assert_eq!(report.problems[0].seqs, Some((6, 8)));
            }
            let o = store
                .handle()
                .blocking_append(vec![rec(SOURCE, "me", 0, 9, "next")])
                .unwrap()
                .wait_durable();
            assert_eq!(o.unwrap().assigned, Some(16..=16));
            drop(store);
            let (got, errs) = read_all(fresh.path());
            assert_eq!(errs.len(), 1, "bit {bit}: {errs:?}");
            assert_eq!(records_of(&got)[..12], expected[..], "bit {bit}");
        }
    }
}

#[test]
fn every_bit_flip_in_a_sealed_frame_costs_exactly_that_frame() {
    check_flips(true, 97);
}

#[test]
fn every_bit_flip_in_an_active_frame_costs_exactly_that_frame() {
    check_flips(false, 11);
}

#[test]
fn garbage_length_fields_are_corrupt_without_large_allocation() {
    let template = tempfile::tempdir().unwrap();
    let stored = build(template.path(), 5, true);
    let bytes = std::fs::read(seg_path(template.path(), 0)).unwrap();
    let (offset, _) = frame_spans(&seg_path(template.path(), 0))[2];
    let at = offset as usize;
    for len in [0u32, 7, u32::MAX] {
        for fix_crc in [false, true] {
            let mut damaged = bytes.clone();
            damaged[at + 8..at + 12].copy_from_slice(&len.to_le_bytes());
            if fix_crc {
                let crc = crc32fast::hash(&damaged[at + 8..at + 80]);
                damaged[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
            }
            let dir = make_dir(&damaged);
            let (got, errs) = read_all(dir.path());
            assert!(!errs.is_empty(), "len {len}");
            let got = records_of(&got);
            assert_eq!(got.len(), 12, "len {len} fix {fix_crc}");
            assert!(got.iter().all(|r| stored.contains(r)));
            assert!(!verify(dir.path()).unwrap().is_clean());
        }
    }
}

#[test]
fn missing_middle_segment_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        segment_max_bytes: 4096,
        ..small_config()
    };
    let (store, _) = open(dir.path(), config);
    for i in 0..60 {
        let r = rec(SOURCE, "me", 0, i, &"y".repeat(300));
        store
            .handle()
            .blocking_append(vec![r])
            .unwrap()
            .wait_durable()
            .unwrap();
    }
    store.close().unwrap();
    let shard = dir.path().join(encode(SOURCE.as_bytes()));
    let bases = super::format::segment::list_segments(&shard).unwrap();
    assert!(bases.len() >= 4, "{bases:?}");
    std::fs::remove_file(shard.join(segment_file_name(bases[1]))).unwrap();
    let report = verify(dir.path()).unwrap();
    assert_eq!(report.num_problems(), 1, "{report}");
    let p = &report.shards[0].problems[0];
    assert_eq!(p.seqs, Some((bases[1], bases[2] - 1)), "{p}");
    let (got, errs) = read_all(dir.path());
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("missing segment"), "{errs:?}");
    assert_eq!(got.len() as u64, 60 - (bases[2] - bases[1]));
}

#[test]
fn damaged_index_is_rebuilt_with_identical_results() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        segment_max_bytes: 256 * 1024,
        ..small_config()
    };
    let (store, _) = open(dir.path(), config);
    for b in 0..40i64 {
        let batch = (0..50)
            .map(|i| rec(SOURCE, "me", 0, b * 1_000_000 + i * 1000, &"z".repeat(200)))
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
    let query = ReadOptions {
        source: None,
        since_micros: Some(17_025_000),
        until_micros: Some(30_000_000),
    };
    let baseline: Vec<_> = reader.read(&query).map(|r| r.unwrap()).collect();
    assert_eq!(baseline.len(), 12 * 50 + 25);
    let shard = dir.path().join(encode(SOURCE.as_bytes()));
    let tix: Vec<PathBuf> = std::fs::read_dir(&shard)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tix"))
        .collect();
    assert!(tix.len() >= 2);
    let original: Vec<Vec<u8>> = tix.iter().map(|p| std::fs::read(p).unwrap()).collect();
    type IndexDamage = (&'static str, fn(&Path));
    let damages: [IndexDamage; 4] = [
        ("deleted", |p| std::fs::remove_file(p).unwrap()),
        ("zeroed", |p| {
            let n = std::fs::metadata(p).unwrap().len() as usize;
            std::fs::write(p, vec![0; n]).unwrap()
        }),
        ("truncated", |p| {
            let b = std::fs::read(p).unwrap();
            std::fs::write(p, &b[..b.len() - 5]).unwrap()
        }),
        ("emptied", |p| std::fs::write(p, b"").unwrap()),
    ];
    for (name, damage) in damages {
        for p in &tix {
            damage(p);
        }
        let again: Vec<_> = reader.read(&query).map(|r| r.unwrap()).collect();
        assert_eq!(again, baseline, "{name}");
        for (p, o) in tix.iter().zip(&original) {
            assert_eq!(
                &std::fs::read(p).unwrap(),
                o,
                "{name}: index rewritten identically"
            );
        }
    }
}

/// File operations whose flushes fail while `fail` is set, and whose frame writes fail while
/// `fail_writes` is set.
#[derive(Debug, Default)]
struct FailingOps {
    fail: AtomicBool,
    fail_writes: AtomicBool,
}

impl FileOps for FailingOps {
    fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        RealFileOps.allocate(file, len)
    }
    fn sync_written(&self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        RealFileOps.sync_written(file, offset, len)
    }
    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        RealFileOps.write_at(file, buf, offset)
    }
    fn sync_data(&self, file: &File) -> io::Result<()> {
        RealFileOps.sync_data(file)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFileOps.sync_dir(dir)
    }
}

#[test]
fn injected_sync_failure_reports_nothing_durable_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let ops = Arc::new(FailingOps::default());
    let (store, _) = Store::open_with_ops(dir.path(), "me", small_config(), ops.clone()).unwrap();
    let h = store.handle();
    let batch = |n: i64| {
        (0..5)
            .map(|i| rec(SOURCE, "me", 0, n * 10 + i, "m"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        h.blocking_append(batch(1))
            .unwrap()
            .wait_durable()
            .unwrap()
            .assigned,
        Some(1..=5)
    );
    ops.fail.store(true, Ordering::SeqCst);
    let err = h
        .blocking_append(batch(2))
        .unwrap()
        .wait_durable()
        .unwrap_err();
    assert!(matches!(err, StoreError::SyncFailed { .. }), "{err}");
    assert!(err.to_string().contains("sync of"), "{err}");
    assert_eq!(h.stats().sync_errors, 1);
    // The failed batch is cut back to the last synced end (the page cache is not read back
    // as stored), and its local sequences are not given again: they are a gap marker.
    assert_eq!(h.high_water_marks().get("me"), Some(&10));
    ops.fail.store(false, Ordering::SeqCst);
    let o = h.blocking_append(batch(3)).unwrap().wait_durable().unwrap();
    assert_eq!(o.assigned, Some(11..=15), "origin seqs are not reused");
    store.close().unwrap();
    let (got, errs) = read_all(dir.path());
    assert!(errs.is_empty(), "{errs:?}");
    let seqs: Vec<(u64, u64)> = records_of(&got)
        .iter()
        .map(|r| (r.first_seq(), r.origin_seq))
        .collect();
    let expected: Vec<(u64, u64)> = (1..=5)
        .map(|s| (s, s))
        .chain([(6, 10)])
        .chain((11..=15).map(|s| (s, s)))
        .collect();
    assert_eq!(seqs, expected);
    assert!(verify(dir.path()).unwrap().is_clean());
}

#[test]
fn injected_write_failure_reports_nothing_durable_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let ops = Arc::new(FailingOps::default());
    let (store, _) = Store::open_with_ops(dir.path(), "me", small_config(), ops.clone()).unwrap();
    let h = store.handle();
    let batch = |n: i64| {
        (0..5)
            .map(|i| rec(SOURCE, "me", 0, n * 10 + i, "m"))
            .collect::<Vec<_>>()
    };
    let o = h.blocking_append(batch(1)).unwrap().wait_durable().unwrap();
    assert_eq!(o.assigned, Some(1..=5));
    ops.fail_writes.store(true, Ordering::SeqCst);
    let err = h
        .blocking_append(batch(2))
        .unwrap()
        .wait_durable()
        .unwrap_err();
    assert!(err.to_string().contains("Input/output error"), "{err}");
    assert_eq!(h.stats().write_errors + h.stats().sync_errors, 1);
    // The failed frame never reached the file, but the local origin's sequences are not
    // handed out again: they are stored as a gap marker (6..=10) before the next record.
    assert_eq!(h.high_water_marks().get("me"), Some(&10));
    ops.fail_writes.store(false, Ordering::SeqCst);
    let o = h.blocking_append(batch(3)).unwrap().wait_durable().unwrap();
    assert_eq!(o.assigned, Some(11..=15), "origin seqs are not reused");
    store.close().unwrap();
    let (got, errs) = read_all(dir.path());
    assert!(errs.is_empty(), "{errs:?}");
    let seqs: Vec<(u64, u64)> = records_of(&got)
        .iter()
        .map(|r| (r.first_seq(), r.origin_seq))
        .collect();
    let expected: Vec<(u64, u64)> = (1..=5)
        .map(|s| (s, s))
        .chain([(6, 10)])
        .chain((11..=15).map(|s| (s, s)))
        .collect();
    assert_eq!(seqs, expected);
    assert!(verify(dir.path()).unwrap().is_clean());
}

#[test]
fn a_failed_frame_write_does_not_advance_a_forwarded_origin() {
    let dir = tempfile::tempdir().unwrap();
    let ops = Arc::new(FailingOps::default());
    let (store, _) = Store::open_with_ops(dir.path(), "me", small_config(), ops.clone()).unwrap();
    let h = store.handle();
    // Forwarded records of origin "peer", spread over two shards.
    let batch = |seqs: std::ops::RangeInclusive<u64>| {
        seqs.map(|s| rec(["a", "b"][s as usize % 2], "peer", s, s as i64, "m"))
            .collect::<Vec<_>>()
    };
    h.blocking_append(batch(1..=4))
        .unwrap()
        .wait_durable()
        .unwrap();
    ops.fail_writes.store(true, Ordering::SeqCst);
    assert!(h
        .blocking_append(batch(5..=8))
        .unwrap()
        .wait_durable()
        .is_err());
    // Nothing of 5..=8 was written, so the forwarder must be told to resend from 5.
    assert_eq!(h.high_water_marks().get("peer"), Some(&4));
    ops.fail_writes.store(false, Ordering::SeqCst);
    let o = h
        .blocking_append(batch(5..=10))
        .unwrap()
        .wait_durable()
        .unwrap();
    assert_eq!((o.num_stored, o.num_duplicates), (6, 0));
    store.close().unwrap();
    let (got, errs) = read_all(dir.path());
    assert!(errs.is_empty(), "{errs:?}");
    let mut seqs: Vec<u64> = got.iter().map(|r| r.record.origin_seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>(), "each once");
}

/// Real files, no syncs, and ENOSPC from `allocate` while `full` is set.
#[derive(Debug, Default)]
struct FullDiskOps {
    full: AtomicBool,
}

impl FileOps for FullDiskOps {
    fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        RealFileOps.allocate(file, len)
    }
    fn sync_written(&self, _: &File, _: u64, _: u64) -> io::Result<()> {
        Ok(())
    }
    fn sync_data(&self, _: &File) -> io::Result<()> {
        Ok(())
    }
    fn sync_dir(&self, _: &Path) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn enospc_while_growing_a_segment_stalls_then_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let ops = Arc::new(FullDiskOps::default());
    let config = StoreConfig {
        segment_max_bytes: 8 << 20,
        ..small_config()
    };
    let (store, _) = Store::open_with_ops(dir.path(), "me", config, ops.clone()).unwrap();
    let h = store.handle();
    let big = |i: i64| {
        (0..100)
            .map(|k| rec(SOURCE, "me", 0, i * 100 + k, &"e".repeat(1000)))
            .collect::<Vec<_>>()
    };
    // The first allocation step (1 MiB) fills after ~10 batches of 100 KiB.
    for i in 0..5 {
        h.blocking_append(big(i)).unwrap().wait_durable().unwrap();
    }
    ops.full.store(true, Ordering::SeqCst);
    let tickets: Vec<_> = (5..15)
        .map(|i| h.blocking_append(big(i)).unwrap())
        .collect();
    let full =
        crate::testutil::wait_until_blocking(Duration::from_secs(10), || h.stats().disk_full);
    assert!(full, "{:?}", h.stats());
    assert_eq!(h.stats().disk_full_errors, 1);
    ops.full.store(false, Ordering::SeqCst);
    for t in tickets {
        t.wait_durable().unwrap();
    }
    assert!(!h.stats().disk_full);
    store.close().unwrap();
    let (got, errs) = read_all(dir.path());
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(got.len(), 1500);
    assert!(verify(dir.path()).unwrap().is_clean());
}
