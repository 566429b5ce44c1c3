//! A byte budget for records in flight to the store: permits of one semaphore counted in
//! bytes (`record_bytes`), held by a batch from where it is made until the writer is done
//! with it (the permit rides in the store ticket as its `Hold`). The node has one, shared by
//! the pipeline (every input: `pipeline::budget`) and the forward server (batches from
//! forwarders), bounded by `syslog.pipeline-max-bytes`.

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::record::Record;

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
