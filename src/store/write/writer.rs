//! The writer thread: owns every shard and its active segment, takes batches from the bounded
//! queue, deduplicates and numbers records, writes them into segment maps, rolls and seals
//! segments, group-commits (flush of every dirty shard, then tickets resolve), runs
//! retention, and stalls (without losing the batch) while the disk is full.
//!
//! Policy on failure: a failed frame write, `fdatasync` or seal goes back to the last good
//! point (the last moment every shard was synced): every active segment is cut back to its
//! end then and its shard recovered from disk (never from the page cache, which a failed
//! `fdatasync` leaves holding pages that are not on disk), every origin's high-water mark
//! goes back to what the shards hold, and every ticket not yet acknowledged fails with
//! `SyncFailed` (nothing is reported durable; forwarders resend). Origin sequences are never
//! reused afterwards: the local ones cut are stored as a gap marker before any later local
//! record.
//! A local record is numbered only as it is written, so a batch that fails (or stalls) for
//! any other reason leaves no hole in the local origin. ENOSPC while creating a shard
//! directory, its `shard.meta` or a segment stalls the batch until space returns.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::active::{ActiveSegment, Appended, CreateError};
use super::config::StoreConfig;
use super::fileops::{is_no_space, FileOps};
use super::queue::{AppendOutcome, Msg, Shared, TicketTx};
use super::recover::recover_shard;
use super::retention;
use super::shard::{create_shard_dir, Shard};
use crate::record::{gap_marker_text, Record};
use crate::store::error::StoreError;
use crate::store::format::codec::{encoded_len, encoded_len_keeping_source};
use crate::store::format::frame::MAX_PAYLOAD_BYTES;
use crate::store::format::shardname::shard_name;
use crate::store::problem::RecoveryReport;
use crate::store::stats::Counters;

const DISK_FULL_RETRY: Duration = Duration::from_millis(100);
const RETENTION_EVERY: Duration = Duration::from_secs(30);
/// Retention runs at most this long after an idle or evicted shard is sealed (not at once:
/// a flood of new sources seals many shards, and a retention run visits every shard).
const RETENTION_AFTER_QUIET_SEAL: Duration = Duration::from_secs(1);

struct InFlight {
    records: Vec<Record>,
    next: usize,
    ticket: TicketTx,
    outcome: AppendOutcome,
    failed: Option<StoreError>,
}

/// A written batch whose ticket waits for the next group commit (or for a failed write or
/// sync before it, which fails every waiting ticket).
struct AwaitingCommit {
    ticket: TicketTx,
    outcome: Result<AppendOutcome, StoreError>,
}

pub(crate) struct Writer {
    pub dir: PathBuf,
    pub config: StoreConfig,
    pub ops: Arc<dyn FileOps>,
    pub local_origin: String,
    /// `local_origin`, shared by the records it numbers.
    local_origin_shared: Arc<str>,
    pub shards: Vec<Shard>,
    pub by_source: HashMap<String, usize>,
    pub hwm: HashMap<String, u64>,
    pub shared: Arc<Shared>,
    awaiting_commit: Vec<AwaitingCommit>,
    /// True while `resume` writes a batch (which it takes out of `current` meanwhile): the
    /// marks then include records numbered but not written yet.
    writing_batch: bool,
    current: Option<InFlight>,
    last_commit: Instant,
    unsynced_bytes: u64,
    retry_at: Option<Instant>,
    next_retention: Instant,
    scratch: Vec<(Arc<str>, u64)>,
    keep: Vec<bool>,
    /// Shard of the frame being filled. At most one frame is open at a time, and frames are
    /// closed in the order their records were processed, so a crash of the process leaves on
    /// disk exactly a prefix of what was written (per origin: no holes).
    open_frame: Option<usize>,
    /// Set by a sync failure: seal every active segment at the next loop turn, so that a
    /// hole the failure may have left lies below every shard's sealed high-water mark.
    seal_all: bool,
    /// The local sequence given to the record being appended right now (not yet written).
    numbering: Option<u64>,
    /// Local sequences numbered and then lost with a frame whose write failed, waiting to be
    /// stored as gap markers: written before anything else (`write_lost`), so no commit
    /// acknowledges a later local record while the hole is not accounted for.
    lost_local: Vec<(u64, u64)>,
    /// Shards that have (or had, since the last clean-up) an active segment: the open files.
    /// Stale entries (segment sealed or poisoned since) are dropped by `open_shards`.
    open: Vec<usize>,
    /// When the next active segment may have been idle for `idle_shard_seal`.
    next_idle_check: Instant,
    /// Directories with entries created since they were last synced (new shard directories
    /// and `shard.meta` files, new segments): synced once each at the next commit, before any
    /// ticket resolves, and before a seal (`sync_new_entries`), instead of two or three
    /// serial directory syncs per new shard on the writer thread.
    unsynced_dirs: Vec<PathBuf>,
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

impl Writer {
    pub fn new(
        dir: PathBuf,
        config: StoreConfig,
        ops: Arc<dyn FileOps>,
        local_origin: String,
        shards: Vec<Shard>,
        shared: Arc<Shared>,
    ) -> Writer {
        let mut hwm: HashMap<String, u64> = HashMap::new();
        let mut by_source = HashMap::new();
        let mut shards = shards;
        for (i, s) in shards.iter_mut().enumerate() {
            by_source.insert(s.source.clone(), i);
            for (o, &seq) in s.hwm() {
                let e = hwm.entry(o.clone()).or_insert(0);
                *e = (*e).max(seq);
            }
        }
        *shared.durable_hwm.lock().unwrap_or_else(|p| p.into_inner()) = hwm.clone();
        Counters::add(&shared.counters.num_shards, shards.len() as u64);
        retention::gauges(&shards, &shared.counters);
        Writer {
            dir,
            config,
            ops,
            local_origin_shared: Arc::from(local_origin.as_str()),
            local_origin,
            shards,
            by_source,
            hwm,
            shared,
            awaiting_commit: Vec::new(),
            writing_batch: false,
            current: None,
            last_commit: Instant::now(),
            unsynced_bytes: 0,
            retry_at: None,
            next_retention: Instant::now() + RETENTION_EVERY,
            scratch: Vec::new(),
            keep: Vec::new(),
            open_frame: None,
            seal_all: false,
            numbering: None,
            lost_local: Vec::new(),
            open: Vec::new(),
            next_idle_check: Instant::now(),
            unsynced_dirs: Vec::new(),
        }
    }

