//! The listeners' metrics: the families every listener counts in (registered once per node
//! by [`ListenerFamilies::register`]) and [`ListenerMetrics`], one listener's counters,
//! fetched from those families once when the listener starts so the read loops only do
//! relaxed atomic adds. Each counting method is a named event that also logs (nothing above
//! DEBUG per message; connection-level events at INFO). No I/O.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::record::Transport;
use crate::telemetry::{DropReason, PipelineMetrics};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
    transport: &'static str,
}

type Counters = Family<ListenerLabels, Counter>;

/// The per-listener families of one node.
#[derive(Debug, Clone)]
pub struct ListenerFamilies {
    received_messages: Counters,
    received_bytes: Counters,
    unparsed_messages: Counters,
    truncated_messages: Counters,
    framing_errors: Counters,
    receive_errors: Counters,
    kernel_drops: Counters,
    connections_accepted: Counters,
    connections_refused: Counters,
    connections_open: Family<ListenerLabels, Gauge>,
    idle_timeouts: Counters,
    senders_refused: Counters,
    rate_limited: Counters,
    rate_limit_waits: Counters,
    rate_limit_untracked: Counters,
    pipeline: PipelineMetrics,
}

impl ListenerFamilies {
    /// Registers the listener families in `registry`; drops are counted in the pipeline's
    /// `starling_pipeline_dropped_messages_total`.
    pub fn register(registry: &mut Registry, pipeline: &PipelineMetrics) -> ListenerFamilies {
        let families = ListenerFamilies {
            received_messages: Counters::default(),
            received_bytes: Counters::default(),
            unparsed_messages: Counters::default(),
            truncated_messages: Counters::default(),
            framing_errors: Counters::default(),
            receive_errors: Counters::default(),
            kernel_drops: Counters::default(),
            connections_accepted: Counters::default(),
            connections_refused: Counters::default(),
            connections_open: Family::default(),
            idle_timeouts: Counters::default(),
            senders_refused: Counters::default(),
            rate_limited: Counters::default(),
            rate_limit_waits: Counters::default(),
            rate_limit_untracked: Counters::default(),
            pipeline: pipeline.clone(),
        };
        // Names without `_total` (the encoder appends it to counters); `register` appends the
        // help's final period.
        for (name, help, family) in [
            (
                "starling_received_messages",
                "Messages received (after framing)",
                &families.received_messages,
            ),
            (
                "starling_received_bytes",
                "Bytes of the messages received (without framing)",
                &families.received_bytes,
            ),
            (
                "starling_unparsed_messages",
                "Messages that no syslog grammar accepted, stored raw as unparsed",
                &families.unparsed_messages,
            ),
            (
                "starling_truncated_messages",
                "Messages longer than the maximum, cut to it and flagged",
                &families.truncated_messages,
            ),
            (
                "starling_framing_errors",
                "TCP connections closed because their stream could not be framed",
                &families.framing_errors,
            ),
            (
                "starling_receive_errors",
                "Socket read errors (the TCP connection is closed; UDP keeps reading)",
                &families.receive_errors,
            ),
            (
                "starling_udp_kernel_drops",
                "Datagrams the kernel dropped on the listener's sockets (receive buffer full)",
                &families.kernel_drops,
            ),
            (
                "starling_tcp_connections_accepted",
                "TCP connections accepted",
                &families.connections_accepted,
            ),
            (
                "starling_tcp_connections_refused",
                "TCP connections closed at once because the connection cap was reached",
                &families.connections_refused,
            ),
            (
                "starling_senders_refused",
                "TCP connections (at accept) and UDP datagrams refused by the listener's allow list",
                &families.senders_refused,
            ),
            (
                "starling_rate_limited_messages",
                "UDP datagrams dropped by the listener's per-source rate limit",
                &families.rate_limited,
            ),
            (
                "starling_rate_limit_waits",
                "Times a TCP connection stopped reading until its source's rate limit allowed more",
                &families.rate_limit_waits,
            ),
            (
                "starling_rate_limit_untracked_messages",
                "Messages of sources beyond rate-limit.max-keys, limited together in one shared bucket",
                &families.rate_limit_untracked,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "starling_tcp_connections_open",
            "TCP connections open now",
            families.connections_open.clone(),
        );
        registry.register(
            "starling_tcp_idle_timeouts",
            "TCP connections closed after the idle timeout",
            families.idle_timeouts.clone(),
        );
        families
    }

    /// The counters of the listener `name` (the same ones when asked twice). Families that
    /// do not apply to `transport` (framing errors on UDP, kernel drops on TCP) get a counter
    /// that is never exposed, so they show no series for it.
    pub fn listener(&self, name: &str, transport: Transport) -> Arc<ListenerMetrics> {
        let labels = ListenerLabels {
            listener: name.to_owned(),
            transport: transport.as_str(),
        };
        let all = |family: &Counters| family.get_or_create(&labels).clone();
        let only = |family: &Counters, applies: Transport| {
            if transport == applies {
                all(family)
            } else {
                Counter::default()
            }
        };
        Arc::new(ListenerMetrics {
            name: name.to_owned(),
            transport,
            received_messages: all(&self.received_messages),
            received_bytes: all(&self.received_bytes),
            unparsed_messages: all(&self.unparsed_messages),
            truncated_messages: all(&self.truncated_messages),
            framing_errors: only(&self.framing_errors, Transport::Tcp),
            receive_errors: all(&self.receive_errors),
            kernel_drops: only(&self.kernel_drops, Transport::Udp),
            connections_accepted: only(&self.connections_accepted, Transport::Tcp),
            connections_refused: only(&self.connections_refused, Transport::Tcp),
            connections_open: if transport == Transport::Tcp {
                self.connections_open.get_or_create(&labels).clone()
            } else {
                Gauge::default()
            },
            idle_timeouts: only(&self.idle_timeouts, Transport::Tcp),
            senders_refused: all(&self.senders_refused),
            rate_limited: only(&self.rate_limited, Transport::Udp),
            rate_limit_waits: only(&self.rate_limit_waits, Transport::Tcp),
            rate_limit_untracked: all(&self.rate_limit_untracked),
            dropped_queue_full: self
                .pipeline
                .dropped(name, transport, DropReason::QueueFull),
            dropped_pipeline_closed: self.pipeline.dropped(
                name,
                transport,
                DropReason::PipelineClosed,
            ),
            dropped_shutdown_unread: if transport == Transport::Udp {
                self.pipeline
                    .dropped(name, transport, DropReason::ShutdownUnread)
            } else {
                Counter::default()
            },
        })
    }
}

/// Counters of one listener (one bound address and transport).
#[derive(Debug)]
pub struct ListenerMetrics {
    pub name: String,
    pub transport: Transport,
    received_messages: Counter,
    received_bytes: Counter,
    unparsed_messages: Counter,
    truncated_messages: Counter,
    framing_errors: Counter,
    receive_errors: Counter,
    kernel_drops: Counter,
    connections_accepted: Counter,
    connections_refused: Counter,
    connections_open: Gauge<i64, AtomicI64>,
    idle_timeouts: Counter,
    senders_refused: Counter,
    rate_limited: Counter,
    rate_limit_waits: Counter,
    rate_limit_untracked: Counter,
    dropped_queue_full: Counter,
    dropped_pipeline_closed: Counter,
    dropped_shutdown_unread: Counter,
}

impl ListenerMetrics {
    /// A listener's counters in a registry of their own (tests, tools).
    pub fn detached(name: &str, transport: Transport) -> Arc<ListenerMetrics> {
        let mut registry = Registry::default();
        let pipeline = PipelineMetrics::register(&mut registry);
        ListenerFamilies::register(&mut registry, &pipeline).listener(name, transport)
    }

