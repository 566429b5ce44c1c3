//! A batch that fails after the writer has taken it (shard directory, `shard.meta` or segment
//! creation fails) leaves no hole in the local origin's sequences: after a crash, every record
//! a completed commit reported durable is read back and no sequence is handed out twice.
//! ENOSPC at those steps stalls the batch and resumes it, like ENOSPC from `fallocate`.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::format::shardname::encode;
use super::tests::{read_all, rec, small_config};
use super::write::fileops::{FileOps, RealFileOps};
use super::*;
use crate::record::Record;

/// The step a `FaultOps` fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Step {
    None = 0,
    Mkdir = 1,
    Meta = 2,
    SegmentCreate = 3,
    Write = 4,
}

/// Real files; while `step` is set, that step fails with `errno`.
#[derive(Debug)]
struct FaultOps {
    step: AtomicU8,
    errno: AtomicI32,
}

impl FaultOps {
    fn new() -> Arc<FaultOps> {
        Arc::new(FaultOps {
            step: AtomicU8::new(Step::None as u8),
            errno: AtomicI32::new(0),
        })
    }

    fn fail(&self, step: Step, errno: i32) {
        self.errno.store(errno, Ordering::SeqCst);
        self.step.store(step as u8, Ordering::SeqCst);
    }

    fn check(&self, step: Step) -> io::Result<()> {
        if self.step.load(Ordering::SeqCst) == step as u8 {
            return Err(io::Error::from_raw_os_error(
                self.errno.load(Ordering::SeqCst),
            ));
        }
        Ok(())
    }
}

impl FileOps for FaultOps {
    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        self.check(Step::Mkdir)?;
        RealFileOps.create_dir(dir)
    }
    fn write_file(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        self.check(Step::Meta)?;
        RealFileOps.write_file(path, contents)
    }
    fn create_file(&self, path: &Path) -> io::Result<File> {
        self.check(Step::SegmentCreate)?;
        RealFileOps.create_file(path)
    }
    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check(Step::Write)?;
        RealFileOps.write_at(file, buf, offset)
    }
    fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        RealFileOps.allocate(file, len)
    }
    fn sync_written(&self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        RealFileOps.sync_written(file, offset, len)
    }
    fn sync_data(&self, file: &File) -> io::Result<()> {
        RealFileOps.sync_data(file)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFileOps.sync_dir(dir)
    }
}

fn local(source: &str, text: &str) -> Record {
    rec(source, "me", 0, 1, text)
}

/// Every stored record of the local origin as (seq, raw text), in sequence order.
fn local_records(dir: &Path) -> Vec<(u64, String)> {
    let (got, errs) = read_all(dir);
    assert!(errs.is_empty(), "{errs:?}");
    let mut v: Vec<(u64, String)> = got
        .into_iter()
        .map(|s| s.record)
        .filter(|r| *r.origin == *"me")
        .map(|r| (r.origin_seq, String::from_utf8_lossy(&r.raw).into_owned()))
        .collect();
    v.sort();
    v
}

/// The reproduction: a durable record of h1, a failed batch whose h2 shard cannot be
/// made (`obstruct` sets that up, `clear` removes it), another durable record of h1, a crash,
/// a reopen. Both durable records must be read back, with gapless sequences, and the next
/// record must not reuse one.
fn failed_batch_then_crash(
    name: &str,
    ops: Arc<FaultOps>,
    obstruct: impl Fn(&Path),
    clear: impl Fn(&Path),
) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open_with_ops(dir.path(), "me", small_config(), ops).unwrap();
    let h = store.handle();
    let mut durable: Vec<(u64, String)> = Vec::new();
    let o = h
        .blocking_append(vec![local("h1", "first")])
        .unwrap()
        .wait_durable()
        .unwrap();
    durable.push((*o.assigned.unwrap().start(), "first".into()));

    obstruct(dir.path());
    // The ticket fails as a whole (the h1 record before the failure may be written).
    let err = h
        .blocking_append(vec![
            local("h1", "before the failure"),
            local("h2", "cannot be stored"),
            local("h1", "after the failure"),
        ])
        .unwrap()
        .wait_durable();
    assert!(err.is_err(), "{name}: {err:?}");
    clear(dir.path());

    let o = h
        .blocking_append(vec![local("h1", "third")])
        .unwrap()
        .wait_durable()
        .unwrap();
    durable.push((*o.assigned.unwrap().start(), "third".into()));
    store.abandon();

    let (store, report) = Store::open(dir.path(), "me", small_config()).unwrap();
    let got = local_records(dir.path());
    for d in &durable {
        assert!(
            got.contains(d),
            "{name}: durable record {d:?} lost after the crash; read back {got:?}; {report:?}"
        );
    }
    let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    let gapless: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(
        seqs, gapless,
        "{name}: local sequences have a hole: {got:?}"
    );
    let o = store
        .handle()
        .blocking_append(vec![local("h1", "after reopen")])
        .unwrap()
        .wait_durable()
        .unwrap();
    let next = *o.assigned.unwrap().start();
    assert_eq!(
        next,
        seqs.len() as u64 + 1,
        "{name}: next sequence after {got:?}"
    );
    store.close().unwrap();
    assert!(verify(dir.path()).unwrap().is_clean(), "{name}");
}

