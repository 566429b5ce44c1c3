//! The node's metrics: how its one `prometheus_client` [`Registry`] is rendered for a scraper,
//! and the ingest pipeline's own counters ([`PipelineMetrics`]).
//!
//! Every subsystem registers its own families next to its code (`listener::metrics`,
//! `store::metrics`, `forward::metrics`, `cluster::metrics`, the node's spool gate), each
//! family exactly once. A Prometheus server asks for OpenMetrics and gets it; any other client
//! (curl, `promtool check metrics`) gets the classic text format 0.0.4 (both encoders are the
//! library's). Hot-path counting is a relaxed atomic add on a handle fetched once. This
//! module does no I/O and imports nothing of ours but `record`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::record::Transport;

/// The exposition formats `/metrics` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text: what Prometheus servers ask for.
    OpenMetrics,
    /// Prometheus text format 0.0.4: for clients that do not ask for OpenMetrics.
    Text,
}

impl Format {
    /// OpenMetrics when the request's `Accept` header lists it (with a non-zero weight), else
    /// the classic text format.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let wants_openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut parts = range.split(';').map(str::trim);
                parts.next() == Some("application/openmetrics-text")
                    && !parts.any(|parameter| {
                        parameter
                            .strip_prefix("q=")
                            .and_then(|q| q.parse::<f64>().ok())
                            .is_some_and(|q| q <= 0.0)
                    })
            })
        });
        if wants_openmetrics {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// Every family in `registry`, in `format`.
pub fn render(registry: &Registry, format: Format) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let encoded = match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, registry),
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, registry),
    };
    // Writing into a String cannot fail, and our collectors only fail on a failed write.
    if let Err(error) = encoded {
        tracing::error!(%error, "cannot encode the metrics");
    }
    out
}

/// Why records did not reach the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The pipeline had no room, in its bounded channel or its byte budget (UDP cannot wait).
    QueueFull,
    /// The pipeline was gone (shutting down).
    PipelineClosed,
    /// Datagrams still in a UDP socket's buffer when the shutdown drain's deadline passed,
    /// counted without being read.
    ShutdownUnread,
    /// The store refused the batch (logged with the reason).
    StoreError,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::PipelineClosed => "pipeline_closed",
            DropReason::ShutdownUnread => "shutdown_unread",
            DropReason::StoreError => "store_error",
        }
    }
}

/// Why records the store had accepted (a ticket was issued) did not become durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// A write, create or rename failed.
    Io,
    /// `fdatasync` failed; the segment was poisoned and recovered.
    SyncFailed,
    /// The store closed (or its writer died) before the commit.
    Closed,
    /// The store found the batch invalid (a gap, a bad gap marker, a record too large).
    Rejected,
}

