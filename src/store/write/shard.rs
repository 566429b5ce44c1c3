//! One shard on the writer side: its directory (created with its `shard.meta` on first use),
//! its active segment, next shard sequence, per-origin high-water marks and sealed segments
//! (with what each one's footer says, cached for retention). Also finds or creates the
//! directory for a new source, resolving hashed-name collisions.
//!
//! Holds no policy: retention (which imports this file, never the other way) decides what
//! to delete.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

use super::active::ActiveSegment;
use super::fileops::FileOps;
use crate::store::format::scan::{read_footer, read_header};
use crate::store::format::segment::segment_file_name;
use crate::store::format::shardname::{encode, encode_meta, read_meta, shard_id, META_FILE};

/// What retention needs to know of one sealed segment (cached per segment in `Shard`).
#[derive(Debug, Clone, Copy)]
pub struct SealedInfo {
    /// File bytes.
    pub bytes: u64,
    /// Newest receive time (microseconds).
    pub newest: i64,
    /// The local origin's high-water mark in the shard up to and including this segment
    /// (the footer's cumulative mark); `None` without a readable footer.
    pub local_hwm: Option<u64>,
}

pub struct Shard {
    pub source: String,
    pub dir: PathBuf,
    pub id: u64,
    /// Boxed: most shards of a store with many sources have none, and the table holds one
    /// `Shard` per source on disk.
    pub active: Option<Box<ActiveSegment>>,
    pub next_seq: u64,
    hwm: HashMap<String, u64>,
    /// Sealed segments' base sequences, ascending.
    pub segments: Vec<u64>,
    /// Retention's cache per sealed segment.
    pub sealed_info: HashMap<u64, SealedInfo>,
    /// The local origin's high-water mark in the last segment retention deleted from this
    /// shard (`None`: not known), so it can tell whether the oldest segment left holds any
    /// of the local origin's records.
    pub deleted_local_hwm: Option<u64>,
    /// Bytes of the sealed segments on disk.
    pub sealed_bytes: u64,
    /// Recovery of this shard failed (I/O error): appends to it fail instead of risking
    /// its files.
    pub broken: Option<String>,
    pub dirty: bool,
    /// When a record was last appended (or the shard was loaded): the writer seals an
    /// active segment idle for `idle_shard_seal`, and the least recently used first when
    /// more than `max_open_shards` are open.
    pub last_used: Instant,
    /// Cache of the last origin noted and its highest seq, folded into `hwm` on change, so
    /// a run of records from one origin costs no hashing.
    last_origin: Option<(String, u64)>,
}

impl Shard {
    pub fn new(source: String, dir: PathBuf) -> Shard {
        let id = shard_id(source.as_bytes());
        Shard {
            source,
            dir,
            id,
            active: None,
            next_seq: 0,
            hwm: HashMap::new(),
            segments: Vec::new(),
            sealed_info: HashMap::new(),
            deleted_local_hwm: None,
            sealed_bytes: 0,
            broken: None,
            dirty: false,
            last_used: Instant::now(),
            last_origin: None,
        }
    }

    pub fn note_origin(&mut self, origin: &str, seq: u64) {
        if let Some((last, max)) = self.last_origin.as_mut() {
            if last == origin {
                *max = (*max).max(seq);
                return;
            }
        }
        self.fold_origin();
        self.last_origin = Some((origin.to_string(), seq));
    }

    fn fold_origin(&mut self) {
        if let Some((origin, seq)) = self.last_origin.take() {
            let e = self.hwm.entry(origin).or_insert(0);
            *e = (*e).max(seq);
        }
    }

    /// Per origin, the highest origin_seq written to this shard.
    pub fn hwm(&mut self) -> &HashMap<String, u64> {
        self.fold_origin();
        &self.hwm
    }

    /// Sets `segments` and `sealed_bytes` from the files on disk (after recovery).
    pub fn set_segments(&mut self, segments: Vec<u64>) {
        self.sealed_bytes = segments
            .iter()
            .filter_map(|b| std::fs::metadata(self.dir.join(segment_file_name(*b))).ok())
            .map(|m| m.len())
            .sum();
        self.segments = segments;
        self.sealed_info.clear();
    }

    /// Size, newest receive time and `origin`'s cumulative mark of sealed segment `base`,
    /// read from its footer once and cached.
    pub fn sealed_info_of(&mut self, base: u64, origin: &str) -> SealedInfo {
        if let Some(&i) = self.sealed_info.get(&base) {
            return i;
        }
        let path = self.dir.join(segment_file_name(base));
        let Ok(file) = File::open(&path) else {
            return SealedInfo {
                bytes: 0,
                newest: i64::MIN,
                local_hwm: None,
            };
        };
        let size = file.metadata().map_or(0, |m| m.len());
        let footer = match read_header(&file) {
            Ok(Ok(h)) => match read_footer(&file, h.nonce) {
                Ok(Some((_, f))) => Some(f),
                _ => None,
            },
            _ => None,
        };
        let newest = footer
            .as_ref()
            .filter(|f| f.num_records > 0)
            .map(|f| f.max_recv);
        // A segment without a readable footer ages by its modification time.
        let newest = newest.unwrap_or_else(|| {
            file.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(i64::MAX, |d| d.as_micros() as i64)
        });
        let info = SealedInfo {
            bytes: size,
            newest,
            local_hwm: footer.map(|f| f.hwm.get(origin).copied().unwrap_or(0)),
        };
        self.sealed_info.insert(base, info);
        info
    }

    /// Replaces the per-origin marks (after recovery).
    pub fn set_hwm(&mut self, hwm: HashMap<String, u64>) {
        self.last_origin = None;
        self.hwm = hwm;
    }
}

/// Finds the directory of `source` under `data_dir`, creating it (with a synced `shard.meta`)
/// if needed. A hashed name whose `shard.meta` names another source gets a `~N` suffix.
/// Returns the directory and whether it was created: then the new entries (the directory in
/// `data_dir`, `shard.meta` in it) are not durable until the caller syncs both directories,
/// which the writer does once per group commit for every shard created since the last one.
pub fn create_shard_dir(
    data_dir: &Path,
    source: &str,
    ops: &dyn FileOps,
) -> io::Result<(PathBuf, bool)> {
    let base = encode(source.as_bytes());
    for n in 1..1000u32 {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}~{n}")
        };
        let dir = data_dir.join(&name);
        match read_meta(&dir) {
            Ok(Ok(existing)) if existing == source.as_bytes() => return Ok((dir, false)),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                ops.create_dir(&dir)?;
                let tmp = dir.join("shard.meta.tmp");
                ops.write_file(&tmp, &encode_meta(source.as_bytes()))?;
                let f = std::fs::File::open(&tmp)?;
                ops.sync_data(&f)?;
                ops.rename(&tmp, &dir.join(META_FILE))?;
                return Ok((dir, true));
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "no free shard directory for source {source:?}"
    )))
}
