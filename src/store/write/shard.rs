//! One shard on the writer side: its directory (created with its `shard.meta` on first use),
//! its active segment, next shard sequence, per-origin high-water marks and sealed segments.
//! Also finds or creates the directory for a new source, resolving hashed-name collisions.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use super::active::ActiveSegment;
use super::fileops::FileOps;
use crate::store::format::shardname::{encode, encode_meta, read_meta, shard_id, META_FILE};

pub struct Shard {
    pub source: String,
    pub dir: PathBuf,
    pub id: u64,
    pub active: Option<ActiveSegment>,
    pub next_seq: u64,
    hwm: HashMap<String, u64>,
    /// Sealed segments' base sequences, ascending.
    pub segments: Vec<u64>,
    /// Retention's cache per sealed segment.
    pub sealed_info: HashMap<u64, super::retention::SealedInfo>,
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
            .filter_map(|b| {
                std::fs::metadata(
                    self.dir
                        .join(crate::store::format::segment::segment_file_name(*b)),
                )
                .ok()
            })
            .map(|m| m.len())
            .sum();
        self.segments = segments;
        self.sealed_info.clear();
    }

    /// Replaces the per-origin marks (after recovery).
    pub fn set_hwm(&mut self, hwm: HashMap<String, u64>) {
        self.last_origin = None;
        self.hwm = hwm;
    }
}

/// Finds the directory of `source` under `data_dir`, creating it (with a synced `shard.meta`)
/// if needed. A hashed name whose `shard.meta` names another source gets a `~N` suffix.
pub fn create_shard_dir(data_dir: &Path, source: &str, ops: &dyn FileOps) -> io::Result<PathBuf> {
    let base = encode(source.as_bytes());
    for n in 1..1000u32 {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}~{n}")
        };
        let dir = data_dir.join(&name);
        match read_meta(&dir) {
            Ok(Ok(existing)) if existing == source.as_bytes() => return Ok(dir),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&dir)?;
                let tmp = dir.join("shard.meta.tmp");
                std::fs::write(&tmp, encode_meta(source.as_bytes()))?;
                let f = std::fs::File::open(&tmp)?;
                ops.sync_data(&f)?;
                std::fs::rename(&tmp, dir.join(META_FILE))?;
                ops.sync_dir(&dir)?;
                ops.sync_dir(data_dir)?;
                return Ok(dir);
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "no free shard directory for source {source:?}"
    )))
}
