//! Offline and concurrent reading: `StoreReader` lists shards and reads records by shard and
//! receive-time range, merged across shards in receive-time order. Uses `pread` only (never a
//! map, so a file truncated or deleted by the writer or retention cannot raise SIGBUS),
//! verifies every frame CRC, reports damage as `ReadError::Corrupt` and continues after it.
//! Sealed segments outside the time range are skipped by their footer; the sparse index
//! (validated, rebuilt if bad) picks the first frame to read.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::record::Record;
use crate::store::error::{ReadError, StoreError};
use crate::store::format::codec;
use crate::store::format::index::load_or_rebuild;
use crate::store::format::scan::{read_footer, read_header, ScanStep, Scanner};
use crate::store::format::segment::{
    index_file_name, list_segments, segment_file_name, SegmentHeader,
};
use crate::store::format::shardname::read_meta;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Only this shard (original source name); `None`: all shards.
    pub source: Option<String>,
    /// Receive time lower bound (inclusive), microseconds since the epoch.
    pub since_micros: Option<i64>,
    /// Receive time upper bound (exclusive).
    pub until_micros: Option<i64>,
}

impl ReadOptions {
    fn since(&self) -> i64 {
        self.since_micros.unwrap_or(i64::MIN)
    }
    fn until(&self) -> i64 {
        self.until_micros.unwrap_or(i64::MAX)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Position of the record in its shard (gapless per shard).
    pub shard_seq: u64,
    /// `record.source` is the shard's original source name.
    pub record: Record,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// The original source name (from `shard.meta`).
    pub source: String,
    pub dir: PathBuf,
    pub num_segments: usize,
    pub bytes: u64,
}

/// Shard directories with a valid `shard.meta`: (source, dir), sorted by source.
pub fn list_shards(dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        if let Ok(Ok(name)) = read_meta(&entry.path()) {
            out.push((String::from_utf8_lossy(&name).into_owned(), entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct StoreReader {
    dir: PathBuf,
}

impl StoreReader {
    pub fn open(dir: &Path) -> Result<StoreReader, StoreError> {
        let meta =
            std::fs::metadata(dir).map_err(|e| StoreError::io("open data directory", dir, e))?;
        if !meta.is_dir() {
            return Err(StoreError::io(
                "open data directory",
                dir,
                io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        Ok(StoreReader {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn shards(&self) -> Vec<ShardInfo> {
        let Ok(shards) = list_shards(&self.dir) else {
            return Vec::new();
        };
        shards
            .into_iter()
            .map(|(source, dir)| {
                let bases = list_segments(&dir).unwrap_or_default();
                let bytes = bases
                    .iter()
                    .filter_map(|b| std::fs::metadata(dir.join(segment_file_name(*b))).ok())
                    .map(|m| m.len())
                    .sum();
                ShardInfo {
                    source,
                    dir,
                    num_segments: bases.len(),
                    bytes,
                }
            })
            .collect()
    }

    pub(crate) fn selected(&self, opts: &ReadOptions) -> Vec<(String, PathBuf)> {
        let shards = list_shards(&self.dir).unwrap_or_default();
        shards
            .into_iter()
            .filter(|(s, _)| opts.source.as_ref().is_none_or(|want| want == s))
            .collect()
    }

    /// Records of the selected shards in `[since, until)` by receive time, merged across
    /// shards by receive time. Corrupt frames come as `Err` items; reading continues.
    pub fn read(&self, opts: &ReadOptions) -> ReadIter {
        self.read_where(opts, |_| true)
    }

    /// `read` over the selected shards whose source name `keep` accepts (a query's source
    /// patterns): the other shards are never opened.
    pub fn read_where(&self, opts: &ReadOptions, keep: impl Fn(&str) -> bool) -> ReadIter {
        let iters: Vec<ShardIter> = self
            .selected(opts)
            .into_iter()
            .filter(|(source, _)| keep(source))
            .map(|(source, dir)| ShardIter::new(&source, dir, opts))
            .collect();
        ReadIter {
            heads: (0..iters.len()).map(|_| None).collect(),
            iters,
            heap: BinaryHeap::new(),
            errors: VecDeque::new(),
            primed: false,
            open: VecDeque::new(),
            max_open: MAX_OPEN_SEGMENT_FILES,
            peak_open: 0,
        }
    }

    /// One shard's records in `[since, until)`, in append order; `opts.source` is ignored.
    /// Once it has returned `None`, `ShardScan::position` says where a `Follower` goes on.
    pub fn read_shard(&self, shard: &ShardInfo, opts: &ReadOptions) -> ShardScan {
        ShardScan(ShardIter::new(&shard.source, shard.dir.clone(), opts))
    }
}

/// Where a finished shard scan stopped: a follower resumes there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPosition {
    pub(crate) source: Arc<str>,
    pub(crate) dir: PathBuf,
    /// The first segment base not read yet.
    pub(crate) next_base: u64,
    /// The unsealed last segment `(base, frame offset, expected seq)` the scan reached the end
    /// of: the follower continues inside it.
    pub(crate) resume: Option<(u64, u64, u64)>,
}

/// A lazy reader of one shard (`StoreReader::read_shard`).
pub struct ShardScan(ShardIter);

impl ShardScan {
    /// Where this scan stopped; meaningful once it has returned `None`.
    pub fn position(&self) -> ShardPosition {
        self.0.position()
    }
}

impl Iterator for ShardScan {
    type Item = Result<StoredRecord, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

/// How many segment files a merged read keeps open at once. A store has a shard per source
/// (100,000 after a flood of spoofed names); the merge needs every shard's next record, not
/// its file, so the least recently read shards close theirs and reopen where they stopped.
const MAX_OPEN_SEGMENT_FILES: usize = 128;

/// Merges the shard iterators by receive time; errors are handed out as soon as found.
pub struct ReadIter {
    iters: Vec<ShardIter>,
    heads: Vec<Option<StoredRecord>>,
    heap: BinaryHeap<Reverse<(i64, u64, usize)>>,
    errors: VecDeque<ReadError>,
    primed: bool,
    /// Shards that may have a segment file open, least recently read first.
    open: VecDeque<usize>,
    max_open: usize,
    /// The most segment files open at once so far.
    peak_open: usize,
}

impl ReadIter {
    fn refill(&mut self, i: usize) {
        loop {
            match self.iters[i].next() {
                Some(Ok(r)) => {
                    self.heap
                        .push(Reverse((r.record.received_at_micros, r.shard_seq, i)));
                    self.heads[i] = Some(r);
                    break;
                }
                Some(Err(e)) => self.errors.push_back(e),
                None => break,
            }
        }
        self.touch(i);
    }

    /// Shard `i` was just read: it becomes the most recently used, and the least recently used
    /// shards past `max_open` close their files.
    fn touch(&mut self, i: usize) {
        if let Some(at) = self.open.iter().position(|&j| j == i) {
            self.open.remove(at);
        }
        if !self.iters[i].is_open() {
            return;
        }
        self.open.push_back(i);
        while self.open.len() > self.max_open {
            if let Some(j) = self.open.pop_front() {
                self.iters[j].park();
            }
        }
        let now_open = self
            .open
            .iter()
            .filter(|&&j| self.iters[j].is_open())
            .count();
        self.peak_open = self.peak_open.max(now_open);
    }

    #[cfg(test)]
    pub(crate) fn with_max_open(mut self, max_open: usize) -> ReadIter {
        self.max_open = max_open.max(1);
        self
    }

    /// The most segment files this read had open at once.
    pub fn peak_open_files(&self) -> usize {
        self.peak_open
    }

    /// The oldest and newest receive times of the frames and sealed segments this read has
    /// looked at so far, including those it skipped as outside the range; `None` if none.
    /// Once the read is finished, the selected shards held nothing received outside these
    /// bounds when it ran (every segment's footer or every frame was looked at).
    pub fn recv_bounds_seen(&self) -> Option<(i64, i64)> {
        self.iters
            .iter()
            .filter_map(|iter| iter.recv_seen)
            .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
    }
}

impl Iterator for ReadIter {
    type Item = Result<StoredRecord, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.primed {
            self.primed = true;
            for i in 0..self.iters.len() {
                self.refill(i);
            }
        }
        if let Some(e) = self.errors.pop_front() {
            return Some(Err(e));
        }
        let Reverse((_, _, i)) = self.heap.pop()?;
        let record = self.heads[i].take()?;
        self.refill(i);
        Some(Ok(record))
    }
}

/// Reads one shard's segments in order.
pub(crate) struct ShardIter {
    source: Arc<str>,
    shared: codec::DecodeShared,
    dir: PathBuf,
    since: i64,
    until: i64,
    bases: Vec<u64>,
    next_segment: usize,
    current: Option<(PathBuf, Scanner<File>)>,
    /// Header of the segment in `current`.
    current_header: Option<SegmentHeader>,
    /// The segment `park` closed mid-scan: `(path, header, frame offset, expected seq)`.
    parked: Option<(PathBuf, SegmentHeader, u64, u64)>,
    /// Base of the segment in `current`.
    current_base: u64,
    expected: Option<u64>,
    opened: usize,
    out: VecDeque<Result<StoredRecord, ReadError>>,
    /// The first segment base not read yet (for `position`).
    next_base: u64,
    /// Set when the scan reached the end of the last listed segment without a seal.
    resume: Option<(u64, u64, u64)>,
    /// The oldest `min_recv` and newest `max_recv` of the frames and footers looked at.
    recv_seen: Option<(i64, i64)>,
}

impl ShardIter {
    pub(crate) fn new(source: &str, dir: PathBuf, opts: &ReadOptions) -> ShardIter {
        let (bases, out) = match list_segments(&dir) {
            Ok(b) => (b, VecDeque::new()),
            Err(source) => (
                Vec::new(),
                VecDeque::from([Err(ReadError::Io {
                    op: "list",
                    path: dir.clone(),
                    source,
                })]),
            ),
        };
        ShardIter {
            source: Arc::from(source),
            shared: codec::DecodeShared::default(),
            dir,
            since: opts.since(),
            until: opts.until(),
            bases,
            next_segment: 0,
            current: None,
            current_header: None,
            parked: None,
            current_base: 0,
            expected: None,
            opened: 0,
            out,
            next_base: 0,
            resume: None,
            recv_seen: None,
        }
    }

    fn position(&self) -> ShardPosition {
        ShardPosition {
            source: self.source.clone(),
            dir: self.dir.clone(),
            next_base: self.resume.map_or(self.next_base, |(base, ..)| base),
            resume: self.resume,
        }
    }

    fn saw(&mut self, min: i64, max: i64) {
        self.recv_seen = Some(match self.recv_seen {
            None => (min, max),
            Some((a, b)) => (a.min(min), b.max(max)),
        });
    }

    /// Whether a segment file is open.
    fn is_open(&self) -> bool {
        self.current.is_some()
    }

    /// Closes the open segment file, remembering where the scan is; `next` reopens it there.
    fn park(&mut self) {
        let (Some((path, scanner)), Some(header)) = (self.current.take(), self.current_header)
        else {
            return;
        };
        self.parked = Some((path, header, scanner.position(), scanner.expected_seq()));
    }

    /// Reopens a parked segment where its scan stopped; false (with the error queued) if it
    /// cannot be opened any more.
    fn unpark(&mut self) -> bool {
        let Some((path, header, pos, expected_seq)) = self.parked.take() else {
            return false;
        };
        let opened = File::open(&path)
            .map_err(|e| ("open", e))
            .and_then(|file| Scanner::new(file, &header, false).map_err(|e| ("read", e)));
        match opened {
            Ok(mut scanner) => {
                scanner.seek(pos, expected_seq);
                self.current = Some((path, scanner));
                true
            }
            Err((op, source)) => {
                self.out.push_back(Err(ReadError::Io { op, path, source }));
                false
            }
        }
    }

    fn corrupt(&mut self, file: &Path, offset: u64, reason: String) {
        self.out.push_back(Err(ReadError::Corrupt {
            file: file.to_path_buf(),
            offset,
            reason,
        }));
    }

    /// Opens the next segment worth reading; false when none is left.
    fn open_next(&mut self) -> bool {
        while self.next_segment < self.bases.len() {
            let base = self.bases[self.next_segment];
            // Nothing opened yet: a missing file was deleted by retention after the listing.
            let is_first = self.expected.is_none() && self.opened == 0;
            let is_last = self.next_segment + 1 == self.bases.len();
            self.next_segment += 1;
            self.next_base = base + 1;
            let path = self.dir.join(segment_file_name(base));
            let file = match File::open(&path) {
                Ok(f) => f,
                // Deleted by retention since the listing.
                Err(e) if e.kind() == io::ErrorKind::NotFound && is_first => continue,
                Err(source) => {
                    self.out.push_back(Err(ReadError::Io {
                        op: "open",
                        path,
                        source,
                    }));
                    continue;
                }
            };
            let header = match read_header(&file) {
                Ok(Ok(h)) => h,
                // The newest segment is being created by a live writer: not written yet (a
                // follower continuing this scan reads it from its start).
                Ok(Err(_)) if is_last && is_blank(&file) => {
                    self.next_base = base;
                    continue;
                }
                Ok(Err(reason)) => {
                    self.corrupt(&path, 0, format!("bad segment header: {reason}"));
                    self.expected = None;
                    continue;
                }
                Err(source) => {
                    self.out.push_back(Err(ReadError::Io {
                        op: "read",
                        path,
                        source,
                    }));
                    continue;
                }
            };
            if let Some(expected) = self.expected {
                if header.base_seq != expected {
                    self.corrupt(
                        &path,
                        0,
                        format!("segment starts at seq {} but the previous one ended before seq {expected} (missing segment?)", header.base_seq),
                    );
                }
            }
            let mut scanner = match Scanner::new(file, &header, false) {
                Ok(s) => s,
                Err(source) => {
                    self.out.push_back(Err(ReadError::Io {
                        op: "read",
                        path,
                        source,
                    }));
                    continue;
                }
            };
            self.expected = None;
            if let Ok(Some((data_end, footer))) = read_footer(&scanner_src(&scanner), header.nonce)
            {
                if footer.num_records > 0 {
                    self.saw(footer.min_recv, footer.max_recv);
                }
                if footer.num_records > 0
                    && (footer.max_recv < self.since || footer.min_recv >= self.until)
                {
                    self.expected = Some(footer.next_seq);
                    self.next_base = footer.next_seq.max(base + 1);
                    continue;
                }
                if self.since > i64::MIN {
                    let tix = self.dir.join(index_file_name(base));
                    if let Ok((index, _)) =
                        load_or_rebuild(scanner_src(&scanner), &header, data_end, &tix)
                    {
                        if let Some((pos, seq)) = index.seek(self.since) {
                            scanner.seek(pos, seq);
                        }
                    }
                }
            }
            self.opened += 1;
            self.current_base = base;
            self.current_header = Some(header);
            self.current = Some((path, scanner));
            return true;
        }
        false
    }

    fn step(&mut self) {
        let Some((path, scanner)) = self.current.as_mut() else {
            return;
        };
        let path = path.clone();
        match scanner.next_step() {
            Ok(Some(ScanStep::Frame {
                offset,
                header,
                payload,
            })) => {
                self.saw(header.min_recv, header.max_recv);
                if header.max_recv < self.since || header.min_recv >= self.until {
                    return;
                }
                for (i, range) in codec::Records::new(&payload).enumerate() {
                    let decoded = range
                        .and_then(|r| codec::decode(&payload, r, &self.source, &mut self.shared));
                    match decoded {
                        Ok(record) => {
                            let t = record.received_at_micros;
                            if t >= self.since && t < self.until {
                                self.out.push_back(Ok(StoredRecord {
                                    shard_seq: header.first_seq + i as u64,
                                    record,
                                }));
                            }
                        }
                        Err(reason) => {
                            self.corrupt(&path, offset, format!("record {i}: {reason}"));
                            break;
                        }
                    }
                }
            }
            Ok(Some(ScanStep::Corrupt { offset, reason, .. })) => {
                self.corrupt(&path, offset, reason)
            }
            Ok(Some(ScanStep::Footer { footer, .. })) => {
                self.expected = Some(footer.next_seq);
                self.next_base = footer.next_seq.max(self.current_base + 1);
                self.current = None;
            }
            Ok(Some(ScanStep::End { offset, .. })) => {
                let expected = scanner.expected_seq();
                if self.next_segment < self.bases.len() {
                    self.corrupt(&path, offset, "segment ends without a seal".to_string());
                } else {
                    self.resume = Some((self.current_base, offset, expected));
                }
                self.expected = Some(expected);
                self.current = None;
            }
            Ok(None) => self.current = None,
            Err(source) => {
                self.out.push_back(Err(ReadError::Io {
                    op: "read",
                    path,
                    source,
                }));
                self.current = None;
            }
        }
    }
}

/// A file whose first 64 bytes are zero or missing: a segment whose header is not written yet.
pub(crate) fn is_blank(file: &File) -> bool {
    let mut b = [0u8; 64];
    match crate::store::format::scan::read_full(file, &mut b, 0) {
        Ok(n) => b[..n].iter().all(|&x| x == 0),
        Err(_) => false,
    }
}

fn scanner_src(s: &Scanner<File>) -> &File {
    s.source()
}

impl Iterator for ShardIter {
    type Item = Result<StoredRecord, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.out.pop_front() {
                return Some(item);
            }
            if self.current.is_none() && !self.unpark() && !self.open_next() {
                return self.out.pop_front();
            }
            self.step();
        }
    }
}
