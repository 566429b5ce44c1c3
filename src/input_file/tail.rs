//! The tailer: which files are read, from where, and how their bytes become lines. Blocking
//! file I/O only (`pread`, `fstat`, `stat`, directory listings); it hands complete lines as
//! records to its caller and never talks to the store.
//!
//! A file is known by its identity `(device, inode)`, confirmed by a CRC-32 of its first
//! bytes (up to 1 KiB; a shorter file's fingerprint grows with it while its old prefix still
//! matches). The read position of each file is only in memory here; what makes it durable
//! is the file field of each line's record (see `positions`).
//!
//! - Rotation by rename, or deletion: the open descriptor is read to its end; the file is
//!   released once drained and either deleted or idle for `rotate-wait`. A last line that
//!   never got its terminator is then stored flagged partial.
//! - Truncation (size below the position, or the first bytes changed): reading restarts at
//!   0. The tail not yet read is taken from a rotated copy in the same directory whose first
//!   bytes match (copytruncate); what no copy holds is counted as lost.
//! - A line longer than `max-line-bytes` is cut, flagged and counted; the rest of it is
//!   skipped. A line without its terminator is held until it completes.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::metrics::{FileMetrics, LostReason};
use super::positions::FileKey;
use crate::config::{FileInput, Glob, StartAt};
use crate::record::{FileOrigin, ParseStatus, Record, Transport};

/// Bytes of a file's head its fingerprint covers.
pub const FINGERPRINT_BYTES: u64 = 1024;
/// Bytes read from one file in one pass (fairness between files).
const READ_PER_FILE: usize = 1 << 20;
/// Remembered positions of released files kept before gone ones are forgotten.
const MEMORY_PRUNE_AT: usize = 10_000;
/// Bytes of one `pread`.
const CHUNK: usize = 64 * 1024;

/// Limits of one batch of lines.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_records: usize,
    pub max_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_records: 10_000,
            max_bytes: 4 << 20,
        }
    }
}

/// One `[[input.file]]` as the tailer uses it.
#[derive(Debug, Clone)]
pub struct TailInput {
    pub config: FileInput,
    /// Its records' source (the configured one, else the node id).
    pub source: Arc<str>,
}

/// What the tailer knows about one open file.
#[derive(Debug)]
struct Tracked {
    input: usize,
    path: PathBuf,
    path_bytes: Bytes,
    app_name: Arc<str>,
    file: File,
    fingerprint: u32,
    fingerprint_len: u32,
    /// Offset of the next byte to read.
    pos: u64,
    /// Offset where the pending (unterminated) line starts.
    line_start: u64,
    /// The pending line's bytes (at most `max-line-bytes`).
    pending: Vec<u8>,
    /// The pending line is over `max-line-bytes`: the rest is skipped up to its terminator.
    skipping: bool,
    /// The file's size and modification time when last looked at.
    size_seen: u64,
    mtime_seen: (i64, i64),
    /// Renamed away or deleted (or a rotated copy being drained): since when.
    rotated: Option<Instant>,
    last_growth: Instant,
}

impl Tracked {
    /// Its position as a stored line would carry it.
    fn position(&self, key: FileKey) -> Arc<FileOrigin> {
        Arc::new(FileOrigin {
            path: self.path_bytes.clone(),
            offset: self.line_start,
            dev: key.0,
            ino: key.1,
            fingerprint: self.fingerprint,
            fingerprint_len: self.fingerprint_len,
            pri: 0,
            app_name: self.app_name.clone(),
            partial: false,
        })
    }
}

/// What is known of a file's head when it is found truncated: where its unread bytes
/// start, how far it was seen, and its fingerprint before.
struct Head {
    from: u64,
    seen: u64,
    fingerprint: u32,
    fingerprint_len: u32,
}

/// A file's position for `/v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileStatus {
    pub path: String,
    pub offset: u64,
    pub size: u64,
    pub rotated: bool,
}