    /// Raises `origin`'s mark to at least `seq` (its sequences found in a fenced shard at
    /// open), so the local origin's numbering never goes back.
    pub fn raise_mark(&mut self, origin: &str, seq: u64) {
        if seq == 0 {
            return;
        }
        let mark = self.hwm.entry(origin.to_string()).or_insert(0);
        *mark = (*mark).max(seq);
        self.publish_marks();
    }

    /// Publishes the marks as durable (what readers and forwarders go by); only when no
    /// record is numbered but unwritten.
    fn publish_marks(&self) {
        self.shared
            .durable_hwm
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone_from(&self.hwm);
    }

    /// The thread body: runs until a `Close` message is processed.
    pub fn run(mut self) -> Result<(), StoreError> {
        loop {
            if self.current.is_some() && self.retry_at.is_none_or(|t| Instant::now() >= t) {
                self.resume();
            }
            while self.current.is_none() {
                let msg = self
                    .shared
                    .queue
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop_front();
                match msg {
                    None => break,
                    Some(Msg::Append {
                        records,
                        ticket,
                        _permit,
                    }) => {
                        drop(_permit);
                        self.start(records, ticket);
                        if self.unsynced_bytes >= self.config.commit_max_bytes {
                            self.commit();
                        }
                    }
                    Some(Msg::Abandon) => return Ok(()),
                    Some(Msg::Commit(reply)) => {
                        self.commit();
                        let _ = reply.send(());
                    }
                    Some(Msg::Retention(reply)) => {
                        self.run_retention();
                        if let Some(reply) = reply {
                            let _ = reply.send(());
                        }
                    }
                    Some(Msg::Close(reply)) => {
                        let result = self.close();
                        let _ = reply.send(result.clone());
                        return result;
                    }
                }
            }
            let dirty = !self.awaiting_commit.is_empty() || self.unsynced_bytes > 0;
            if dirty && self.last_commit.elapsed() >= self.config.commit_max_delay {
                self.commit();
            }
            if self.seal_all && self.current.is_none() {
                self.seal_all = false;
                self.open_frame = None;
                for idx in self.open_shards() {
                    if let Err(e) = self.seal_segment(idx) {
                        tracing::error!(error = %e, "sealing after a sync failure failed");
                    }
                }
                self.commit();
            }
            if self.current.is_none() && Instant::now() >= self.next_idle_check {
                self.seal_due();
            }
            if Instant::now() >= self.next_retention {
                self.run_retention();
            }
            self.wait();
        }
    }

    fn wait(&self) {
        let mut deadline = self.next_retention.min(self.next_idle_check);
        if !self.awaiting_commit.is_empty() || self.unsynced_bytes > 0 {
            deadline = deadline.min(self.last_commit + self.config.commit_max_delay);
        }
        if let Some(t) = self.retry_at {
            deadline = deadline.min(t);
        }
        let queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        let can_take = self.current.is_none() && !queue.is_empty();
        let timeout = deadline.saturating_duration_since(Instant::now());
        if can_take || timeout.is_zero() {
            return;
        }
        let _unused = self.shared.wake.wait_timeout(queue, timeout);
    }

