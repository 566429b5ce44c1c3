//! Retention: deletes whole sealed segments (and their indexes) by age of their newest
//! receive time, by bytes per shard and by bytes for the whole store, oldest first. Deletion
//! is `unlink` plus a directory sync: it allocates nothing, so it works on a full disk, and a
//! reader holding the file open keeps reading it. Active segments are never touched.

use std::fs::File;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::fileops::FileOps;
use super::scan::{read_footer, read_header};
use super::segment::{index_file_name, segment_file_name};
use super::shard::Shard;
use super::stats::Counters;
use std::sync::atomic::Ordering;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Delete sealed segments whose newest record was received longer ago than this.
    pub max_age: Option<Duration>,
    /// Per shard, delete oldest sealed segments while the shard is larger than this.
    pub shard_max_bytes: Option<u64>,
    /// Delete the oldest sealed segments of any shard while the store is larger than this.
    pub total_max_bytes: Option<u64>,
}

fn info(shard: &mut Shard, base: u64) -> (u64, i64) {
    if let Some(&i) = shard.sealed_info.get(&base) {
        return i;
    }
    let path = shard.dir.join(segment_file_name(base));
    let Ok(file) = File::open(&path) else {
        return (0, i64::MIN);
    };
    let size = file.metadata().map_or(0, |m| m.len());
    let newest = match read_header(&file) {
        Ok(Ok(h)) => match read_footer(&file, h.nonce) {
            Ok(Some((_, f))) if f.num_records > 0 => Some(f.max_recv),
            _ => None,
        },
        _ => None,
    };
    // A segment without a readable footer ages by its modification time.
    let newest = newest.unwrap_or_else(|| {
        file.metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(i64::MAX, |d| d.as_micros() as i64)
    });
    shard.sealed_info.insert(base, (size, newest));
    (size, newest)
}

fn delete(shard: &mut Shard, pos: usize, ops: &dyn FileOps, counters: &Counters) {
    let base = shard.segments.remove(pos);
    shard.sealed_info.remove(&base);
    let seg = shard.dir.join(segment_file_name(base));
    let size = std::fs::metadata(&seg).map_or(0, |m| m.len());
    match std::fs::remove_file(&seg) {
        Ok(()) => {
            shard.sealed_bytes = shard.sealed_bytes.saturating_sub(size);
            let _ = std::fs::remove_file(shard.dir.join(index_file_name(base)));
            let _ = ops.sync_dir(&shard.dir);
            Counters::add(&counters.segments_deleted, 1);
            tracing::info!(file = %seg.display(), "retention deleted segment");
        }
        Err(e) => {
            tracing::warn!(file = %seg.display(), error = %e, "retention could not delete segment")
        }
    }
}

/// Applies `cfg` to the sealed segments of `shards` and refreshes the size gauges.
pub fn apply(shards: &mut [Shard], cfg: &RetentionConfig, ops: &dyn FileOps, counters: &Counters) {
    if *cfg != RetentionConfig::default() {
        enforce(shards, cfg, ops, counters);
    }
    gauges(shards, counters);
}

/// Refreshes the segment-count and bytes-on-disk gauges.
pub fn gauges(shards: &[Shard], counters: &Counters) {
    let num: usize = shards
        .iter()
        .map(|s| s.segments.len() + usize::from(s.active.is_some()))
        .sum();
    let bytes: u64 = shards
        .iter()
        .map(|s| s.sealed_bytes + s.active.as_ref().map_or(0, |a| a.allocated()))
        .sum();
    counters.num_segments.store(num as u64, Ordering::Relaxed);
    counters.bytes_on_disk.store(bytes, Ordering::Relaxed);
}

fn enforce(shards: &mut [Shard], cfg: &RetentionConfig, ops: &dyn FileOps, counters: &Counters) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    if let Some(age) = cfg.max_age {
        let cutoff = now.saturating_sub(age.as_micros() as i64);
        for shard in shards.iter_mut() {
            while let Some(&base) = shard.segments.first() {
                if info(shard, base).1 >= cutoff {
                    break;
                }
                delete(shard, 0, ops, counters);
            }
        }
    }
    let active_bytes = |s: &Shard| s.active.as_ref().map_or(0, |a| a.allocated());
    let mut total = 0u64;
    for shard in shards.iter_mut() {
        let mut bytes = active_bytes(shard);
        for i in 0..shard.segments.len() {
            let base = shard.segments[i];
            bytes += info(shard, base).0;
        }
        if let Some(limit) = cfg.shard_max_bytes {
            while bytes > limit && !shard.segments.is_empty() {
                let base = shard.segments[0];
                bytes -= info(shard, base).0.min(bytes);
                delete(shard, 0, ops, counters);
            }
        }
        total += bytes;
    }
    if let Some(limit) = cfg.total_max_bytes {
        while total > limit {
            // The shard whose oldest sealed segment has the oldest newest-record time.
            let mut oldest: Option<(usize, i64)> = None;
            for (i, shard) in shards.iter_mut().enumerate() {
                if let Some(&base) = shard.segments.first() {
                    let t = info(shard, base).1;
                    if oldest.is_none_or(|(_, o)| t < o) {
                        oldest = Some((i, t));
                    }
                }
            }
            let Some((i, _)) = oldest else { break };
            let base = shards[i].segments[0];
            total -= info(&mut shards[i], base).0.min(total);
            delete(&mut shards[i], 0, ops, counters);
        }
    }
}
