//! Store counters for `/metrics`: updated by the writer thread with relaxed atomics, read as a
//! `StoreStats` snapshot (`store::metrics` exposes it). No logic beyond counting.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (µs) of the commit latency histogram's buckets; one more bucket holds the
/// commits slower than the last bound.
pub const COMMIT_LATENCY_BOUNDS_MICROS: [u64; 12] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
];
/// Buckets of the commit latency histogram: one per bound plus the overflow.
pub const COMMIT_LATENCY_BUCKETS: usize = COMMIT_LATENCY_BOUNDS_MICROS.len() + 1;

#[derive(Debug, Default)]
pub struct Counters {
    pub appended_records: AtomicU64,
    pub appended_bytes: AtomicU64,
    pub commits: AtomicU64,
    pub commit_micros_sum: AtomicU64,
    pub commit_micros_max: AtomicU64,
    /// Commits per latency bucket (not cumulative), see `COMMIT_LATENCY_BOUNDS_MICROS`.
    pub commit_micros_buckets: [AtomicU64; COMMIT_LATENCY_BUCKETS],
    pub duplicates_dropped: AtomicU64,
    pub gaps_refused: AtomicU64,
    pub gap_markers: AtomicU64,
    pub lost_seqs: AtomicU64,
    pub write_errors: AtomicU64,
    pub sync_errors: AtomicU64,
    pub disk_full_errors: AtomicU64,
    pub segments_created: AtomicU64,
    pub segments_sealed: AtomicU64,
    pub segments_deleted: AtomicU64,
    pub num_segments: AtomicU64,
    pub num_shards: AtomicU64,
    pub bytes_on_disk: AtomicU64,
    pub disk_full: AtomicU64,
    pub retention_held: AtomicU64,
    pub damaged_shard_metas: AtomicU64,
}

/// A snapshot of the store's counters (monotone unless noted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub appended_records: u64,
    pub appended_bytes: u64,
    pub commits: u64,
    pub commit_latency_micros_sum: u64,
    pub commit_latency_micros_max: u64,
    /// Commits per latency bucket (not cumulative): bucket `i` holds the commits slower than
    /// bound `i - 1` and at most bound `i` of `COMMIT_LATENCY_BOUNDS_MICROS`; the last one
    /// the commits slower than every bound.
    pub commit_latency_buckets: [u64; COMMIT_LATENCY_BUCKETS],
    pub duplicates_dropped: u64,
    pub gaps_refused: u64,
    /// Gap markers stored: ranges of an origin's sequences declared lost before forwarding.
    pub gap_markers: u64,
    /// Sequences those gap markers declare lost.
    pub lost_seqs: u64,
    pub write_errors: u64,
    pub sync_errors: u64,
    pub disk_full_errors: u64,
    pub segments_created: u64,
    pub segments_sealed: u64,
    pub segments_deleted: u64,
    /// Gauge: segment files in the store.
    pub num_segments: u64,
    /// Gauge: shards in the store.
    pub num_shards: u64,
    /// Gauge: bytes of segment files (active segments count their preallocation).
    pub bytes_on_disk: u64,
    /// Gauge: the writer is waiting for disk space.
    pub disk_full: bool,
    /// Gauge: the last retention run left a limit unmet because the segments that would go
    /// hold this node's records that no master has acknowledged yet.
    pub retention_held: bool,
    /// `shard.meta` files found missing or not verifying at open (rebuilt or fenced).
    pub damaged_shard_metas: u64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// A group commit that succeeded and took `micros`.
    pub fn committed(&self, micros: u64) {
        Counters::add(&self.commits, 1);
        Counters::add(&self.commit_micros_sum, micros);
        self.commit_micros_max.fetch_max(micros, Ordering::Relaxed);
        let bucket = COMMIT_LATENCY_BOUNDS_MICROS
            .iter()
            .position(|bound| micros <= *bound)
            .unwrap_or(COMMIT_LATENCY_BOUNDS_MICROS.len());
        Counters::add(&self.commit_micros_buckets[bucket], 1);
    }

    pub fn snapshot(&self) -> StoreStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StoreStats {
            appended_records: g(&self.appended_records),
            appended_bytes: g(&self.appended_bytes),
            commits: g(&self.commits),
            commit_latency_micros_sum: g(&self.commit_micros_sum),
            commit_latency_micros_max: g(&self.commit_micros_max),
            commit_latency_buckets: std::array::from_fn(|i| g(&self.commit_micros_buckets[i])),
            duplicates_dropped: g(&self.duplicates_dropped),
            gaps_refused: g(&self.gaps_refused),
            gap_markers: g(&self.gap_markers),
            lost_seqs: g(&self.lost_seqs),
            write_errors: g(&self.write_errors),
            sync_errors: g(&self.sync_errors),
            disk_full_errors: g(&self.disk_full_errors),
            segments_created: g(&self.segments_created),
            segments_sealed: g(&self.segments_sealed),
            segments_deleted: g(&self.segments_deleted),
            num_segments: g(&self.num_segments),
            num_shards: g(&self.num_shards),
            bytes_on_disk: g(&self.bytes_on_disk),
            disk_full: g(&self.disk_full) != 0,
            retention_held: g(&self.retention_held) != 0,
            damaged_shard_metas: g(&self.damaged_shard_metas),
        }
    }
}
