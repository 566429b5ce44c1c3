//! The ingest pipeline: the one way records of this node's inputs reach the store. Every
//! input hands its batches here — the syslog listeners through a bounded channel (they only
//! see an [`Intake`]), the journald upload through a [`PipelineHandle`] — and every batch
//! passes the same stages: the byte budget (`budget`: at most `pipeline-max-bytes` of records
//! between the inputs and the store's commit), the spool gate (`gate`: wait while the
//! unforwarded backlog is over `spool-max-bytes`), the append (awaiting store queue room, so
//! a slow disk slows the sender), durability tracking and the counters (records stored per
//! transport once durable, records the store refused, records whose commit failed by
//! reason — an unawaited ticket included).
//!
//! Listener batches are appended in order by one ingest task and their durability awaited in
//! order by a durability task; an input that must answer only once its records are durable
//! (the journald upload) awaits its own [`Stored`] tickets. This module does not parse, knows
//! no socket and no protocol, and does not move the forwarder's acknowledged mark (it reads
//! it, pushed by `forward::progress`).

pub mod budget;
pub mod gate;

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::forward::progress::Progress;
use crate::record::{Record, Transport};
use crate::store::{AppendOutcome, AppendTicket, StoreError, StoreHandle};
use crate::telemetry::{DropReason, FailReason, PipelineMetrics};

pub use budget::{Batch, ByteBudget, Intake};
pub use gate::SpoolGate;

/// Batches in flight between the listeners and the store.
const CAPACITY_BATCHES: usize = 1024;
/// How long `stop` waits for the ingest task to count what it gave up.
const GIVE_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
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
    /// Fired by `stop`: the ingest task stops submitting and counts what is left.
    give_up: CancellationToken,
    /// `None` once it ended (a finished `JoinHandle` must not be polled again).
    ingest_task: Option<JoinHandle<()>>,
    durability_task: JoinHandle<()>,
    gate_task: JoinHandle<()>,
}

/// Hands batches to the pipeline from an input that awaits their durability itself.
#[derive(Clone)]
pub struct PipelineHandle {
    store: StoreHandle,
    gate: Arc<SpoolGate>,
    budget: Arc<ByteBudget>,
    metrics: PipelineMetrics,
    /// Fired at shutdown: the gate no longer holds anything back, so all that was read is
    /// stored.
    drain: CancellationToken,
}

/// A batch the store accepted; resolves once it is durable. Its outcome is counted either
/// way: records stored, or records failed with the reason. Dropped without being awaited
/// (an upload that gave up after an earlier batch failed), it is awaited in the background
/// so that outcome is still counted.
#[must_use = "a batch is counted as stored only once its durability is awaited"]
pub struct Stored {
    transport: Transport,
    num_records: u64,
    /// `None` once awaited.
    ticket: Option<AppendTicket>,
    metrics: PipelineMetrics,
}

impl Pipeline {
    /// [`Pipeline::start_budgeted`] with the default budget (`budget::DEFAULT_MAX_BYTES`).
    pub fn start(start: PipelineStart) -> (Pipeline, Intake) {
        let budget = Arc::new(ByteBudget::new(budget::DEFAULT_MAX_BYTES));
        Pipeline::start_budgeted(start, budget)
    }

