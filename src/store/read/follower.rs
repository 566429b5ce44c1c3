//! `Follower`: tails the store. Each `poll` returns, without blocking, the records (and
//! corrupt-frame errors) that appeared since the previous poll in every selected shard,
//! moving to the next segment when it reaches a seal and picking up new shards.
//!
//! Like `StoreReader` it uses `pread` only and returns only frames whose CRCs verify; a frame
//! still being written (header not yet valid) is picked up by a later poll.

use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use super::reader::{ReadOptions, ShardPosition, StoreReader, StoredRecord};
use crate::store::error::ReadError;
use crate::store::format::codec;
use crate::store::format::scan::{read_footer, read_header, ScanStep, Scanner};
use crate::store::format::segment::{list_segments, segment_file_name};

struct FollowShard {
    source: Arc<str>,
    shared: codec::DecodeShared,
    dir: PathBuf,
    next_base: u64,
    /// Continue inside segment `base` at a frame `offset` expecting `seq`: (base, offset, seq).
    resume: Option<(u64, u64, u64)>,
    current: Option<(PathBuf, Scanner<File>)>,
}

/// A poll stops after about this many records (the next poll goes on from there), so a
/// follower that starts behind never holds a whole store in memory at once.
pub(crate) const MAX_POLL_RECORDS: usize = 16_384;

pub struct Follower {
    reader: StoreReader,
    opts: ReadOptions,
    known: HashSet<PathBuf>,
    shards: Vec<FollowShard>,
}

impl StoreReader {
    /// A follower of the selected shards from their start (see `Follower::poll`).
    pub fn follow(&self, opts: &ReadOptions) -> Follower {
        Follower::new(self.clone(), opts.clone(), Vec::new())
    }

    /// A follower that continues every shard exactly where the given scans stopped (nothing
    /// read twice, nothing skipped) and reads shards created since from their start.
    pub fn follow_from(&self, opts: &ReadOptions, positions: Vec<ShardPosition>) -> Follower {
        Follower::new(self.clone(), opts.clone(), positions)
    }
}

impl Follower {
    fn new(reader: StoreReader, opts: ReadOptions, positions: Vec<ShardPosition>) -> Follower {
        let mut known = HashSet::new();
        let mut shards = Vec::new();
        for position in positions {
            if known.insert(position.dir.clone()) {
                shards.push(FollowShard {
                    source: position.source,
                    shared: codec::DecodeShared::default(),
                    dir: position.dir,
                    next_base: position.next_base,
                    resume: position.resume,
                    current: None,
                });
            }
        }
        Follower {
            reader,
            opts,
            known,
            shards,
        }
    }

    /// What became readable since the last poll, at most about `MAX_POLL_RECORDS` records
    /// (call again while it returns any). The first poll returns the existing records that
    /// match the options (set `since_micros` to skip history), except in shards a
    /// `StoreReader::follow_from` position already covers.
    pub fn poll(&mut self) -> Vec<Result<StoredRecord, ReadError>> {
        let mut out = Vec::new();
        self.poll_into(&mut out);
        out
    }

    /// `poll`, appending to `out` (a buffer the caller reuses, so a busy tail does not grow
    /// a fresh vector on every poll).
    pub fn poll_into(&mut self, out: &mut Vec<Result<StoredRecord, ReadError>>) {
        let limit = out.len() + MAX_POLL_RECORDS;
        for (source, dir) in self.reader.selected(&self.opts) {
            if self.known.insert(dir.clone()) {
                self.shards.push(FollowShard {
                    source: Arc::from(source),
                    shared: codec::DecodeShared::default(),
                    dir,
                    next_base: 0,
                    resume: None,
                    current: None,
                });
            }
        }
        let since = self.opts.since_micros.unwrap_or(i64::MIN);
        let until = self.opts.until_micros.unwrap_or(i64::MAX);
        for shard in &mut self.shards {
            if out.len() >= limit {
                break;
            }
            shard.drain(since, until, limit, out);
        }
    }
}

