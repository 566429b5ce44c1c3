//! The pipeline's byte budget (`pipeline-max-bytes`): the records of every batch between an
//! input and the store — in the listeners' channel, at the spool gate, in the store's queue,
//! in the writer until its commit answers the ticket — hold permits of one semaphore counted
//! in bytes (`record_bytes`). Past the budget TCP readers wait (the sender is pushed back),
//! UDP listeners drop and count, and a journald upload waits before its answer.
//!
//! A [`BudgetPermit`] is taken where a batch is made (a listener's [`Intake`], or
//! `PipelineHandle::submit` for the journald upload) and travels with it: in a [`Batch`]
//! through the channel, then as the store ticket's `Hold`, which the store drops once the
//! writer is done with the batch (answered durable or failed, or dropped unanswered). Every
//! other end of a batch (a full or closed channel, a refused append, a task aborted at
//! shutdown) drops the permit with the batch, so every path releases.
//!
//! The budget itself and its gauge (`starling_pipeline_bytes_in_flight`) are in
//! `store::budget`, because the forward server (below the pipeline) takes from the same one;
//! this file keeps the listeners' sending end. It knows no socket and no store internals.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::record::Record;
pub use crate::store::budget::{batch_bytes, record_bytes, BudgetPermit, ByteBudget, Closed};

/// Default `pipeline-max-bytes` (256 MiB; the config's default).
pub const DEFAULT_MAX_BYTES: u64 = crate::config::DEFAULT_PIPELINE_MAX_BYTES;

/// A batch of records with the budget it holds.
#[derive(Debug)]
pub struct Batch {
    pub records: Vec<Record>,
    pub permit: BudgetPermit,
}

/// Why a batch could not be handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSent {
    /// No room now (budget or channel); only `try_send` says this.
    Full,
    /// The pipeline is gone.
    Closed,
}

/// The listeners' sending end of the pipeline: takes a batch's bytes of the budget, then
/// room in the bounded channel.
#[derive(Debug, Clone)]
pub struct Intake {
    tx: mpsc::Sender<Batch>,
    budget: Arc<ByteBudget>,
}

impl Intake {
    /// An intake of `capacity` batches and `budget`, and the channel's receiving end (the
    /// pipeline's ingest task, or a test).
    pub fn channel(capacity: usize, budget: Arc<ByteBudget>) -> (Intake, mpsc::Receiver<Batch>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Intake { tx, budget }, rx)
    }

    /// Hands `records` over, waiting for budget and channel room (backpressure).
    pub async fn send(&self, records: Vec<Record>) -> Result<(), NotSent> {
        let permit = self
            .budget
            .acquire(batch_bytes(&records))
            .await
            .map_err(|Closed| NotSent::Closed)?;
        self.tx
            .send(Batch { records, permit })
            .await
            .map_err(|_| NotSent::Closed)
    }

    /// Hands `records` over if budget and channel have room now; never waits. A batch that
    /// is not sent is given back (its budget released).
    pub fn try_send(&self, records: Vec<Record>) -> Result<(), (NotSent, Vec<Record>)> {
        if self.tx.is_closed() {
            return Err((NotSent::Closed, records));
        }
        let Some(permit) = self.budget.try_acquire(batch_bytes(&records)) else {
            return Err((NotSent::Full, records));
        };
        self.tx
            .try_send(Batch { records, permit })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(batch) => (NotSent::Full, batch.records),
                mpsc::error::TrySendError::Closed(batch) => (NotSent::Closed, batch.records),
            })
    }
}
