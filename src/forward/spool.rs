//! `StoreSpool`: the `SpoolSource` over this node's own store directory: the records of the
//! node's origin, in sequence order, only once they are durable.
//!
//! Positioning (`seek`) scans with a lazy `StoreReader::read` (merged by receive time, so a
//! small reordering buffer puts records back in sequence order), starting from a remembered
//! checkpoint when one is close enough, then tails new records with a `Follower`. Records are
//! handed out only up to the store's durable high-water mark for the origin: a record read
//! from the page cache but lost in a crash must never reach the master, or its sequence would
//! be reused. This file only reads; it never writes or deletes spool files.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use tracing::warn;

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

type Scan = Box<dyn Iterator<Item = Result<StoredRecord, ReadError>> + Send>;

enum Mode {
    Scan(Scan),
    Tail(Follower),
}

pub struct StoreSpool {
    reader: StoreReader,
    handle: StoreHandle,
    origin: String,
    next_seq: u64,
    mode: Mode,
    /// Records at or after `next_seq`, waiting for their turn.
    pending: BTreeMap<u64, Record>,
    /// Highest receive time seen since the last seek.
    max_received: i64,
    checkpoints: BTreeMap<u64, i64>,
    recent: VecDeque<Record>,
    num_corrupt: u64,
    num_rescans: u64,
}

impl StoreSpool {
    /// Reads `origin`'s records from the store in `dir`, which `handle` (the same store, open in
    /// this process) appends to.
    pub fn new(dir: &Path, origin: &str, handle: StoreHandle) -> Result<StoreSpool, SpoolError> {
        let reader = StoreReader::open(dir).map_err(|error| SpoolError::Read {
            what: dir.display().to_string(),
            reason: error.to_string(),
        })?;
        let mode = Mode::Scan(Box::new(reader.read(&ReadOptions::default())));
        Ok(StoreSpool {
            reader,
            handle,
            origin: origin.to_string(),
            next_seq: 1,
            mode,
            pending: BTreeMap::new(),
            max_received: i64::MIN,
            checkpoints: BTreeMap::new(),
            recent: VecDeque::new(),
            num_corrupt: 0,
            num_rescans: 0,
        })
    }

    /// Corrupt frames skipped so far.
    pub fn num_corrupt(&self) -> u64 {
        self.num_corrupt
    }

    /// Times the spool was scanned again to find a position.
    pub fn num_rescans(&self) -> u64 {
        self.num_rescans
    }

    fn accept(&mut self, item: Result<StoredRecord, ReadError>) {
        match item {
            Ok(stored) => {
                let record = stored.record;
                if record.origin == self.origin && record.origin_seq >= self.next_seq {
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
        while !self.pending.contains_key(&self.next_seq) {
            if self.pending.len() >= MAX_PENDING_RECORDS {
                warn!(
                    next_seq = self.next_seq,
                    buffered_from = ?self.pending.keys().next(),
                    "spool sequence not found within the reordering buffer; rescanning"
                );
                self.seek_to(self.next_seq);
                return false;
            }
            match &mut self.mode {
                Mode::Scan(iter) => match iter.next() {
                    Some(item) => self.accept(item),
                    None => {
                        let since = self.max_received.saturating_sub(REORDER_SLACK_MICROS);
                        let options = ReadOptions {
                            since_micros: Some(since),
                            ..ReadOptions::default()
                        };
                        self.mode = Mode::Tail(self.reader.follow(&options));
                    }
                },
                Mode::Tail(follower) => {
                    let items = follower.poll();
                    if items.is_empty() {
                        return true;
                    }
                    for item in items {
                        self.accept(item);
                    }
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
            .is_some_and(|record| record.origin_seq <= next_seq);
        if next_seq >= self.next_seq || in_recent {
            while self
                .recent
                .back()
                .is_some_and(|record| record.origin_seq >= next_seq)
            {
                if let Some(record) = self.recent.pop_back() {
                    self.pending.insert(record.origin_seq, record);
                }
            }
            self.next_seq = next_seq;
            self.pending.retain(|seq, _| *seq >= next_seq);
            return;
        }
        self.seek_to(next_seq);
    }

    fn seek_to(&mut self, next_seq: u64) {
        self.num_rescans += 1;
        self.recent.clear();
        self.next_seq = next_seq;
        self.pending.retain(|seq, _| *seq >= next_seq);
        let since = self
            .checkpoints
            .range(..=next_seq)
            .next_back()
            .map(|(_, received)| received.saturating_sub(REORDER_SLACK_MICROS));
        self.max_received = since.unwrap_or(i64::MIN);
        let options = ReadOptions {
            since_micros: since,
            ..ReadOptions::default()
        };
        self.mode = Mode::Scan(Box::new(self.reader.read(&options)));
    }
}

impl SpoolSource for StoreSpool {
    fn seek(&mut self, after: u64) -> Result<(), SpoolError> {
        self.position(after.saturating_add(1));
        Ok(())
    }

    fn next_batch(&mut self, limits: BatchLimits) -> Result<Vec<Record>, SpoolError> {
        let durable = self
            .handle
            .high_water_marks()
            .get(&self.origin)
            .copied()
            .unwrap_or(0);
        if self.next_seq > durable {
            return Ok(Vec::new());
        }
        if self.fill() && !self.pending.contains_key(&self.next_seq) {
            // Durable, yet not in the spool any more (retention or damage): say so rather than
            // wait forever.
            let to = self
                .pending
                .keys()
                .next()
                .map_or(durable, |first| first - 1);
            return Err(SpoolError::Missing {
                from: self.next_seq,
                to,
            });
        }
        let mut batch = Vec::new();
        let mut num_bytes = 0;
        while batch.len() < limits.max_records && self.next_seq <= durable {
            let Some(record) = self
                .pending
                .first_entry()
                .filter(|entry| *entry.key() == self.next_seq)
            else {
                break;
            };
            let len = encoded_record_len(record.get());
            if !batch.is_empty() && num_bytes + len > limits.max_bytes {
                break;
            }
            let record = record.remove();
            num_bytes += len;
            if record.origin_seq % CHECKPOINT_EVERY == 0 {
                self.checkpoints
                    .insert(record.origin_seq, record.received_at_micros);
                if self.checkpoints.len() > MAX_CHECKPOINTS {
                    self.checkpoints.pop_first();
                }
            }
            if self.recent.len() >= MAX_RECENT_RECORDS {
                self.recent.pop_front();
            }
            self.recent.push_back(record.clone());
            batch.push(record);
            self.next_seq += 1;
            if !self.pending.contains_key(&self.next_seq) {
                self.fill();
            }
        }
        Ok(batch)
    }
}
