//! The spool gate: holds ingest back while this node's unforwarded backlog is over
//! `spool-max-bytes`, so TCP senders are pushed back, UDP listeners drop (and count) and a
//! journald upload waits before its answer.
//!
//! The backlog is estimated, not scanned: every time the forwarder's progress changes (an
//! acknowledgement, a handshake, a change of master, pushed by `forward::progress`) `follow`
//! sets it to forward lag × mean record size, and in between the pipeline adds the bytes it
//! appends (`appended`), so a fast sender cannot run far past the bound while no master
//! acknowledges anything. The gate closes at the bound and reopens below `REOPEN_FRACTION`
//! of it; it never closes while the node is master (nothing to forward). This file only keeps
//! the estimate and the gate (and registers the gate's two metrics); it does not move the
//! acknowledged mark and never writes to the store.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::forward::progress::Progress;
use crate::store::StoreHandle;

/// The gate opens again once the backlog is below this fraction of the bound.
const REOPEN_FRACTION: f64 = 0.9;
/// Fixed per-record bytes of a stored record besides its strings (times, sequence, flags,
/// frame share); only an estimate until the next change of the progress.
const RECORD_OVERHEAD_BYTES: u64 = 48;

/// About how many bytes `record` takes in the store.
pub(super) fn estimated_bytes(record: &crate::record::Record) -> u64 {
    (record.raw.len() + record.source.len() + record.origin.len()) as u64 + RECORD_OVERHEAD_BYTES
}

#[derive(Debug)]
pub struct SpoolGate {
    max_bytes: u64,
    backlog_bytes: AtomicU64,
    /// This node forwards (it is not the master).
    forwarding: AtomicBool,
    closed_events: Counter,
    /// 1 while closed (mirrors `closed_tx` for `/metrics`).
    full: Gauge,
    closed_tx: watch::Sender<bool>,
}

impl SpoolGate {
    pub fn new(max_bytes: u64) -> SpoolGate {
        SpoolGate {
            max_bytes,
            backlog_bytes: AtomicU64::new(0),
            forwarding: AtomicBool::new(false),
            closed_events: Counter::default(),
            full: Gauge::default(),
            closed_tx: watch::channel(false).0,
        }
    }

    /// Registers the gate's metrics in the node's registry.
    pub fn register_metrics(&self, registry: &mut Registry) {
        // `register` appends the help's final period.
        registry.register(
            "starling_spool_full",
            "1 while ingest waits because the unforwarded backlog passed spool-max-bytes",
            self.full.clone(),
        );
        // The counter cannot be `starling_spool_full_total`: OpenMetrics names a counter's
        // family without `_total`, and `starling_spool_full` is the gauge's.
        registry.register(
            "starling_spool_full_events",
            "Times the unforwarded backlog passed spool-max-bytes",
            self.closed_events.clone(),
        );
    }

    pub fn is_closed(&self) -> bool {
        *self.closed_tx.borrow()
    }

    /// Times the gate closed (served as `starling_spool_full_events_total`).
    #[cfg(test)]
    pub fn closed_events(&self) -> u64 {
        self.closed_events.get()
    }

    /// Ingest appended `bytes` of this node's records.
    pub(super) fn appended(&self, bytes: u64) {
        if !self.forwarding.load(Ordering::Relaxed) {
            return;
        }
        let backlog = self.backlog_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if backlog >= self.max_bytes {
            self.set_closed(true, backlog);
        }
    }

    /// A fresh estimate of the backlog from the progress (0 while master).
    fn measured(&self, backlog_bytes: u64, forwarding: bool) {
        self.forwarding.store(forwarding, Ordering::Relaxed);
        self.backlog_bytes.store(backlog_bytes, Ordering::Relaxed);
        let closed = if !forwarding {
            false
        } else if self.is_closed() {
            backlog_bytes as f64 >= self.max_bytes as f64 * REOPEN_FRACTION
        } else {
            backlog_bytes >= self.max_bytes
        };
        self.set_closed(closed, backlog_bytes);
    }

    /// Opens the gate for good (shutdown).
    fn open(&self) {
        self.forwarding.store(false, Ordering::Relaxed);
        self.set_closed(false, 0);
    }

