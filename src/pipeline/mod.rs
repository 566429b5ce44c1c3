//! The ingest pipeline: the one way records of this node's inputs reach the store. Every
//! input hands its batches here — the syslog listeners through a bounded channel (they only
//! see an `mpsc::Sender<Vec<Record>>`), the journald upload through a [`PipelineHandle`] —
//! and every batch passes the same stages: the spool gate (`gate`: wait while the
//! unforwarded backlog is over `spool-max-bytes`), the append (awaiting store queue room, so
//! a slow disk slows the sender), durability tracking and the counters (records stored per
//! transport once durable, records the store refused).
//!
//! Listener batches are appended in order by one ingest task and their durability awaited in
//! order by a durability task; an input that must answer only once its records are durable
//! (the journald upload) awaits its own [`Stored`] tickets. This module does not parse, knows
//! no socket and no protocol, and does not move the forwarder's acknowledged mark (it reads
//! it, pushed by `forward::progress`).

pub mod gate;

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::forward::progress::Progress;
use crate::record::{Record, Transport};
use crate::store::{AppendOutcome, AppendTicket, StoreError, StoreHandle};
use crate::telemetry::PipelineMetrics;

pub use gate::SpoolGate;

/// Batches in flight between the listeners and the store.
const CAPACITY_BATCHES: usize = 1024;
/// Appended batches whose durability is awaited in order.
const DURABILITY_QUEUE_BATCHES: usize = 4096;

/// What the pipeline needs to start.
pub struct PipelineStart {
    pub store: StoreHandle,
    /// This node's id: the origin whose unforwarded backlog the gate bounds.
    pub origin: String,
    pub gate: Arc<SpoolGate>,
    /// The forwarder's progress (`forward::progress`), which the gate follows.
    pub progress: watch::Receiver<Progress>,
    /// Records stored per transport and records the store refused (`telemetry`).
    pub metrics: PipelineMetrics,
}

/// The running pipeline.
pub struct Pipeline {
    handle: PipelineHandle,
    ingest_task: JoinHandle<()>,
    durability_task: JoinHandle<()>,
    gate_task: JoinHandle<()>,
}

/// Hands batches to the pipeline from an input that awaits their durability itself.
#[derive(Clone)]
pub struct PipelineHandle {
    store: StoreHandle,
    gate: Arc<SpoolGate>,
    metrics: PipelineMetrics,
    /// Fired at shutdown: the gate no longer holds anything back, so all that was read is
    /// stored.
    drain: CancellationToken,
}

/// A batch the store accepted; resolves once it is durable.
#[must_use = "a batch is counted as stored only once its durability is awaited"]
pub struct Stored {
    transport: Transport,
    ticket: AppendTicket,
    metrics: PipelineMetrics,
}

impl Pipeline {
    /// Starts the ingest, durability and gate tasks; returns the pipeline and the sender the
    /// listeners get. The ingest task ends once every clone of the sender is dropped.
    pub fn start(start: PipelineStart) -> (Pipeline, mpsc::Sender<Vec<Record>>) {
        let handle = PipelineHandle {
            store: start.store.clone(),
            gate: start.gate.clone(),
            metrics: start.metrics,
            drain: CancellationToken::new(),
        };
        let (records_tx, records_rx) = mpsc::channel(CAPACITY_BATCHES);
        let (stored_tx, stored_rx) = mpsc::channel(DURABILITY_QUEUE_BATCHES);
        let ingest_task = tokio::spawn(ingest_loop(records_rx, handle.clone(), stored_tx));
        let durability_task = tokio::spawn(durability_loop(stored_rx));
        let gate_task = tokio::spawn(async move {
            let gate = start.gate;
            gate.follow(start.progress, start.store, start.origin).await
        });
        let pipeline = Pipeline {
            handle,
            ingest_task,
            durability_task,
            gate_task,
        };
        (pipeline, records_tx)
    }

    pub fn handle(&self) -> PipelineHandle {
        self.handle.clone()
    }

    /// From now on the gate holds nothing back (shutdown stores everything already read).
    pub fn drain(&self) {
        self.handle.drain.cancel();
    }

    /// Waits until every listener batch was handed to the store (the listeners have ended),
    /// or `deadline`; `false` if the deadline came first.
    pub async fn wait_appended(&mut self, deadline: tokio::time::Instant) -> bool {
        tokio::time::timeout_at(deadline, &mut self.ingest_task)
            .await
            .is_ok()
    }

    /// Waits (until `deadline`) for the durability of what was appended, then stops.
    pub async fn stop(self, deadline: tokio::time::Instant) {
        let _ = tokio::time::timeout_at(deadline, self.durability_task).await;
        self.gate_task.abort();
        self.ingest_task.abort();
    }
}

impl PipelineHandle {
    /// Passes the spool gate, then appends `batch` (records of `transport`, stamped with this
    /// node's origin and no sequence), awaiting room in the store's queue. A refusal is
    /// counted and logged.
    pub async fn submit(
        &self,
        transport: Transport,
        batch: Vec<Record>,
    ) -> Result<Stored, StoreError> {
        self.gate.wait_for_room(&self.drain).await;
        let num_records = batch.len() as u64;
        self.gate
            .appended(batch.iter().map(gate::estimated_bytes).sum());
        match self.store.append(batch).await {
            Ok(ticket) => Ok(Stored {
                transport,
                ticket,
                metrics: self.metrics.clone(),
            }),
            Err(error) => {
                self.metrics.store_refused(num_records);
                tracing::error!(%error, num_records, "the store refused a batch");
                Err(error)
            }
        }
    }
}

impl Stored {
    /// Waits until the batch is durable and counts its records as stored.
    pub async fn durable(self) -> Result<AppendOutcome, StoreError> {
        let outcome = self.ticket.durable().await?;
        self.metrics
            .records_stored(self.transport, outcome.num_stored as u64);
        Ok(outcome)
    }
}

/// Submits every batch the listeners produce, in order; a full store queue or a closed spool
/// gate makes this wait, which fills the channel, which slows TCP readers and makes UDP
/// listeners drop and count.
async fn ingest_loop(
    mut records_rx: mpsc::Receiver<Vec<Record>>,
    pipeline: PipelineHandle,
    stored_tx: mpsc::Sender<Stored>,
) {
    while let Some(batch) = records_rx.recv().await {
        let Some(transport) = batch.first().map(|record| record.transport) else {
            continue;
        };
        if let Ok(stored) = pipeline.submit(transport, batch).await {
            if stored_tx.send(stored).await.is_err() {
                tracing::error!("durability tracking stopped; records are still stored");
            }
        }
    }
}

/// Counts listener records as stored once their commit is durable.
async fn durability_loop(mut stored_rx: mpsc::Receiver<Stored>) {
    while let Some(stored) = stored_rx.recv().await {
        if let Err(error) = stored.durable().await {
            tracing::error!(%error, "a commit failed");
        }
    }
}
