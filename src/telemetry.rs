//! Metrics of the ingest path and their Prometheus text rendering.
//!
//! Owns the counters (plain atomics, cheap enough for the hot path) and one named event
//! method per thing that happens, which both bumps its counter and logs (nothing above DEBUG
//! per message; connection-level events at INFO). Other parts (the store, the cluster) hand
//! their own numbers in as [`ExternalMetric`]s at render time. This module does no I/O and
//! imports nothing of ours but `record`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::record::Transport;

/// Why records that a listener read did not reach the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The bounded pipeline channel was full (UDP cannot wait).
    QueueFull,
    /// The pipeline was gone (shutting down).
    PipelineClosed,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::PipelineClosed => "pipeline_closed",
        }
    }
}

/// The registry: one [`ListenerMetrics`] per listener, plus node-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    listeners: Mutex<Vec<Arc<ListenerMetrics>>>,
    stored_udp: AtomicU64,
    stored_tcp: AtomicU64,
    stored_journal: AtomicU64,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// Registers (or returns the already registered) metrics of the listener `name`.
    pub fn listener(&self, name: &str, transport: Transport) -> Arc<ListenerMetrics> {
        let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = listeners
            .iter()
            .find(|l| l.name == name && l.transport == transport)
        {
            return Arc::clone(existing);
        }
        let metrics = Arc::new(ListenerMetrics::new(name, transport));
        listeners.push(Arc::clone(&metrics));
        metrics
    }

    /// Counts records that became durable in the store.
    pub fn records_stored(&self, transport: Transport, num_records: u64) {
        self.stored_counter(transport)
            .fetch_add(num_records, Ordering::Relaxed);
    }

    pub fn num_stored(&self, transport: Transport) -> u64 {
        self.stored_counter(transport).load(Ordering::Relaxed)
    }

    fn stored_counter(&self, transport: Transport) -> &AtomicU64 {
        match transport {
            Transport::Udp => &self.stored_udp,
            Transport::Tcp => &self.stored_tcp,
            Transport::Journal => &self.stored_journal,
        }
    }

    /// Prometheus text exposition of every metric, followed by `extra`.
    pub fn render(&self, extra: &[ExternalMetric]) -> String {
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out = String::with_capacity(4096);
        for family in LISTENER_FAMILIES {
            write_header(&mut out, family.name, family.help, family.kind);
            for listener in listeners.iter().filter(|l| family.applies_to(l.transport)) {
                let labels = [
                    ("listener", listener.name.as_str()),
                    ("transport", listener.transport.as_str()),
                ];
                write_sample(&mut out, family.name, &labels, (family.value)(listener));
            }
        }
        write_header(
            &mut out,
            "starling_pipeline_dropped_messages_total",
            "Messages read by a listener and dropped before the pipeline, by reason.",
            MetricKind::Counter,
        );
        for listener in &listeners {
            for (reason, counter) in [
                (DropReason::QueueFull, &listener.dropped_queue_full),
                (
                    DropReason::PipelineClosed,
                    &listener.dropped_pipeline_closed,
                ),
            ] {
                let labels = [
                    ("listener", listener.name.as_str()),
                    ("transport", listener.transport.as_str()),
                    ("reason", reason.as_str()),
                ];
                let value = counter.load(Ordering::Relaxed) as f64;
                write_sample(
                    &mut out,
                    "starling_pipeline_dropped_messages_total",
                    &labels,
                    value,
                );
            }
        }
        write_header(
            &mut out,
            "starling_stored_messages_total",
            "Records that became durable in the store, by transport they arrived on.",
            MetricKind::Counter,
        );
        for transport in [Transport::Udp, Transport::Tcp, Transport::Journal] {
            let value = self.num_stored(transport) as f64;
            write_sample(
                &mut out,
                "starling_stored_messages_total",
                &[("transport", transport.as_str())],
                value,
            );
        }
        let mut previous_name: Option<&str> = None;
        for metric in extra {
            if previous_name != Some(metric.name.as_str()) {
                write_header(&mut out, &metric.name, &metric.help, metric.kind);
                previous_name = Some(&metric.name);
            }
            let labels: Vec<(&str, &str)> = metric
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            write_sample(&mut out, &metric.name, &labels, metric.value);
        }
        out
    }
}

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