/// The files of every file input and their read state.
pub struct Tailer {
    inputs: Vec<TailInput>,
    origin: Arc<str>,
    files: HashMap<FileKey, Tracked>,
    /// Positions recovered from the store, used when a file is first opened.
    memory: HashMap<FileKey, Arc<FileOrigin>>,
    /// Receive time of the newest stored line of each path (from the store, at start).
    newest_by_path: HashMap<Bytes, i64>,
    /// Heads (fingerprint length → fingerprints) of files stored lines were read from.
    heads: HashMap<u32, HashSet<u32>>,
    /// Sources with file records in the store already (their inputs are past their first
    /// start, so `start-at` no longer applies).
    sources_seen: HashSet<String>,
    metrics: FileMetrics,
    /// Round-robin start, so one busy file does not starve the others.
    order: Vec<FileKey>,
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// CRC-32 of the first `len` bytes of `file`, or `None` if it has fewer.
fn fingerprint_of(file: &File, len: u64) -> std::io::Result<Option<u32>> {
    let mut buf = vec![0u8; len as usize];
    let mut at = 0;
    while at < buf.len() {
        let n = file.read_at(&mut buf[at..], at as u64)?;
        if n == 0 {
            return Ok(None);
        }
        at += n;
    }
    Ok(Some(crc32fast::hash(&buf)))
}

fn match_options() -> glob::MatchOptions {
    glob::MatchOptions {
        require_literal_separator: true,
        ..glob::MatchOptions::new()
    }
}

/// The paths `glob` matches: its literal leading directories, then a walk as deep as its
/// other components (any depth with `**`), matching names that need not be UTF-8 (a
/// wildcard matches a byte that is not, as U+FFFD).
fn expand(glob: &Glob) -> Vec<PathBuf> {
    let text = &glob.text;
    let components: Vec<&str> = text.split('/').filter(|c| !c.is_empty()).collect();
    let wild = |c: &&str| c.contains(['*', '?', '[']);
    let literal = components.iter().take_while(|c| !wild(c)).count();
    if literal == components.len() {
        return vec![PathBuf::from(text)];
    }
    let base: PathBuf = std::iter::once("/")
        .chain(components[..literal].iter().copied())
        .collect();
    let rest = &components[literal..];
    let depth = if rest.iter().any(|c| c.contains("**")) {
        usize::MAX
    } else {
        rest.len()
    };
    walkdir::WalkDir::new(&base)
        .min_depth(1)
        .max_depth(depth)
        .follow_links(true)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| !entry.file_type().is_dir())
        .map(walkdir::DirEntry::into_path)
        .filter(|path| {
            glob.pattern
                .matches_with(&path.to_string_lossy(), match_options())
        })
        .collect()
}

fn file_stem(path: &Path) -> Arc<str> {
    let stem = path
        .file_name()
        .map(|name| {
            let name = name.to_string_lossy();
            match name.find('.') {
                Some(0) | None => name.into_owned(),
                Some(dot) => name[..dot].to_owned(),
            }
        })
        .unwrap_or_default();
    Arc::from(stem.as_str())
}

impl Tailer {
    pub fn new(
        inputs: Vec<TailInput>,
        origin: Arc<str>,
        memory: HashMap<FileKey, Arc<FileOrigin>>,
        sources_seen: HashSet<String>,
        metrics: FileMetrics,
    ) -> Tailer {
        Tailer {
            inputs,
            origin,
            files: HashMap::new(),
            memory,
            newest_by_path: HashMap::new(),
            heads: HashMap::new(),
            sources_seen,
            metrics,
            order: Vec::new(),
        }
    }

    /// Tells the receive time of the newest stored line of each path (from the store), so
    /// that at start a rotated file written after it but never read is found.
    pub fn set_newest_by_path(&mut self, newest: HashMap<Bytes, i64>) {
        self.newest_by_path = newest;
    }

    /// Tells the heads of the files stored lines were read from, so that at start a copy of
    /// one (copytruncate) is not taken for a rotated file never read.
    pub fn set_heads(&mut self, heads: HashMap<u32, HashSet<u32>>) {
        self.heads = heads;
    }