    /// Takes one batch from the queue: admits it, drops the records already stored, then
    /// writes it, numbering each local record as it is written. A batch refused by a step
    /// fails its ticket whole.
    fn start(&mut self, mut records: Vec<Record>, ticket: TicketTx) {
        let trims = match admit(&records, self.config.source_name_max_bytes)
            .and_then(|()| self.mark_duplicates(&records))
        {
            Ok(trims) => trims,
            Err(e) => {
                let _ = ticket.send(Err(e));
                return;
            }
        };
        let num_duplicates = self.drop_duplicates(&mut records, trims);
        let outcome = AppendOutcome {
            num_stored: records.len(),
            num_duplicates,
            assigned: None,
        };
        self.current = Some(InFlight {
            records,
            next: 0,
            ticket,
            outcome,
            failed: None,
        });
        self.resume();
    }

    /// Step two: for each record, whether it is new (`self.keep`) or already stored
    /// (forwarded records at or below their origin's high-water mark); the origins' new marks
    /// go to `self.scratch`. Refuses the batch if a forwarded record leaves a gap after its
    /// origin's mark. Returns the gap markers that overlap what is stored, with the first
    /// sequence each is to be trimmed to. Changes nothing but those two buffers.
    fn mark_duplicates(&mut self, records: &[Record]) -> Result<Vec<(usize, u64)>, StoreError> {
        self.keep.clear();
        self.scratch.clear();
        // Gap markers that overlap what is stored: trimmed to the part above it.
        let mut trims: Vec<(usize, u64)> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            if r.origin_seq == 0 {
                self.keep.push(true);
                continue;
            }
            let stored = match self.scratch.iter().find(|(o, _)| *o == r.origin) {
                Some((_, s)) => *s,
                None => self.hwm.get(&*r.origin).copied().unwrap_or(0),
            };
            // A gap marker (seqs `first..=origin_seq` lost) counts like that many records.
            let first = r.first_seq();
            if r.origin_seq <= stored {
                self.keep.push(false);
            } else if first == stored + 1 || (r.lost_from.is_some() && first <= stored) {
                if first <= stored {
                    trims.push((i, stored + 1));
                }
                self.keep.push(true);
                match self.scratch.iter_mut().find(|(o, _)| *o == r.origin) {
                    Some(e) => e.1 = r.origin_seq,
                    None => self.scratch.push((r.origin.clone(), r.origin_seq)),
                }
            } else {
                Counters::add(&self.shared.counters.gaps_refused, 1);
                return Err(StoreError::Gap {
                    origin: r.origin.to_string(),
                    stored,
                    got: first,
                });
            }
        }
        Ok(trims)
    }

    /// Step three, once the batch is admitted: trims the overlapping gap markers, counts the
    /// markers kept, drops the records `mark_duplicates` found stored and moves the forwarded
    /// origins' high-water marks. Returns how many records were dropped.
    fn drop_duplicates(&mut self, records: &mut Vec<Record>, trims: Vec<(usize, u64)>) -> usize {
        let counters = &self.shared.counters;
        for (i, from) in trims {
            let r = &mut records[i];
            r.lost_from = Some(from);
            r.raw = gap_marker_text(&r.origin, from, r.origin_seq);
        }
        for (r, _) in records.iter().zip(&self.keep).filter(|(_, keep)| **keep) {
            if let Some(from) = r.lost_from {
                Counters::add(&counters.gap_markers, 1);
                Counters::add(&counters.lost_seqs, r.origin_seq - from + 1);
            }
        }
        let num_duplicates = self.keep.iter().filter(|k| !**k).count();
        if num_duplicates > 0 {
            Counters::add(&counters.duplicates_dropped, num_duplicates as u64);
            let mut keep = self.keep.iter();
            records.retain(|_| *keep.next().unwrap_or(&true));
        }
        for (origin, seq) in self.scratch.drain(..) {
            match self.hwm.get_mut(&*origin) {
                Some(stored) => *stored = seq,
                None => {
                    self.hwm.insert(origin.to_string(), seq);
                }
            }
        }
        num_duplicates
    }

    /// Step four, record by record as the batch is written: gives a record appended with
    /// `origin_seq == 0` the local origin and its next sequence, and moves the local mark.
    /// Returns the sequence given, or `None` for a record that already has one. Called only
    /// once the record's shard exists, and undone by `unnumber` if the record is then not
    /// written, so a sequence is given only to a record that is written: a batch that fails
    /// or stalls part-way leaves no hole in the local origin (recovery's `cut_holes` would
    /// take a hole for an unsynced tail and cut what was written after it).
    fn number(&mut self, record: &mut Record) -> Option<u64> {
        if record.origin_seq != 0 {
            return None;
        }
        // Once per record on the hot path: no key allocation once the origin has a mark.
        let seq = match self.hwm.get_mut(&self.local_origin) {
            Some(mark) => {
                *mark += 1;
                *mark
            }
            None => {
                self.hwm.insert(self.local_origin.clone(), 1);
                1
            }
        };
        record.origin_seq = seq;
        if *record.origin != *self.local_origin {
            record.origin = self.local_origin_shared.clone();
        }
        Some(seq)
    }