    /// Starts the ingest, durability and gate tasks; returns the pipeline and the intake the
    /// listeners get. The ingest task ends once every clone of the intake is dropped.
    pub fn start_budgeted(start: PipelineStart, budget: Arc<ByteBudget>) -> (Pipeline, Intake) {
        let handle = PipelineHandle {
            store: start.store.clone(),
            gate: start.gate.clone(),
            budget: Arc::clone(&budget),
            metrics: start.metrics,
            drain: CancellationToken::new(),
        };
        let (records_tx, records_rx) = Intake::channel(CAPACITY_BATCHES, budget);
        let (stored_tx, stored_rx) = mpsc::channel(DURABILITY_QUEUE_BATCHES);
        let give_up = CancellationToken::new();
        let ingest_task = tokio::spawn(ingest_loop(
            records_rx,
            handle.clone(),
            stored_tx,
            give_up.clone(),
        ));
        let durability_task = tokio::spawn(durability_loop(stored_rx));
        let gate_task = tokio::spawn(async move {
            let gate = start.gate;
            gate.follow(start.progress, start.store, start.origin).await
        });
        let pipeline = Pipeline {
            handle,
            give_up,
            ingest_task: Some(ingest_task),
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
        let Some(ingest_task) = self.ingest_task.as_mut() else {
            return true;
        };
        let ended = tokio::time::timeout_at(deadline, ingest_task).await.is_ok();
        if ended {
            self.ingest_task = None;
        }
        ended
    }

    /// Waits (until `deadline`) for the durability of what was appended, then stops. Listener
    /// batches not appended by then (the shutdown deadline passed) are counted as dropped
    /// (`listener="pipeline"`, `reason="pipeline_closed"`) and logged, not lost silently.
    pub async fn stop(self, deadline: tokio::time::Instant) {
        self.give_up.cancel();
        if let Some(mut ingest_task) = self.ingest_task {
            if tokio::time::timeout(GIVE_UP_TIMEOUT, &mut ingest_task)
                .await
                .is_err()
            {
                ingest_task.abort();
            }
        }
        let _ = tokio::time::timeout_at(deadline, self.durability_task).await;
        self.gate_task.abort();
    }
}

impl PipelineHandle {
    /// Passes the spool gate, waits for `batch`'s bytes of the budget, then appends it
    /// (records of `transport`, stamped with this node's origin and no sequence), awaiting
    /// room in the store's queue. A refusal is counted and logged.
    pub async fn submit(
        &self,
        transport: Transport,
        batch: Vec<Record>,
    ) -> Result<Stored, StoreError> {
        self.gate.wait_for_room(&self.drain).await;
        let permit = self
            .budget
            .acquire(budget::batch_bytes(&batch))
            .await
            .map_err(|budget::Closed| StoreError::Closed)?;
        self.append(transport, batch, permit).await
    }

    /// `submit` of a listener batch, which holds its budget already.
    async fn submit_batch(&self, transport: Transport, batch: Batch) -> Result<Stored, StoreError> {
        self.gate.wait_for_room(&self.drain).await;
        self.append(transport, batch.records, batch.permit).await
    }

