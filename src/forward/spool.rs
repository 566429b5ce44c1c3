//! `StoreSpool`: the `SpoolSource` over this node's own store directory: the records of the
//! node's origin, in sequence order, only once they are durable.
//!
//! Positioning (`seek`) scans every shard with a lazy `StoreReader::read` and merges the
//! origin's records by sequence (a shard holds them in append order, hence in sequence order),
//! then tails new records with a `Follower` that starts exactly where each shard's scan stopped,
//! so nothing is read twice (a small buffer puts the tailed records back in order). The scan starts at a remembered checkpoint when there is one; otherwise it tries
//! recent time windows first (5 min, 1 h, 6 h, then everything) and keeps a window only once
//! it holds a record older than the wanted sequence far enough inside it, so a forwarder that
//! resumes near the end of a large store does not read all of it. Records are
//! handed out only up to the store's durable high-water mark for the origin: a record read
//! from the page cache but lost in a crash must never reach the master, or its sequence would
//! be reused.
//!
//! Records that are durable but gone from the spool (retention deleted their segment, damage
//! was skipped, a failed sync lost them) are never waited for: once a fresh scan of the whole
//! spool, started after the durable high-water mark was read, proves the next sequence absent,
//! the spool hands out one gap marker (`Record::gap_marker`) for the missing range and goes
//! on after it. An I/O error proves nothing, so it is reported and the read retried instead.
//! This file only reads; renumbering (`renumber`) is the only part of the spool that appends.

use std::collections::{BTreeMap, VecDeque};
use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;

use tracing::{error, warn};

mod merge;
mod pending;
mod renumber;

pub use self::renumber::STATE_FILE as RENUMBER_STATE_FILE;

use self::merge::SeqMerge;
use self::pending::Pending;
use super::protocol::encoded_record_len;
use super::source::{BatchLimits, SpoolError, SpoolSource};
use crate::record::Record;
use crate::store::{Follower, ReadError, ReadOptions, StoreHandle, StoreReader, StoredRecord};

/// Receive times may be out of sequence order by up to this much (listener batching, clock
/// steps); positions are looked up this far back.
const REORDER_SLACK_MICROS: i64 = 60_000_000;
/// Reordering buffer bound: past it, the spool is re-scanned from the next sequence instead.
const MAX_PENDING_RECORDS: usize = 65_536;
/// A checkpoint (sequence → receive time) is kept every this many sequences.
const CHECKPOINT_EVERY: u64 = 4_096;
const MAX_CHECKPOINTS: usize = 4_096;
/// Records handed out recently, kept so that resuming a little earlier (batches that were in
/// flight when a connection broke) needs no re-scan.
const MAX_RECENT_RECORDS: usize = 65_536;

/// Time windows tried, newest first, before scanning the whole spool.
const WINDOWS_MICROS: [i64; 3] = [300_000_000, 3_600_000_000, 21_600_000_000];

enum Mode {
    /// Not positioned yet.
    Idle,
    Scan {
        iter: Box<SeqMerge>,
        window: Option<Window>,
    },
    Tail(Follower),
}

/// A scan limited to recent records, valid once `confirmed`: it saw a record of the origin
/// below the wanted sequence received at least the reordering slack after the window start,
/// so every wanted record was received inside the window.
struct Window {
    index: usize,
    since: i64,
    confirmed: bool,
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as i64)
}

pub struct StoreSpool {
    reader: StoreReader,
    handle: StoreHandle,
    origin: String,
    next_seq: u64,
    mode: Mode,
    /// Records at or after `next_seq`, waiting for their turn.
    pending: Pending,
    /// Highest receive time seen since the last seek.
    max_received: i64,
    checkpoints: BTreeMap<u64, i64>,
    /// The batches handed out recently (shared with the forwarder, so keeping them copies
    /// nothing), oldest first, holding `num_recent` records.
    recent: VecDeque<Arc<Vec<Record>>>,
    num_recent: usize,
    /// What the tail's last poll returned (reused, so polling does not allocate).
    polled: Vec<Result<StoredRecord, ReadError>>,
    num_corrupt: u64,
    num_scans: u64,
    /// Records appended again by `renumber_past`, not yet taken by `take_renumbered`.
    num_renumbered: u64,
    /// A renumbering under way (also one a stopped process left unfinished).
    renumbering: Option<renumber::Renumbering>,
    /// A renumbering was started by this process: another conflict is only reported (two
    /// live nodes sharing one node id would otherwise copy each other's records forever).
    renumbered_once: bool,
    /// This data directory forwarded to a master before (`with_forwarded_before`), and held
    /// the origin's records up to this seq at start: a master holding more than this store
    /// has those already, so only records numbered after it are renumbered.
    forwarded_before: Option<u64>,
}

