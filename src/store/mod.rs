//! The segment store: CRC-checked segment files sharded by source, preallocated and written
//! with `pwrite` (see `active` for why not through a writable map), with group commit, crash recovery, a sparse time index, retention, and offline/concurrent readers.
//!
//! Layering, bottom up: `frame`/`codec`/`segment` (byte formats, no I/O) → `scan` (pread
//! frame scanner) → `index`, `seal`, `recover` → `active` (the writer's open segment; `sys` holds
//! the few libc calls) → `shard`, `retention`, `writer` (the thread) → `handle` (queue,
//! tickets) → this file (`Store`); readers: `read`, `follow`, `verify`. See `docs/format.md`.
//! The store never parses syslog and never touches sockets.

mod active;
mod codec;
mod error;
pub mod fileops;
mod follow;
mod frame;
mod handle;
mod index;
pub mod metrics;
mod problem;
mod read;
mod recover;
mod retention;
pub(crate) mod scan;
mod seal;
mod segment;
mod shard;
pub mod shardname;
mod stats;
mod sys;
mod verify;
mod writer;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use error::{ReadError, StoreError, TryAppendError};
pub use follow::Follower;
pub use handle::{AppendOutcome, AppendTicket, StoreHandle};
pub use problem::{Problem, RecoveryReport, Truncation};
pub use read::{ReadOptions, ShardInfo, ShardPosition, ShardScan, StoreReader, StoredRecord};
pub use retention::RetentionConfig;
pub use stats::StoreStats;
pub use verify::{verify, ShardVerify, VerifyReport};

use fileops::{FileOps, RealFileOps};
use handle::{Msg, Shared};
use shard::Shard;
use writer::Writer;

/// Name of the lock file that keeps a second writer out of a data directory.
pub const LOCK_FILE: &str = ".lock";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Roll a segment once it holds this many bytes (default 128 MiB).
    pub segment_max_bytes: u64,
    /// Roll a segment when an append arrives and it is older than this (default 1 h).
    pub segment_max_age: Duration,
    /// Longest a written record waits for its commit (default 10 ms).
    pub commit_max_delay: Duration,
    /// Commit as soon as this many bytes are unsynced (default 8 MiB).
    pub commit_max_bytes: u64,
    pub retention: RetentionConfig,
    /// Batches the append queue holds before appends wait (default 1024).
    pub queue_capacity: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            segment_max_bytes: 128 * 1024 * 1024,
            segment_max_age: Duration::from_secs(3600),
            commit_max_delay: Duration::from_millis(10),
            commit_max_bytes: 8 * 1024 * 1024,
            retention: RetentionConfig::default(),
            queue_capacity: 1024,
        }
    }
}

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
        Store::open_with_ops(dir, local_origin, config, Arc::new(RealFileOps))
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
        let mut shards = Vec::new();
        // Scan every shard's tail first, so holes across shards can be cut, then seal.
        let mut scanned = Vec::new();
        for (source, shard_dir) in
            read::list_shards(dir).map_err(|e| StoreError::io("list", dir, e))?
        {
            let scan = recover::scan_shard(&shard_dir, ops.as_ref(), &mut report);
            scanned.push((Shard::new(source, shard_dir), scan));
        }
        let mut scans: Vec<recover::ShardScan> = Vec::new();
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
        let mut scans: Vec<Option<recover::ShardScan>> = scans.into_iter().map(Some).collect();
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
        let writer = Writer::new(
            dir.to_path_buf(),
            config,
            ops,
            local_origin.to_string(),
            shards,
            shared.clone(),
        );
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
mod tests_model;
#[cfg(test)]
mod tests_spool;
