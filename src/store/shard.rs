//! One shard on the writer side: its directory (created with its `shard.meta` on first use),
//! its active segment, next shard sequence, per-origin high-water marks and sealed segments.
//! Also finds or creates the directory for a new source, resolving hashed-name collisions.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use super::active::ActiveSegment;
use super::fileops::FileOps;
use super::shardname::{encode, encode_meta, read_meta, shard_id, META_FILE};

pub struct Shard {
    pub source: String,
    pub dir: PathBuf,
    pub id: u64,
    pub active: Option<ActiveSegment>,
    pub next_seq: u64,
    pub hwm: HashMap<String, u64>,
    /// Sealed segments' base sequences, ascending.
    pub segments: Vec<u64>,
    /// Retention's cache per sealed segment: (file bytes, newest receive time).
    pub sealed_info: HashMap<u64, (u64, i64)>,
    pub dirty: bool,
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
            dirty: false,
        }
    }

    pub fn note_origin(&mut self, origin: &str, seq: u64) {
        match self.hwm.get_mut(origin) {
            Some(v) => *v = (*v).max(seq),
            None => {
                self.hwm.insert(origin.to_string(), seq);
            }
        }
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