#[test]
fn a_failed_shard_or_segment_creation_leaves_no_hole_for_recovery_to_cut() {
    for (name, step, errno) in [
        ("mkdir EMFILE", Step::Mkdir, libc::EMFILE),
        ("mkdir EIO", Step::Mkdir, libc::EIO),
        ("shard.meta EMFILE", Step::Meta, libc::EMFILE),
        ("shard.meta EIO", Step::Meta, libc::EIO),
        ("segment create EMFILE", Step::SegmentCreate, libc::EMFILE),
        ("segment create EIO", Step::SegmentCreate, libc::EIO),
    ] {
        let ops = FaultOps::new();
        failed_batch_then_crash(
            name,
            ops.clone(),
            |_| ops.fail(step, errno),
            |_| ops.fail(Step::None, 0),
        );
    }
}

#[test]
fn a_plain_file_where_a_shard_directory_goes_leaves_no_hole() {
    let obstacle = |dir: &Path| dir.join(encode(b"h2"));
    failed_batch_then_crash(
        "plain file",
        FaultOps::new(),
        |dir| std::fs::write(obstacle(dir), b"not a directory").unwrap(),
        |dir| std::fs::remove_file(obstacle(dir)).unwrap(),
    );
}

#[test]
fn enospc_while_creating_a_shard_stalls_then_resumes() {
    for (name, step) in [("mkdir", Step::Mkdir), ("shard.meta", Step::Meta)] {
        let dir = tempfile::tempdir().unwrap();
        let ops = FaultOps::new();
        let (store, _) =
            Store::open_with_ops(dir.path(), "me", small_config(), ops.clone()).unwrap();
        let h = store.handle();
        h.blocking_append(vec![local("h1", "first")])
            .unwrap()
            .wait_durable()
            .unwrap();
        ops.fail(step, libc::ENOSPC);
        let ticket = h
            .blocking_append(vec![local("h1", "before"), local("h2", "new shard")])
            .unwrap();
        let full =
            crate::testutil::wait_until_blocking(Duration::from_secs(10), || h.stats().disk_full);
        assert!(full, "{name}: {:?}", h.stats());
        assert_eq!(h.stats().disk_full_errors, 1, "{name}");
        ops.fail(Step::None, 0);
        let o = ticket.wait_durable().unwrap();
        assert_eq!(o.assigned, Some(2..=3), "{name}");
        assert!(!h.stats().disk_full, "{name}");
        store.close().unwrap();
        let got = local_records(dir.path());
        let texts: Vec<&str> = got.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts, ["first", "before", "new shard"], "{name}");
        assert!(verify(dir.path()).unwrap().is_clean(), "{name}");
    }
}

/// A frame write that fails poisons its shard and loses the local records in the frame: the
/// lost range is stored as a counted gap marker before any later local record, so after a
/// crash the later, acknowledged record is not cut as lying above a hole.
#[test]
fn local_records_lost_with_a_failed_frame_write_become_a_gap_marker() {
    let dir = tempfile::tempdir().unwrap();
    let ops = FaultOps::new();
    let (store, _) = Store::open_with_ops(dir.path(), "me", small_config(), ops.clone()).unwrap();
    let h = store.handle();
    h.blocking_append(vec![local("h1", "first")])
        .unwrap()
        .wait_durable()
        .unwrap();
    ops.fail(Step::Write, libc::EIO);
    let err = h
        .blocking_append(vec![local("h1", "lost a"), local("h1", "lost b")])
        .unwrap()
        .wait_durable();
    assert!(err.is_err(), "{err:?}");
    ops.fail(Step::None, 0);
    let o = h
        .blocking_append(vec![local("h1", "third")])
        .unwrap()
        .wait_durable()
        .unwrap();
    assert_eq!(o.assigned, Some(4..=4), "sequences are not given again");
    assert_eq!((h.stats().gap_markers, h.stats().lost_seqs), (1, 2));
    store.abandon();

    let (store, report) = Store::open(dir.path(), "me", small_config()).unwrap();
    let (got, errs) = read_all(dir.path());
    assert!(errs.is_empty(), "{errs:?}");
    let mut got: Vec<(u64, u64, String)> = got
        .into_iter()
        .map(|s| s.record)
        .filter(|r| *r.origin == *"me")
        .map(|r| {
            let text = String::from_utf8_lossy(&r.raw).into_owned();
            (r.first_seq(), r.origin_seq, text)
        })
        .collect();
    got.sort();
    let seqs: Vec<(u64, u64)> = got.iter().map(|(a, b, _)| (*a, *b)).collect();
    assert_eq!(seqs, [(1, 1), (2, 3), (4, 4)], "{got:?}; {report:?}");
    assert_eq!(got[2].2, "third");
    assert!(got[1].2.contains("seqs 2..=3"), "{got:?}");
    let o = store
        .handle()
        .blocking_append(vec![local("h1", "after reopen")])
        .unwrap()
        .wait_durable()
        .unwrap();
    assert_eq!(o.assigned, Some(5..=5));
    store.close().unwrap();
    assert!(verify(dir.path()).unwrap().is_clean());
}