    /// Every file the globs match now, with its identity (first input wins a file matched
    /// twice, as through a symlink).
    pub fn matched(&self) -> Vec<(usize, PathBuf, FileKey)> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for (index, input) in self.inputs.iter().enumerate() {
            for glob in &input.config.paths {
                for path in expand(glob) {
                    let excluded = input.config.exclude.iter().any(|ex| {
                        ex.pattern
                            .matches_with(&path.to_string_lossy(), match_options())
                    });
                    if excluded {
                        continue;
                    }
                    let Ok(meta) = std::fs::metadata(&path) else {
                        continue;
                    };
                    if !meta.is_file() {
                        continue;
                    }
                    let key = (meta.dev(), meta.ino());
                    if seen.insert(key) {
                        out.push((index, path, key));
                    }
                }
            }
        }
        out
    }

    /// Opens every matched file not open yet. `at_start`: the node is starting, so files with
    /// no stored position follow `start-at` if their input has never stored a line, and files
    /// renamed away while the node was down are found by their stored identity and drained.
    pub fn discover(&mut self, at_start: bool) {
        for (input, path, key) in self.matched() {
            if self.files.contains_key(&key) {
                continue;
            }
            if let Err(error) = self.open(input, &path, key, at_start, false) {
                tracing::warn!(path = %path.display(), %error, "cannot open a file to tail");
            }
        }
        if at_start {
            self.find_renamed();
            self.find_unread_rotations();
        }
        self.metrics.files.set(self.files.len() as i64);
    }

    /// Files with a stored position that no glob matches now: looked for by identity in the
    /// directory of their stored path (renamed by rotation while the node was down) and
    /// read to their end.
    fn find_renamed(&mut self) {
        let missing: Vec<Arc<FileOrigin>> = self
            .memory
            .iter()
            .filter(|(key, _)| !self.files.contains_key(key))
            .map(|(_, origin)| origin.clone())
            .collect();
        let mut dirs: HashMap<PathBuf, Vec<Arc<FileOrigin>>> = HashMap::new();
        for origin in missing {
            let path = Path::new(std::ffi::OsStr::from_bytes(&origin.path));
            if let Some(dir) = path.parent() {
                dirs.entry(dir.to_path_buf()).or_default().push(origin);
            }
        }
        for (dir, origins) in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                let key = (meta.dev(), meta.ino());
                if self.files.contains_key(&key) {
                    continue;
                }
                let Some(origin) = origins.iter().find(|o| (o.dev, o.ino) == key) else {
                    continue;
                };
                if meta.len() <= origin.offset {
                    continue;
                }
                let input = self
                    .inputs
                    .iter()
                    .position(|i| *i.source == *self.source_of(origin))
                    .unwrap_or(0);
                let path = entry.path();
                match self.open(input, &path, key, true, true) {
                    Ok(()) => tracing::info!(
                        path = %path.display(),
                        offset = origin.offset,
                        "reading a file renamed while the node was down to its end"
                    ),
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "cannot open a renamed file")
                    }
                }
            }
        }
    }

    /// Rotated siblings (`NAME.*`, not compressed) of a path with stored lines that are not
    /// open, have no stored position and were modified after that path's newest stored line:
    /// a file renamed away while the node was down before any of its lines was durable. They
    /// are read from their start.
    fn find_unread_rotations(&mut self) {
        let paths: Vec<(usize, PathBuf, i64)> = self
            .newest_by_path
            .iter()
            .map(|(path, newest)| {
                let path = PathBuf::from(std::ffi::OsStr::from_bytes(path));
                let input = self
                    .inputs
                    .iter()
                    .position(|input| {
                        let text = path.to_string_lossy();
                        let options = match_options();
                        input
                            .config
                            .paths
                            .iter()
                            .any(|g| g.pattern.matches_with(&text, options))
                    })
                    .unwrap_or(0);
                (input, path, *newest)
            })
            .collect();
        for (input, path, newest) in paths {
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            let mut prefix = name.as_bytes().to_vec();
            prefix.push(b'.');
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let entry_name = entry.file_name();
                let bytes = entry_name.as_bytes();
                let compressed = [&b".gz"[..], b".bz2", b".xz", b".zst", b".lz4"]
                    .iter()
                    .any(|ext| bytes.ends_with(ext));
                if !bytes.starts_with(&prefix) || compressed {
                    continue;
                }
                let Ok(meta) = entry.metadata() else { continue };
                let key = (meta.dev(), meta.ino());
                // Written, or renamed (ctime), after the path's newest stored line.
                let modified = (meta.mtime() * 1_000_000 + meta.mtime_nsec() / 1000)
                    .max(meta.ctime() * 1_000_000 + meta.ctime_nsec() / 1000);
                if !meta.is_file()
                    || self.files.contains_key(&key)
                    || self.memory.contains_key(&key)
                    || modified <= newest
                {
                    continue;
                }
                let rotated = entry.path();
                // A copy of a known file (copytruncate) is not unread: its head is known.
                let is_copy = File::open(&rotated).is_ok_and(|file| {
                    self.heads.iter().any(|(len, fingerprints)| {
                        fingerprint_of(&file, u64::from(*len))
                            .ok()
                            .flatten()
                            .is_some_and(|fp| fingerprints.contains(&fp))
                    })
                });
                if is_copy {
                    continue;
                }
                tracing::info!(
                    path = %rotated.display(),
                    "reading a file rotated while the node was down before any of its lines was stored"
                );
                if let Err(error) = self.open(input, &rotated, key, false, true) {
                    tracing::warn!(path = %rotated.display(), %error, "cannot open a rotated file");
                }
            }
        }
    }

    fn source_of(&self, _origin: &FileOrigin) -> Arc<str> {
        self.inputs
            .first()
            .map(|i| i.source.clone())
            .unwrap_or_else(|| self.origin.clone())
    }

    fn open(
        &mut self,
        input: usize,
        path: &Path,
        key: FileKey,
        at_start: bool,
        rotated: bool,
    ) -> std::io::Result<()> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if (meta.dev(), meta.ino()) != key {
            // Replaced between the glob and the open: the next discovery sees the new one.
            return Ok(());
        }
        let size = meta.len();
        let config = &self.inputs[input].config;
        let mut start = 0;
        let mut rewritten = None;
        if let Some(origin) = self.memory.get(&key) {
            let len = u64::from(origin.fingerprint_len);
            if fingerprint_of(&file, len)? == Some(origin.fingerprint) && origin.offset <= size {
                start = origin.offset;
            } else {
                // Truncated or rewritten while the node was down (copytruncate): its unread
                // tail may be in a rotated copy.
                rewritten = Some(origin.clone());
            }
        } else if at_start
            && config.start_at == StartAt::End
            && !self.sources_seen.contains(&*self.inputs[input].source)
        {
            start = size;
        }
        let fingerprint_len = size.min(FINGERPRINT_BYTES);
        let fingerprint = fingerprint_of(&file, fingerprint_len)?.unwrap_or(0);
        let app_name = match &config.app_name {
            Some(name) => Arc::from(name.as_str()),
            None => file_stem(path),
        };
        let now = Instant::now();
        self.files.insert(
            key,
            Tracked {
                input,
                path: path.to_path_buf(),
                path_bytes: Bytes::copy_from_slice(path.as_os_str().as_bytes()),
                app_name,
                file,
                fingerprint,
                fingerprint_len: fingerprint_len as u32,
                pos: start,
                line_start: start,
                pending: Vec::new(),
                skipping: false,
                size_seen: size,
                mtime_seen: (meta.mtime(), meta.mtime_nsec()),
                rotated: rotated.then_some(now),
                last_growth: now,
            },
        );
        self.order.push(key);
        if let Some(origin) = rewritten {
            self.metrics.truncations.inc();
            let head = Head {
                from: origin.offset,
                seen: origin.offset,
                fingerprint: origin.fingerprint,
                fingerprint_len: origin.fingerprint_len,
            };
            self.recover_from_copy(key, input, &head)?;
        }
        Ok(())
    }

    /// Reads new lines from every open file into `batch`, up to `limits`; handles rotation,
    /// truncation and release on the way.
    pub fn read_batch(&mut self, limits: BatchLimits) -> Vec<Record> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let keys = self.order.clone();
        let mut released = Vec::new();
        for key in keys {
            if batch.len() >= limits.max_records || bytes >= limits.max_bytes {
                break;
            }
            if let Err(error) = self.check(key) {
                tracing::warn!(%error, "cannot look at a tailed file");
            }
            let Some(tracked) = self.files.get_mut(&key) else {
                continue;
            };
            let input = &self.inputs[tracked.input];
            let emit = Emit {
                origin: &self.origin,
                source: &input.source,
                pri: input.config.pri(),
                max_line: input.config.max_line_bytes,
                metrics: &self.metrics,
            };
            match read_file(key, tracked, &emit, &mut batch, &mut bytes, limits) {
                Ok(()) => {}
                Err(error) => {
                    tracing::warn!(path = %tracked.path.display(), %error, "cannot read a tailed file");
                }
            }
            if self.release_due(key, &mut batch) {
                released.push(key);
            }
        }
        for key in released {
            if let Some(tracked) = self.files.remove(&key) {
                // Remembered as read to its end: matched again (a glob that also matches
                // rotated names), it is not read twice.
                self.memory.insert(key, tracked.position(key));
            }
            self.order.retain(|k| *k != key);
        }
        self.prune_memory();
        // Start the next pass after the first file of this one.
        if !self.order.is_empty() {
            self.order.rotate_left(1);
        }
        self.metrics.files.set(self.files.len() as i64);
        batch
    }

    /// Rotation, deletion and truncation of one file, found by `stat` and `fstat`.
    fn check(&mut self, key: FileKey) -> std::io::Result<()> {
        let Some(tracked) = self.files.get_mut(&key) else {
            return Ok(());
        };
        if tracked.rotated.is_none() {
            let renamed = match std::fs::metadata(&tracked.path) {
                Ok(meta) => (meta.dev(), meta.ino()) != key,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => true,
                Err(error) => return Err(error),
            };
            if renamed {
                tracked.rotated = Some(Instant::now());
                self.metrics.rotations.inc();
                tracing::debug!(path = %tracked.path.display(), "tailed file rotated away");
            }
        }
        let meta = tracked.file.metadata()?;
        let size = meta.len();
        let mtime = (meta.mtime(), meta.mtime_nsec());
        let mut truncated = size < tracked.pos;
        // Rewritten to the same size between two looks shows only in the modification time.
        if !truncated && (size != tracked.size_seen || mtime != tracked.mtime_seen) {
            tracked.mtime_seen = mtime;
            // The head must still be what it was; a shorter fingerprint grows with the file.
            let len = u64::from(tracked.fingerprint_len);
            truncated = fingerprint_of(&tracked.file, len)? != Some(tracked.fingerprint);
            if !truncated && len < FINGERPRINT_BYTES && size > len {
                let len = size.min(FINGERPRINT_BYTES);
                if let Some(fingerprint) = fingerprint_of(&tracked.file, len)? {
                    tracked.fingerprint = fingerprint;
                    tracked.fingerprint_len = len as u32;
                }
            }
        }
        if size > tracked.size_seen {
            tracked.last_growth = Instant::now();
        }
        if truncated {
            self.truncated(key, size)?;
        } else if let Some(tracked) = self.files.get_mut(&key) {
            tracked.size_seen = size;
        }
        Ok(())
    }

    /// `key` was truncated or rewritten: take its unread tail from a matching rotated copy,
    /// else count it lost; read the file again from its start.
    fn truncated(&mut self, key: FileKey, size: u64) -> std::io::Result<()> {
        self.metrics.truncations.inc();
        let (head, input) = {
            let t = &self.files[&key];
            let head = Head {
                from: t.line_start,
                seen: t.size_seen.max(t.pos),
                fingerprint: t.fingerprint,
                fingerprint_len: t.fingerprint_len,
            };
            (head, t.input)
        };
        self.recover_from_copy(key, input, &head)?;
        let tracked = self.files.get_mut(&key).expect("tracked");
        tracked.pos = 0;
        tracked.line_start = 0;
        tracked.pending.clear();
        tracked.skipping = false;
        tracked.size_seen = size;
        let len = size.min(FINGERPRINT_BYTES);
        tracked.fingerprint = fingerprint_of(&tracked.file, len)?.unwrap_or(0);
        tracked.fingerprint_len = len as u32;
        Ok(())
    }

    /// The bytes of `key` from `head.from` on that were not read before it was truncated:
    /// read from a rotated copy in the same directory whose first bytes match (opened as a
    /// rotated file at `head.from`), else counted lost (as far as `head.seen` tells).
    fn recover_from_copy(
        &mut self,
        key: FileKey,
        input: usize,
        head: &Head,
    ) -> std::io::Result<()> {
        let path = self.files[&key].path.clone();
        let mut copy = None;
        if let Some(dir) = path.parent() {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    let Ok(meta) = entry.metadata() else { continue };
                    let candidate = (meta.dev(), meta.ino());
                    if !meta.is_file() || candidate == key || meta.len() < head.from {
                        continue;
                    }
                    if self.files.contains_key(&candidate) {
                        continue;
                    }
                    let Ok(file) = File::open(entry.path()) else {
                        continue;
                    };
                    let len = u64::from(head.fingerprint_len);
                    if fingerprint_of(&file, len)? == Some(head.fingerprint) {
                        copy = Some((entry.path(), candidate, meta.len()));
                        break;
                    }
                }
            }
        }
        let lost = match &copy {
            Some((_, _, copy_len)) => head.seen.saturating_sub(*copy_len),
            None => head.seen.saturating_sub(head.from),
        };
        if lost > 0 {
            self.metrics.lost(LostReason::Truncate, lost);
        }
        tracing::warn!(
            path = %path.display(),
            from = head.from,
            lost,
            copy = ?copy.as_ref().map(|c| c.0.display().to_string()),
            "tailed file truncated; reading it again from its start"
        );
        if let Some((copy_path, copy_key, _)) = copy {
            // A copy already read from before a restart resumes at its own position.
            let resumed = self.memory.contains_key(&copy_key);
            self.open(input, &copy_path, copy_key, false, true)?;
            if let Some(copied) = self.files.get_mut(&copy_key).filter(|_| !resumed) {
                copied.pos = head.from;
                copied.line_start = head.from;
            }
        }
        Ok(())
    }

    /// A rotated or deleted file read to its end is released once deleted or idle for
    /// `rotate-wait`; a last line without terminator is stored flagged partial first.
    fn release_due(&mut self, key: FileKey, batch: &mut Vec<Record>) -> bool {
        let Some(tracked) = self.files.get_mut(&key) else {
            return false;
        };
        if tracked.rotated.is_none() {
            return false;
        }
        let Ok(meta) = tracked.file.metadata() else {
            return true;
        };
        if tracked.pos < meta.len() {
            return false;
        }
        let input = &self.inputs[tracked.input];
        let deleted = meta.nlink() == 0;
        if !deleted && tracked.last_growth.elapsed() < input.config.rotate_wait {
            return false;
        }
        if !tracked.pending.is_empty() || tracked.skipping {
            let emit = Emit {
                origin: &self.origin,
                source: &input.source,
                pri: input.config.pri(),
                max_line: input.config.max_line_bytes,
                metrics: &self.metrics,
            };
            let end = tracked.pos;
            emit.line(key, tracked, end, true, batch);
        }
        true
    }

    /// Forgets remembered positions of files that are gone, once there are many.
    fn prune_memory(&mut self) {
        if self.memory.len() <= MEMORY_PRUNE_AT + self.files.len() {
            return;
        }
        let files = &self.files;
        self.memory.retain(|key, origin| {
            let path = Path::new(std::ffi::OsStr::from_bytes(&origin.path));
            files.contains_key(key)
                || std::fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == *key)
        });
    }

    /// Each open file's position, for `/v1/status`.
    pub fn status(&self) -> Vec<FileStatus> {
        let mut out: Vec<FileStatus> = self
            .files
            .values()
            .map(|t| FileStatus {
                path: t.path.display().to_string(),
                offset: t.line_start,
                size: t.size_seen,
                rotated: t.rotated.is_some(),
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }
}

/// What turning bytes into records needs.
struct Emit<'a> {
    origin: &'a Arc<str>,
    source: &'a Arc<str>,
    pri: u8,
    max_line: usize,
    metrics: &'a FileMetrics,
}

