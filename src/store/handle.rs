//! The append side seen by callers: `StoreHandle` (async, non-waiting and blocking appends,
//! high-water marks, stats) and `AppendTicket`, which resolves once the batch is durable (or
//! failed). Both talk to the writer thread through `write::queue`.
//!
//! Backpressure: each queued batch holds one permit of a semaphore sized `queue_capacity`;
//! the writer releases it when it takes the batch. No I/O here.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::error::{StoreError, TryAppendError};
use super::stats::StoreStats;
use super::write::queue::{AppendOutcome, Hold, Msg, Shared, TicketTx};
use crate::record::Record;

#[derive(Clone)]
pub struct StoreHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle").finish_non_exhaustive()
    }
}

impl StoreHandle {
    /// Queues a batch, waiting for queue room (backpressure).
    pub async fn append(&self, records: Vec<Record>) -> Result<AppendTicket, StoreError> {
        self.append_holding(records, None).await
    }

    /// Like `append`; `hold` is dropped once the writer is done with the batch (its ticket
    /// answered, durable or failed), or with the batch if it is never queued.
    pub async fn append_holding(
        &self,
        records: Vec<Record>,
        hold: Option<Hold>,
    ) -> Result<AppendTicket, StoreError> {
        let permit = self
            .shared
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(self.enqueue(records, permit, hold))
    }

    /// Queues a batch if there is room right now; never waits.
    pub fn try_append(&self, records: Vec<Record>) -> Result<AppendTicket, TryAppendError> {
        match self.shared.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok(self.enqueue(records, permit, None)),
            Err(tokio::sync::TryAcquireError::NoPermits) => Err(TryAppendError::Full(records)),
            Err(tokio::sync::TryAcquireError::Closed) => Err(TryAppendError::Closed(records)),
        }
    }

    /// Queues a batch from a non-async thread, blocking while the queue is full.
    pub fn blocking_append(&self, records: Vec<Record>) -> Result<AppendTicket, StoreError> {
        futures::executor::block_on(self.append(records))
    }

    fn enqueue(
        &self,
        records: Vec<Record>,
        permit: OwnedSemaphorePermit,
        hold: Option<Hold>,
    ) -> AppendTicket {
        let (tx, rx) = oneshot::channel();
        let ticket = TicketTx::new(tx, hold);
        self.shared.push(Msg::Append {
            records,
            ticket,
            _permit: permit,
        });
        AppendTicket { rx }
    }

    /// Commits everything written so far now (ignoring the commit policy) and waits for it.
    pub fn commit_now(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.shared.push(Msg::Commit(tx));
        futures::executor::block_on(rx).map_err(|_| StoreError::Closed)
    }

    /// Applies retention now (it otherwise runs after a segment is sealed and every 30 s),
    /// e.g. right after `set_unforwarded_after` or in tests.
    pub fn run_retention_now(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.shared.push(Msg::Retention(Some(tx)));
        futures::executor::block_on(rx).map_err(|_| StoreError::Closed)
    }

    /// The highest sequence of `origin` durably stored (0: none), without copying the map.
    pub fn high_water_mark(&self, origin: &str) -> u64 {
        self.shared
            .durable_hwm
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(origin)
            .copied()
            .unwrap_or(0)
    }

    /// Per origin, the highest origin sequence durably stored.
    pub fn high_water_marks(&self) -> HashMap<String, u64> {
        self.shared
            .durable_hwm
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Tells retention which of the local origin's records have reached a master: those
    /// numbered up to `Some(seq)` have, the rest are kept whatever the limits say; `None`
    /// when this node is the master (nothing to forward). Only a spool store
    /// (`RetentionConfig::spool_retention`) uses it; until the first call it keeps every local
    /// record.
    ///
    /// Retention runs again at once when the value changed while it was holding segments
    /// back, so acknowledged records free space without waiting for its next period.
    pub fn set_unforwarded_after(&self, acknowledged: Option<u64>) {
        let new = acknowledged.unwrap_or(u64::MAX);
        let old = self.shared.unforwarded_after.swap(new, Ordering::Relaxed);
        if old != new && self.shared.counters.retention_held.load(Ordering::Relaxed) != 0 {
            self.shared.push(Msg::Retention(None));
        }
    }

    pub fn stats(&self) -> StoreStats {
        self.shared.counters.snapshot()
    }
}

/// Resolves once the batch is durable (after fdatasync), or with the error that
/// prevented it.
#[derive(Debug)]
pub struct AppendTicket {
    rx: oneshot::Receiver<Result<AppendOutcome, StoreError>>,
}

impl AppendTicket {
    pub async fn durable(self) -> Result<AppendOutcome, StoreError> {
        self.rx.await.unwrap_or(Err(StoreError::Closed))
    }

    /// Blocking form of `durable`, for non-async threads.
    pub fn wait_durable(self) -> Result<AppendOutcome, StoreError> {
        futures::executor::block_on(self.durable())
    }
}
