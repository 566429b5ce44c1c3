//! The read positions a starting node resumes from, recovered from the store itself: every
//! tailed line carries its file's identity and the offset past it (record flag 64), durable
//! in the same frame as the line, so the newest durable file record of each identity is that
//! file's position. No side file.
//!
//! Only the shards the file inputs write to are read (their sources), newest first by
//! receive time: the last hour, then the last day, the last week, then everything, stopping
//! as soon as every file matched now has a position (a file renamed away while the node was
//! down is found the same way, by the identity in its records). So a restart reads little of
//! a large store unless a matched file was never read before.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use crate::record::{FileOrigin, Transport};
use crate::store::{ReadOptions, StoreReader};

/// A file's identity: device and inode (confirmed by the fingerprint in its position).
pub type FileKey = (u64, u64);

/// What the store says about the file inputs' files.
#[derive(Debug, Default)]
pub struct Positions {
    /// The newest durable line of each file identity.
    pub by_key: HashMap<FileKey, Arc<FileOrigin>>,
    /// The receive time of the newest durable line of each path (µs).
    pub newest_by_path: HashMap<bytes::Bytes, i64>,
    /// Every file head stored lines were read under: fingerprint length → fingerprints. A
    /// file whose head is one of them is a copy of a file already read (copytruncate).
    pub heads: HashMap<u32, HashSet<u32>>,
    /// Sources with at least one file record: their inputs are not at their first start.
    pub sources_seen: HashSet<String>,
    /// Records read to find them (all windows together).
    pub records_read: u64,
    /// Records that could not be read (damage; reported by `verify`).
    pub unreadable: u64,
}

/// Look-back windows, newest first; `None` is the whole shard.
const WINDOWS_MICROS: [Option<i64>; 4] = [
    Some(3_600_000_000),
    Some(86_400_000_000),
    Some(7 * 86_400_000_000),
    None,
];

/// Recovers the positions of the file records of `origin` in the shards of `sources`,
/// widening the look-back until every key of `wanted` has one (or the whole shard was read).
pub fn recover(
    dir: &Path,
    origin: &str,
    sources: &HashSet<String>,
    wanted: &HashSet<FileKey>,
    now_micros: i64,
) -> Result<Positions, crate::store::StoreError> {
    let reader = StoreReader::open(dir)?;
    let shards: Vec<_> = reader
        .shards()
        .into_iter()
        .filter(|shard| sources.contains(&shard.source))
        .collect();
    let mut positions = Positions::default();
    for window in WINDOWS_MICROS {
        let options = ReadOptions {
            since_micros: window.map(|w| now_micros.saturating_sub(w)),
            ..ReadOptions::default()
        };
        let mut found = Positions::default();
        for shard in &shards {
            for item in reader.read_shard(shard, &options) {
                let Ok(stored) = item else {
                    found.unreadable += 1;
                    continue;
                };
                found.records_read += 1;
                let record = stored.record;
                if record.transport != Transport::File || &*record.origin != origin {
                    continue;
                }
                let Some(file) = record.file else { continue };
                found.sources_seen.insert(record.source.to_string());
                let newest = found
                    .newest_by_path
                    .entry(file.path.clone())
                    .or_insert(i64::MIN);
                *newest = (*newest).max(record.received_at_micros);
                // Append order within a shard: the later record is the newer position.
                (found.heads.entry(file.fingerprint_len).or_default()).insert(file.fingerprint);
                found.by_key.insert((file.dev, file.ino), file);
            }
        }
        positions.records_read += found.records_read;
        positions.unreadable = found.unreadable;
        positions.by_key = found.by_key;
        positions.sources_seen = found.sources_seen;
        positions.newest_by_path = found.newest_by_path;
        positions.heads = found.heads;
        let complete = wanted.iter().all(|key| positions.by_key.contains_key(key))
            && sources.iter().all(|s| positions.sources_seen.contains(s));
        if complete {
            break;
        }
    }
    Ok(positions)
}
