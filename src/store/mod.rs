//! The segment store: CRC-checked segment files sharded by source, preallocated and written
//! with `pwrite` (see `write::active` for why not through a writable map), with group commit,
//! crash recovery, a sparse time index, retention, and offline/concurrent readers.
//!
//! Layers, bottom up; a file imports only files of its own layer or of layers below it:
//! - leaves at this level, importing nothing of the store: `sys` (the only `unsafe`: the few
//!   libc calls), `error`, `problem` (recovery and verify reports), `stats` (counters),
//!   `budget` (the node's byte budget of records in flight to the store, taken by the
//!   pipeline and the forward server, held in a ticket as its `Hold`);
//! - `format/`: the bytes on disk — frames, record codec, segment header and footer, time
//!   index, shard names, and the frame scanner (pread, verifies every frame);
//! - `write/` (the writer thread and its queue: shards, the active segment, seal, recovery,
//!   retention, `StoreConfig`) and `read/` (`StoreReader`, `Follower`, `verify`), which never
//!   import each other: they share only the bytes on disk;
//! - this file (`Store`: open, recover, start and stop the writer) and `handle`
//!   (`StoreHandle`, `AppendTicket`).
//!
//! See `docs/format.md`. The store never parses syslog and never touches sockets.

pub mod budget;
mod error;
mod format;
mod handle;
pub mod metrics;
mod problem;
mod read;
mod stats;
mod sys;
mod write;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use error::{ReadError, StoreError, TryAppendError};
pub use format::shardname;
/// Largest encoded record (origin, peer, fields and raw bytes; the source is the shard's name)
/// the store accepts: its frame payload cap. The forward protocol's frame is sized from it.
pub const MAX_STORED_RECORD_BYTES: usize = format::frame::MAX_PAYLOAD_BYTES as usize;
pub use handle::{AppendTicket, StoreHandle};
pub use problem::{Problem, RecoveryReport, Truncation};
pub use read::follower::Follower;
pub use read::reader::{
    ReadOptions, ShardInfo, ShardPosition, ShardScan, StoreReader, StoredRecord,
};
pub use read::verify::{verify, ShardVerify, VerifyReport};
pub use stats::StoreStats;
pub use write::config::StoreConfig;
pub use write::fileops;
pub use write::queue::{AppendOutcome, Hold};
pub use write::retention::RetentionConfig;

use fileops::{FaultPlan, FileOps, RealFileOps};
use stats::Counters;
use write::queue::{Msg, Shared};
use write::recover;
use write::shard::Shard;
use write::writer::Writer;

/// Name of the lock file that keeps a second writer out of a data directory.
pub const LOCK_FILE: &str = ".lock";