    /// Undoes `number` for a record that was not written: it gets a sequence again when it
    /// is (a stalled batch), and none if it never is (a failed one).
    fn unnumber(&mut self, record: &mut Record, seq: u64) {
        record.origin_seq = 0;
        if let Some(mark) = self.hwm.get_mut(&self.local_origin) {
            if *mark == seq {
                *mark = seq - 1;
            }
        }
    }

    /// Writes the rest of the in-flight batch; leaves it in place if the disk is full.
    fn resume(&mut self) {
        self.writing_batch = true;
        self.write_batch();
        self.writing_batch = false;
    }

    fn write_batch(&mut self) {
        let Some(mut f) = self.current.take() else {
            return;
        };
        match self.write_lost() {
            Ok(true) => {}
            Ok(false) => {
                self.current = Some(f);
                return;
            }
            // No local record may be written above a hole that is not accounted for.
            Err(e) => f.failed = Some(e),
        }
        let mut bytes = 0u64;
        let mut stalled = false;
        let now = Instant::now();
        // (record index, shard index) of the last lookup: runs of one source skip the hash.
        let mut last: Option<(usize, usize)> = None;
        while f.failed.is_none() && f.next < f.records.len() {
            let record = &f.records[f.next];
            let cached = last
                .filter(|&(r, _)| f.records[r].source == record.source)
                .map(|(_, i)| i);
            let found = match cached {
                Some(i) => Ok(i),
                None => self.shard_index(&record.source),
            };
            let idx = match found {
                Ok(i) => {
                    last = Some((f.next, i));
                    i
                }
                Err(e) if is_no_space(&e) => {
                    // Like ENOSPC from `fallocate`: the batch waits and is retried.
                    let dir = self.dir.clone();
                    self.disk_full(&dir, &e);
                    stalled = true;
                    break;
                }
                Err(e) => {
                    Counters::add(&self.shared.counters.write_errors, 1);
                    let path = self.dir.join(&*record.source);
                    f.failed = Some(StoreError::io("create shard directory for", path, e));
                    break;
                }
            };
            let record = &mut f.records[f.next];
            let seq = self.number(record);
            let record = &f.records[f.next];
            let enc = record_len(record, self.config.source_name_max_bytes);
            self.numbering = seq;
            let appended = self.append_to_shard(idx, record, enc);
            self.numbering = None;
            if !matches!(appended, Ok(true)) {
                if let Some(seq) = seq {
                    self.unnumber(&mut f.records[f.next], seq);
                }
            }
            match appended {
                Ok(true) => {}
                Ok(false) => {
                    stalled = true;
                    break;
                }
                Err(e) => {
                    f.failed = Some(e);
                    break;
                }
            }
            if let Some(seq) = seq {
                let first = f.outcome.assigned.as_ref().map_or(seq, |r| *r.start());
                f.outcome.assigned = Some(first..=seq);
            }
            self.shards[idx].last_used = now;
            bytes += enc as u64;
            f.next += 1;
        }
        let counters = &self.shared.counters;
        Counters::add(&counters.appended_bytes, bytes);
        self.unsynced_bytes += bytes;
        if stalled && f.failed.is_none() {
            self.current = Some(f);
            return;
        }
        if f.failed.is_some() {
            // The rest of a failed batch was admitted but is never written.
            for record in &f.records[f.next..] {
                // (Local records not written have no sequence: `unnumber`.)
                if record.origin_seq != 0 && *record.origin != *self.local_origin {
                    lower_hwm(
                        &mut self.hwm,
                        &record.origin,
                        record.first_seq().saturating_sub(1),
                    );
                }
            }
        }
        Counters::add(&counters.appended_records, f.next as u64);
        let outcome = match f.failed {
            Some(e) => Err(e),
            None => Ok(f.outcome),
        };
        self.awaiting_commit.push(AwaitingCommit {
            ticket: f.ticket,
            outcome,
        });
    }

    /// The shard of records from `source` (found or created): the one named `source`, or
    /// for a source longer than `source_name_max_bytes` the one named by its hashed form.
    fn shard_index(&mut self, source: &str) -> std::io::Result<usize> {
        let name = shard_name(source, self.config.source_name_max_bytes);
        let source = &*name;
        if let Some(&i) = self.by_source.get(source) {
            return Ok(i);
        }
        let (dir, created) = create_shard_dir(&self.dir, source, self.ops.as_ref())?;
        if created {
            self.unsynced_dirs.push(self.dir.clone());
            self.unsynced_dirs.push(dir.clone());
        }
        self.shards.push(Shard::new(source.to_string(), dir));
        self.by_source
            .insert(source.to_string(), self.shards.len() - 1);
        Counters::add(&self.shared.counters.num_shards, 1);
        Ok(self.shards.len() - 1)
    }