    /// A batch of messages was received (counted per batch to keep the hot path cheap).
    pub fn messages_received(&self, num_messages: u64, num_bytes: u64) {
        self.received_messages.inc_by(num_messages);
        self.received_bytes.inc_by(num_bytes);
    }

    pub fn message_unparsed(&self, peer: Option<SocketAddr>, len: usize) {
        self.unparsed_messages.inc();
        tracing::debug!(listener = %self.name, ?peer, len, "message stored unparsed");
    }

    pub fn message_truncated(&self, peer: Option<SocketAddr>, max_message_bytes: usize) {
        self.truncated_messages.inc();
        tracing::debug!(listener = %self.name, ?peer, max_message_bytes, "message truncated");
    }

    pub fn framing_error(&self, peer: SocketAddr, error: &dyn std::fmt::Display) {
        self.framing_errors.inc();
        tracing::info!(listener = %self.name, %peer, %error, "framing error, closing connection");
    }

    pub fn receive_error(&self, peer: Option<SocketAddr>, error: &dyn std::fmt::Display) {
        self.receive_errors.inc();
        tracing::info!(listener = %self.name, ?peer, %error, "receive error");
    }

    pub fn pipeline_dropped(&self, reason: DropReason, num_messages: u64) {
        let counter = match reason {
            DropReason::QueueFull => &self.dropped_queue_full,
            DropReason::PipelineClosed => &self.dropped_pipeline_closed,
            DropReason::ShutdownUnread => &self.dropped_shutdown_unread,
            // A listener hands batches to the pipeline; it never talks to the store.
            DropReason::StoreError => return,
        };
        counter.inc_by(num_messages);
        tracing::debug!(listener = %self.name, reason = reason.as_str(), num_messages, "messages dropped");
    }

