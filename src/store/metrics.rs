//! The store's families in the node's metrics registry: a collector that reads a
//! [`StoreStats`] snapshot (`StoreHandle::stats`, published by the writer thread) at scrape
//! time, so the writer only ever does relaxed atomic adds. Owns the store's metric names,
//! help texts and the commit latency histogram's shape; it never touches the store's files.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::stats::COMMIT_LATENCY_BOUNDS_MICROS;
use super::{StoreHandle, StoreStats};

/// Registers the store's families, read from `store` at every scrape.
pub fn register(registry: &mut Registry, store: StoreHandle) {
    registry.register_collector(Box::new(StoreCollector { store }));
}

struct StoreCollector {
    store: StoreHandle,
}

impl std::fmt::Debug for StoreCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCollector").finish_non_exhaustive()
    }
}

impl Collector for StoreCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_stats(&self.store.stats(), encoder)
    }
}

/// Counter families: name without `_total` (the encoder appends it), help, value.
fn counters(stats: &StoreStats) -> [(&'static str, &'static str, u64); 12] {
    [
        (
            "starling_store_appended_records",
            "Records appended to segments.",
            stats.appended_records,
        ),
        (
            "starling_store_appended_bytes",
            "Bytes of records appended.",
            stats.appended_bytes,
        ),
        (
            "starling_store_commits",
            "Group commits (fdatasync) that succeeded.",
            stats.commits,
        ),
        (
            "starling_store_duplicates_dropped",
            "Forwarded records at or below their origin's high-water mark.",
            stats.duplicates_dropped,
        ),
        (
            "starling_store_gaps_refused",
            "Forwarded batches refused for a sequence gap.",
            stats.gaps_refused,
        ),
        (
            "starling_store_gap_markers",
            "Gap markers stored: ranges of an origin's sequences lost before they were forwarded.",
            stats.gap_markers,
        ),
        (
            "starling_store_lost_seqs",
            "Origin sequences that stored gap markers declare lost.",
            stats.lost_seqs,
        ),
        (
            "starling_store_segments_created",
            "Segments created.",
            stats.segments_created,
        ),
        (
            "starling_store_segments_sealed",
            "Segments sealed.",
            stats.segments_sealed,
        ),
        (
            "starling_store_segments_deleted",
            "Segments deleted by retention.",
            stats.segments_deleted,
        ),
        (
            "starling_store_damaged_shard_metas",
            "Shard directories whose shard.meta was missing or did not verify at open \
             (rebuilt from the directory name, or fenced); see `starling verify`.",
            stats.damaged_shard_metas,
        ),
        (
            "starling_store_errors",
            "Store errors by kind.",
            0, // encoded per kind below
        ),
    ]
}

fn gauges(stats: &StoreStats) -> [(&'static str, &'static str, i64); 5] {
    let int = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    [
        (
            "starling_store_retention_held",
            "1 while retention keeps segments over its limits because they hold this node's \
             records that no master has acknowledged yet.",
            i64::from(stats.retention_held),
        ),
        (
            "starling_store_segments",
            "Segment files in the store.",
            int(stats.num_segments),
        ),
        (
            "starling_store_shards",
            "Shards in the store.",
            int(stats.num_shards),
        ),
        (
            "starling_store_bytes",
            "Bytes of segment files.",
            int(stats.bytes_on_disk),
        ),
        (
            "starling_store_disk_full",
            "1 while the writer waits for disk space.",
            i64::from(stats.disk_full),
        ),
    ]
}

fn encode_stats(stats: &StoreStats, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
    for (name, help, value) in counters(stats) {
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        if name == "starling_store_errors" {
            for (kind, value) in [
                ("write", stats.write_errors),
                ("sync", stats.sync_errors),
                ("disk_full", stats.disk_full_errors),
            ] {
                ConstCounter::new(value).encode(metric.encode_family(&[("kind", kind)])?)?;
            }
        } else {
            ConstCounter::new(value).encode(metric)?;
        }
    }
    // A histogram, so `_sum` (the old counter's series) keeps its name and gains `_count`
    // and `_bucket`; the longest commit stays a gauge of its own.
    let buckets: Vec<(f64, u64)> = COMMIT_LATENCY_BOUNDS_MICROS
        .iter()
        .map(|bound| *bound as f64 / 1e6)
        .chain([f64::INFINITY])
        .zip(stats.commit_latency_buckets)
        .collect();
    encoder
        .encode_descriptor(
            "starling_store_commit_latency_seconds",
            "Time spent in group commits.",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(
            stats.commit_latency_micros_sum as f64 / 1e6,
            stats.commits,
            &buckets,
            None,
        )?;
    let metric = encoder.encode_descriptor(
        "starling_store_commit_latency_seconds_max",
        "Longest group commit so far.",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(stats.commit_latency_micros_max as f64 / 1e6).encode(metric)?;
    for (name, help, value) in gauges(stats) {
        let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        ConstGauge::new(value).encode(metric)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_errors_by_kind_and_the_latency_histogram() {
        let mut stats = StoreStats {
            appended_records: 7,
            commits: 3,
            commit_latency_micros_sum: 1_500,
            commit_latency_micros_max: 1_000,
            sync_errors: 2,
            disk_full: true,
            num_segments: 4,
            ..StoreStats::default()
        };
        stats.commit_latency_buckets[0] = 2; // two commits of at most 250 µs
        stats.commit_latency_buckets[2] = 1; // one of at most 1 ms
        let mut text = String::new();
        prometheus_client::encoding::text::encode_registry(&mut text, &{
            let mut registry = Registry::default();
            registry.register_collector(Box::new(Snapshot(stats)));
            registry
        })
        .unwrap();
        crate::testutil::assert_has_lines(
            &text,
            &[
                "# TYPE starling_store_appended_records counter",
                "starling_store_appended_records_total 7",
                "starling_store_commits_total 3",
                "starling_store_errors_total{kind=\"sync\"} 2",
                "starling_store_errors_total{kind=\"write\"} 0",
                "# TYPE starling_store_commit_latency_seconds histogram",
                "starling_store_commit_latency_seconds_sum 0.0015",
                "starling_store_commit_latency_seconds_count 3",
                "starling_store_commit_latency_seconds_bucket{le=\"0.00025\"} 2",
                "starling_store_commit_latency_seconds_bucket{le=\"0.0005\"} 2",
                "starling_store_commit_latency_seconds_bucket{le=\"0.001\"} 3",
                "starling_store_commit_latency_seconds_bucket{le=\"+Inf\"} 3",
                "# TYPE starling_store_commit_latency_seconds_max gauge",
                "starling_store_commit_latency_seconds_max 0.001",
                "starling_store_disk_full 1",
                "starling_store_segments 4",
            ],
        );
        assert_eq!(text.matches("# TYPE starling_store_errors ").count(), 1);
    }

    #[derive(Debug)]
    struct Snapshot(StoreStats);

    impl Collector for Snapshot {
        fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            encode_stats(&self.0, encoder)
        }
    }
}