    /// Appends one record to shard `idx`, rolling as needed. `Ok(false)`: disk full, retry later.
    fn append_to_shard(
        &mut self,
        idx: usize,
        record: &Record,
        enc: usize,
    ) -> Result<bool, StoreError> {
        if let Some(reason) = &self.shards[idx].broken {
            return Err(StoreError::io(
                "append to",
                self.shards[idx].dir.clone(),
                std::io::Error::other(reason.clone()),
            ));
        }
        let run_starts = self.open_frame != Some(idx);
        if let Some(prev) = self.open_frame.filter(|&p| p != idx) {
            if let Some(a) = self.shards[prev].active.as_mut() {
                if let Err(e) = a.close_frame(self.ops.as_ref()) {
                    // The batch stops here too: records after the lost frame must not be
                    // stored while the ones in it are missing.
                    Counters::add(&self.shared.counters.write_errors, 1);
                    let path = a.path.clone();
                    return Err(self.poison(path, e));
                }
            }
        }
        self.open_frame = Some(idx);
        let max_age = self.config.segment_max_age;
        for _ in 0..3 {
            let shard = &mut self.shards[idx];
            let aged = run_starts
                && shard
                    .active
                    .as_ref()
                    .is_some_and(|a| !a.is_empty() && a.opened_at.elapsed() >= max_age);
            if aged {
                self.seal_active(idx)?;
                continue;
            }
            if self.shards[idx].active.is_none() {
                self.make_room()?;
            }
            let shard = &mut self.shards[idx];
            if shard.active.is_none() {
                let capacity =
                    (self.config.segment_max_bytes as usize).max(ActiveSegment::min_capacity(enc));
                match ActiveSegment::create(
                    &shard.dir,
                    shard.id,
                    shard.next_seq,
                    capacity,
                    now_micros(),
                    self.ops.as_ref(),
                ) {
                    Ok(a) => {
                        shard.active = Some(Box::new(a));
                        self.unsynced_dirs.push(shard.dir.clone());
                        // (Still listed if its previous segment rolled: no second entry.)
                        if !self.open.contains(&idx) {
                            self.open.push(idx);
                        }
                        let c = &self.shared.counters;
                        Counters::add(&c.segments_created, 1);
                        Counters::add(&c.num_segments, 1);
                        if self.retry_at.take().is_some() {
                            c.disk_full.store(0, Ordering::Relaxed);
                        }
                    }
                    Err(CreateError::NoSpace(e)) => {
                        let dir = shard.dir.clone();
                        self.disk_full(&dir, &e);
                        return Ok(false);
                    }
                    Err(CreateError::Io(e)) => {
                        Counters::add(&self.shared.counters.write_errors, 1);
                        return Err(StoreError::io("create segment in", shard.dir.clone(), e));
                    }
                }
            }
            let shard = &mut self.shards[idx];
            let active = shard.active.as_mut().expect("active segment just ensured");
            match active.append(record, enc, self.ops.as_ref()) {
                Appended::Stored(seq) => {
                    shard.next_seq = seq + 1;
                    shard.note_origin(&record.origin, record.origin_seq);
                    shard.dirty = true;
                    if self.retry_at.take().is_some() {
                        self.shared.counters.disk_full.store(0, Ordering::Relaxed);
                    }
                    return Ok(true);
                }
                Appended::Full => self.seal_active(idx)?,
                Appended::NoSpace(e) => {
                    let dir = shard.dir.clone();
                    self.disk_full(&dir, &e);
                    return Ok(false);
                }
                Appended::Failed(e) => {
                    Counters::add(&self.shared.counters.write_errors, 1);
                    let path = active.path.clone();
                    return Err(self.poison(path, e));
                }
            }
        }
        Err(StoreError::io(
            "append to",
            self.shards[idx].dir.clone(),
            std::io::Error::other("segment roll loop"),
        ))
    }

    /// Stores a gap marker (in the local origin's own shard) for each range in `lost_local`.
    /// `Ok(false)`: disk full, retry later; an error is logged and the range kept for the
    /// next try.
    fn write_lost(&mut self) -> Result<bool, StoreError> {
        while let Some(&(from, to)) = self.lost_local.first() {
            let marker = Record::gap_marker(&self.local_origin, from, to, now_micros());
            let enc = record_len(&marker, self.config.source_name_max_bytes);
            let written = match self.shard_index(&self.local_origin.clone()) {
                Ok(idx) => self.append_to_shard(idx, &marker, enc),
                Err(e) if is_no_space(&e) => {
                    let dir = self.dir.clone();
                    self.disk_full(&dir, &e);
                    Ok(false)
                }
                Err(e) => Err(StoreError::io(
                    "create shard directory in",
                    self.dir.clone(),
                    e,
                )),
            };
            match written {
                Ok(true) => {
                    self.lost_local.remove(0);
                    let c = &self.shared.counters;
                    Counters::add(&c.gap_markers, 1);
                    Counters::add(&c.lost_seqs, to - from + 1);
                    Counters::add(&c.appended_records, 1);
                    Counters::add(&c.appended_bytes, enc as u64);
                    self.unsynced_bytes += enc as u64;
                    tracing::error!(origin = %self.local_origin, from, to, "local records lost with a failed frame write; stored a gap marker");
                }
                Ok(false) => return Ok(false),
                Err(e) => {
                    tracing::error!(error = %e, from, to, "cannot store the gap marker for local records lost with a failed write");
                    return Err(e);
                }
            }
        }
        Ok(true)
    }

