//! Forwarding's families in the node's metrics registry: the forwarder's and the forward
//! server's counters ([`ForwarderStats`], [`ServerStats`], read by a collector at scrape
//! time; the forwarding code keeps bumping its own atomics) and the two gauges of this node's
//! spool that its measuring task sets ([`SpoolGauges`]: spool bytes, forward lag). Owns the
//! names and help texts; it counts nothing itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::client::ForwarderStats;
use super::server::ServerStats;

/// Registers the forwarder's and the forward server's counters, read at every scrape.
pub fn register(registry: &mut Registry, forwarder: Arc<ForwarderStats>, server: Arc<ServerStats>) {
    registry.register_collector(Box::new(ForwardCollector { forwarder, server }));
}

#[derive(Debug)]
struct ForwardCollector {
    forwarder: Arc<ForwarderStats>,
    server: Arc<ServerStats>,
}

impl Collector for ForwardCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (forwarder, server) = (&*self.forwarder, &*self.server);
        // Names without `_total`: the encoder appends it to counters.
        let counters: [(&str, &str, &AtomicU64); 18] = [
            (
                "starling_forward_sessions",
                "Forwarding sessions established with a master.",
                &forwarder.sessions,
            ),
            (
                "starling_forward_batches_sent",
                "Batches sent to the master.",
                &forwarder.batches_sent,
            ),
            (
                "starling_forward_batches_acked",
                "Batches the master acknowledged.",
                &forwarder.batches_acked,
            ),
            (
                "starling_forward_records_acked",
                "Records the master acknowledged.",
                &forwarder.records_acked,
            ),
            (
                "starling_forward_connect_failures",
                "Failed connections to the master.",
                &forwarder.connect_failures,
            ),
            (
                "starling_forward_not_master",
                "Handshakes answered with not-master.",
                &forwarder.not_master_answers,
            ),
            (
                "starling_forward_batches_refused",
                "Batches the master refused.",
                &forwarder.batches_refused,
            ),
            (
                "starling_forward_spool_errors",
                "Errors reading the spool.",
                &forwarder.spool_errors,
            ),
            (
                "starling_forward_gap_markers",
                "Gap markers sent: ranges of this node's records lost from the spool before \
                 they were forwarded.",
                &forwarder.gap_markers,
            ),
            (
                "starling_forward_lost_seqs",
                "Sequences of this node declared lost by the gap markers sent.",
                &forwarder.lost_seqs,
            ),
            (
                "starling_forward_renumbered_records",
                "Records of this node appended again under new sequences: the master held \
                 their sequences from an earlier data directory with this node id.",
                &forwarder.renumbered,
            ),
            (
                "starling_forward_unsendable_records",
                "Records of this node the forward protocol cannot carry (a field over its cap, \
                 or larger than a frame), sent to the master as a gap marker instead.",
                &forwarder.unsendable,
            ),
            (
                "starling_forward_in_connections",
                "Forward connections accepted.",
                &server.connections_accepted,
            ),
            (
                "starling_forward_in_records_stored",
                "Forwarded records stored.",
                &server.records_stored,
            ),
            (
                "starling_forward_in_duplicates_dropped",
                "Forwarded records dropped as duplicates (at or below the origin's high-water \
                 mark).",
                &server.duplicates_dropped,
            ),
            (
                "starling_forward_in_batches_refused",
                "Forwarded batches refused.",
                &server.batches_refused,
            ),
            (
                "starling_forward_in_protocol_errors",
                "Bad frames from forwarders.",
                &server.protocol_errors,
            ),
            (
                "starling_forward_in_budget_waits",
                "Forwarded batches that waited for room in the node's byte budget \
                 (syslog.pipeline-max-bytes) before being appended.",
                &server.budget_waits,
            ),
        ];
        for (name, help, value) in counters {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value.load(Ordering::Relaxed)).encode(metric)?;
        }
        Ok(())
    }
}

/// This node's spool as its measuring task last saw it.
#[derive(Debug, Clone, Default)]
pub struct SpoolGauges {
    spool_bytes: Gauge,
    forward_lag: Gauge,
}

impl SpoolGauges {
    /// Registers both gauges in `registry`.
    pub fn register(registry: &mut Registry) -> SpoolGauges {
        let gauges = SpoolGauges::default();
        // `register` appends the help's final period.
        registry.register(
            "starling_forward_lag_records",
            "Records of this node not yet acknowledged by the master (0 while master)",
            gauges.forward_lag.clone(),
        );
        registry.register(
            "starling_spool_bytes",
            "Bytes of the node's spool (its store)",
            gauges.spool_bytes.clone(),
        );
        gauges
    }

    /// A fresh measurement.
    pub fn set(&self, spool_bytes: u64, forward_lag: u64) {
        let int = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.spool_bytes.set(int(spool_bytes));
        self.forward_lag.set(int(forward_lag));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{render, Format};

    #[test]
    fn renders_forward_counters_and_spool_gauges() {
        let mut registry = Registry::default();
        let forwarder = Arc::new(ForwarderStats::default());
        let server = Arc::new(ServerStats::default());
        register(&mut registry, forwarder.clone(), server.clone());
        let gauges = SpoolGauges::register(&mut registry);
        forwarder.renumbered.fetch_add(4, Ordering::Relaxed);
        forwarder.unsendable.fetch_add(2, Ordering::Relaxed);
        server.records_stored.fetch_add(9, Ordering::Relaxed);
        gauges.set(4096, 12);
        let text = render(&registry, Format::Text);
        crate::testutil::assert_has_lines(
            &text,
            &[
                "# TYPE starling_forward_renumbered_records_total counter",
                "starling_forward_renumbered_records_total 4",
                "starling_forward_unsendable_records_total 2",
                "starling_forward_in_records_stored_total 9",
                "starling_forward_sessions_total 0",
                "# TYPE starling_forward_lag_records gauge",
                "starling_forward_lag_records 12",
                "starling_spool_bytes 4096",
            ],
        );
    }
}