    /// The kernel's cumulative drop count for this listener's sockets.
    pub fn set_kernel_drops(&self, total: u64) {
        let previous = self.kernel_drops.inner().swap(total, Ordering::Relaxed);
        if total > previous {
            tracing::debug!(listener = %self.name, new_drops = total - previous, total, "kernel dropped datagrams");
        }
    }

    pub fn connection_accepted(&self, peer: SocketAddr) {
        self.connections_accepted.inc();
        self.connections_open.inc();
        tracing::debug!(listener = %self.name, %peer, "connection accepted");
    }

    pub fn connection_closed(&self, peer: SocketAddr, num_messages: u64) {
        self.connections_open.dec();
        tracing::debug!(listener = %self.name, %peer, num_messages, "connection closed");
    }

    pub fn connection_refused(&self, peer: SocketAddr, max_connections: usize) {
        self.connections_refused.inc();
        tracing::debug!(listener = %self.name, %peer, max_connections, "connection refused: at the connection cap");
    }

    pub fn idle_timeout(&self, peer: SocketAddr) {
        self.idle_timeouts.inc();
        tracing::debug!(listener = %self.name, %peer, "idle timeout, closing connection");
    }

    pub fn sender_refused(&self, peer: SocketAddr) {
        self.senders_refused.inc();
        tracing::debug!(listener = %self.name, %peer, "sender refused: not in the allow list");
    }

    pub fn rate_limited(&self, key: &dyn std::fmt::Debug) {
        self.rate_limited.inc();
        tracing::debug!(listener = %self.name, ?key, "datagram dropped: rate limit");
    }

    pub fn rate_limit_wait(&self, peer: SocketAddr, wait: std::time::Duration) {
        self.rate_limit_waits.inc();
        tracing::debug!(listener = %self.name, %peer, ?wait, "connection paused: rate limit");
    }

    pub fn rate_limit_untracked(&self, num_messages: u64) {
        self.rate_limit_untracked.inc_by(num_messages);
    }

    pub fn num_senders_refused(&self) -> u64 {
        self.senders_refused.get()
    }

    pub fn num_rate_limited(&self) -> u64 {
        self.rate_limited.get()
    }

    pub fn num_rate_limit_waits(&self) -> u64 {
        self.rate_limit_waits.get()
    }

