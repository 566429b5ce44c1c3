//! This node's outbound forwarding, started and stopped as one piece: its store read as the
//! spool (`spool`), the forwarder (`client`), the forwarder's progress (`progress`, resumed
//! from the mark saved in the data directory; told at once when this node becomes or stops
//! being master), and the readers of that progress that belong to forwarding: the store's
//! retention and the saved mark (`acked_mark`). The node hands
//! `progress()` to the spool gate and stops this after leaving the cluster. This file only
//! assembles the pieces; it speaks no protocol and keeps no state of its own.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::acked_mark::AckedMarkFile;
use super::client::{ForwarderConfig, ForwarderStats};
use super::progress::{ForwardProgress, Progress};
use super::source::SpoolError;
use super::spool::StoreSpool;
use crate::cluster::ClusterView;
use crate::store::StoreHandle;

/// Longest wait between two attempts to reach the master: a forwarder that reached a new
/// master before it took over (peers detect a death at slightly different times and it
/// answers "not master" meanwhile) connects soon after it does.
const RETRY_MAX: Duration = Duration::from_millis(500);

/// What outbound forwarding needs from the node.
pub struct OutboundStart<'a> {
    pub cluster_id: &'a str,
    /// This node's id: the origin of the records it forwards.
    pub origin: &'a str,
    pub data_dir: &'a Path,
    /// This node's store, before the listeners start (it holds what it held at start).
    pub store: StoreHandle,
    pub view: watch::Receiver<ClusterView>,
}

/// The running outbound side.
pub struct Outbound {
    stats: Arc<ForwarderStats>,
    progress: Arc<ForwardProgress>,
    cancel: CancellationToken,
    forwarder_task: JoinHandle<()>,
    mark_stop: CancellationToken,
    mark_task: JoinHandle<()>,
    retention_task: JoinHandle<()>,
    mastership_task: JoinHandle<()>,
}

impl Outbound {
    /// Reads the saved mark and positions the spool, then starts the forwarder and the
    /// readers of its progress.
    pub fn start(start: OutboundStart<'_>) -> Result<Outbound, SpoolError> {
        // What a master acknowledged receiving from this data directory before the restart.
        let mark_file = AckedMarkFile::open(start.data_dir, start.origin);
        let local_hwm = start.store.high_water_mark(start.origin);
        let spool = StoreSpool::new(start.data_dir, start.origin, start.store.clone())?
            .with_forwarded_before(mark_file.saved().is_some().then_some(local_hwm));
        let progress = Arc::new(ForwardProgress::resumed(mark_file.saved(), local_hwm));
        let stats = Arc::new(ForwarderStats::default());
        let mut config = ForwarderConfig::new(start.cluster_id, start.origin);
        config.retry_max = config.retry_max.min(RETRY_MAX);
        let cancel = CancellationToken::new();
        let mastership_task = tokio::spawn(follow_mastership(
            start.view.clone(),
            progress.clone(),
            cancel.clone(),
        ));
        let forwarder = super::client::run(
            spool,
            start.view,
            config,
            stats.clone(),
            progress.clone(),
            cancel.clone(),
        );
        let forwarder_task = tokio::spawn(async move {
            if let Err(error) = forwarder.await {
                tracing::error!(%error, "the forwarder could not start; records are not forwarded");
            }
        });
        let retention_task = tokio::spawn(super::progress::tell_retention(
            progress.subscribe(),
            start.store,
        ));
        let mark_stop = CancellationToken::new();
        let mark_task = tokio::spawn(mark_file.keep_saved(progress.subscribe(), mark_stop.clone()));
        Ok(Outbound {
            stats,
            progress,
            cancel,
            forwarder_task,
            mark_stop,
            mark_task,
            retention_task,
            mastership_task,
        })
    }

    /// The forwarder's counters.
    pub fn stats(&self) -> Arc<ForwarderStats> {
        self.stats.clone()
    }

    /// The forwarder's progress, pushed on every change.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Stops the forwarder, then saves the acknowledged mark a last time. Call after the node
    /// left the cluster and before the store closes.
    pub async fn stop(self, deadline: Instant) {
        self.cancel.cancel();
        let _ = tokio::time::timeout_at(deadline, self.mastership_task).await;
        if tokio::time::timeout_at(deadline, self.forwarder_task)
            .await
            .is_err()
        {
            tracing::warn!("the forwarder did not stop in time");
        }
        self.mark_stop.cancel();
        let _ = tokio::time::timeout_at(deadline, self.mark_task).await;
        // The last sender: every reader of the progress ends.
        drop(self.progress);
        let _ = tokio::time::timeout_at(deadline, self.retention_task).await;
    }
}

/// Tells `progress` whether this node is the master, at once on every change of the view,
/// until `cancel`.
async fn follow_mastership(
    mut view: watch::Receiver<ClusterView>,
    progress: Arc<ForwardProgress>,
    cancel: CancellationToken,
) {
    loop {
        progress.set_master(view.borrow_and_update().is_master());
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = view.changed() => if changed.is_err() { return },
        }
    }
}
