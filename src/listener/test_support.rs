//! Helpers shared by the listener tests: a context wired to a real channel and collecting
//! records (waiting with a deadline is `crate::testutil::wait_until`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::ListenerContext;
use crate::ingest::{IngestConfig, ShardBy};
use crate::parse::Zone;
use crate::pipeline::{Batch, ByteBudget, Intake};
use crate::record::{Record, Transport};

pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// A listener context whose records go to the returned receiver (capacity in batches; an
/// unbounded byte budget).
pub(crate) fn context(
    transport: Transport,
    capacity: usize,
) -> (Arc<ListenerContext>, mpsc::Receiver<Batch>) {
    context_with_budget(transport, capacity, Arc::new(ByteBudget::new(u64::MAX)))
}

/// [`context`] with its own byte budget.
pub(crate) fn context_with_budget(
    transport: Transport,
    capacity: usize,
    budget: Arc<ByteBudget>,
) -> (Arc<ListenerContext>, mpsc::Receiver<Batch>) {
    let (records_tx, records_rx) = Intake::channel(capacity, budget);
    let name = format!("{}:test", transport.as_str());
    let ctx = ListenerContext {
        metrics: super::metrics::ListenerMetrics::detached(&name, transport),
        name,
        ingest: IngestConfig {
            origin: "test-node".to_owned().into(),
            shard_by: ShardBy::Hostname,
            rfc3164_zone: Zone::Utc,
        },
        records_tx,
        guard: Default::default(),
    };
    (Arc::new(ctx), records_rx)
}

/// Receives batches until `num_records` records arrived (panics after [`TIMEOUT`]).
pub(crate) async fn receive(
    records_rx: &mut mpsc::Receiver<Batch>,
    num_records: usize,
) -> Vec<Record> {
    let mut records = Vec::new();
    while records.len() < num_records {
        match tokio::time::timeout(TIMEOUT, records_rx.recv()).await {
            Ok(Some(batch)) => records.extend(batch.records),
            Ok(None) => panic!("channel closed after {} records", records.len()),
            Err(_) => panic!("timed out after {} of {num_records} records", records.len()),
        }
    }
    assert_eq!(records.len(), num_records, "more records than expected");
    records
}

/// The raw bytes of each record, as text.
pub(crate) fn raws(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.raw).into_owned())
        .collect()
}