impl StoreSpool {
    /// Reads `origin`'s records from the store in `dir`, which `handle` (the same store, open in
    /// this process) appends to.
    pub fn new(dir: &Path, origin: &str, handle: StoreHandle) -> Result<StoreSpool, SpoolError> {
        let reader = StoreReader::open(dir).map_err(|error| SpoolError::Read {
            what: dir.display().to_string(),
            reason: error.to_string(),
        })?;
        let renumbering = renumber::load(dir, origin);
        if let Some(plan) = renumbering {
            warn!(
                ?plan,
                "resuming a renumbering a stopped process left unfinished"
            );
        }
        Ok(StoreSpool {
            reader,
            handle,
            origin: origin.to_string(),
            next_seq: 1,
            mode: Mode::Idle,
            pending: Pending::default(),
            max_received: i64::MIN,
            checkpoints: BTreeMap::new(),
            recent: VecDeque::new(),
            num_recent: 0,
            polled: Vec::new(),
            num_corrupt: 0,
            num_scans: 0,
            num_renumbered: 0,
            renumbering,
            renumbered_once: renumbering.is_some(),
            forwarded_before: None,
        })
    }

    /// Says that this data directory has forwarded to a master before (the node keeps that in
    /// its data directory, `forward::acked_mark`) and held the origin's records up to
    /// `held_at_start` when the node started. A master that holds more of the origin than
    /// this store then means the store lost its newest records, or was restored from an older
    /// backup: the master has its records up to `held_at_start` already, so only those the
    /// node accepted since it started are renumbered (renumbering the others would store
    /// them twice).
    pub fn with_forwarded_before(mut self, held_at_start: Option<u64>) -> StoreSpool {
        self.forwarded_before = held_at_start;
        self
    }

    /// Corrupt frames skipped so far.
    pub fn num_corrupt(&self) -> u64 {
        self.num_corrupt
    }

    /// Scans started to find a position (a widened window counts again).
    pub fn num_scans(&self) -> u64 {
        self.num_scans
    }

    fn accept(&mut self, item: Result<StoredRecord, ReadError>) {
        match item {
            Ok(stored) => {
                let record = stored.record;
                if *record.origin != *self.origin {
                    return;
                }
                if let Mode::Scan {
                    window: Some(window),
                    ..
                } = &mut self.mode
                {
                    if record.origin_seq < self.next_seq
                        && record.received_at_micros
                            >= window.since.saturating_add(REORDER_SLACK_MICROS)
                    {
                        window.confirmed = true;
                    }
                }
                if record.origin_seq >= self.next_seq {
                    self.max_received = self.max_received.max(record.received_at_micros);
                    self.pending.insert(record.origin_seq, record);
                }
            }
            Err(error) => {
                self.num_corrupt += 1;
                warn!(%error, "skipping damaged spool frame");
            }
        }
    }

    /// Reads until `next_seq` is buffered or nothing more is available now. Returns `true`
    /// when it stopped because everything in the spool has been read.
    fn fill(&mut self) -> bool {
        while !self.pending.contains_key(self.next_seq) {
            if self.pending.len() >= MAX_PENDING_RECORDS {
                match &self.mode {
                    // A window too narrow: read a wider one instead of buffering more.
                    Mode::Scan {
                        window: Some(window),
                        ..
                    } if !window.confirmed => {
                        let wider = window.index + 1;
                        self.pending.clear();
                        self.widen(wider);
                        continue;
                    }
                    // Tailing: the record may predate the tail's start; look it up by scanning.
                    Mode::Tail(_) => {
                        warn!(
                            next_seq = self.next_seq,
                            "spool sequence not seen while tailing; rescanning"
                        );
                        self.seek_to(self.next_seq);
                        continue;
                    }
                    // A scan in sequence order went past it: it is not in the spool.
                    _ => return true,
                }
            }
            match &mut self.mode {
                Mode::Idle => self.seek_to(self.next_seq),
                Mode::Scan { iter, window } => match iter.next() {
                    Some(item) => self.accept(item),
                    None => match window {
                        Some(window) if !window.confirmed => {
                            let wider = window.index + 1;
                            self.widen(wider);
                        }
                        // Tail from exactly where each shard's scan stopped.
                        _ => {
                            let positions = iter.positions();
                            self.mode = Mode::Tail(
                                self.reader.follow_from(&ReadOptions::default(), positions),
                            );
                        }
                    },
                },
                Mode::Tail(follower) => {
                    let mut polled = std::mem::take(&mut self.polled);
                    follower.poll_into(&mut polled);
                    if polled.is_empty() {
                        self.polled = polled;
                        return true;
                    }
                    for item in polled.drain(..) {
                        self.accept(item);
                    }
                    self.polled = polled;
                }
            }
        }
        false
    }