impl FailReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::Io => "io_error",
            FailReason::SyncFailed => "sync_failed",
            FailReason::Closed => "store_closed",
            FailReason::Rejected => "rejected",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailLabels {
    transport: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    listener: String,
    transport: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabels {
    transport: &'static str,
}

/// What the pipeline counts: records stored by transport, records dropped on the way
/// (listeners count theirs through [`PipelineMetrics::dropped`]), records whose durability
/// ticket failed, and journal entries an uploader sent again. Cheap to clone (every counter
/// is a shared atomic).
#[derive(Debug, Clone)]
pub struct PipelineMetrics {
    stored_udp: Counter,
    stored_tcp: Counter,
    stored_journal: Counter,
    stored_file: Counter,
    dropped: Family<DropLabels, Counter>,
    failed: Family<FailLabels, Counter>,
    store_refused: Counter,
    journal_duplicates: Counter,
}

impl PipelineMetrics {
    /// Registers the pipeline's families (each once) in `registry`.
    pub fn register(registry: &mut Registry) -> PipelineMetrics {
        let stored = Family::<TransportLabels, Counter>::default();
        let dropped = Family::<DropLabels, Counter>::default();
        let failed = Family::<FailLabels, Counter>::default();
        let journal_duplicates = Counter::default();
        // `register` appends the final period to the help text.
        registry.register(
            "starling_stored_messages",
            "Records that became durable in the store, by transport they arrived on",
            stored.clone(),
        );
        registry.register(
            "starling_pipeline_dropped_messages",
            "Messages read by a listener and dropped before the pipeline, by reason",
            dropped.clone(),
        );
        registry.register(
            "starling_store_failed_records",
            "Records the store accepted that did not become durable (their commit failed), \
             by transport and reason",
            failed.clone(),
        );
        registry.register(
            "starling_journal_duplicates",
            "Journal entries an uploader sent again (a retry) and that were not stored twice",
            journal_duplicates.clone(),
        );
        let stored_by = |transport: Transport| {
            stored
                .get_or_create(&TransportLabels {
                    transport: transport.as_str(),
                })
                .clone()
        };
        let store_refused = dropped
            .get_or_create(&DropLabels {
                listener: "store".to_owned(),
                transport: "any",
                reason: DropReason::StoreError.as_str(),
            })
            .clone();
        PipelineMetrics {
            stored_udp: stored_by(Transport::Udp),
            stored_tcp: stored_by(Transport::Tcp),
            stored_journal: stored_by(Transport::Journal),
            stored_file: stored_by(Transport::File),
            dropped,
            failed,
            store_refused,
            journal_duplicates,
        }
    }

    /// The drop counter of one listener and reason (fetch once, count often).
    pub fn dropped(&self, listener: &str, transport: Transport, reason: DropReason) -> Counter {
        self.dropped
            .get_or_create(&DropLabels {
                listener: listener.to_owned(),
                transport: transport.as_str(),
                reason: reason.as_str(),
            })
            .clone()
    }

    /// Counts records that became durable in the store.
    pub fn records_stored(&self, transport: Transport, num_records: u64) {
        self.stored(transport).inc_by(num_records);
    }

    pub fn num_stored(&self, transport: Transport) -> u64 {
        self.stored(transport).get()
    }

    fn stored(&self, transport: Transport) -> &Counter {
        match transport {
            Transport::Udp => &self.stored_udp,
            Transport::Tcp => &self.stored_tcp,
            Transport::Journal => &self.stored_journal,
            Transport::File => &self.stored_file,
        }
    }

    /// Counts records whose durability ticket failed (the caller logs why).
    pub fn records_failed(&self, transport: Transport, reason: FailReason, num_records: u64) {
        self.failed
            .get_or_create(&FailLabels {
                transport: transport.as_str(),
                reason: reason.as_str(),
            })
            .inc_by(num_records);
    }

    /// Records whose durability ticket failed, of one transport and reason.
    pub fn num_failed(&self, transport: Transport, reason: FailReason) -> u64 {
        self.failed
            .get_or_create(&FailLabels {
                transport: transport.as_str(),
                reason: reason.as_str(),
            })
            .get()
    }

    /// Counts records the store refused to append (the caller logs why).
    pub fn store_refused(&self, num_records: u64) {
        self.store_refused.inc_by(num_records);
    }

    /// Counts journal entries recognised as already stored (an uploader's retry).
    pub fn journal_duplicates(&self, num_entries: u64) {
        self.journal_duplicates.inc_by(num_entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_counters_render_once_per_family_in_both_formats() {
        let mut registry = Registry::default();
        let metrics = PipelineMetrics::register(&mut registry);
        metrics.records_stored(Transport::Tcp, 3);
        metrics.store_refused(2);
        metrics.journal_duplicates(1);
        metrics.records_failed(Transport::Journal, FailReason::SyncFailed, 4);
        metrics
            .dropped("udp:0.0.0.0:5514", Transport::Udp, DropReason::QueueFull)
            .inc_by(7);
        assert_eq!(metrics.num_stored(Transport::Tcp), 3);

        let openmetrics = render(&registry, Format::OpenMetrics);
        let text = render(&registry, Format::Text);
        let lines = [
            "starling_stored_messages_total{transport=\"tcp\"} 3",
            "starling_stored_messages_total{transport=\"journal\"} 0",
            "starling_pipeline_dropped_messages_total{listener=\"udp:0.0.0.0:5514\",transport=\"udp\",reason=\"queue_full\"} 7",
            "starling_pipeline_dropped_messages_total{listener=\"store\",transport=\"any\",reason=\"store_error\"} 2",
            "starling_journal_duplicates_total 1",
            "starling_store_failed_records_total{transport=\"journal\",reason=\"sync_failed\"} 4",
        ];
        crate::testutil::assert_has_lines(&openmetrics, &lines);
        crate::testutil::assert_has_lines(&text, &lines);
        assert!(openmetrics.contains("# TYPE starling_stored_messages counter\n"));
        assert!(openmetrics.ends_with("# EOF\n"));
        assert!(text.contains(
            "# HELP starling_stored_messages_total Records that became durable in the store, \
             by transport they arrived on.\n# TYPE starling_stored_messages_total counter\n"
        ));
        assert!(!text.contains("# EOF"));
        for rendered in [&openmetrics, &text] {
            assert_eq!(
                rendered
                    .matches("# TYPE starling_pipeline_dropped_messages")
                    .count(),
                1,
                "{rendered}"
            );
        }
    }

    #[test]
    fn openmetrics_only_for_clients_that_ask_for_it() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; q=0, text/plain")),
            Format::Text
        );
    }
}