    fn set_closed(&self, closed: bool, backlog_bytes: u64) {
        let changed = self.closed_tx.send_if_modified(|current| {
            let changed = *current != closed;
            *current = closed;
            // Under the channel's lock, so the gauge follows transitions in order.
            self.full.set(i64::from(closed));
            changed
        });
        if !changed {
            return;
        }
        if closed {
            self.closed_events.inc();
            tracing::warn!(
                backlog_bytes,
                spool_max_bytes = self.max_bytes,
                "spool full: holding senders back until the master catches up"
            );
        } else {
            tracing::info!(backlog_bytes, "spool has room again");
        }
    }

    /// Callers waiting in `wait_for_room` right now.
    pub fn num_waiting(&self) -> usize {
        self.closed_tx.receiver_count()
    }

    /// Re-estimates the backlog of `origin` (this node) every time the forwarder's progress
    /// changes, until the forwarder is gone; then opens for good.
    pub async fn follow(
        &self,
        mut progress: watch::Receiver<Progress>,
        store: StoreHandle,
        origin: String,
    ) {
        loop {
            let current = *progress.borrow_and_update();
            let stats = store.stats();
            let forward_lag = current.lag(store.high_water_mark(&origin));
            let backlog = backlog_bytes(forward_lag, stats.appended_bytes, stats.appended_records);
            self.measured(backlog, !current.is_master);
            if progress.changed().await.is_err() {
                break;
            }
        }
        // Nobody waits on a closed gate once nothing forwards.
        self.open();
    }

    /// Waits while the gate is closed, unless `drain` fired (shutdown stores what it read).
    pub async fn wait_for_room(&self, drain: &CancellationToken) {
        if !self.is_closed() {
            return;
        }
        let mut closed = self.closed_tx.subscribe();
        while *closed.borrow_and_update() && !drain.is_cancelled() {
            tokio::select! {
                _ = drain.cancelled() => return,
                changed = closed.changed() => if changed.is_err() { return },
            }
        }
    }
}

/// Estimated bytes of `forward_lag` records: the lag times the store's mean record size.
fn backlog_bytes(forward_lag: u64, appended_bytes: u64, appended_records: u64) -> u64 {
    if appended_records == 0 {
        return 0;
    }
    let mean = appended_bytes as f64 / appended_records as f64;
    (forward_lag as f64 * mean) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn closes_at_the_bound_reopens_below_it_and_never_while_master() {
        let gate = SpoolGate::new(1000);
        gate.appended(5000);
        assert!(!gate.is_closed(), "a master does not count its own appends");
        gate.measured(0, true);
        gate.appended(600);
        assert!(!gate.is_closed());
        gate.appended(400);
        assert!(gate.is_closed());
        assert_eq!(gate.closed_events(), 1);
        gate.measured(950, true);
        assert!(gate.is_closed(), "hysteresis: 950 is above 90% of 1000");
        gate.measured(800, true);
        assert!(!gate.is_closed());
        gate.measured(2000, false);
        assert!(!gate.is_closed(), "never closed while master");
        gate.measured(2000, true);
        assert!(gate.is_closed());
        gate.open();
        assert!(!gate.is_closed());
        assert_eq!(gate.closed_events(), 2);
    }

    #[tokio::test]
    async fn waits_for_room_or_the_drain() {
        let gate = Arc::new(SpoolGate::new(10));
        let drain = CancellationToken::new();
        gate.measured(100, true);
        let waiter = {
            let (gate, drain) = (gate.clone(), drain.clone());
            tokio::spawn(async move { gate.wait_for_room(&drain).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        gate.measured(0, true);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();

        gate.measured(100, true);
        drain.cancel();
        tokio::time::timeout(Duration::from_secs(5), gate.wait_for_room(&drain))
            .await
            .unwrap();
    }

    #[test]
    fn backlog_is_lag_times_mean_record_size() {
        assert_eq!(backlog_bytes(0, 1000, 10), 0);
        assert_eq!(backlog_bytes(5, 0, 0), 0);
        assert_eq!(backlog_bytes(5, 1000, 10), 500);
    }
}