    pub fn num_received(&self) -> u64 {
        self.received_messages.get()
    }
    pub fn num_truncated(&self) -> u64 {
        self.truncated_messages.get()
    }
    pub fn num_unparsed(&self) -> u64 {
        self.unparsed_messages.get()
    }
    pub fn num_framing_errors(&self) -> u64 {
        self.framing_errors.get()
    }
    pub fn num_dropped(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::QueueFull => self.dropped_queue_full.get(),
            DropReason::PipelineClosed => self.dropped_pipeline_closed.get(),
            DropReason::ShutdownUnread => self.dropped_shutdown_unread.get(),
            DropReason::StoreError => 0,
        }
    }
    pub fn num_connections_refused(&self) -> u64 {
        self.connections_refused.get()
    }
    pub fn num_connections_open(&self) -> i64 {
        self.connections_open.get()
    }
    pub fn num_idle_timeouts(&self) -> u64 {
        self.idle_timeouts.get()
    }
    pub fn num_kernel_drops(&self) -> u64 {
        self.kernel_drops.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{render, Format};

    #[test]
    fn renders_listener_counters_with_labels_and_types() {
        let mut registry = Registry::default();
        let pipeline = PipelineMetrics::register(&mut registry);
        let families = ListenerFamilies::register(&mut registry, &pipeline);
        let tcp = families.listener("tcp:127.0.0.1:5514", Transport::Tcp);
        let udp = families.listener("udp:0.0.0.0:5514", Transport::Udp);
        tcp.messages_received(3, 120);
        tcp.message_truncated(None, 64);
        tcp.framing_error("127.0.0.1:4000".parse().unwrap(), &"bad prefix");
        udp.messages_received(2, 50);
        udp.pipeline_dropped(DropReason::QueueFull, 7);
        udp.set_kernel_drops(11);
        udp.framing_error("127.0.0.1:4000".parse().unwrap(), &"not counted for udp");
        pipeline.records_stored(Transport::Tcp, 3);
        let text = render(&registry, Format::Text);
        crate::testutil::assert_has_lines(
            &text,
            &[
                "# TYPE starling_received_messages_total counter",
                "starling_received_messages_total{listener=\"tcp:127.0.0.1:5514\",transport=\"tcp\"} 3",
                "starling_received_bytes_total{listener=\"udp:0.0.0.0:5514\",transport=\"udp\"} 50",
                "starling_truncated_messages_total{listener=\"tcp:127.0.0.1:5514\",transport=\"tcp\"} 1",
                "starling_framing_errors_total{listener=\"tcp:127.0.0.1:5514\",transport=\"tcp\"} 1",
                "starling_udp_kernel_drops_total{listener=\"udp:0.0.0.0:5514\",transport=\"udp\"} 11",
                "starling_pipeline_dropped_messages_total{listener=\"udp:0.0.0.0:5514\",transport=\"udp\",reason=\"queue_full\"} 7",
                "starling_pipeline_dropped_messages_total{listener=\"tcp:127.0.0.1:5514\",transport=\"tcp\",reason=\"pipeline_closed\"} 0",
                "starling_stored_messages_total{transport=\"tcp\"} 3",
                "starling_tcp_connections_open{listener=\"tcp:127.0.0.1:5514\",transport=\"tcp\"} 0",
            ],
        );
        // A UDP listener has no TCP-only series, and each family has one header.
        assert!(!text.contains("starling_framing_errors_total{listener=\"udp"));
        assert!(!text.contains("starling_tcp_connections_open{listener=\"udp"));
        assert!(!text.contains("starling_udp_kernel_drops_total{listener=\"tcp"));
        let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let num_types = types.len();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), num_types, "a family declared twice:\n{text}");
    }

    #[test]
    fn registering_a_listener_twice_shares_its_counters() {
        let mut registry = Registry::default();
        let pipeline = PipelineMetrics::register(&mut registry);
        let families = ListenerFamilies::register(&mut registry, &pipeline);
        families
            .listener("a", Transport::Tcp)
            .messages_received(1, 1);
        assert_eq!(families.listener("a", Transport::Tcp).num_received(), 1);
        assert_eq!(families.listener("a", Transport::Udp).num_received(), 0);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut registry = Registry::default();
        let pipeline = PipelineMetrics::register(&mut registry);
        ListenerFamilies::register(&mut registry, &pipeline)
            .listener("we\"ird\\name\n", Transport::Udp);
        let text = render(&registry, Format::Text);
        assert!(text.contains("listener=\"we\\\"ird\\\\name\\n\""), "{text}");
    }
}