impl MetricKind {
    fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// A sample owned by another part of the node (store stats, cluster state), rendered after
/// the ingest metrics. Samples of one metric must be adjacent; the first carries the help.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalMetric {
    pub name: String,
    pub help: String,
    pub kind: MetricKind,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl ExternalMetric {
    pub fn new(name: &str, help: &str, kind: MetricKind, value: f64) -> ExternalMetric {
        ExternalMetric {
            name: name.to_owned(),
            help: help.to_owned(),
            kind,
            labels: Vec::new(),
            value,
        }
    }

    pub fn with_label(mut self, key: &str, value: &str) -> ExternalMetric {
        self.labels.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// Counters of one listener (one bound address and transport).
#[derive(Debug)]
pub struct ListenerMetrics {
    pub name: String,
    pub transport: Transport,
    received_messages: AtomicU64,
    received_bytes: AtomicU64,
    unparsed_messages: AtomicU64,
    truncated_messages: AtomicU64,
    framing_errors: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_pipeline_closed: AtomicU64,
    kernel_drops: AtomicU64,
    receive_errors: AtomicU64,
    connections_accepted: AtomicU64,
    connections_refused: AtomicU64,
    connections_open: AtomicI64,
    idle_timeouts: AtomicU64,
}

/// One metric family rendered per listener.
struct ListenerFamily {
    name: &'static str,
    help: &'static str,
    kind: MetricKind,
    /// `None`: every transport.
    transport: Option<Transport>,
    value: fn(&ListenerMetrics) -> f64,
}

impl ListenerFamily {
    fn applies_to(&self, transport: Transport) -> bool {
        self.transport.is_none_or(|t| t == transport)
    }
}

fn load(counter: &AtomicU64) -> f64 {
    counter.load(Ordering::Relaxed) as f64
}

const LISTENER_FAMILIES: &[ListenerFamily] = &[
    ListenerFamily {
        name: "starling_received_messages_total",
        help: "Messages received (after framing).",
        kind: MetricKind::Counter,
        transport: None,
        value: |l| load(&l.received_messages),
    },
    ListenerFamily {
        name: "starling_received_bytes_total",
        help: "Bytes of the messages received (without framing).",
        kind: MetricKind::Counter,
        transport: None,
        value: |l| load(&l.received_bytes),
    },
    ListenerFamily {
        name: "starling_unparsed_messages_total",
        help: "Messages that no syslog grammar accepted, stored raw as unparsed.",
        kind: MetricKind::Counter,
        transport: None,
        value: |l| load(&l.unparsed_messages),
    },
    ListenerFamily {
        name: "starling_truncated_messages_total",
        help: "Messages longer than the maximum, cut to it and flagged.",
        kind: MetricKind::Counter,
        transport: None,
        value: |l| load(&l.truncated_messages),
    },
    ListenerFamily {
        name: "starling_framing_errors_total",
        help: "TCP connections closed because their stream could not be framed.",
        kind: MetricKind::Counter,
        transport: Some(Transport::Tcp),
        value: |l| load(&l.framing_errors),
    },
    ListenerFamily {
        name: "starling_receive_errors_total",
        help: "Socket read errors (the TCP connection is closed; UDP keeps reading).",
        kind: MetricKind::Counter,
        transport: None,
        value: |l| load(&l.receive_errors),
    },
    ListenerFamily {
        name: "starling_udp_kernel_drops_total",
        help: "Datagrams the kernel dropped on the listener's sockets (receive buffer full).",
        kind: MetricKind::Counter,
        transport: Some(Transport::Udp),
        value: |l| load(&l.kernel_drops),
    },
    ListenerFamily {
        name: "starling_tcp_connections_accepted_total",
        help: "TCP connections accepted.",
        kind: MetricKind::Counter,
        transport: Some(Transport::Tcp),
        value: |l| load(&l.connections_accepted),
    },
    ListenerFamily {
        name: "starling_tcp_connections_refused_total",
        help: "TCP connections closed at once because the connection cap was reached.",
        kind: MetricKind::Counter,
        transport: Some(Transport::Tcp),
        value: |l| load(&l.connections_refused),
    },
    ListenerFamily {
        name: "starling_tcp_connections_open",
        help: "TCP connections open now.",
        kind: MetricKind::Gauge,
        transport: Some(Transport::Tcp),
        value: |l| l.connections_open.load(Ordering::Relaxed) as f64,
    },
    ListenerFamily {
        name: "starling_tcp_idle_timeouts_total",
        help: "TCP connections closed after the idle timeout.",
        kind: MetricKind::Counter,
        transport: Some(Transport::Tcp),
        value: |l| load(&l.idle_timeouts),
    },
];

impl ListenerMetrics {
    pub fn new(name: &str, transport: Transport) -> ListenerMetrics {
        ListenerMetrics {
            name: name.to_owned(),
            transport,
            received_messages: AtomicU64::new(0),
            received_bytes: AtomicU64::new(0),
            unparsed_messages: AtomicU64::new(0),
            truncated_messages: AtomicU64::new(0),
            framing_errors: AtomicU64::new(0),
            dropped_queue_full: AtomicU64::new(0),
            dropped_pipeline_closed: AtomicU64::new(0),
            kernel_drops: AtomicU64::new(0),
            receive_errors: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            connections_open: AtomicI64::new(0),
            idle_timeouts: AtomicU64::new(0),
        }
    }

    /// A batch of messages was received (counted per batch to keep the hot path cheap).
    pub fn messages_received(&self, num_messages: u64, num_bytes: u64) {
        self.received_messages
            .fetch_add(num_messages, Ordering::Relaxed);
        self.received_bytes.fetch_add(num_bytes, Ordering::Relaxed);
    }

    pub fn message_unparsed(&self, peer: Option<SocketAddr>, len: usize) {
        self.unparsed_messages.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(listener = %self.name, ?peer, len, "message stored unparsed");
    }

    pub fn message_truncated(&self, peer: Option<SocketAddr>, max_message_bytes: usize) {
        self.truncated_messages.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(listener = %self.name, ?peer, max_message_bytes, "message truncated");
    }

    pub fn framing_error(&self, peer: SocketAddr, error: &dyn std::fmt::Display) {
        self.framing_errors.fetch_add(1, Ordering::Relaxed);
        tracing::info!(listener = %self.name, %peer, %error, "framing error, closing connection");
    }

    pub fn receive_error(&self, peer: Option<SocketAddr>, error: &dyn std::fmt::Display) {
        self.receive_errors.fetch_add(1, Ordering::Relaxed);
        tracing::info!(listener = %self.name, ?peer, %error, "receive error");
    }

    pub fn pipeline_dropped(&self, reason: DropReason, num_messages: u64) {
        let counter = match reason {
            DropReason::QueueFull => &self.dropped_queue_full,
            DropReason::PipelineClosed => &self.dropped_pipeline_closed,
        };
        counter.fetch_add(num_messages, Ordering::Relaxed);
        tracing::debug!(listener = %self.name, reason = reason.as_str(), num_messages, "messages dropped");
    }

    /// The kernel's cumulative drop count for this listener's sockets.
    pub fn set_kernel_drops(&self, total: u64) {
        let previous = self.kernel_drops.swap(total, Ordering::Relaxed);
        if total > previous {
            tracing::debug!(listener = %self.name, new_drops = total - previous, total, "kernel dropped datagrams");
        }
    }

    pub fn connection_accepted(&self, peer: SocketAddr) {
        self.connections_accepted.fetch_add(1, Ordering::Relaxed);
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(listener = %self.name, %peer, "connection accepted");
    }

    pub fn connection_closed(&self, peer: SocketAddr, num_messages: u64) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(listener = %self.name, %peer, num_messages, "connection closed");
    }

    pub fn connection_refused(&self, peer: SocketAddr, max_connections: usize) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(listener = %self.name, %peer, max_connections, "connection refused: at the connection cap");
    }

    pub fn idle_timeout(&self, peer: SocketAddr) {
        self.idle_timeouts.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(listener = %self.name, %peer, "idle timeout, closing connection");
    }

    pub fn num_received(&self) -> u64 {
        self.received_messages.load(Ordering::Relaxed)
    }
    pub fn num_truncated(&self) -> u64 {
        self.truncated_messages.load(Ordering::Relaxed)
    }
    pub fn num_unparsed(&self) -> u64 {
        self.unparsed_messages.load(Ordering::Relaxed)
    }
    pub fn num_framing_errors(&self) -> u64 {
        self.framing_errors.load(Ordering::Relaxed)
    }
    pub fn num_dropped(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::QueueFull => self.dropped_queue_full.load(Ordering::Relaxed),
            DropReason::PipelineClosed => self.dropped_pipeline_closed.load(Ordering::Relaxed),
        }
    }
    pub fn num_connections_refused(&self) -> u64 {
        self.connections_refused.load(Ordering::Relaxed)
    }
    pub fn num_connections_open(&self) -> i64 {
        self.connections_open.load(Ordering::Relaxed)
    }
    pub fn num_idle_timeouts(&self) -> u64 {
        self.idle_timeouts.load(Ordering::Relaxed)
    }
    pub fn num_kernel_drops(&self) -> u64 {
        self.kernel_drops.load(Ordering::Relaxed)
    }
}