    /// Appends `batch`; the store releases `permit` once its writer is done with the batch.
    async fn append(
        &self,
        transport: Transport,
        batch: Vec<Record>,
        permit: budget::BudgetPermit,
    ) -> Result<Stored, StoreError> {
        let num_records = batch.len() as u64;
        self.gate
            .appended(batch.iter().map(gate::estimated_bytes).sum());
        match self
            .store
            .append_holding(batch, Some(Box::new(permit)))
            .await
        {
            Ok(ticket) => Ok(Stored {
                transport,
                num_records,
                ticket: Some(ticket),
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
    /// Waits until the batch is durable and counts its records as stored, or as failed
    /// (`starling_store_failed_records_total`) when its commit failed.
    pub async fn durable(mut self) -> Result<AppendOutcome, StoreError> {
        let ticket = self.ticket.take().expect("a ticket is awaited once");
        let result = ticket.durable().await;
        count_outcome(&self.metrics, self.transport, self.num_records, &result);
        result
    }
}

impl Drop for Stored {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (metrics, transport, num_records) =
            (self.metrics.clone(), self.transport, self.num_records);
        runtime.spawn(async move {
            let result = ticket.durable().await;
            count_outcome(&metrics, transport, num_records, &result);
        });
    }
}

fn count_outcome(
    metrics: &PipelineMetrics,
    transport: Transport,
    num_records: u64,
    result: &Result<AppendOutcome, StoreError>,
) {
    match result {
        Ok(outcome) => metrics.records_stored(transport, outcome.num_stored as u64),
        Err(error) => metrics.records_failed(transport, fail_reason(error), num_records),
    }
}

/// The `reason` label of a failed ticket.
fn fail_reason(error: &StoreError) -> FailReason {
    match error {
        StoreError::Io { .. } | StoreError::Locked { .. } => FailReason::Io,
        StoreError::SyncFailed { .. } => FailReason::SyncFailed,
        StoreError::Closed => FailReason::Closed,
        StoreError::Gap { .. }
        | StoreError::BadGapMarker { .. }
        | StoreError::RecordTooLarge { .. } => FailReason::Rejected,
    }
}

/// Submits every batch the listeners produce, in order; a full store queue or a closed spool
/// gate makes this wait, which fills the channel and the budget, which slows TCP readers and
/// makes UDP listeners drop and count.
async fn ingest_loop(
    mut records_rx: mpsc::Receiver<Batch>,
    pipeline: PipelineHandle,
    stored_tx: mpsc::Sender<Stored>,
    give_up: CancellationToken,
) {
    let mut abandoned = Abandoned::default();
    loop {
        let batch = tokio::select! {
            biased;
            () = give_up.cancelled() => break,
            batch = records_rx.recv() => batch,
        };
        let Some(batch) = batch else {
            return;
        };
        let Some(transport) = batch.records.first().map(|record| record.transport) else {
            continue;
        };
        let num_records = batch.records.len() as u64;
        let submitted = tokio::select! {
            biased;
            () = give_up.cancelled() => {
                abandoned.add(&pipeline.metrics, transport, num_records);
                break;
            }
            submitted = pipeline.submit_batch(transport, batch) => submitted,
        };
        if let Ok(stored) = submitted {
            if stored_tx.send(stored).await.is_err() {
                tracing::error!("durability tracking stopped; records are still stored");
            }
        }
    }
    records_rx.close();
    while let Ok(batch) = records_rx.try_recv() {
        if let Some(transport) = batch.records.first().map(|record| record.transport) {
            abandoned.add(&pipeline.metrics, transport, batch.records.len() as u64);
        }
    }
    if abandoned.num_records > 0 {
        tracing::warn!(
            num_records = abandoned.num_records,
            "records read by the listeners but not handed to the store by the shutdown \
             deadline; counted as dropped (pipeline_closed)"
        );
    }
}

/// Listener records given up at the shutdown deadline.
#[derive(Default)]
struct Abandoned {
    num_records: u64,
}

impl Abandoned {
    fn add(&mut self, metrics: &PipelineMetrics, transport: Transport, num_records: u64) {
        self.num_records += num_records;
        metrics
            .dropped(ABANDONED_LISTENER, transport, DropReason::PipelineClosed)
            .inc_by(num_records);
    }
}

/// The `listener` label of listener records the pipeline gave up at shutdown.
const ABANDONED_LISTENER: &str = "pipeline";

/// Counts listener records as stored once their commit is durable.
async fn durability_loop(mut stored_rx: mpsc::Receiver<Stored>) {
    while let Some(stored) = stored_rx.recv().await {
        if let Err(error) = stored.durable().await {
            tracing::error!(%error, "a commit failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::record::ParseStatus;
    use crate::store::{Store, StoreConfig};

    const ORIGIN: &str = "node-a";
    const TIMEOUT: Duration = Duration::from_secs(10);

    /// A record of this node; a peer string longer than a frame can name makes the store's
    /// writer fail the batch's ticket (the store accepted it, the commit refuses it).
    fn record(i: usize, peer_bytes: usize) -> Record {
        Record {
            received_at_micros: 1_700_000_000_000_000,
            event_time: None,
            origin: Arc::from(ORIGIN),
            origin_seq: 0,
            peer: Some(Arc::from("p".repeat(peer_bytes))),
            transport: Transport::Journal,
            parse: ParseStatus::Journal,
            truncated: false,
            source: Arc::from("host1"),
            raw: bytes::Bytes::from(format!("MESSAGE=entry {i}\n")),
            lost_from: None,
            tls_peer: None,
            file: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_tickets_are_counted_with_their_reason_awaited_or_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), ORIGIN, StoreConfig::default()).unwrap();
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = PipelineMetrics::register(&mut registry);
        let (_progress_tx, progress_rx) = watch::channel(Progress::default());
        let (pipeline, _records_tx) = Pipeline::start(PipelineStart {
            store: store.handle(),
            origin: ORIGIN.to_string(),
            gate: Arc::new(SpoolGate::new(u64::MAX)),
            progress: progress_rx,
            metrics: metrics.clone(),
        });
        let handle = pipeline.handle();
        let too_long = 70_000;

        let good = handle
            .submit(Transport::Journal, (0..2).map(|i| record(i, 9)).collect())
            .await
            .unwrap();
        assert_eq!(good.durable().await.unwrap().num_stored, 2);
        let failed = handle
            .submit(
                Transport::Journal,
                (0..3).map(|i| record(i, too_long)).collect(),
            )
            .await
            .unwrap();
        let error = failed.durable().await.unwrap_err();
        assert!(
            matches!(error, StoreError::RecordTooLarge { .. }),
            "{error}"
        );
        assert_eq!(
            metrics.num_failed(Transport::Journal, FailReason::Rejected),
            3
        );
        assert_eq!(metrics.num_stored(Transport::Journal), 2);

        // A ticket dropped unawaited (an upload that gave up) is still counted.
        let dropped = handle
            .submit(
                Transport::Journal,
                (0..4).map(|i| record(i, too_long)).collect(),
            )
            .await
            .unwrap();
        drop(dropped);
        assert!(
            crate::testutil::wait_until(TIMEOUT, || {
                metrics.num_failed(Transport::Journal, FailReason::Rejected) == 7
            })
            .await,
            "the dropped ticket's failure was not counted"
        );
        let rendered = crate::telemetry::render(&registry, crate::telemetry::Format::Text);
        crate::testutil::assert_has_lines(
            &rendered,
            &["starling_store_failed_records_total{transport=\"journal\",reason=\"rejected\"} 7"],
        );
        pipeline.drain();
        drop(handle);
        store.close().unwrap();
    }

    /// Listener batches still in the pipeline when `stop` comes (the shutdown deadline
    /// passed: here a closed spool gate holds them) are counted as dropped, not lost
    /// silently, and their budget is released.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_given_up_at_stop_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), ORIGIN, StoreConfig::default()).unwrap();
        // Unacknowledged records of this node over a one-byte spool bound: the gate closes.
        let backlog = (0..10).map(|i| record(i, 1)).collect();
        store
            .handle()
            .append(backlog)
            .await
            .unwrap()
            .durable()
            .await
            .unwrap();
        let gate = Arc::new(SpoolGate::new(1));
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = PipelineMetrics::register(&mut registry);
        let (_progress_tx, progress_rx) = watch::channel(Progress::default());
        let budget = Arc::new(ByteBudget::new(u64::MAX));
        let (pipeline, intake) = Pipeline::start_budgeted(
            PipelineStart {
                store: store.handle(),
                origin: ORIGIN.to_string(),
                gate: gate.clone(),
                progress: progress_rx,
                metrics: metrics.clone(),
            },
            Arc::clone(&budget),
        );
        crate::testutil::wait_until(TIMEOUT, || gate.is_closed()).await;
        for batch in 0..3 {
            let records = (0..4)
                .map(|i| Record {
                    transport: Transport::Udp,
                    ..record(batch * 4 + i, 1)
                })
                .collect();
            intake.send(records).await.unwrap();
        }
        assert!(
            crate::testutil::wait_until(TIMEOUT, || gate.num_waiting() == 1).await,
            "the ingest task waits at the gate"
        );
        assert!(budget.in_flight() > 0);
        pipeline.stop(tokio::time::Instant::now() + TIMEOUT).await;
        let dropped = metrics
            .dropped("pipeline", Transport::Udp, DropReason::PipelineClosed)
            .get();
        assert_eq!(dropped, 12, "every record given up is counted");
        assert_eq!(budget.in_flight(), 0, "their budget is released");
        assert_eq!(
            store.handle().high_water_mark(ORIGIN),
            10,
            "nothing appended"
        );
        drop(intake);
        store.close().unwrap();
    }
}