    /// Positions at `next_seq`: forward and short backward moves reuse what was read,
    /// anything else scans again.
    fn position(&mut self, next_seq: u64) {
        let in_recent = self
            .recent
            .front()
            .and_then(|batch| batch.first())
            .is_some_and(|record| record.origin_seq <= next_seq);
        let near_ahead = next_seq >= self.next_seq
            && next_seq - self.next_seq <= MAX_PENDING_RECORDS as u64
            && !matches!(self.mode, Mode::Idle);
        if near_ahead || in_recent {
            // Batches handed out from `next_seq` on go back to pending.
            while let Some(batch) = self.recent.pop_back() {
                let keep = batch.partition_point(|record| record.origin_seq < next_seq);
                if keep == batch.len() {
                    self.recent.push_back(batch);
                    break;
                }
                self.num_recent -= batch.len() - keep;
                for record in &batch[keep..] {
                    self.pending.insert(record.origin_seq, record.clone());
                }
                if keep > 0 {
                    self.recent.push_back(Arc::new(batch[..keep].to_vec()));
                    break;
                }
            }
            self.next_seq = next_seq;
            self.pending.drop_below(next_seq);
            return;
        }
        self.seek_to(next_seq);
    }

    fn seek_to(&mut self, next_seq: u64) {
        self.recent.clear();
        self.num_recent = 0;
        self.next_seq = next_seq;
        self.pending.drop_below(next_seq);
        let checkpoint = self
            .checkpoints
            .range(..=next_seq)
            .next_back()
            .map(|(_, received)| *received);
        match checkpoint {
            Some(received) => {
                self.start_scan(Some(received.saturating_sub(REORDER_SLACK_MICROS)), None)
            }
            None if next_seq <= 1 => self.start_scan(None, None),
            None => self.start_window(0),
        }
    }

    /// Scans window `index`, or the whole spool past the last window.
    fn widen(&mut self, index: usize) {
        if index < WINDOWS_MICROS.len() {
            self.start_window(index);
        } else {
            self.start_scan(None, None);
        }
    }

    fn start_window(&mut self, index: usize) {
        let since = now_micros().saturating_sub(WINDOWS_MICROS[index]);
        self.start_scan(
            Some(since),
            Some(Window {
                index,
                since,
                confirmed: false,
            }),
        );
    }