fn write_header(out: &mut String, name: &str, help: &str, kind: MetricKind) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {}", kind.as_str());
}

fn write_sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let escaped = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = write!(out, "{key}=\"{escaped}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_listener_counters_with_labels_and_types() {
        let metrics = Metrics::new();
        let tcp = metrics.listener("tcp:127.0.0.1:5514", Transport::Tcp);
        let udp = metrics.listener("udp:0.0.0.0:5514", Transport::Udp);
        tcp.messages_received(3, 120);
        tcp.message_truncated(None, 64);
        tcp.framing_error("127.0.0.1:4000".parse().unwrap(), &"bad prefix");
        udp.messages_received(2, 50);
        udp.pipeline_dropped(DropReason::QueueFull, 7);
        udp.set_kernel_drops(11);
        metrics.records_stored(Transport::Tcp, 3);
        let text = metrics.render(&[
            ExternalMetric::new(
                "starling_store_commits_total",
                "Commits.",
                MetricKind::Counter,
                4.0,
            ),
            ExternalMetric::new(
                "starling_store_errors_total",
                "Errors.",
                MetricKind::Counter,
                1.0,
            )
            .with_label("kind", "io"),
            ExternalMetric::new(
                "starling_store_errors_total",
                "Errors.",
                MetricKind::Counter,
                2.0,
            )
            .with_label("kind", "disk_full"),
        ]);
        for line in [
            "# TYPE starling_received_messages_total counter",
            "starling_received_messages_total{listener=\"tcp:127.0.0.1:5514\",transport=\"tcp\"} 3",
            "starling_received_bytes_total{listener=\"udp:0.0.0.0:5514\",transport=\"udp\"} 50",
            "starling_truncated_messages_total{listener=\"tcp:127.0.0.1:5514\",transport=\"tcp\"} 1",
            "starling_framing_errors_total{listener=\"tcp:127.0.0.1:5514\",transport=\"tcp\"} 1",
            "starling_udp_kernel_drops_total{listener=\"udp:0.0.0.0:5514\",transport=\"udp\"} 11",
            "starling_pipeline_dropped_messages_total{listener=\"udp:0.0.0.0:5514\",transport=\"udp\",reason=\"queue_full\"} 7",
            "starling_stored_messages_total{transport=\"tcp\"} 3",
            "starling_tcp_connections_open{listener=\"tcp:127.0.0.1:5514\",transport=\"tcp\"} 0",
            "# TYPE starling_store_commits_total counter",
            "starling_store_commits_total 4",
            "starling_store_errors_total{kind=\"disk_full\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // A UDP listener has no TCP-only series, and each family has one header.
        assert!(!text.contains("starling_framing_errors_total{listener=\"udp"));
        assert_eq!(
            text.matches("# TYPE starling_store_errors_total").count(),
            1
        );
    }

    #[test]
    fn registering_a_listener_twice_shares_its_counters() {
        let metrics = Metrics::new();
        metrics
            .listener("a", Transport::Tcp)
            .messages_received(1, 1);
        assert_eq!(metrics.listener("a", Transport::Tcp).num_received(), 1);
        assert_eq!(metrics.listener("a", Transport::Udp).num_received(), 0);
    }

    #[test]
    fn label_values_are_escaped() {
        let metrics = Metrics::new();
        metrics.listener("we\"ird\\name\n", Transport::Udp);
        let text = metrics.render(&[]);
        assert!(text.contains("listener=\"we\\\"ird\\\\name\\n\""), "{text}");
    }
}
