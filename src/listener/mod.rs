//! Syslog listeners: UDP (`udp`, RFC 5426) and TCP (`tcp`, RFC 6587).
//!
//! Owns the sockets' read loops: framing, turning messages into records (`ingest`), counting,
//! and handing batches of records to a bounded channel. The caller binds the sockets and
//! passes them in, and owns the channel's other end; listeners know nothing of the store.
//! TCP awaits room in the channel and the pipeline's byte budget (a slow pipeline slows the
//! sender), UDP cannot wait and drops and counts. On cancellation a listener stops reading, hands over what it has read
//! and returns.
//!
//! Who may send and how fast (`allow`, `ratelimit`, joined in `guard::SenderGuard`) is
//! checked through small hooks: at TCP accept, per UDP datagram, per TCP batch read.
//!
//! Wiring: the node registers one [`metrics::ListenerFamilies`] in its registry and starts
//! every configured listener with [`syslog::SyslogListeners::start`], which binds each address
//! and spawns [`tcp::run`] / [`udp::run`] with a [`ListenerContext`] (counters fetched once, a
//! clone of the bounded records sender). On shutdown, cancel, keep draining the records
//! channel into the store until every listener ended (a TCP connection may be waiting for
//! room in the channel), then close the store.

pub mod allow;
pub mod guard;
pub mod metrics;
pub mod ratelimit;
pub mod syslog;
pub mod tcp;
pub mod udp;

use std::sync::Arc;

use crate::ingest::{build_record_from, IngestConfig, Peer};
use crate::pipeline::budget::NotSent;
use crate::pipeline::Intake;
use crate::record::{ParseStatus, Record, Transport};
use crate::telemetry::DropReason;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use metrics::ListenerMetrics;

/// Default number of records a listener hands over at once (at most).
pub const DEFAULT_MAX_BATCH_RECORDS: usize = 1024;
/// On shutdown a listener keeps reading what the kernel already holds (TCP: what the sender
/// sent before; UDP: the sockets' receive buffers) for at most this long (within the node's
/// shutdown deadline).
pub(crate) const DRAIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// What a running listener needs from the node.
pub struct ListenerContext {
    /// Name used in logs and metrics, e.g. `tcp:0.0.0.0:5514`.
    pub name: String,
    pub ingest: IngestConfig,
    /// Where batches of records go (bounded in batches and in bytes; the other end is the
    /// node's `pipeline`).
    pub records_tx: Intake,
    pub metrics: Arc<ListenerMetrics>,
    /// The listener's allow list and per-source rate limit (`guard`).
    pub guard: guard::SenderGuard,
}

impl ListenerContext {
    /// Builds the record of one message and counts what is special about it.
    fn record(
        &self,
        payload: Bytes,
        truncated: bool,
        peer: Option<&Peer>,
        transport: Transport,
        received_at: DateTime<Utc>,
        max_message_bytes: usize,
    ) -> Record {
        let peer_addr = peer.map(|p| p.addr);
        if truncated {
            self.metrics.message_truncated(peer_addr, max_message_bytes);
        }
        let len = payload.len();
        let record = build_record_from(
            payload,
            truncated,
            peer,
            transport,
            received_at,
            &self.ingest,
        );
        if record.parse == ParseStatus::Unparsed {
            self.metrics.message_unparsed(peer_addr, len);
        }
        record
    }

    /// Counts a batch as received; returns it unchanged.
    fn count_received(&self, batch: &[Record]) {
        let num_bytes: usize = batch.iter().map(|r| r.raw.len()).sum();
        self.metrics
            .messages_received(batch.len() as u64, num_bytes as u64);
    }

    /// Hands a batch over, waiting for room (budget and channel). `false` when the pipeline
    /// is gone.
    async fn send(&self, batch: Vec<Record>) -> bool {
        let num_records = batch.len() as u64;
        match self.records_tx.send(batch).await {
            Ok(()) => true,
            Err(_) => {
                self.metrics
                    .pipeline_dropped(DropReason::PipelineClosed, num_records);
                false
            }
        }
    }

    /// Hands a batch over if there is room (budget and channel), else drops and counts it.
    /// `false` when the pipeline is gone.
    fn try_send(&self, batch: Vec<Record>) -> bool {
        let num_records = batch.len() as u64;
        match self.records_tx.try_send(batch) {
            Ok(()) => true,
            Err((NotSent::Full, _)) => {
                self.metrics
                    .pipeline_dropped(DropReason::QueueFull, num_records);
                true
            }
            Err((NotSent::Closed, _)) => {
                self.metrics
                    .pipeline_dropped(DropReason::PipelineClosed, num_records);
                false
            }
        }
    }
}

#[cfg(test)]
mod test_support;