    /// Allocation failed with ENOSPC: count it once per episode, run retention, retry later.
    fn disk_full(&mut self, dir: &std::path::Path, e: &std::io::Error) {
        if self.retry_at.is_none() {
            let c = &self.shared.counters;
            Counters::add(&c.disk_full_errors, 1);
            c.disk_full.store(1, Ordering::Relaxed);
            tracing::warn!(dir = %dir.display(), error = %e, "disk full: cannot allocate segment space, appends wait");
            self.run_retention();
        }
        self.retry_at = Some(Instant::now() + DISK_FULL_RETRY);
    }

    /// Seals the active segment of shard `idx` (or removes it if empty), then runs retention
    /// (a segment rolled).
    fn seal_active(&mut self, idx: usize) -> Result<(), StoreError> {
        if self.seal_segment(idx)? {
            self.run_retention();
        }
        Ok(())
    }

    /// Seals the active segments idle for `idle_shard_seal` and those older than
    /// `segment_max_age` (a shard written without pause never starts a new run, so the age is
    /// not left to the check at a run's start), and sets the next check.
    fn seal_due(&mut self) {
        let idle = self.config.idle_shard_seal;
        let max_age = self.config.segment_max_age;
        let now = Instant::now();
        let mut next = now + idle.min(max_age);
        let mut sealed = false;
        for idx in self.open_shards() {
            let shard = &self.shards[idx];
            let mut due = shard.last_used + idle;
            if let Some(a) = shard.active.as_ref().filter(|a| !a.is_empty()) {
                due = due.min(a.opened_at + max_age);
            }
            if due > now {
                next = next.min(due);
                continue;
            }
            match self.seal_segment(idx) {
                Ok(s) => sealed |= s,
                Err(e) => tracing::error!(error = %e, "sealing an idle or aged shard failed"),
            }
        }
        self.next_idle_check = next;
        if sealed {
            self.retention_soon();
        }
    }

    /// Before a new active segment is created: if `max_open_shards` are open, seals the least
    /// recently used sixteenth of them (at least one), so the cost of a seal (a sync of every
    /// dirty shard first, see `seal_segment`) is paid once per batch of evictions. A failure
    /// has poisoned (cut every shard back, possibly records of the batch being written) and
    /// is returned: the batch must fail, not go on in a new segment.
    fn make_room(&mut self) -> Result<(), StoreError> {
        let max = self.config.max_open_shards;
        let mut open = self.open_shards();
        if open.len() < max {
            return Ok(());
        }
        let n = (open.len() + 1 - max).max(max / 16).max(1).min(open.len());
        open.select_nth_unstable_by_key(n - 1, |&i| self.shards[i].last_used);
        let mut sealed = false;
        let mut failed = None;
        for &idx in &open[..n] {
            match self.seal_segment(idx) {
                Ok(s) => sealed |= s,
                Err(e) => {
                    tracing::error!(error = %e, "sealing a least recently used shard failed");
                    failed = Some(e);
                    break;
                }
            }
        }
        self.open.retain(|&i| self.shards[i].active.is_some());
        if sealed {
            self.retention_soon();
        }
        failed.map_or(Ok(()), Err)
    }

    /// The shards with an active segment (dropping stale entries from `open`).
    fn open_shards(&mut self) -> Vec<usize> {
        let shards = &self.shards;
        self.open.retain(|&i| shards[i].active.is_some());
        self.open.clone()
    }

    fn retention_soon(&mut self) {
        self.next_retention = self
            .next_retention
            .min(Instant::now() + RETENTION_AFTER_QUIET_SEAL);
    }

    /// Seals the active segment of shard `idx` (or removes it if empty). Returns whether a
    /// segment was sealed.
    fn seal_segment(&mut self, idx: usize) -> Result<bool, StoreError> {
        // Everything written before the seal becomes durable first, so a sealed segment never
        // holds records written after unsynced ones (recovery relies on it, see `cut_holes`).
        self.sync_dirty()?;
        let shard = &mut self.shards[idx];
        let Some(active) = shard.active.take() else {
            return Ok(false);
        };
        let path = active.path.clone();
        let base = active.header.base_seq;
        let c = &self.shared.counters;
        if active.is_empty() {
            drop(active);
            let _ = std::fs::remove_file(&path);
            c.num_segments.fetch_sub(1, Ordering::Relaxed);
            return Ok(false);
        }
        match (*active).seal(shard.hwm(), self.ops.as_ref()) {
            Ok(next) => {
                shard.next_seq = next;
                shard.segments.push(base);
                shard.sealed_bytes += std::fs::metadata(&path).map_or(0, |m| m.len());
                Counters::add(&c.segments_sealed, 1);
                Ok(true)
            }
            Err((e, active)) => {
                shard.active = Some(active);
                Err(self.poison(path, e))
            }
        }
    }

