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
//! This file keeps the budget, its gauge (`starling_pipeline_bytes_in_flight`) and the
//! listeners' sending end; it knows no socket and no store internals.

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::record::Record;

/// Default `pipeline-max-bytes` (256 MiB; the config's default).
pub const DEFAULT_MAX_BYTES: u64 = crate::config::DEFAULT_PIPELINE_MAX_BYTES;

/// Bytes of the fixed part of a record (the struct itself), besides its payload.
const RECORD_STRUCT_BYTES: u64 = std::mem::size_of::<Record>() as u64;

/// About how much memory `record` holds: its struct and its payload. Names (source, peer,
/// origin) are shared `Arc`s, usually by many records, and are not counted.
pub fn record_bytes(record: &Record) -> u64 {
    RECORD_STRUCT_BYTES + record.raw.len() as u64
}

/// Bytes of a batch's records.
pub fn batch_bytes(records: &[Record]) -> u64 {
    records.iter().map(record_bytes).sum()
}

/// The byte budget of one node's pipeline.
#[derive(Debug)]
pub struct ByteBudget {
    max_bytes: u64,
    semaphore: Arc<Semaphore>,
    in_flight: Gauge,
}

/// Bytes of the budget held by one batch; released when dropped.
#[derive(Debug)]
pub struct BudgetPermit {
    _permit: Option<OwnedSemaphorePermit>,
    bytes: u64,
    in_flight: Gauge,
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        self.in_flight.dec_by(self.bytes as i64);
    }
}

/// The budget is closed (never happens while the node runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl ByteBudget {
    /// A budget of `max_bytes` (at least 1).
    pub fn new(max_bytes: u64) -> ByteBudget {
        // The semaphore's own limit (`usize::MAX >> 3`) is far above any real budget.
        let max_bytes = max_bytes.clamp(1, Semaphore::MAX_PERMITS as u64);
        ByteBudget {
            max_bytes,
            semaphore: Arc::new(Semaphore::new(max_bytes as usize)),
            in_flight: Gauge::default(),
        }
    }

    /// Registers `starling_pipeline_bytes_in_flight` in the node's registry.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "starling_pipeline_bytes_in_flight",
            "Bytes of records between the inputs and the store's commit (bounded by \
             pipeline-max-bytes)",
            self.in_flight.clone(),
        );
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Bytes held now.
    pub fn in_flight(&self) -> u64 {
        self.max_bytes - self.semaphore.available_permits() as u64
    }

    /// The permits a batch of `bytes` takes: a batch larger than the whole budget (or than
    /// one acquire can take) takes all it can, so it passes alone instead of never.
    fn permits(&self, bytes: u64) -> u32 {
        bytes.min(self.max_bytes).min(u64::from(u32::MAX)) as u32
    }

    fn permit(&self, permit: Option<OwnedSemaphorePermit>) -> BudgetPermit {
        let bytes = permit.as_ref().map_or(0, |p| p.num_permits() as u64);
        self.in_flight.inc_by(bytes as i64);
        BudgetPermit {
            _permit: permit,
            bytes,
            in_flight: self.in_flight.clone(),
        }
    }

    /// Waits until `bytes` fit in the budget.
    pub async fn acquire(&self, bytes: u64) -> Result<BudgetPermit, Closed> {
        let permits = self.permits(bytes);
        if permits == 0 {
            return Ok(self.permit(None));
        }
        let permit = Arc::clone(&self.semaphore)
            .acquire_many_owned(permits)
            .await
            .map_err(|_| Closed)?;
        Ok(self.permit(Some(permit)))
    }

    /// Takes `bytes` of the budget if they fit now.
    pub fn try_acquire(&self, bytes: u64) -> Option<BudgetPermit> {
        let permits = self.permits(bytes);
        if permits == 0 {
            return Some(self.permit(None));
        }
        let permit = Arc::clone(&self.semaphore)
            .try_acquire_many_owned(permits)
            .ok()?;
        Some(self.permit(Some(permit)))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn permits_take_bytes_until_released_and_the_gauge_follows() {
        let budget = Arc::new(ByteBudget::new(1000));
        let a = budget.try_acquire(600).unwrap();
        assert_eq!(budget.in_flight(), 600);
        assert_eq!(budget.in_flight.get(), 600);
        assert!(budget.try_acquire(500).is_none(), "600 + 500 > 1000");
        let waiter = {
            let budget = Arc::clone(&budget);
            tokio::spawn(async move { budget.acquire(500).await.unwrap() })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(a);
        let b = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(budget.in_flight(), 500);
        // A batch larger than the budget takes all of it rather than waiting forever.
        drop(b);
        let huge = budget.try_acquire(5000).unwrap();
        assert_eq!(budget.in_flight(), 1000);
        assert!(budget.try_acquire(1).is_none());
        drop(huge);
        assert_eq!(budget.in_flight(), 0);
        assert_eq!(budget.in_flight.get(), 0);
    }
}