impl FollowShard {
    fn drain(
        &mut self,
        since: i64,
        until: i64,
        limit: usize,
        out: &mut Vec<Result<StoredRecord, ReadError>>,
    ) {
        for _ in 0..100_000 {
            if self.current.is_none() && !self.open_next(since, until, out) {
                return;
            }
            let Some((path, scanner)) = self.current.as_mut() else {
                return;
            };
            if let Err(source) = scanner.refresh_size() {
                out.push(Err(ReadError::Io {
                    op: "stat",
                    path: path.clone(),
                    source,
                }));
                return;
            }
            loop {
                if out.len() >= limit {
                    return;
                }
                match scanner.next_step() {
                    Ok(Some(ScanStep::Frame {
                        offset,
                        header,
                        payload,
                    })) => {
                        if header.max_recv < since || header.min_recv >= until {
                            continue;
                        }
                        for (i, range) in codec::Records::new(&payload).enumerate() {
                            match range.and_then(|r| {
                                codec::decode(&payload, r, &self.source, &mut self.shared)
                            }) {
                                Ok(record)
                                    if record.received_at_micros >= since
                                        && record.received_at_micros < until =>
                                {
                                    out.push(Ok(StoredRecord {
                                        shard_seq: header.first_seq + i as u64,
                                        record,
                                    }));
                                }
                                Ok(_) => {}
                                Err(reason) => {
                                    out.push(Err(ReadError::Corrupt {
                                        file: path.clone(),
                                        offset,
                                        reason,
                                    }));
                                    break;
                                }
                            }
                        }
                    }
                    Ok(Some(ScanStep::Corrupt { offset, reason, .. })) => {
                        out.push(Err(ReadError::Corrupt {
                            file: path.clone(),
                            offset,
                            reason,
                        }));
                    }
                    Ok(Some(ScanStep::Footer { footer, .. })) => {
                        self.next_base = footer.next_seq;
                        self.current = None;
                        break;
                    }
                    Ok(Some(ScanStep::End { offset, .. })) => {
                        let expected = scanner.expected_seq();
                        scanner.seek(offset, expected);
                        return;
                    }
                    Ok(None) => return,
                    Err(source) => {
                        out.push(Err(ReadError::Io {
                            op: "read",
                            path: path.clone(),
                            source,
                        }));
                        return;
                    }
                }
            }
        }
    }

    fn open_next(
        &mut self,
        since: i64,
        until: i64,
        out: &mut Vec<Result<StoredRecord, ReadError>>,
    ) -> bool {
        loop {
            let Ok(bases) = list_segments(&self.dir) else {
                return false;
            };
            let Some(&base) = bases.iter().find(|&&b| b >= self.next_base) else {
                return false;
            };
            let path = self.dir.join(segment_file_name(base));
            let Ok(file) = File::open(&path) else {
                return false;
            };
            let header = match read_header(&file) {
                Ok(Ok(h)) => h,
                // A segment being created (header not written yet): try again next poll.
                Ok(Err(_)) if bases.last() == Some(&base) => return false,
                Ok(Err(reason)) => {
                    out.push(Err(ReadError::Corrupt {
                        file: path,
                        offset: 0,
                        reason,
                    }));
                    self.next_base = base + 1;
                    continue;
                }
                Err(source) => {
                    out.push(Err(ReadError::Io {
                        op: "read",
                        path,
                        source,
                    }));
                    return false;
                }
            };
            if let Ok(Some((_, footer))) = read_footer(&file, header.nonce) {
                if footer.num_records > 0 && (footer.max_recv < since || footer.min_recv >= until) {
                    self.next_base = footer.next_seq.max(base + 1);
                    continue;
                }
            }
            match Scanner::new(file, &header, false) {
                Ok(mut s) => {
                    if let Some((_, offset, seq)) = self.resume.take().filter(|r| r.0 == base) {
                        s.seek(offset, seq);
                    }
                    self.next_base = base + 1;
                    self.current = Some((path, s));
                    return true;
                }
                Err(source) => {
                    out.push(Err(ReadError::Io {
                        op: "read",
                        path,
                        source,
                    }));
                    return false;
                }
            }
        }
    }
}