    /// A write or sync of shard `idx` failed. The page cache is no longer the disk (after a
    /// failed `fdatasync` the kernel may have marked the failed pages clean), so the writer
    /// goes back to its last good point (the last moment every shard was synced) everywhere:
    /// every active segment is cut back to its good end and its shard recovered from what is
    /// on disk; every forwarded origin's high-water mark goes back to what the shards now
    /// hold (its forwarder resends the rest); the local sequences numbered since are not
    /// given again but stored as a gap marker; every ticket not yet acknowledged fails (a
    /// batch of duplicates too: the records it counts as stored may have been cut). Returns
    /// the error for the caller.
    fn poison(&mut self, path: PathBuf, err: std::io::Error) -> StoreError {
        Counters::add(&self.shared.counters.sync_errors, 1);
        tracing::error!(file = %path.display(), error = %err, "segment write or sync failed; cutting every shard back to its last synced end");
        self.seal_all = true;
        let error = StoreError::SyncFailed {
            path,
            source: Arc::new(err),
        };
        // The local sequences numbered so far (the record being appended right now is taken
        // back by `unnumber`).
        let numbered = self.hwm.get(&self.local_origin).copied().unwrap_or(0);
        let numbered = self.numbering.map_or(numbered, |s| s - 1);
        self.open_frame = None;
        let mut report = RecoveryReport::default();
        // (The failed shard's segment is among them: every caller hands it back first.)
        for shard in &mut self.shards {
            let Some(active) = shard.active.take() else {
                continue;
            };
            shard.dirty = false;
            if let Err(e) = active.discard_unsynced() {
                tracing::error!(dir = %shard.dir.display(), error = %e, "cannot cut a segment back to its last synced end");
                shard.broken = Some(format!(
                    "cannot cut a segment back after a failed write or sync: {e}"
                ));
                continue;
            }
            match recover_shard(&shard.dir, self.ops.as_ref(), &mut report) {
                Ok(state) => {
                    shard.next_seq = state.next_seq;
                    shard.set_hwm(state.hwm);
                    shard.set_segments(state.segments);
                }
                Err(e) => {
                    tracing::error!(dir = %shard.dir.display(), error = %e, "recovery after a failed write or sync failed");
                    shard.broken = Some(format!("cannot recover shard after a sync failure: {e}"));
                }
            }
        }
        for p in &report.problems {
            tracing::error!(problem = %p, "damage found while recovering after a sync failure");
        }
        // What every shard holds now, per origin. Frames are written in processing order and
        // every shard went back to the same good point, so each origin's records on disk are
        // a prefix of its sequences.
        let mut on_disk: HashMap<String, u64> = HashMap::new();
        for shard in &mut self.shards {
            for (o, &q) in shard.hwm() {
                let e = on_disk.entry(o.clone()).or_insert(0);
                *e = (*e).max(q);
            }
        }
        for (origin, mark) in self.hwm.iter_mut() {
            if *origin != self.local_origin {
                *mark = (*mark).min(on_disk.get(origin).copied().unwrap_or(0));
            }
        }
        // Nothing local is written while a lost range waits (`write_lost` runs first), so
        // everything numbered above what is on disk is one lost range.
        let local_on_disk = on_disk.get(&self.local_origin).copied().unwrap_or(0);
        self.lost_local.clear();
        if numbered > local_on_disk {
            self.lost_local.push((local_on_disk + 1, numbered));
        }
        for p in &mut self.awaiting_commit {
            if p.outcome.is_ok() {
                p.outcome = Err(error.clone());
            }
        }
        if let Some(f) = self.current.as_mut() {
            f.failed.get_or_insert_with(|| error.clone());
        }
        error
    }

    /// Syncs each directory in `unsynced_dirs` once (the data directory last: it names the
    /// new shard directories). On a failure the failed directory and those not yet synced
    /// stay for the next try, and the caller poisons (the new files may not be found after a
    /// crash, so nothing written since the last good point counts as durable).
    fn sync_new_entries(&mut self) -> Result<(), (PathBuf, std::io::Error)> {
        if self.unsynced_dirs.is_empty() {
            return Ok(());
        }
        let mut dirs = std::mem::take(&mut self.unsynced_dirs);
        dirs.sort_unstable_by(|a, b| (*a == self.dir).cmp(&(*b == self.dir)).then(a.cmp(b)));
        dirs.dedup();
        for (i, dir) in dirs.iter().enumerate() {
            if let Err(e) = self.ops.sync_dir(dir) {
                self.unsynced_dirs.extend(dirs[i..].iter().cloned());
                return Err((dir.clone(), e));
            }
        }
        Ok(())
    }