    /// `next_seq` (durable) was not found. Scans the whole spool afresh: the scan starts after
    /// `durable` was read, so every record up to it was on disk when it began. Returns the end
    /// of the lost range (the sequence before the next one present, at most `durable`), or
    /// `None` when `next_seq` is there after all (it is then pending). Damaged frames and files
    /// deleted meanwhile (retention) count as gone; any other I/O error is returned, and the
    /// position is read again later.
    fn confirm_lost(&mut self, durable: u64) -> Result<Option<u64>, SpoolError> {
        self.pending.clear();
        self.start_scan(None, None);
        let Mode::Scan { mut iter, .. } = std::mem::replace(&mut self.mode, Mode::Idle) else {
            return Ok(None);
        };
        let mut found = None;
        for item in iter.by_ref() {
            match item {
                Ok(stored) if stored.record.origin_seq >= self.next_seq => {
                    found = Some(stored);
                    break;
                }
                Ok(_) => {}
                Err(ReadError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
                Err(error @ ReadError::Io { .. }) => {
                    return Err(SpoolError::Read {
                        what: self.reader.dir().display().to_string(),
                        reason: format!(
                            "cannot tell whether seq {} is lost: {error}",
                            self.next_seq
                        ),
                    });
                }
                Err(error) => {
                    self.num_corrupt += 1;
                    warn!(%error, "skipping damaged spool frame");
                }
            }
        }
        self.mode = Mode::Scan { iter, window: None };
        let Some(found) = found else {
            return Ok(Some(durable));
        };
        let first_present = found.record.origin_seq;
        self.accept(Ok(found));
        if first_present == self.next_seq {
            return Ok(None);
        }
        Ok(Some((first_present - 1).min(durable)))
    }

    fn start_scan(&mut self, since: Option<i64>, window: Option<Window>) {
        self.num_scans += 1;
        self.max_received = since.unwrap_or(i64::MIN);
        let options = ReadOptions {
            since_micros: since,
            ..ReadOptions::default()
        };
        let shards = self
            .reader
            .shards()
            .into_iter()
            .map(|shard| self.reader.read_shard(&shard, &options))
            .collect();
        let iter = Box::new(SeqMerge::new(self.origin.clone(), shards));
        self.mode = Mode::Scan { iter, window };
    }
}

impl StoreSpool {
    fn durable(&self) -> u64 {
        self.handle.high_water_mark(&self.origin)
    }
}

impl SpoolSource for StoreSpool {
    fn take_renumbered(&mut self) -> u64 {
        std::mem::take(&mut self.num_renumbered)
    }

    fn seek(&mut self, after: u64) -> Result<(), SpoolError> {
        let durable = self.durable();
        if self.renumbering.is_some() {
            self.continue_renumbering()?;
        } else if after > durable && !self.renumbered_once {
            self.renumber_past(after)?;
        } else {
            if after > durable {
                error!(
                    origin = %self.origin,
                    master_high_water_mark = after,
                    local_high_water_mark = durable,
                    "the master holds sequences of this node id beyond this data directory's \
                     again, after a renumbering: is another node running with the same node \
                     id? Records numbered up to the master's high-water mark are not forwarded"
                );
            }
            self.position(after.saturating_add(1));
            return Ok(());
        }
        self.seek_to(after.saturating_add(1));
        Ok(())
    }

    fn next_batch(&mut self, limits: BatchLimits) -> Result<Arc<Vec<Record>>, SpoolError> {
        let durable = self.durable();
        if self.next_seq > durable {
            return Ok(Arc::default());
        }
        if self.fill() && !self.pending.contains_key(self.next_seq) {
            // Durable, yet not found: if it is really gone, declare the range lost rather
            // than wait forever.
            if let Some(to) = self.confirm_lost(durable)? {
                let marker = Record::gap_marker(&self.origin, self.next_seq, to, now_micros());
                self.next_seq = to + 1;
                return Ok(Arc::new(vec![marker]));
            }
        }
        let mut batch = Vec::with_capacity(limits.max_records.min(self.pending.len()).max(1));
        let mut num_bytes = 0;
        while batch.len() < limits.max_records && self.next_seq <= durable {
            let Some(record) = self.pending.first_if(self.next_seq) else {
                break;
            };
            let len = encoded_record_len(record);
            if !batch.is_empty() && num_bytes + len > limits.max_bytes {
                break;
            }
            let Some(record) = self.pending.pop_first_if(self.next_seq) else {
                break;
            };
            num_bytes += len;
            if record.origin_seq % CHECKPOINT_EVERY == 0 {
                self.checkpoints
                    .insert(record.origin_seq, record.received_at_micros);
                if self.checkpoints.len() > MAX_CHECKPOINTS {
                    self.checkpoints.pop_first();
                }
            }
            batch.push(record);
            self.next_seq += 1;
            if !self.pending.contains_key(self.next_seq) {
                self.fill();
            }
        }
        let batch = Arc::new(batch);
        if !batch.is_empty() {
            self.num_recent += batch.len();
            self.recent.push_back(batch.clone());
            while self.num_recent > MAX_RECENT_RECORDS {
                match self.recent.pop_front() {
                    Some(old) => self.num_recent -= old.len(),
                    None => break,
                }
            }
        }
        Ok(batch)
    }
}