impl Emit<'_> {
    /// The pending line of `tracked`, ending at `end` (past its terminator), as a record.
    fn line(
        &self,
        key: FileKey,
        tracked: &mut Tracked,
        end: u64,
        partial: bool,
        batch: &mut Vec<Record>,
    ) {
        let raw = Bytes::from(std::mem::take(&mut tracked.pending));
        let truncated = tracked.skipping;
        tracked.skipping = false;
        tracked.line_start = end;
        self.metrics.lines.inc();
        if truncated {
            self.metrics.lines_truncated.inc();
        }
        batch.push(Record {
            received_at_micros: now_micros(),
            event_time: None,
            origin: self.origin.clone(),
            origin_seq: 0,
            peer: None,
            transport: Transport::File,
            parse: ParseStatus::Unparsed,
            truncated,
            source: self.source.clone(),
            raw,
            lost_from: None,
            tls_peer: None,
            file: Some(Arc::new(FileOrigin {
                path: tracked.path_bytes.clone(),
                offset: end,
                dev: key.0,
                ino: key.1,
                fingerprint: tracked.fingerprint,
                fingerprint_len: tracked.fingerprint_len,
                pri: self.pri,
                app_name: tracked.app_name.clone(),
                partial,
            })),
        });
    }

    /// Adds `bytes` (part of one line) to the pending line, up to `max-line-bytes`.
    fn extend(&self, tracked: &mut Tracked, bytes: &[u8]) {
        let room = self.max_line.saturating_sub(tracked.pending.len());
        if bytes.len() > room {
            tracked.skipping = true;
        }
        tracked
            .pending
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// Reads `tracked` from its position on, adding complete lines to `batch` until the file's
/// end, `READ_PER_FILE` bytes or the batch limits.
fn read_file(
    key: FileKey,
    tracked: &mut Tracked,
    emit: &Emit<'_>,
    batch: &mut Vec<Record>,
    bytes: &mut usize,
    limits: BatchLimits,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut read = 0;
    while read < READ_PER_FILE && batch.len() < limits.max_records && *bytes < limits.max_bytes {
        let n = tracked.file.read_at(&mut buf, tracked.pos)?;
        if n == 0 {
            break;
        }
        read += n;
        let chunk = &buf[..n];
        let mut at = 0;
        while at < n {
            match memchr::memchr(b'\n', &chunk[at..]) {
                Some(i) => {
                    emit.extend(tracked, &chunk[at..at + i]);
                    let end = tracked.pos + (at + i + 1) as u64;
                    *bytes += tracked.pending.len() + 64;
                    emit.metrics.bytes_read.inc_by(end - tracked.line_start);
                    emit.line(key, tracked, end, false, batch);
                    at += i + 1;
                    if batch.len() >= limits.max_records || *bytes >= limits.max_bytes {
                        break;
                    }
                }
                None => {
                    emit.extend(tracked, &chunk[at..]);
                    at = n;
                }
            }
        }
        tracked.pos += at as u64;
    }
    Ok(())
}
