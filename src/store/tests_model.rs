//! Model-based property test: random appends (local and forwarded), commits, clean reopens
//! and crashes that drop a random part of every file's unsynced bytes, checked against an
//! in-memory model: acknowledged records survive, each shard holds a prefix of what was
//! written to it, nothing is duplicated, and numbering continues after what is on disk.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;

use super::tests::{read_all, rec};
use super::write::fileops::{FileOps, RealFileOps};
use super::*;

/// Real files, no real syncs, but remembers how far each file was synced.
#[derive(Debug, Default)]
struct TrackingOps {
    synced: Mutex<HashMap<PathBuf, u64>>,
}

fn path_of(file: &File) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap_or_default()
}

impl TrackingOps {
    fn mark(&self, file: &File, end: u64) {
        let mut s = self.synced.lock().unwrap();
        let e = s.entry(path_of(file)).or_insert(0);
        *e = (*e).max(end);
    }
}

impl FileOps for TrackingOps {
    fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        self.synced.lock().unwrap().insert(path_of(file), 0);
        RealFileOps.allocate(file, len)
    }
    fn sync_written(&self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        self.mark(file, offset + len);
        Ok(())
    }
    fn sync_data(&self, file: &File) -> io::Result<()> {
        // Everything written so far is durable: up to the last non-zero byte.
        let bytes = std::fs::read(path_of(file))?;
        self.mark(
            file,
            bytes
                .iter()
                .rposition(|&b| b != 0)
                .map_or(0, |p| p as u64 + 1),
        );
        Ok(())
    }
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}

impl TrackingOps {
    /// Zeroes each file's unsynced written bytes from `keep` (0..=1) of the way on.
    fn crash(&self, keep: f64) {
        self.crash_where(keep, |_| true);
    }

    /// As `crash`, only for files whose path satisfies `which` (the others keep everything).
    fn crash_where(&self, keep: f64, which: impl Fn(&Path) -> bool) {
        let synced = std::mem::take(&mut *self.synced.lock().unwrap());
        for (path, synced) in synced.into_iter().filter(|(p, _)| which(p)) {
            let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
                continue;
            };
            let bytes = std::fs::read(&path).unwrap();
            let written = bytes
                .iter()
                .rposition(|&b| b != 0)
                .map_or(0, |p| p as u64 + 1);
            if written <= synced {
                continue;
            }
            let cut = synced + ((written - synced) as f64 * keep) as u64;
            file.write_all_at(&vec![0; (written - cut) as usize], cut)
                .unwrap();
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        source: usize,
        n: usize,
        forwarded: bool,
    },
    Commit,
    Reopen,
    Crash {
        keep: f64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3usize, 1..6usize, any::<bool>()).prop_map(|(source, n, forwarded)| Op::Append { source, n, forwarded }),
        2 => Just(Op::Commit),
        1 => Just(Op::Reopen),
        1 => (0.0..1.0f64).prop_map(|keep| Op::Crash { keep }),
    ]
}

const SOURCES: [&str; 3] = ["a", "B", "c/d"];

/// (origin, origin_seq, raw) of one record.
type Entry = (String, u64, String);

/// Per shard: records written (in order) and how many of them are acknowledged durable.
#[derive(Default)]
struct Model {
    written: HashMap<String, Vec<Entry>>,
    durable: HashMap<String, usize>,
    counter: i64,
}

fn config() -> StoreConfig {
    StoreConfig {
        segment_max_bytes: 4096,
        commit_max_delay: Duration::from_secs(3600),
        commit_max_bytes: u64::MAX,
        ..StoreConfig::default()
    }
}

fn check_and_resync(dir: &Path, model: &mut Model) -> Result<(), TestCaseError> {
    let (got, errs) = read_all(dir);
    prop_assert!(errs.is_empty(), "read errors: {:?}", errs);
    let mut by_shard: HashMap<String, Vec<(u64, Entry)>> = HashMap::new();
    for r in got {
        let raw = String::from_utf8(r.record.raw.to_vec()).unwrap();
        by_shard
            .entry(r.record.source.to_string())
            .or_default()
            .push((
                r.shard_seq,
                (r.record.origin.to_string(), r.record.origin_seq, raw),
            ));
    }
    for source in SOURCES {
        let mut stored = by_shard.remove(source).unwrap_or_default();
        stored.sort_by_key(|x| x.0);
        prop_assert_eq!(
            stored.iter().map(|x| x.0).collect::<Vec<_>>(),
            (0..stored.len() as u64).collect::<Vec<_>>()
        );
        let stored: Vec<_> = stored.into_iter().map(|x| x.1).collect();
        let written = model.written.entry(source.to_string()).or_default();
        let durable = model.durable.get(source).copied().unwrap_or(0);
        prop_assert!(
            stored.len() >= durable,
            "{}: {} stored < {} durable",
            source,
            stored.len(),
            durable
        );
        prop_assert!(stored.len() <= written.len());
        prop_assert_eq!(
            &stored[..],
            &written[..stored.len()],
            "{} is not a prefix of what was written",
            source
        );
        written.truncate(stored.len());
        model.durable.insert(source.to_string(), stored.len());
    }
    for origin in ["me", "agent"] {
        let mut seqs: Vec<u64> = model
            .written
            .values()
            .flatten()
            .filter(|r| r.0 == origin)
            .map(|r| r.1)
            .collect();
        seqs.sort_unstable();
        prop_assert_eq!(
            seqs.clone(),
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "origin {} has a hole",
            origin
        );
    }
    let report = verify(dir).unwrap();
    prop_assert!(report.is_clean(), "{}", report);
    Ok(())
}

