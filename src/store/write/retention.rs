//! Retention: deletes whole sealed segments (and their indexes) by age of their newest
//! receive time, by bytes per shard and by bytes for the whole store, oldest first. Deletion
//! is `unlink` plus a directory sync: it allocates nothing, so it works on a full disk, and a
//! reader holding the file open keeps reading it. Active segments are never touched.
//!
//! In a cluster node's store, which is also its spool, the local origin's records get a
//! floor: segments holding any are kept from age deletion for `spool_retention`, and kept
//! from all deletion while they hold records no master has acknowledged. The second makes
//! the store exceed its byte limits by at most the unforwarded backlog, which the node bounds
//! with `spool-max-bytes` by holding ingest back.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::fileops::FileOps;
use super::shard::Shard;
use crate::store::format::segment::{index_file_name, segment_file_name};
use crate::store::stats::Counters;

/// Retention limits, each off when absent; also the `[store.retention]` section of the
/// config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetentionConfig {
    /// Delete sealed segments whose newest record was received longer ago than this.
    #[serde(deserialize_with = "crate::timespec::optional_duration")]
    pub max_age: Option<Duration>,
    /// Per shard, delete oldest sealed segments while the shard is larger than this.
    pub shard_max_bytes: Option<u64>,
    /// Delete the oldest sealed segments of any shard while the store is larger than this.
    pub total_max_bytes: Option<u64>,
    /// The store is a cluster node's spool (`cluster.spool-retention`). A sealed segment that
    /// holds records of the local origin is then kept from deletion by age until its newest
    /// record is this old (the byte limits still apply), and one that holds local records
    /// no master has acknowledged yet (`StoreHandle::set_unforwarded_after`) is kept from
    /// every deletion. Not a key of `[store.retention]`: the config hands over
    /// `cluster.spool-retention` here (`config::Config::store_config`).
    #[serde(skip)]
    pub spool_retention: Option<Duration>,
}

/// What retention keeps of the local origin's records (the spool).
struct LocalFloor<'a> {
    origin: &'a str,
    /// Oldest receive time (microseconds) a segment with local records is kept from age
    /// deletion for; `None` when the store is not a spool.
    keep_since: Option<i64>,
    /// Local records numbered above this have not reached a master; `None`: none to keep.
    unforwarded_after: Option<u64>,
}

/// Whether the oldest sealed segment of `shard` holds records of the local origin, and
/// whether it holds any that have not reached a master.
fn oldest_local(shard: &mut Shard, floor: &LocalFloor) -> (bool, bool) {
    if floor.keep_since.is_none() && floor.unforwarded_after.is_none() {
        return (false, false);
    }
    let Some(&base) = shard.segments.first() else {
        return (false, false);
    };
    // Without a footer, the next segment's cumulative mark bounds this one's.
    let mark = shard
        .sealed_info_of(base, floor.origin)
        .local_hwm
        .or_else(|| {
            let next = *shard.segments.get(1)?;
            shard.sealed_info_of(next, floor.origin).local_hwm
        });
    let mark = mark.unwrap_or(u64::MAX);
    let holds = mark > shard.deleted_local_hwm.unwrap_or(0);
    let unforwarded = holds && floor.unforwarded_after.is_some_and(|after| mark > after);
    (holds, unforwarded)
}

fn delete(shard: &mut Shard, pos: usize, ops: &dyn FileOps, counters: &Counters) {
    let base = shard.segments.remove(pos);
    let local_hwm = shard.sealed_info.remove(&base).and_then(|i| i.local_hwm);
    if pos == 0 {
        shard.deleted_local_hwm = local_hwm;
    }
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
/// `local_origin` is this node's origin and `unforwarded_after` the highest of its sequences
/// a master has acknowledged (`None`: nothing to keep for forwarding); both matter only for a
/// spool (`cfg.spool_retention`).
pub fn apply(
    shards: &mut [Shard],
    cfg: &RetentionConfig,
    local_origin: &str,
    unforwarded_after: Option<u64>,
    ops: &dyn FileOps,
    counters: &Counters,
) {
    let mut held = false;
    if *cfg != RetentionConfig::default() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let floor = LocalFloor {
            origin: local_origin,
            keep_since: cfg
                .spool_retention
                .map(|keep| now.saturating_sub(keep.as_micros() as i64)),
            unforwarded_after: cfg.spool_retention.and(unforwarded_after),
        };
        held = enforce(shards, cfg, &floor, now, ops, counters);
    }
    counters
        .retention_held
        .store(u64::from(held), Ordering::Relaxed);
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

/// Deletes what `cfg` allows, oldest first in each shard. Returns whether a limit was left
/// unmet because the segments that would go hold local records no master has yet.
fn enforce(
    shards: &mut [Shard],
    cfg: &RetentionConfig,
    floor: &LocalFloor,
    now: i64,
    ops: &dyn FileOps,
    counters: &Counters,
) -> bool {
    let mut held = false;
    if let Some(age) = cfg.max_age {
        let cutoff = now.saturating_sub(age.as_micros() as i64);
        for shard in shards.iter_mut() {
            while let Some(&base) = shard.segments.first() {
                let newest = shard.sealed_info_of(base, floor.origin).newest;
                if newest >= cutoff {
                    break;
                }
                let (holds_local, unforwarded) = oldest_local(shard, floor);
                held |= unforwarded;
                if unforwarded || (holds_local && floor.keep_since.is_some_and(|t| newest >= t)) {
                    break;
                }
                delete(shard, 0, ops, counters);
            }
        }
    }
    if cfg.shard_max_bytes.is_none() && cfg.total_max_bytes.is_none() {
        return held;
    }
    let active_bytes = |s: &Shard| s.active.as_ref().map_or(0, |a| a.allocated());
    let mut total = 0u64;
    for shard in shards.iter_mut() {
        let mut bytes = active_bytes(shard);
        for i in 0..shard.segments.len() {
            let base = shard.segments[i];
            bytes += shard.sealed_info_of(base, floor.origin).bytes;
        }
        if let Some(limit) = cfg.shard_max_bytes {
            while bytes > limit && !shard.segments.is_empty() {
                if oldest_local(shard, floor).1 {
                    held = true;
                    break;
                }
                let base = shard.segments[0];
                bytes -= shard.sealed_info_of(base, floor.origin).bytes.min(bytes);
                delete(shard, 0, ops, counters);
            }
        }
        total += bytes;
    }
    if let Some(limit) = cfg.total_max_bytes {
        while total > limit {
            // The shard whose oldest sealed segment has the oldest newest-record time, among
            // those whose oldest segment may go.
            let mut oldest: Option<(usize, i64)> = None;
            let mut kept = false;
            for (i, shard) in shards.iter_mut().enumerate() {
                if let Some(&base) = shard.segments.first() {
                    if oldest_local(shard, floor).1 {
                        kept = true;
                        continue;
                    }
                    let t = shard.sealed_info_of(base, floor.origin).newest;
                    if oldest.is_none_or(|(_, o)| t < o) {
                        oldest = Some((i, t));
                    }
                }
            }
            let Some((i, _)) = oldest else {
                // Still over the limit, and all that could go is kept for forwarding.
                held |= kept;
                break;
            };
            let base = shards[i].segments[0];
            total -= shards[i]
                .sealed_info_of(base, floor.origin)
                .bytes
                .min(total);
            delete(&mut shards[i], 0, ops, counters);
        }
    }
    held
}