/// An open, writable store: one writer thread owns every file.
pub struct Store {
    handle: StoreHandle,
    thread: Option<JoinHandle<Result<(), StoreError>>>,
    _lock: File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating) and recovers the data directory, then starts the writer thread.
    pub fn open(
        dir: &Path,
        local_origin: &str,
        config: StoreConfig,
    ) -> Result<(Store, RecoveryReport), StoreError> {
        // End-to-end failure tests only: a fault plan in STARLING_STORE_FAULTS.
        let ops: Arc<dyn FileOps> = match FaultPlan::from_env() {
            Ok(None) => Arc::new(RealFileOps),
            Ok(Some(plan)) => {
                tracing::warn!(plan = ?plan, "store file operations fail on purpose ({})", fileops::STORE_FAULTS_ENV);
                Arc::new(plan)
            }
            Err(e) => {
                return Err(StoreError::io(
                    fileops::STORE_FAULTS_ENV,
                    dir,
                    std::io::Error::other(e),
                ))
            }
        };
        Store::open_with_ops(dir, local_origin, config, ops)
    }

    /// `open` with an injected file-operations seam (tests inject failures through it).
    #[doc(hidden)]
    pub fn open_with_ops(
        dir: &Path,
        local_origin: &str,
        config: StoreConfig,
        ops: Arc<dyn FileOps>,
    ) -> Result<(Store, RecoveryReport), StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::io("create data directory", dir, e))?;
        let lock = lock_dir(dir)?;
        let mut report = RecoveryReport::default();
        // Shard directories whose shard.meta does not verify: rebuilt, or fenced with the
        // local origin's highest sequence in them kept, so numbering never goes back.
        let (damaged_metas, fenced_local) =
            repair_shard_metas(dir, local_origin, ops.as_ref(), &mut report)?;
        let mut shards = Vec::new();
        // Scan every shard's tail first, so holes across shards can be cut, then seal.
        let mut scanned = Vec::new();
        for (source, shard_dir) in
            read::reader::list_shards(dir).map_err(|e| StoreError::io("list", dir, e))?
        {
            let scan = recover::scan_shard(&shard_dir, ops.as_ref(), &mut report);
            scanned.push((Shard::new(source, shard_dir), scan));
        }
        let mut scans: Vec<recover::RecoveryScan> = Vec::new();
        let mut slots = Vec::new();
        for (shard, scan) in scanned {
            match scan {
                Ok(s) => {
                    slots.push((shard, Ok(scans.len())));
                    scans.push(s);
                }
                Err(e) => slots.push((shard, Err(e))),
            }
        }
        recover::cut_holes(&mut scans);
        let mut scans: Vec<Option<recover::RecoveryScan>> = scans.into_iter().map(Some).collect();
        for (mut shard, slot) in slots {
            let recovered = slot.and_then(|i| {
                let scan = scans[i].take().expect("each scan is finished once");
                recover::finish_shard(scan, ops.as_ref(), &mut report)
            });
            match recovered {
                Ok(state) => {
                    shard.next_seq = state.next_seq;
                    shard.set_hwm(state.hwm);
                    shard.set_segments(state.segments);
                }
                // One unreadable shard never stops the store: it is reported and fenced off.
                Err(e) => {
                    let reason = format!("cannot recover shard: {e}");
                    report.problems.push(Problem {
                        file: shard.dir.clone(),
                        offset: 0,
                        seqs: None,
                        reason: reason.clone(),
                    });
                    shard.broken = Some(reason);
                }
            }
            shards.push(shard);
        }
        report.num_shards = shards.len();
        for p in &report.problems {
            tracing::error!(problem = %p, "store recovery found damage");
        }
        for t in &report.truncated {
            tracing::info!(file = %t.file.display(), offset = t.offset, bytes = t.bytes_removed, "cut torn tail");
        }
        let shared = Arc::new(Shared::new(
            config.queue_capacity,
            config.retention.spool_retention.is_some(),
        ));
        Counters::add(&shared.counters.damaged_shard_metas, damaged_metas);
        let mut writer = Writer::new(
            dir.to_path_buf(),
            config,
            ops,
            local_origin.to_string(),
            shards,
            shared.clone(),
        );
        writer.raise_mark(local_origin, fenced_local);
        let thread = std::thread::Builder::new()
            .name("store-writer".to_string())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::io("spawn writer thread for", dir, e))?;
        Ok((
            Store {
                handle: StoreHandle { shared },
                thread: Some(thread),
                _lock: lock,
            },
            report,
        ))
    }

    pub fn handle(&self) -> StoreHandle {
        self.handle.clone()
    }

    /// Commits and syncs everything queued, seals active segments, stops the writer thread.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.shutdown()
    }

    /// Stops the writer without committing or sealing, leaving files as a killed process
    /// would (written bytes stay in the page cache). For crash tests.
    #[doc(hidden)]
    pub fn abandon(mut self) {
        if let Some(thread) = self.thread.take() {
            self.handle.shared.push(Msg::Abandon);
            let _ = thread.join();
        }
    }

    fn shutdown(&mut self) -> Result<(), StoreError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let (tx, _rx) = tokio::sync::oneshot::channel();
        self.handle.shared.push(Msg::Close(tx));
        thread.join().unwrap_or(Err(StoreError::Closed))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "closing the store failed");
        }
    }
}

/// Finds every shard directory whose `shard.meta` is missing (while segments are there) or
/// does not verify, logs it and rebuilds or fences it (`recover::repair_meta`). Returns how
/// many there were and the local origin's highest sequence in the fenced ones.
fn repair_shard_metas(
    dir: &Path,
    local_origin: &str,
    ops: &dyn FileOps,
    report: &mut RecoveryReport,
) -> Result<(u64, u64), StoreError> {
    let list = |e| StoreError::io("list", dir, e);
    let mut damaged = 0u64;
    let mut fenced_local = 0u64;
    for entry in std::fs::read_dir(dir).map_err(list)? {
        let entry = entry.map_err(list)?;
        if !entry.file_type().map_err(list)?.is_dir() {
            continue;
        }
        let shard_dir = entry.path();
        let reason = match format::shardname::read_meta(&shard_dir) {
            Ok(Ok(_)) => continue,
            Ok(Err(reason)) => format!("shard.meta does not verify: {reason}"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match format::segment::list_segments(&shard_dir) {
                    Ok(bases) if !bases.is_empty() => {
                        "shard directory has segments but no shard.meta".to_string()
                    }
                    _ => continue,
                }
            }
            Err(e) => format!("cannot read shard.meta: {e}"),
        };
        damaged += 1;
        tracing::error!(dir = %shard_dir.display(), %reason, "damaged shard.meta; run `starling verify`");
        if let recover::MetaRepair::Fenced { origin_mark } =
            recover::repair_meta(&shard_dir, &reason, local_origin, ops, report)
        {
            tracing::error!(dir = %shard_dir.display(), "shard fenced: its name cannot be rebuilt");
            fenced_local = fenced_local.max(origin_mark);
        }
    }
    Ok((damaged, fenced_local))
}

fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path: PathBuf = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io("open lock file", &path, e))?;
    if !sys::try_lock_exclusive(&file) {
        return Err(StoreError::Locked {
            path: dir.to_path_buf(),
        });
    }
    Ok(file)
}

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_damage;
#[cfg(test)]
mod tests_gap;
#[cfg(test)]
mod tests_holes;
#[cfg(test)]
mod tests_meta;
#[cfg(test)]
mod tests_model;
#[cfg(test)]
mod tests_shards;
#[cfg(test)]
mod tests_spool;
#[cfg(test)]
mod tests_sync;