fn max_seq(model: &Model, origin: &str) -> u64 {
    model
        .written
        .values()
        .flatten()
        .filter(|r| r.0 == origin)
        .map(|r| r.1)
        .max()
        .unwrap_or(0)
}

fn run(ops: Vec<Op>) -> Result<Model, TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let tracking = Arc::new(TrackingOps::default());
    let open =
        |t: &Arc<TrackingOps>| Store::open_with_ops(dir.path(), "me", config(), t.clone()).unwrap();
    let (mut store, _) = open(&tracking);
    let mut model = Model::default();
    let mut tickets = Vec::new();
    for op in ops {
        match op {
            Op::Append {
                source,
                n,
                forwarded,
            } => {
                let source = SOURCES[source];
                let next_agent = max_seq(&model, "agent") + 1;
                let next_local = max_seq(&model, "me") + 1;
                let records: Vec<_> = (0..n as u64)
                    .map(|i| {
                        model.counter += 1;
                        let (origin, seq) = if forwarded {
                            ("agent", next_agent + i)
                        } else {
                            ("me", 0)
                        };
                        rec(
                            source,
                            origin,
                            seq,
                            model.counter,
                            &format!("m{}", model.counter),
                        )
                    })
                    .collect();
                let ticket = store.handle().blocking_append(records.clone()).unwrap();
                let shard = model.written.entry(source.to_string()).or_default();
                for (i, r) in records.into_iter().enumerate() {
                    let seq = if forwarded {
                        r.origin_seq
                    } else {
                        next_local + i as u64
                    };
                    shard.push((
                        r.origin.to_string(),
                        seq,
                        String::from_utf8(r.raw.to_vec()).unwrap(),
                    ));
                }
                tickets.push((
                    ticket,
                    source,
                    model.written[source].len(),
                    forwarded.then_some(()).map_or(Some(next_local), |_| None),
                ));
            }
            Op::Commit => {
                store.handle().commit_now().unwrap();
                for (ticket, source, upto, local_start) in tickets.drain(..) {
                    let outcome = ticket.wait_durable().unwrap();
                    if let Some(start) = local_start {
                        prop_assert_eq!(outcome.assigned.map(|r| *r.start()), Some(start));
                    }
                    let d = model.durable.entry(source.to_string()).or_insert(0);
                    *d = (*d).max(upto);
                }
            }
            Op::Reopen => {
                store.close().unwrap();
                for (ticket, source, upto, _) in tickets.drain(..) {
                    ticket.wait_durable().unwrap();
                    let d = model.durable.entry(source.to_string()).or_insert(0);
                    *d = (*d).max(upto);
                }
                check_and_resync(dir.path(), &mut model)?;
                store = open(&tracking).0;
            }
            Op::Crash { keep } => {
                store.abandon();
                tickets.clear();
                tracking.crash(keep);
                let (s, report) = open(&tracking);
                prop_assert!(report.problems.is_empty(), "{:?}", report);
                store = s;
                check_and_resync(dir.path(), &mut model)?;
            }
        }
    }
    store.close().unwrap();
    for (ticket, source, upto, _) in tickets.drain(..) {
        ticket.wait_durable().unwrap();
        let d = model.durable.entry(source.to_string()).or_insert(0);
        *d = (*d).max(upto);
    }
    check_and_resync(dir.path(), &mut model)?;
    Ok(model)
}

#[test]
fn a_power_loss_hole_across_shards_is_cut_so_origins_stay_gapless() {
    let dir = tempfile::tempdir().unwrap();
    let tracking = Arc::new(TrackingOps::default());
    let (store, _) = Store::open_with_ops(dir.path(), "me", config(), tracking.clone()).unwrap();
    let h = store.handle();
    for (i, source) in ["a", "B", "a", "B"].into_iter().enumerate() {
        let batch = (0..3)
            .map(|k| rec(source, "me", 0, (i * 3 + k) as i64, "unsynced"))
            .collect();
        h.blocking_append(batch).unwrap();
    }
    store.abandon();
    // Shard B's unsynced pages never reached the disk; shard a's did (frames 1-3 and 7-9).
    tracking.crash_where(0.0, |p| p.to_string_lossy().contains("s-%42"));
    let (store, report) =
        Store::open_with_ops(dir.path(), "me", config(), tracking.clone()).unwrap();
    assert!(report.problems.is_empty(), "{report:?}");
    assert_eq!(
        report.truncated.len(),
        1,
        "shard a cut after the hole: {report:?}"
    );
    let o = store
        .handle()
        .blocking_append(vec![rec("a", "me", 0, 99, "next")])
        .unwrap();
    store.handle().commit_now().unwrap();
    assert_eq!(o.wait_durable().unwrap().assigned, Some(4..=4));
    store.close().unwrap();
    let (got, errs) = read_all(dir.path());
    assert!(errs.is_empty());
    let mut seqs: Vec<u64> = got.iter().map(|r| r.record.origin_seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
}

#[test]
fn a_crash_drops_unsynced_records_and_keeps_synced_ones() {
    let append = |forwarded| Op::Append {
        source: 0,
        n: 5,
        forwarded,
    };
    let model = run(vec![
        append(false),
        Op::Commit,
        append(true),
        append(false),
        Op::Crash { keep: 0.0 },
        append(false),
    ])
    .unwrap();
    let seqs: Vec<u64> = model.written["a"].iter().map(|r| r.1).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}
