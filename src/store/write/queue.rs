//! The queue between `StoreHandle`s and the writer thread: the messages (`Msg`), the state
//! both sides share (`Shared`: the queue, its wake-up, the permits that bound it, counters,
//! durable marks, retention's unforwarded mark) and what a batch became (`AppendOutcome`).
//!
//! A batch may also hold something of its caller's (`Hold`, e.g. the pipeline's byte budget)
//! until its ticket is answered.
//!
//! Only data and the push; the writer decides what a message does. No I/O here.

use std::collections::{HashMap, VecDeque};
use std::ops::RangeInclusive;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::record::Record;
use crate::store::error::StoreError;
use crate::store::stats::Counters;

/// What a batch became once durable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    pub num_stored: usize,
    pub num_duplicates: usize,
    /// Sequences of the local origin given to records appended with `origin_seq == 0`.
    pub assigned: Option<RangeInclusive<u64>>,
}

/// Something a caller's batch holds until the store is done with it (e.g. the pipeline's
/// byte budget); dropped with the ticket's sender.
pub type Hold = Box<dyn Send + Sync>;

/// The writer's end of a batch's ticket. It carries what the batch holds (`Hold`), so that is
/// released exactly when the writer is done with the batch: when the ticket is answered
/// (durable or failed), or when the sender is dropped unanswered (writer gone, queue dropped).
pub(crate) struct TicketTx {
    tx: oneshot::Sender<Result<AppendOutcome, StoreError>>,
    _hold: Option<Hold>,
}

impl TicketTx {
    pub fn new(
        tx: oneshot::Sender<Result<AppendOutcome, StoreError>>,
        hold: Option<Hold>,
    ) -> TicketTx {
        TicketTx { tx, _hold: hold }
    }

    /// Answers the ticket (and releases what the batch held).
    pub fn send(
        self,
        result: Result<AppendOutcome, StoreError>,
    ) -> Result<(), Result<AppendOutcome, StoreError>> {
        self.tx.send(result)
    }
}

pub(crate) enum Msg {
    Append {
        records: Vec<Record>,
        ticket: TicketTx,
        _permit: OwnedSemaphorePermit,
    },
    Close(oneshot::Sender<Result<(), StoreError>>),
    /// Commit now, whatever the policy says.
    Commit(oneshot::Sender<()>),
    /// Apply retention now instead of at the next seal or period.
    Retention(Option<oneshot::Sender<()>>),
    /// Tests: stop the writer at once, like a killed process (no commit, no seal).
    Abandon,
}

/// State shared by handles and the writer thread.
pub(crate) struct Shared {
    pub queue: Mutex<VecDeque<Msg>>,
    pub wake: Condvar,
    pub permits: Arc<Semaphore>,
    pub counters: Counters,
    pub durable_hwm: Mutex<HashMap<String, u64>>,
    /// Retention keeps the local origin's records numbered above this (a spool's records
    /// that no master has acknowledged); `u64::MAX`: none.
    pub unforwarded_after: AtomicU64,
}

impl Shared {
    pub fn new(queue_capacity: usize, spool: bool) -> Shared {
        Shared {
            queue: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            permits: Arc::new(Semaphore::new(queue_capacity.max(1))),
            counters: Counters::default(),
            durable_hwm: Mutex::new(HashMap::new()),
            // A spool keeps every local record until told what a master has.
            unforwarded_after: AtomicU64::new(if spool { 0 } else { u64::MAX }),
        }
    }

    pub fn push(&self, msg: Msg) {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(msg);
        self.wake.notify_one();
    }
}