    /// Makes every dirty shard durable, then the directory entries of new shards and
    /// segments. If all succeed this is a good point (what a later failure cuts back to); a
    /// failure poisons (cuts every shard back) and is returned.
    fn sync_dirty(&mut self) -> Result<(), StoreError> {
        for idx in 0..self.shards.len() {
            let shard = &mut self.shards[idx];
            if !shard.dirty {
                continue;
            }
            shard.dirty = false;
            let Some(active) = shard.active.as_mut() else {
                continue;
            };
            if let Err(e) = active.sync(self.ops.as_ref()) {
                let path = active.path.clone();
                return Err(self.poison(path, e));
            }
        }
        if let Err((dir, e)) = self.sync_new_entries() {
            return Err(self.poison(dir, e));
        }
        for shard in &mut self.shards {
            if let Some(active) = shard.active.as_mut() {
                active.mark_good();
            }
        }
        // Every batch waiting for a commit was written before this point, so it is durable
        // now: answer it here, or a failure before the next commit (a seal's, say) would fail
        // a ticket whose records stay on disk, and its sender's retry would store them twice.
        // Between batches the marks are what is durable, and published first, so an answer
        // is never ahead of them. Mid-batch (a seal while a batch is written) they include
        // the record being appended, numbered but not written: published then, a forwarder
        // would look for it, not find it and declare it lost; the next commit publishes.
        if !self.writing_batch && self.current.is_none() {
            self.publish_marks();
        }
        for p in self.awaiting_commit.drain(..) {
            let _ = p.ticket.send(p.outcome);
        }
        Ok(())
    }

    /// Group commit: make every dirty shard durable, then resolve tickets.
    pub fn commit(&mut self) {
        let started = Instant::now();
        let _ = self.write_lost();
        let _ = self.sync_dirty();
        if self.current.is_none() {
            self.publish_marks();
        }
        for p in self.awaiting_commit.drain(..) {
            let _ = p.ticket.send(p.outcome);
        }
        retention::gauges(&self.shards, &self.shared.counters);
        let c = &self.shared.counters;
        let micros = started.elapsed().as_micros() as u64;
        c.committed(micros);
        self.unsynced_bytes = 0;
        self.last_commit = Instant::now();
    }

    fn run_retention(&mut self) {
        self.next_retention = Instant::now() + RETENTION_EVERY;
        let unforwarded_after = match self.shared.unforwarded_after.load(Ordering::Relaxed) {
            u64::MAX => None,
            seq => Some(seq),
        };
        retention::apply(
            &mut self.shards,
            &self.config.retention,
            &self.local_origin,
            unforwarded_after,
            self.ops.as_ref(),
            &self.shared.counters,
        );
    }

    /// Finishes everything queued before `Close`, commits and seals every active segment.
    fn close(&mut self) -> Result<(), StoreError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.current.is_some() && Instant::now() < deadline {
            std::thread::sleep(DISK_FULL_RETRY);
            self.resume();
        }
        if let Some(f) = self.current.take() {
            let _ = f.ticket.send(Err(StoreError::io(
                "allocate segment in",
                self.dir.clone(),
                std::io::Error::from_raw_os_error(libc::ENOSPC),
            )));
        }
        self.commit();
        let mut result = Ok(());
        for idx in self.open_shards() {
            if let Err(e) = self.seal_segment(idx) {
                result = Err(e);
            }
        }
        self.shared.permits.close();
        result
    }
}

/// Bytes `record` takes in a frame: with its source name when that is longer than
/// `max_source` (its shard is then named by a shortened form, see `shard_index`).
fn record_len(record: &Record, max_source: usize) -> usize {
    if record.source.len() > max_source {
        encoded_len_keeping_source(record).unwrap_or(0)
    } else {
        encoded_len(record).unwrap_or(0)
    }
}

fn checked_record_len(record: &Record, max_source: usize) -> Option<usize> {
    if record.source.len() > max_source {
        encoded_len_keeping_source(record)
    } else {
        encoded_len(record)
    }
}

/// Step one of taking a batch: every record must fit in a frame (with its source name if that
/// is kept in the record) and every gap marker must name a range
/// (`1 <= lost_from <= origin_seq`); otherwise the whole batch is refused.
fn admit(records: &[Record], max_source: usize) -> Result<(), StoreError> {
    for r in records {
        match checked_record_len(r, max_source) {
            Some(n) if n <= MAX_PAYLOAD_BYTES as usize => {}
            n => {
                return Err(StoreError::RecordTooLarge {
                    source_name: r.source.to_string(),
                    bytes: n.unwrap_or(usize::MAX),
                });
            }
        }
        if let Some(from) = r.lost_from.filter(|&f| f == 0 || f > r.origin_seq) {
            return Err(StoreError::BadGapMarker {
                origin: r.origin.to_string(),
                from,
                to: r.origin_seq,
            });
        }
    }
    Ok(())
}

/// Lowers `origin`'s high-water mark to `to` if it is above it.
fn lower_hwm(hwm: &mut HashMap<String, u64>, origin: &str, to: u64) {
    if let Some(seq) = hwm.get_mut(origin) {
        *seq = (*seq).min(to);
    }
}
